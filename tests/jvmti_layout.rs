//! The JNI and JVMTI edge must be the JDK's own, signatures included: for
//! each installed JDK with headers, compile C against its `jni.h` and
//! `jvmti.h` that
//! - assigns every table slot `src/jvm` calls (each `fun!(table, Name)` there)
//!   to a function pointer of the type the Rust side declares, the C types
//!   derived from the Rust types below, with `-Werror=incompatible-pointer-types`;
//! - asserts each slot's offset, each `JNI_*`/`JVMTI_*` constant `src/jvm`
//!   names, and the sizes the agent relies on (pointers, `jvalue`, enums).

mod common;

use cqlready::jvm::{
    self, EventCallbacks, JNIInvokeInterface_, JNINativeInterface_, JavaVMAttachArgs, JvmtiError,
    JvmtiEvent, JvmtiEventMode, JvmtiInterface,
};
use std::collections::BTreeSet;
use std::ffi::{c_char, c_void};
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The C spelling of a Rust type the edge uses.
trait C {
    fn c() -> String;
}

macro_rules! c_names {
    ($($t:ty => $c:expr),* $(,)?) => { $(impl C for $t { fn c() -> String { $c.into() } })* };
}

c_names! {
    () => "void",
    c_void => "void",
    c_char => "char",
    u8 => "unsigned char",
    u16 => "jchar",
    i32 => "jint",
    i64 => "jlong",
    jni_sys::_jobject => "struct _jobject",
    jni_sys::_jmethodID => "struct _jmethodID",
    jni_sys::jvalue => "jvalue",
    JNINativeInterface_ => "struct JNINativeInterface_",
    JNIInvokeInterface_ => "struct JNIInvokeInterface_",
    JvmtiInterface => "struct jvmtiInterface_1_",
    EventCallbacks => "jvmtiEventCallbacks",
    JvmtiError => "jvmtiError",
    JvmtiEventMode => "jvmtiEventMode",
    JvmtiEvent => "jvmtiEvent",
}

impl<T: C> C for *const T {
    fn c() -> String {
        format!("{} const *", T::c())
    }
}

impl<T: C> C for *mut T {
    fn c() -> String {
        format!("{} *", T::c())
    }
}

/// A nullable function-pointer slot, declared as C variable `name`.
trait Slot {
    fn decl(name: &str) -> String;
}

fn decl(ret: String, name: &str, args: &[String], variadic: bool) -> String {
    let mut args = args.join(", ");
    if variadic {
        args.push_str(", ...");
    }
    format!("{ret} (JNICALL *{name})({args})")
}

macro_rules! slot_impls {
    ($($a:ident),*) => {
        impl<R: C, $($a: C),*> Slot for Option<unsafe extern "system" fn($($a),*) -> R> {
            fn decl(name: &str) -> String {
                decl(R::c(), name, &[$($a::c()),*], false)
            }
        }
        impl<R: C, $($a: C),*> Slot for Option<unsafe extern "C" fn($($a),* , ...) -> R> {
            fn decl(name: &str) -> String {
                decl(R::c(), name, &[$($a::c()),*], true)
            }
        }
    };
}

slot_impls!(A);
slot_impls!(A, B);
slot_impls!(A, B, D);
slot_impls!(A, B, D, E);
slot_impls!(A, B, D, E, F);

/// One slot of a C structure, as the Rust side declares it.
struct Field {
    name: &'static str,
    /// The C structure type and the parameter of the check function holding one.
    c_struct: &'static str,
    param: &'static str,
    offset: usize,
    decl: String,
}

fn slot_decl<T, S: Slot>(_: fn(&T) -> &S, name: &str) -> String {
    S::decl(name)
}

macro_rules! field {
    ($t:ty, $c:expr, $param:expr, $name:ident) => {
        Field {
            name: stringify!($name),
            c_struct: $c,
            param: $param,
            offset: offset_of!($t, $name),
            decl: slot_decl(|t: &$t| &t.$name, stringify!($name)),
        }
    };
}

macro_rules! jni {
    ($($name:ident),*) => { vec![$(field!(JNINativeInterface_, "struct JNINativeInterface_", "jni", $name)),*] };
}
macro_rules! invoke {
    ($($name:ident),*) => { vec![$(field!(JNIInvokeInterface_, "struct JNIInvokeInterface_", "vm", $name)),*] };
}
macro_rules! jvmti {
    ($($name:ident),*) => { vec![$(field!(JvmtiInterface, "struct jvmtiInterface_1_", "ti", $name)),*] };
}
macro_rules! callbacks {
    ($($name:ident),*) => { vec![$(field!(EventCallbacks, "jvmtiEventCallbacks", "cb", $name)),*] };
}

