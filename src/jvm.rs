//! The JVM's entry points: `Agent_OnLoad`, `Agent_OnAttach`, `Agent_OnUnload`
//! and the VM-death callback. Thin: read the option string and system
//! properties through JVMTI, hand them to [`crate::agent`], and fence every
//! edge so no panic ever crosses into the JVM.
//!
//! The JVMTI binding is the handful of entries used, called through the
//! function table by index. `tests/jvmti_layout.rs` compiles a C program
//! against the JDK's own `jvmti.h` and `jni.h` and checks every index and
//! constant below, so the table cannot drift from the JDK.

use crate::options::Options;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// JNI's `jint` and the JVMTI error type.
type Jint = i32;
type JvmtiError = u32;

pub const JNI_OK: Jint = 0;
pub const JNI_ERR: Jint = -1;
pub const JVMTI_VERSION_1_2: Jint = 0x3001_0200;
pub const JVMTI_ENABLE: c_int = 1;
pub const JVMTI_EVENT_VM_DEATH: c_int = 51;
pub const JVMTI_ERROR_NONE: JvmtiError = 0;

/// Indexes into `struct JNIInvokeInterface_` (`JavaVM`'s table).
pub mod invoke {
    pub const GET_ENV: usize = 6;
}

/// Indexes into `struct jvmtiInterface_1_`: the JVMTI function number - 1.
pub mod jvmti {
    pub const SET_EVENT_NOTIFICATION_MODE: usize = 1;
    pub const DEALLOCATE: usize = 46;
    pub const SET_EVENT_CALLBACKS: usize = 121;
    pub const GET_SYSTEM_PROPERTY: usize = 130;
}

/// Slots of `jvmtiEventCallbacks`.
pub mod callbacks {
    pub const VM_INIT: usize = 0;
    pub const VM_DEATH: usize = 1;
}

/// The first two slots of `jvmtiEventCallbacks` (VMInit, VMDeath); JVMTI
/// takes a prefix of the structure when told its size.
#[repr(C)]
struct EventCallbacks {
    vm_init: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut c_void, *mut c_void)>,
    vm_death: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut c_void)>,
}

const _: () = assert!(
    std::mem::offset_of!(EventCallbacks, vm_init)
        == callbacks::VM_INIT * std::mem::size_of::<usize>()
        && std::mem::offset_of!(EventCallbacks, vm_death)
            == callbacks::VM_DEATH * std::mem::size_of::<usize>()
);

/// `JavaVM` and `jvmtiEnv` are pointers to function tables.
pub type JavaVm = *const *const c_void;
pub type JvmtiEnv = *const *const c_void;

type GetEnvFn = unsafe extern "system" fn(*mut JavaVm, *mut *mut c_void, Jint) -> Jint;
type SetEventNotificationModeFn =
    unsafe extern "C" fn(*mut JvmtiEnv, c_int, c_int, *mut c_void, ...) -> JvmtiError;
type DeallocateFn = unsafe extern "system" fn(*mut JvmtiEnv, *mut u8) -> JvmtiError;
type SetEventCallbacksFn =
    unsafe extern "system" fn(*mut JvmtiEnv, *const EventCallbacks, Jint) -> JvmtiError;
type GetSystemPropertyFn =
    unsafe extern "system" fn(*mut JvmtiEnv, *const c_char, *mut *mut c_char) -> JvmtiError;

/// A JVMTI environment; valid for the life of the VM once obtained.
struct Env(*mut JvmtiEnv);

impl Env {
    fn get(vm: *mut JavaVm) -> Option<Env> {
        if vm.is_null() {
            return None;
        }
        let mut env: *mut c_void = std::ptr::null_mut();
        // SAFETY: `vm` is the non-null JavaVM the JVM passed to the entry
        // point; slot GET_ENV of its table is GetEnv (checked against jni.h).
        let rc = unsafe {
            let get_env: GetEnvFn = std::mem::transmute(*(*vm).add(invoke::GET_ENV));
            get_env(vm, &mut env, JVMTI_VERSION_1_2)
        };
        (rc == JNI_OK && !env.is_null()).then(|| Env(env.cast()))
    }

    /// The function in slot `index` of the JVMTI table.
    fn slot(&self, index: usize) -> *const c_void {
        // SAFETY: self.0 is a live jvmtiEnv from GetEnv; every index used is
        // below the table's length (checked against jvmti.h).
        unsafe { *(*self.0).add(index) }
    }

