//! Everything that knows it runs inside a JVM.
//!
//! - [`entry`]: `Agent_OnLoad`, `Agent_OnAttach`, `Agent_OnUnload`, the VMInit
//!   and VMDeath callbacks and the `-javaagent` shim's native method; thin:
//!   read the option string and system properties through JVMTI, hand them
//!   to [`crate::agent`], and fence every edge so no panic crosses into the JVM.
//! - [`mbeans`]: the one JNI use, reading MBean attributes and invoking MBean
//!   operations on the platform MBean server.
//!
//! The tables are typed: JNI's from the `jni-sys` crate (every slot an
//! `Option` of the function's own signature), JVMTI's declared below with
//! typed slots at the used indexes and opaque padding between them. Slots are
//! read through `fun!`, which turns an empty slot into an error instead of a
//! call through null. `tests/jvmti_layout.rs` compiles C against each
//! installed JDK's `jni.h`/`jvmti.h` that assigns every slot named in a
//! `fun!` here to a function pointer of the Rust-declared type with
//! `-Werror=incompatible-pointer-types`, and checks every offset and every
//! `JNI_*`/`JVMTI_*` constant this module uses.

use std::ffi::{c_char, c_int, c_void};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicPtr};

pub use jni_sys::{
    jboolean, jchar, jclass, jint, jmethodID, jobject, jobjectArray, jsize, jstring, jvalue,
    JNIEnv, JNIInvokeInterface_, JNINativeInterface_, JavaVM, JavaVMAttachArgs, JNI_EDETACHED,
    JNI_ERR, JNI_OK, JNI_VERSION_1_8,
};

pub mod entry;
#[cfg(debug_assertions)]
pub mod fixture;
pub mod mbeans;

pub use mbeans::JniMBeans;

/// JVMTI's `jvmtiError`, a C enum (4 bytes, checked against jvmti.h).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct JvmtiError(pub u32);

/// JVMTI's `jvmtiEventMode`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct JvmtiEventMode(pub c_int);

/// JVMTI's `jvmtiEvent` (an event number).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct JvmtiEvent(pub c_int);

impl fmt::Display for JvmtiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub const JVMTI_VERSION_1_2: jint = 0x3001_0200;
pub const JVMTI_ENABLE: JvmtiEventMode = JvmtiEventMode(1);
pub const JVMTI_EVENT_VM_INIT: JvmtiEvent = JvmtiEvent(50);
pub const JVMTI_EVENT_VM_DEATH: JvmtiEvent = JvmtiEvent(51);
pub const JVMTI_ERROR_NONE: JvmtiError = JvmtiError(0);

/// `jvmtiEnv`: a pointer to the JVMTI function table.
pub type JvmtiEnv = *const JvmtiInterface;

/// The start of `struct jvmtiInterface_1_`, typed at the slots used (slot
/// = JVMTI function number - 1) and opaque elsewhere. Only ever read
/// through a `jvmtiEnv` the JVM handed out, never built.
#[repr(C)]
#[allow(non_snake_case)]
pub struct JvmtiInterface {
    _reserved1: *mut c_void,
    pub SetEventNotificationMode: Option<
        unsafe extern "C" fn(*mut JvmtiEnv, JvmtiEventMode, JvmtiEvent, jobject, ...) -> JvmtiError,
    >,
    _slots_2_to_45: [*mut c_void; 44],
    pub Deallocate: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut u8) -> JvmtiError>,
    _slots_47_to_120: [*mut c_void; 74],
    pub SetEventCallbacks:
        Option<unsafe extern "system" fn(*mut JvmtiEnv, *const EventCallbacks, jint) -> JvmtiError>,
    _slots_122_to_129: [*mut c_void; 8],
    pub GetSystemProperty: Option<
        unsafe extern "system" fn(*mut JvmtiEnv, *const c_char, *mut *mut c_char) -> JvmtiError,
    >,
}

/// The first two slots of `jvmtiEventCallbacks` (VMInit, VMDeath); JVMTI
/// takes a prefix of the structure when told its size.
#[repr(C)]
#[allow(non_snake_case)]
pub struct EventCallbacks {
    pub VMInit: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut JNIEnv, jobject)>,
    pub VMDeath: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut JNIEnv)>,
}

const WORD: usize = std::mem::size_of::<*const c_void>();