/// Every slot the Rust side calls or fills.
fn fields() -> Vec<Field> {
    let mut all = jni!(
        FindClass,
        GetMethodID,
        GetStaticMethodID,
        NewGlobalRef,
        DeleteGlobalRef,
        PushLocalFrame,
        PopLocalFrame,
        ExceptionCheck,
        ExceptionOccurred,
        ExceptionClear,
        NewObjectA,
        CallObjectMethodA,
        CallStaticObjectMethodA,
        NewString,
        GetStringLength,
        GetStringRegion,
        NewObjectArray,
        SetObjectArrayElement,
        GetArrayLength,
        GetObjectArrayElement,
        GetJavaVM
    );
    all.extend(invoke!(GetEnv, AttachCurrentThreadAsDaemon));
    all.extend(jvmti!(
        SetEventNotificationMode,
        Deallocate,
        SetEventCallbacks,
        GetSystemProperty
    ));
    all.extend(callbacks!(VMInit, VMDeath));
    all
}

/// Every constant the Rust side names, with its Rust value.
fn constants() -> Vec<(&'static str, i64)> {
    vec![
        ("JNI_OK", jvm::JNI_OK.into()),
        ("JNI_ERR", jvm::JNI_ERR.into()),
        ("JNI_EDETACHED", jvm::JNI_EDETACHED.into()),
        ("JNI_VERSION_1_8", jvm::JNI_VERSION_1_8.into()),
        ("JVMTI_VERSION_1_2", jvm::JVMTI_VERSION_1_2.into()),
        ("JVMTI_ENABLE", jvm::JVMTI_ENABLE.0.into()),
        ("JVMTI_EVENT_VM_INIT", jvm::JVMTI_EVENT_VM_INIT.0.into()),
        ("JVMTI_EVENT_VM_DEATH", jvm::JVMTI_EVENT_VM_DEATH.0.into()),
        ("JVMTI_ERROR_NONE", jvm::JVMTI_ERROR_NONE.0.into()),
    ]
}

/// The C program: a function that assigns each slot to a variable of the
/// Rust-declared type, and static assertions for offsets, sizes, constants.
fn program(fields: &[Field], constants: &[(&str, i64)]) -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <jvmti.h>\n\
         void check(const struct JNINativeInterface_ *jni, const struct JNIInvokeInterface_ *vm,\n\
         \x20          const struct jvmtiInterface_1_ *ti, const jvmtiEventCallbacks *cb) {\n",
    );
    for f in fields {
        c += &format!(
            "  {} = {}->{};\n  (void){};\n",
            f.decl, f.param, f.name, f.name
        );
    }
    c += "}\n";
    let mut assert = |cond: String, what: &str| {
        c += &format!("_Static_assert({cond}, \"{what}\");\n");
    };
    for f in fields {
        assert(
            format!("offsetof({}, {}) == {}", f.c_struct, f.name, f.offset),
            &format!("{} is at byte {} in Rust", f.name, f.offset),
        );
    }
    for (name, value) in constants {
        assert(
            format!("(long long)({name}) == {value}LL"),
            &format!("{name} is {value} in Rust"),
        );
    }
    let sizes = [
        (
            "void *",
            size_of::<*const c_void>(),
            align_of::<*const c_void>(),
        ),
        (
            "jvalue",
            size_of::<jni_sys::jvalue>(),
            align_of::<jni_sys::jvalue>(),
        ),
        ("jint", size_of::<i32>(), align_of::<i32>()),
        (
            "jvmtiError",
            size_of::<JvmtiError>(),
            align_of::<JvmtiError>(),
        ),
        (
            "jvmtiEventMode",
            size_of::<JvmtiEventMode>(),
            align_of::<JvmtiEventMode>(),
        ),
        (
            "jvmtiEvent",
            size_of::<JvmtiEvent>(),
            align_of::<JvmtiEvent>(),
        ),
        (
            "JavaVMAttachArgs",
            size_of::<JavaVMAttachArgs>(),
            align_of::<JavaVMAttachArgs>(),
        ),
    ];
    for (ty, size, align) in sizes {
        assert(
            format!("sizeof({ty}) == {size} && _Alignof({ty}) == {align}"),
            &format!("{ty} is {size} bytes aligned to {align} in Rust"),
        );
    }
    for (field, offset) in [
        ("version", offset_of!(JavaVMAttachArgs, version)),
        ("name", offset_of!(JavaVMAttachArgs, name)),
        ("group", offset_of!(JavaVMAttachArgs, group)),
    ] {
        assert(
            format!("offsetof(JavaVMAttachArgs, {field}) == {offset}"),
            &format!("JavaVMAttachArgs.{field} is at byte {offset} in Rust"),
        );
    }
    c
}

/// The include directories of every JDK the tests run and of every JDK
/// under /usr/lib/jvm, once each; and the JDKs without headers.
fn jdk_includes() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut homes: Vec<PathBuf> = common::jvms()
        .iter()
        .filter_map(|java| std::fs::canonicalize(java).ok())
        .filter_map(|java| java.parent()?.parent().map(Path::to_path_buf))
        .collect();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/jvm") {
        homes.extend(
            rd.flatten()
                .filter_map(|e| std::fs::canonicalize(e.path()).ok()),
        );
    }
    let homes: BTreeSet<PathBuf> = homes.into_iter().filter(|h| h.is_dir()).collect();
    homes
        .into_iter()
        .partition(|h| h.join("include/jvmti.h").is_file())
}