    /// Registers VMDeath and enables it.
    fn on_vm_death(
        &self,
        cb: unsafe extern "system" fn(*mut JvmtiEnv, *mut c_void),
    ) -> Result<(), JvmtiError> {
        let callbacks = EventCallbacks {
            vm_init: None,
            vm_death: Some(cb),
        };
        // SAFETY: the slots hold SetEventCallbacks and SetEventNotificationMode
        // with these signatures (jvmti.h); JVMTI copies the callbacks before
        // returning, so a stack structure is fine.
        unsafe {
            let set: SetEventCallbacksFn =
                std::mem::transmute(self.slot(jvmti::SET_EVENT_CALLBACKS));
            let rc = set(
                self.0,
                &callbacks,
                std::mem::size_of::<EventCallbacks>() as Jint,
            );
            if rc != JVMTI_ERROR_NONE {
                return Err(rc);
            }
            let mode: SetEventNotificationModeFn =
                std::mem::transmute(self.slot(jvmti::SET_EVENT_NOTIFICATION_MODE));
            match mode(
                self.0,
                JVMTI_ENABLE,
                JVMTI_EVENT_VM_DEATH,
                std::ptr::null_mut(),
            ) {
                JVMTI_ERROR_NONE => Ok(()),
                rc => Err(rc),
            }
        }
    }

    /// A system property (the JVM's `-D` settings and its own).
    fn property(&self, name: &str) -> Option<String> {
        let key = CString::new(name).ok()?;
        let mut value: *mut c_char = std::ptr::null_mut();
        // SAFETY: slot GET_SYSTEM_PROPERTY is GetSystemProperty; on success
        // it stores a JVMTI-allocated NUL-terminated string, which is copied
        // and then given back with Deallocate.
        unsafe {
            let get: GetSystemPropertyFn =
                std::mem::transmute(self.slot(jvmti::GET_SYSTEM_PROPERTY));
            if get(self.0, key.as_ptr(), &mut value) != JVMTI_ERROR_NONE || value.is_null() {
                return None;
            }
            let copy = CStr::from_ptr(value).to_string_lossy().into_owned();
            let dealloc: DeallocateFn = std::mem::transmute(self.slot(jvmti::DEALLOCATE));
            dealloc(self.0, value.cast());
            Some(copy)
        }
    }
}

unsafe extern "system" fn vm_death(_env: *mut JvmtiEnv, _jni: *mut c_void) {
    crate::fence("VMDeath", || crate::agent::stop("JVM shutting down"));
}

/// Where the agent was loaded from, for messages.
#[derive(Clone, Copy)]
enum Phase {
    Load,
    Attach,
}

fn load(vm: *mut JavaVm, options: *mut c_char, phase: Phase) -> Jint {
    let text = if options.is_null() {
        String::new()
    } else {
        // SAFETY: the JVM passes a NUL-terminated option string or null.
        unsafe { CStr::from_ptr(options) }
            .to_string_lossy()
            .into_owned()
    };
    let options = match Options::parse(&text) {
        Ok(o) => o,
        Err(e) => {
            let consequence = match phase {
                Phase::Load => "the JVM will not start; fix -agentpath:...libcqlready.so=<options>",
                Phase::Attach => "not attached",
            };
            crate::log::write(crate::log::Level::Error, format_args!("{e}; {consequence}"));
            return JNI_ERR;
        }
    };
    crate::log::set_level(options.log);
    let Some(env) = Env::get(vm) else {
        crate::error!("this JVM offers no JVMTI 1.2 environment; cqlready stays idle");
        return JNI_OK;
    };
    if let Err(rc) = env.on_vm_death(vm_death) {
        crate::warn!(
            "cannot register for VM death (JVMTI error {rc}); STOPPING=1 will not be sent"
        );
    }
    crate::agent::start(&options, &|name| env.property(name));
    JNI_OK
}

/// Called by the JVM for `-agentpath:/path/libcqlready.so=OPTIONS`.
///
/// # Safety
/// Called by the JVM with its `JavaVM` and a NUL-terminated option string.
#[no_mangle]
pub unsafe extern "system" fn Agent_OnLoad(
    vm: *mut JavaVm,
    options: *mut c_char,
    _reserved: *mut c_void,
) -> Jint {
    // Options are validated in here; an internal failure keeps the JVM going.
    crate::fence("Agent_OnLoad", || load(vm, options, Phase::Load)).unwrap_or(JNI_OK)
}

/// Called by the JVM when `cqlready attach` (or jcmd JVMTI.agent_load) loads us.
///
/// # Safety
/// As [`Agent_OnLoad`].
#[no_mangle]
pub unsafe extern "system" fn Agent_OnAttach(
    vm: *mut JavaVm,
    options: *mut c_char,
    _reserved: *mut c_void,
) -> Jint {
    crate::fence("Agent_OnAttach", || load(vm, options, Phase::Attach)).unwrap_or(JNI_ERR)
}

/// Called by the JVM as it unloads the library; VMDeath has done the work.
///
/// # Safety
/// Called by the JVM.
#[no_mangle]
pub unsafe extern "system" fn Agent_OnUnload(_vm: *mut JavaVm) {}