// The layout everything above assumes: 8-byte pointers (the agent is built
// for 64-bit JVMs only), a `jvalue` of 8 bytes aligned to 8 (what
// `Call*MethodA` read per argument), and the JVMTI slots at their indexes.
const _: () = {
    assert!(WORD == 8);
    assert!(std::mem::size_of::<jvalue>() == 8);
    assert!(std::mem::align_of::<jvalue>() == 8);
    assert!(std::mem::offset_of!(JvmtiInterface, SetEventNotificationMode) == WORD);
    assert!(std::mem::offset_of!(JvmtiInterface, Deallocate) == 46 * WORD);
    assert!(std::mem::offset_of!(JvmtiInterface, SetEventCallbacks) == 121 * WORD);
    assert!(std::mem::offset_of!(JvmtiInterface, GetSystemProperty) == 130 * WORD);
    assert!(std::mem::offset_of!(EventCallbacks, VMDeath) == WORD);
    assert!(std::mem::size_of::<JvmtiError>() == 4);
};

/// The function in slot `$name` of the table `$table` (a reference to a
/// JNI, invocation or JVMTI table), or `Err` naming it when the JVM left the
/// slot empty. Every use names its slot so the layout test can find it.
macro_rules! fun {
    ($table:expr, $name:ident) => {
        $table
            .$name
            .ok_or(concat!("this JVM has no ", stringify!($name)))?
    };
    ($table:expr, $name:ident, $missing:expr) => {
        $table.$name.ok_or($missing)?
    };
}
pub(crate) use fun;

/// The VM this library lives in, and whether it may be called now: from
/// VMInit (or attach, when it is already running) until VMDeath.
static VM: AtomicPtr<JavaVM> = AtomicPtr::new(std::ptr::null_mut());
static LIVE: AtomicBool = AtomicBool::new(false);

/// Java's modified UTF-8 (what JVMTI returns for strings) as a Rust string:
/// NUL comes as `C0 80` and a supplementary character as two 3-byte
/// surrogates, both invalid in standard UTF-8. Anything malformed becomes
/// U+FFFD; never fails.
pub fn decode_modified_utf8(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        // Valid UTF-8 with no 4-byte forms decodes the same both ways.
        return s.to_owned();
    }
    let mut units: Vec<u16> = Vec::with_capacity(bytes.len());
    let cont = |i: usize| bytes.get(i).copied().filter(|b| b & 0xC0 == 0x80);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let (unit, len) = match b {
            0x00..=0x7F => (u16::from(b), 1),
            0xC0..=0xDF => match cont(i + 1) {
                Some(c) => ((u16::from(b & 0x1F) << 6) | u16::from(c & 0x3F), 2),
                None => (0xFFFD, 1),
            },
            0xE0..=0xEF => match (cont(i + 1), cont(i + 2)) {
                (Some(c1), Some(c2)) => (
                    (u16::from(b & 0x0F) << 12)
                        | (u16::from(c1 & 0x3F) << 6)
                        | u16::from(c2 & 0x3F),
                    3,
                ),
                _ => (0xFFFD, 1),
            },
            _ => (0xFFFD, 1),
        };
        units.push(unit);
        i += len;
    }
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::decode_modified_utf8 as d;

    #[test]
    fn modified_utf8_nul_and_supplementary() {
        assert_eq!(d(b"plain /opt/cassandra"), "plain /opt/cassandra");
        assert_eq!(d("caf\u{e9}".as_bytes()), "caf\u{e9}");
        // NUL in its two-byte form.
        assert_eq!(d(b"a\xC0\x80b"), "a\0b");
        // U+1F600 as the surrogates D83D DE00, three bytes each.
        assert_eq!(d(b"x\xED\xA0\xBD\xED\xB8\x80y"), "x\u{1F600}y");
        // Both at once, beside a three-byte BMP character (U+20AC).
        assert_eq!(
            d(b"\xE2\x82\xAC\xC0\x80\xED\xA0\xBD\xED\xB8\x80"),
            "\u{20AC}\0\u{1F600}"
        );
    }

    #[test]
    fn modified_utf8_malformed_is_replaced() {
        // A lone high surrogate, a truncated sequence, a stray continuation.
        assert_eq!(d(b"a\xED\xA0\xBDb"), "a\u{FFFD}b");
        assert_eq!(d(b"a\xE2\x82"), "a\u{FFFD}\u{FFFD}");
        assert_eq!(d(b"\x80z"), "\u{FFFD}z");
        assert_eq!(d(b"\xF0\x9F\x98"), "\u{FFFD}\u{FFFD}\u{FFFD}");
    }
}