/// Compiles `source` against `include`; the compiler's complaint on failure.
fn compile(include: &Path, source: &str, dir: &Path) -> Result<(), String> {
    let src = dir.join("edge.c");
    std::fs::write(&src, source).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args([
            "-std=c11",
            "-fsyntax-only",
            "-Wall",
            "-Werror=incompatible-pointer-types",
        ])
        .args(["-Werror=int-conversion", "-Werror=discarded-qualifiers"])
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(include.join("linux"))
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("a C compiler ({cc}) is needed for this test: {e}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What `src/jvm` names: the slots in `fun!(table, Name)` and the
/// `JNI_*`/`JVMTI_*` constants.
fn used_by_source() -> (BTreeSet<String>, BTreeSet<String>) {
    let dir = common::manifest_dir().join("src/jvm");
    let (mut slots, mut consts) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in text.match_indices("fun!(") {
            // The arguments up to the matching parenthesis; the slot is the second.
            let rest = &text[i + 5..];
            let mut depth = 0;
            let end = rest
                .find(|c: char| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth < 0
                })
                .unwrap_or(rest.len());
            let (mut depth, mut args) = (0, vec![String::new()]);
            for c in rest[..end].chars() {
                match c {
                    '(' | '{' => depth += 1,
                    ')' | '}' => depth -= 1,
                    ',' if depth == 0 => {
                        args.push(String::new());
                        continue;
                    }
                    _ => {}
                }
                args.last_mut().unwrap().push(c);
            }
            if let Some(name) = args.get(1) {
                slots.insert(name.trim().to_string());
            }
        }
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        consts.extend(
            words
                .filter(|w| w.starts_with("JNI_") || w.starts_with("JVMTI_"))
                .filter(|w| !w.ends_with('_') && !w.contains(|c: char| c.is_ascii_lowercase()))
                .map(String::from),
        );
    }
    slots.remove("Name"); // `fun!(table, Name)` in the documentation
    (slots, consts)
}

#[test]
fn every_used_slot_and_constant_is_checked() {
    let (slots, consts) = used_by_source();
    let fields: BTreeSet<String> = fields().iter().map(|f| f.name.to_string()).collect();
    let checked: BTreeSet<String> = constants().iter().map(|(n, _)| n.to_string()).collect();
    assert!(slots.len() >= 20, "found only {slots:?} in src/jvm");
    let callbacks = BTreeSet::from(["VMInit".to_string(), "VMDeath".to_string()]);
    let unchecked: Vec<_> = slots.difference(&fields).collect();
    assert!(
        unchecked.is_empty(),
        "src/jvm calls slots the layout test does not check: {unchecked:?}"
    );
    let unused: Vec<_> = fields
        .difference(&slots)
        .filter(|f| !callbacks.contains(*f))
        .collect();
    assert!(
        unused.is_empty(),
        "the layout test checks slots src/jvm no longer calls: {unused:?}"
    );
    let unchecked: Vec<_> = consts.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "src/jvm names constants the layout test does not check: {unchecked:?}"
    );
}

#[test]
fn slots_signatures_and_constants_match_every_installed_jdk() {
    let (includes, without) = jdk_includes();
    for home in &without {
        eprintln!("{} has no include/jvmti.h: not checked", home.display());
    }
    assert!(
        !includes.is_empty(),
        "no JDK with headers (include/jvmti.h) among {without:?}"
    );
    let source = program(&fields(), &constants());
    let tmp = common::TempDir::new("layout");
    for home in &includes {
        if let Err(e) = compile(&home.join("include"), &source, tmp.path()) {
            panic!(
                "the Rust JNI/JVMTI declarations differ from {}:\n{e}\n{source}",
                home.display()
            );
        }
        eprintln!("checked against {}", home.display());
    }
}

/// The check can fail: a slot declared with a wrong parameter type, a wrong
/// return type or at a wrong offset, and a wrong constant, are each refused.
#[test]
fn a_wrong_declaration_is_refused() {
    let (includes, _) = jdk_includes();
    let include = includes
        .first()
        .expect("a JDK with headers")
        .join("include");
    let tmp = common::TempDir::new("layout-neg");
    let good = || {
        fields()
            .into_iter()
            .filter(|f| f.name == "GetStringRegion")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        compile(&include, &program(&good(), &[]), tmp.path()),
        Ok(())
    );
    let mut wrong_param = good();
    wrong_param[0].decl = wrong_param[0].decl.replace("jchar *", "char *");
    let mut wrong_return = good();
    wrong_return[0].decl = wrong_return[0].decl.replacen("void", "jint", 1);
    let mut wrong_offset = good();
    wrong_offset[0].offset += 8;
    for (what, f, k) in [
        ("parameter", wrong_param, vec![]),
        ("return", wrong_return, vec![]),
        ("offset", wrong_offset, vec![]),
        ("constant", good(), vec![("JNI_EDETACHED", -3)]),
    ] {
        assert!(
            compile(&include, &program(&f, &k), tmp.path()).is_err(),
            "a wrong {what} compiled:\n{}",
            program(&f, &k)
        );
    }
}
