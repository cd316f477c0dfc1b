//! The JVM's entry points: `Agent_OnLoad`, `Agent_OnAttach`, `Agent_OnUnload`,
//! the VMInit and VMDeath callbacks, and the one JNI use: reading MBean
//! attributes from the platform MBean server. Thin: read the option string
//! and system properties through JVMTI, hand them to [`crate::agent`], and
//! fence every edge so no panic ever crosses into the JVM.
//!
//! The JVMTI/JNI binding is the handful of entries used, called through the
//! function tables by index. `tests/jvmti_layout.rs` compiles a C program
//! against the JDK's own `jvmti.h` and `jni.h` and checks every index and
//! constant below, so the tables cannot drift from the JDK.

use crate::cassandra::MBeans;
use crate::options::Options;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// JNI's `jint` and the JVMTI error type.
type Jint = i32;
type JvmtiError = u32;

pub const JNI_OK: Jint = 0;
pub const JNI_ERR: Jint = -1;
pub const JNI_VERSION_1_8: Jint = 0x0001_0008;
pub const JVMTI_VERSION_1_2: Jint = 0x3001_0200;
pub const JVMTI_ENABLE: c_int = 1;
pub const JVMTI_EVENT_VM_INIT: c_int = 50;
pub const JVMTI_EVENT_VM_DEATH: c_int = 51;
pub const JVMTI_ERROR_NONE: JvmtiError = 0;

/// Indexes into `struct JNIInvokeInterface_` (`JavaVM`'s table).
pub mod invoke {
    pub const GET_ENV: usize = 6;
    pub const ATTACH_CURRENT_THREAD_AS_DAEMON: usize = 7;
}

/// Indexes into `struct jvmtiInterface_1_`: the JVMTI function number - 1.
pub mod jvmti {
    pub const SET_EVENT_NOTIFICATION_MODE: usize = 1;
    pub const DEALLOCATE: usize = 46;
    pub const SET_EVENT_CALLBACKS: usize = 121;
    pub const GET_SYSTEM_PROPERTY: usize = 130;
}

/// Indexes into `struct JNINativeInterface_` (`JNIEnv`'s table).
pub mod jni {
    pub const FIND_CLASS: usize = 6;
    pub const EXCEPTION_OCCURRED: usize = 15;
    pub const EXCEPTION_CLEAR: usize = 17;
    pub const PUSH_LOCAL_FRAME: usize = 19;
    pub const POP_LOCAL_FRAME: usize = 20;
    pub const NEW_OBJECT_A: usize = 30;
    pub const GET_METHOD_ID: usize = 33;
    pub const CALL_OBJECT_METHOD_A: usize = 36;
    pub const GET_STATIC_METHOD_ID: usize = 113;
    pub const CALL_STATIC_OBJECT_METHOD_A: usize = 116;
    pub const NEW_STRING_UTF: usize = 167;
    pub const GET_STRING_UTF_CHARS: usize = 169;
    pub const RELEASE_STRING_UTF_CHARS: usize = 170;
    pub const NEW_OBJECT_ARRAY: usize = 172;
    pub const SET_OBJECT_ARRAY_ELEMENT: usize = 174;
    pub const GET_JAVA_VM: usize = 219;
    pub const EXCEPTION_CHECK: usize = 228;
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
    vm_init: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut JniEnv, *mut c_void)>,
    vm_death: Option<unsafe extern "system" fn(*mut JvmtiEnv, *mut JniEnv)>,
}

const _: () = assert!(
    std::mem::offset_of!(EventCallbacks, vm_init)
        == callbacks::VM_INIT * std::mem::size_of::<usize>()
        && std::mem::offset_of!(EventCallbacks, vm_death)
            == callbacks::VM_DEATH * std::mem::size_of::<usize>()
);

/// `JavaVM`, `jvmtiEnv` and `JNIEnv` are pointers to function tables.
pub type JavaVm = *const *const c_void;
pub type JvmtiEnv = *const *const c_void;
pub type JniEnv = *const *const c_void;
type Jobject = *mut c_void;

type GetEnvFn = unsafe extern "system" fn(*mut JavaVm, *mut *mut c_void, Jint) -> Jint;
type AttachFn = unsafe extern "system" fn(*mut JavaVm, *mut *mut c_void, *mut c_void) -> Jint;
type SetEventNotificationModeFn =
    unsafe extern "C" fn(*mut JvmtiEnv, c_int, c_int, *mut c_void, ...) -> JvmtiError;
type DeallocateFn = unsafe extern "system" fn(*mut JvmtiEnv, *mut u8) -> JvmtiError;
type SetEventCallbacksFn =
    unsafe extern "system" fn(*mut JvmtiEnv, *const EventCallbacks, Jint) -> JvmtiError;
type GetSystemPropertyFn =
    unsafe extern "system" fn(*mut JvmtiEnv, *const c_char, *mut *mut c_char) -> JvmtiError;

/// The VM this library lives in, and whether it may be called now: from
/// VMInit (or attach, when it is already running) until VMDeath.
static VM: AtomicPtr<JavaVm> = AtomicPtr::new(std::ptr::null_mut());
static LIVE: AtomicBool = AtomicBool::new(false);

/// A JVMTI environment; valid for the life of the VM once obtained.
struct Env(*mut JvmtiEnv);

/// The function in slot `index` of the table `table` points to.
///
/// # Safety
/// `table` must be a live JavaVM/jvmtiEnv/JNIEnv and `index` within its table.
unsafe fn slot(table: *const *const *const c_void, index: usize) -> *const c_void {
    // SAFETY: per the contract, the table pointer is valid and long enough.
    unsafe { *(*table).add(index) }
}

impl Env {
    fn get(vm: *mut JavaVm) -> Result<Env, Jint> {
        if vm.is_null() {
            return Err(JNI_ERR);
        }
        let mut env: *mut c_void = std::ptr::null_mut();
        // SAFETY: `vm` is the non-null JavaVM the JVM passed to the entry
        // point; slot GET_ENV of its table is GetEnv (checked against jni.h).
        let rc = unsafe {
            let get_env: GetEnvFn = std::mem::transmute(slot(vm.cast(), invoke::GET_ENV));
            get_env(vm, &mut env, JVMTI_VERSION_1_2)
        };
        if rc == JNI_OK && !env.is_null() {
            Ok(Env(env.cast()))
        } else {
            Err(rc)
        }
    }

    fn slot(&self, index: usize) -> *const c_void {
        // SAFETY: self.0 is a live jvmtiEnv from GetEnv; every index used is
        // below the table's length (checked against jvmti.h).
        unsafe { slot(self.0.cast(), index) }
    }

    /// Registers the VMInit (when `init`) and VMDeath callbacks and enables them.
    fn register(&self, init: bool) -> Result<(), JvmtiError> {
        let callbacks = EventCallbacks {
            vm_init: Some(vm_init),
            vm_death: Some(vm_death),
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
            let events: &[c_int] = if init {
                &[JVMTI_EVENT_VM_INIT, JVMTI_EVENT_VM_DEATH]
            } else {
                &[JVMTI_EVENT_VM_DEATH]
            };
            for &event in events {
                let rc = mode(self.0, JVMTI_ENABLE, event, std::ptr::null_mut());
                if rc != JVMTI_ERROR_NONE {
                    return Err(rc);
                }
            }
            Ok(())
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

unsafe extern "system" fn vm_init(_env: *mut JvmtiEnv, _jni: *mut JniEnv, _thread: *mut c_void) {
    LIVE.store(true, Ordering::Release);
}

unsafe extern "system" fn vm_death(_env: *mut JvmtiEnv, _jni: *mut JniEnv) {
    LIVE.store(false, Ordering::Release);
    crate::fence("VMDeath", || crate::agent::stop("JVM shutting down"));
}

thread_local! {
    /// This thread's JNIEnv once it is attached to the VM.
    static THREAD_ENV: Cell<*mut JniEnv> = const { Cell::new(std::ptr::null_mut()) };
}

/// Reads MBean attributes through JNI from the thread that calls it, which
/// it attaches to the VM as a daemon on first use (so it never holds the VM
/// up at exit). Calls nothing before VMInit or after VMDeath.
pub struct JniMBeans;

/// Local references one query may hold; the frame is popped after each query.
const LOCAL_FRAME: Jint = 32;

/// One query's JNI calls, inside a local frame of the calling thread. The
/// flag stops describing an exception from recursing into another one.
struct Call(*mut JniEnv, Cell<bool>);

impl Call {
    fn f(&self, index: usize) -> *const c_void {
        // SAFETY: self.0 is the calling thread's live JNIEnv; indexes are
        // within the table (checked against jni.h).
        unsafe { slot(self.0.cast(), index) }
    }

    /// Clears a pending exception and returns its text.
    fn exception(&self, what: &str) -> Option<String> {
        type CheckFn = unsafe extern "system" fn(*mut JniEnv) -> u8;
        type OccurredFn = unsafe extern "system" fn(*mut JniEnv) -> Jobject;
        type ClearFn = unsafe extern "system" fn(*mut JniEnv);
        // SAFETY: ExceptionCheck/ExceptionOccurred/ExceptionClear take only
        // the env; the exception is cleared before anything else is called.
        let thrown = unsafe {
            let check: CheckFn = std::mem::transmute(self.f(jni::EXCEPTION_CHECK));
            if check(self.0) == 0 {
                return None;
            }
            let occurred: OccurredFn = std::mem::transmute(self.f(jni::EXCEPTION_OCCURRED));
            let thrown = occurred(self.0);
            let clear: ClearFn = std::mem::transmute(self.f(jni::EXCEPTION_CLEAR));
            clear(self.0);
            thrown
        };
        if self.1.replace(true) {
            return Some(format!("{what}: an exception"));
        }
        let text = self
            .to_text(thrown)
            .unwrap_or_else(|| "an exception".into());
        self.1.set(false);
        Some(format!("{what}: {text}"))
    }

    fn class(&self, name: &str) -> Result<Jobject, String> {
        type FindClassFn = unsafe extern "system" fn(*mut JniEnv, *const c_char) -> Jobject;
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: FindClass with a NUL-terminated binary class name.
        let cls = unsafe {
            let find: FindClassFn = std::mem::transmute(self.f(jni::FIND_CLASS));
            find(self.0, c.as_ptr())
        };
        self.checked(cls, name)
    }

    fn method(
        &self,
        cls: Jobject,
        name: &str,
        sig: &str,
        is_static: bool,
    ) -> Result<*mut c_void, String> {
        type GetMethodFn = unsafe extern "system" fn(
            *mut JniEnv,
            Jobject,
            *const c_char,
            *const c_char,
        ) -> *mut c_void;
        let (n, s) = (
            CString::new(name).map_err(|e| e.to_string())?,
            CString::new(sig).map_err(|e| e.to_string())?,
        );
        let index = if is_static {
            jni::GET_STATIC_METHOD_ID
        } else {
            jni::GET_METHOD_ID
        };
        // SAFETY: GetMethodID/GetStaticMethodID on a live class reference.
        let id = unsafe {
            let get: GetMethodFn = std::mem::transmute(self.f(index));
            get(self.0, cls, n.as_ptr(), s.as_ptr())
        };
        self.checked(id, name)
    }

    /// A null result or a pending exception becomes an error.
    fn checked(&self, p: *mut c_void, what: &str) -> Result<*mut c_void, String> {
        if let Some(e) = self.exception(what) {
            return Err(e);
        }
        if p.is_null() {
            return Err(format!("{what}: null"));
        }
        Ok(p)
    }

    fn call_object(
        &self,
        target: Jobject,
        method: *mut c_void,
        args: &[Jobject],
        is_static: bool,
    ) -> Result<Jobject, String> {
        type CallFn =
            unsafe extern "system" fn(*mut JniEnv, Jobject, *mut c_void, *const Jobject) -> Jobject;
        let index = if is_static {
            jni::CALL_STATIC_OBJECT_METHOD_A
        } else {
            jni::CALL_OBJECT_METHOD_A
        };
        // SAFETY: the method id belongs to the target's class; `args` are
        // object references laid out as a jvalue array (one pointer each).
        let r = unsafe {
            let call: CallFn = std::mem::transmute(self.f(index));
            call(self.0, target, method, args.as_ptr())
        };
        match self.exception("call") {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }

    fn new_object(
        &self,
        cls: Jobject,
        ctor: *mut c_void,
        args: &[Jobject],
    ) -> Result<Jobject, String> {
        type NewFn =
            unsafe extern "system" fn(*mut JniEnv, Jobject, *mut c_void, *const Jobject) -> Jobject;
        // SAFETY: NewObjectA with a constructor id of `cls` and matching args.
        let o = unsafe {
            let new: NewFn = std::mem::transmute(self.f(jni::NEW_OBJECT_A));
            new(self.0, cls, ctor, args.as_ptr())
        };
        self.checked(o, "new object")
    }

    fn string(&self, s: &str) -> Result<Jobject, String> {
        type NewStringFn = unsafe extern "system" fn(*mut JniEnv, *const c_char) -> Jobject;
        let c = CString::new(s).map_err(|e| e.to_string())?;
        // SAFETY: NewStringUTF with a NUL-terminated string.
        let o = unsafe {
            let new: NewStringFn = std::mem::transmute(self.f(jni::NEW_STRING_UTF));
            new(self.0, c.as_ptr())
        };
        self.checked(o, "string")
    }

    /// `String.valueOf(obj)` as a Rust string; `None` for null or failure.
    fn to_text(&self, obj: Jobject) -> Option<String> {
        type CharsFn = unsafe extern "system" fn(*mut JniEnv, Jobject, *mut u8) -> *const c_char;
        type ReleaseFn = unsafe extern "system" fn(*mut JniEnv, Jobject, *const c_char);
        if obj.is_null() {
            return None;
        }
        let cls = self.class("java/lang/String").ok()?;
        let value_of = self
            .method(
                cls,
                "valueOf",
                "(Ljava/lang/Object;)Ljava/lang/String;",
                true,
            )
            .ok()?;
        let s = self.call_object(cls, value_of, &[obj], true).ok()?;
        if s.is_null() {
            return None;
        }
        // SAFETY: GetStringUTFChars on a live String; the chars are copied
        // and released before returning.
        unsafe {
            let get: CharsFn = std::mem::transmute(self.f(jni::GET_STRING_UTF_CHARS));
            let chars = get(self.0, s, std::ptr::null_mut());
            if chars.is_null() {
                self.exception("string chars");
                return None;
            }
            let text = CStr::from_ptr(chars).to_string_lossy().into_owned();
            let release: ReleaseFn = std::mem::transmute(self.f(jni::RELEASE_STRING_UTF_CHARS));
            release(self.0, s, chars);
            Some(text)
        }
    }

    /// `getPlatformMBeanServer().getAttribute(new ObjectName(object), a)` for each a.
    fn attributes(&self, object: &str, attrs: &[&str]) -> Result<Vec<Option<String>>, String> {
        let factory = self.class("java/lang/management/ManagementFactory")?;
        let get_server = self.method(
            factory,
            "getPlatformMBeanServer",
            "()Ljavax/management/MBeanServer;",
            true,
        )?;
        let server = self.call_object(factory, get_server, &[], true)?;
        let name_cls = self.class("javax/management/ObjectName")?;
        let ctor = self.method(name_cls, "<init>", "(Ljava/lang/String;)V", false)?;
        let name = self.new_object(name_cls, ctor, &[self.string(object)?])?;
        let server_cls = self.class("javax/management/MBeanServer")?;
        let get_attr = self.method(
            server_cls,
            "getAttribute",
            "(Ljavax/management/ObjectName;Ljava/lang/String;)Ljava/lang/Object;",
            false,
        )?;
        let mut out = Vec::with_capacity(attrs.len());
        for attr in attrs {
            let a = self.string(attr)?;
            match self.call_object(server, get_attr, &[name, a], false) {
                Ok(v) => out.push(self.to_text(v)),
                // No such MBean: the whole object is absent (not Cassandra, or too early).
                Err(e) if e.contains("InstanceNotFoundException") => return Err(e),
                Err(_) => out.push(None),
            }
        }
        Ok(out)
    }
}

/// `MBeanServer.invoke` with `String` arguments, for operations such as
/// StorageService's `getRangeToEndpointMap(String)`.
impl Call {
    /// A `java.lang.Object[]` or `String[]` (by `class`) holding `items`.
    fn object_array(&self, class: &str, items: &[Jobject]) -> Result<Jobject, String> {
        type NewArrayFn = unsafe extern "system" fn(*mut JniEnv, Jint, Jobject, Jobject) -> Jobject;
        type SetFn = unsafe extern "system" fn(*mut JniEnv, Jobject, Jint, Jobject);
        let cls = self.class(class)?;
        let len = Jint::try_from(items.len()).map_err(|e| e.to_string())?;
        // SAFETY: NewObjectArray with a live class reference and a null filler.
        let array = unsafe {
            let new: NewArrayFn = std::mem::transmute(self.f(jni::NEW_OBJECT_ARRAY));
            new(self.0, len, cls, std::ptr::null_mut())
        };
        let array = self.checked(array, "array")?;
        for (i, item) in (0..len).zip(items) {
            // SAFETY: index within the array just made; the items are
            // instances of its element class.
            unsafe {
                let set: SetFn = std::mem::transmute(self.f(jni::SET_OBJECT_ARRAY_ELEMENT));
                set(self.0, array, i, *item);
            }
            if let Some(e) = self.exception("array element") {
                return Err(e);
            }
        }
        Ok(array)
    }

    /// `getPlatformMBeanServer().invoke(new ObjectName(object), op, args, String[]...)`.
    fn invoke_op(&self, object: &str, op: &str, args: &[&str]) -> Result<Option<String>, String> {
        let factory = self.class("java/lang/management/ManagementFactory")?;
        let get_server = self.method(
            factory,
            "getPlatformMBeanServer",
            "()Ljavax/management/MBeanServer;",
            true,
        )?;
        let server = self.call_object(factory, get_server, &[], true)?;
        let name_cls = self.class("javax/management/ObjectName")?;
        let ctor = self.method(name_cls, "<init>", "(Ljava/lang/String;)V", false)?;
        let name = self.new_object(name_cls, ctor, &[self.string(object)?])?;
        let values = args
            .iter()
            .map(|a| self.string(a))
            .collect::<Result<Vec<_>, _>>()?;
        let string_type = self.string("java.lang.String")?;
        let types = vec![string_type; args.len()];
        let params = self.object_array("java/lang/Object", &values)?;
        let signature = self.object_array("java/lang/String", &types)?;
        let server_cls = self.class("javax/management/MBeanServer")?;
        let invoke = self.method(
            server_cls,
            "invoke",
            "(Ljavax/management/ObjectName;Ljava/lang/String;[Ljava/lang/Object;[Ljava/lang/String;)Ljava/lang/Object;",
            false,
        )?;
        let r = self.call_object(
            server,
            invoke,
            &[name, self.string(op)?, params, signature],
            false,
        )?;
        Ok(self.to_text(r))
    }
}

impl JniMBeans {
    /// This thread's JNIEnv, attaching it as a daemon the first time.
    fn env() -> Option<*mut JniEnv> {
        if !LIVE.load(Ordering::Acquire) {
            return None;
        }
        let known = THREAD_ENV.with(Cell::get);
        if !known.is_null() {
            return Some(known);
        }
        let vm = VM.load(Ordering::Acquire);
        if vm.is_null() {
            return None;
        }
        let mut env: *mut c_void = std::ptr::null_mut();
        let name = c"cqlready";
        let mut args = AttachArgs {
            version: JNI_VERSION_1_8,
            name: name.as_ptr(),
            group: std::ptr::null_mut(),
        };
        // SAFETY: `vm` is the JavaVM saved at load and the VM is live;
        // AttachCurrentThreadAsDaemon attaches this native thread.
        let rc = unsafe {
            let attach: AttachFn =
                std::mem::transmute(slot(vm.cast(), invoke::ATTACH_CURRENT_THREAD_AS_DAEMON));
            attach(vm, &mut env, (&mut args as *mut AttachArgs).cast())
        };
        if rc != JNI_OK || env.is_null() {
            crate::warn!("cannot attach the monitor thread to the JVM (JNI error {rc}); Cassandra's own view is off");
            return None;
        }
        THREAD_ENV.with(|c| c.set(env.cast()));
        Some(env.cast())
    }
}

/// `JavaVMAttachArgs`.
#[repr(C)]
struct AttachArgs {
    version: Jint,
    name: *const c_char,
    group: Jobject,
}

impl MBeans for JniMBeans {
    fn attributes(&mut self, object: &str, attrs: &[&str]) -> Result<Vec<Option<String>>, String> {
        let env = JniMBeans::env().ok_or("the JVM is not running Java code yet")?;
        type PushFn = unsafe extern "system" fn(*mut JniEnv, Jint) -> Jint;
        type PopFn = unsafe extern "system" fn(*mut JniEnv, Jobject) -> Jobject;
        let call = Call(env, Cell::new(false));
        // SAFETY: PushLocalFrame/PopLocalFrame on this thread's env bound
        // every local reference the query makes.
        unsafe {
            let push: PushFn = std::mem::transmute(call.f(jni::PUSH_LOCAL_FRAME));
            if push(env, LOCAL_FRAME) != JNI_OK {
                call.exception("local frame");
                return Err("no room for local references".into());
            }
        }
        let result = call.attributes(object, attrs);
        // SAFETY: pops the frame pushed above.
        unsafe {
            let pop: PopFn = std::mem::transmute(call.f(jni::POP_LOCAL_FRAME));
            pop(env, std::ptr::null_mut());
        }
        result
    }

    fn invoke(
        &mut self,
        object: &str,
        operation: &str,
        args: &[&str],
    ) -> Result<Option<String>, String> {
        let env = JniMBeans::env().ok_or("the JVM is not running Java code yet")?;
        type PushFn = unsafe extern "system" fn(*mut JniEnv, Jint) -> Jint;
        type PopFn = unsafe extern "system" fn(*mut JniEnv, Jobject) -> Jobject;
        let call = Call(env, Cell::new(false));
        // SAFETY: as in `attributes`: the frame bounds the call's local references.
        unsafe {
            let push: PushFn = std::mem::transmute(call.f(jni::PUSH_LOCAL_FRAME));
            if push(env, LOCAL_FRAME) != JNI_OK {
                call.exception("local frame");
                return Err("no room for local references".into());
            }
        }
        let result = call.invoke_op(object, operation, args);
        // SAFETY: pops the frame pushed above.
        unsafe {
            let pop: PopFn = std::mem::transmute(call.f(jni::POP_LOCAL_FRAME));
            pop(env, std::ptr::null_mut());
        }
        result
    }

    fn thread_attached(&self) -> bool {
        !THREAD_ENV.with(Cell::get).is_null()
    }
}

/// How the agent was loaded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `-agentpath:` at start-up, before VMInit.
    Load,
    /// `Agent_OnAttach`, or the `-javaagent` shim: the VM already runs Java.
    Live,
}

/// The option string handed over by the JVM (null means none).
fn option_text(options: *const c_char) -> String {
    if options.is_null() {
        return String::new();
    }
    // SAFETY: the JVM passes a NUL-terminated option string or null.
    unsafe { CStr::from_ptr(options) }
        .to_string_lossy()
        .into_owned()
}

/// Parses the options and starts the agent. `Err` only for bad options:
/// anything else wrong inside is logged and leaves the JVM alone.
fn load(vm: *mut JavaVm, text: &str, phase: Phase) -> Result<(), String> {
    let options = Options::parse(text).map_err(|e| e.to_string())?;
    crate::log::set_level(options.log);
    let env = match env_for(vm, phase) {
        Ok(env) => env,
        Err(rc) => {
            crate::error!(
                "this JVM offers no JVMTI 1.2 environment (GetEnv: {rc}); cqlready stays idle"
            );
            return Ok(());
        }
    };
    if crate::agent::running() {
        crate::info!("already running in this JVM; the second load does nothing");
        return Ok(());
    }
    VM.store(vm, Ordering::Release);
    if phase == Phase::Live {
        LIVE.store(true, Ordering::Release);
    }
    if let Err(rc) = env.register(phase == Phase::Load) {
        crate::warn!("cannot register for VM start and death (JVMTI error {rc}); STOPPING=1 will not be sent");
    }
    crate::agent::start(&options, &|name| env.property(name), Box::new(JniMBeans))
}

pub const JNI_EDETACHED: Jint = -2;

/// The JVMTI environment. An attach that arrives while the JVM is still
/// being created (its SIGQUIT handler is up before `JNI_CreateJavaVM`
/// returns) sees JNI_EDETACHED: that attach-listener thread waits, a little,
/// for the creation to finish; no application thread is held.
fn env_for(vm: *mut JavaVm, phase: Phase) -> Result<Env, Jint> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Env::get(vm) {
            Err(JNI_EDETACHED) if phase == Phase::Live && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

/// Logs a refused option string with what follows from it.
fn refuse(error: &str, consequence: &str) {
    crate::log::write(
        crate::log::Level::Error,
        format_args!("{error}; {consequence}"),
    );
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
    // Bad options stop the JVM (the one deliberate refusal); an internal
    // failure (a panic, fenced) keeps it going without the agent.
    crate::fence("Agent_OnLoad", || {
        match load(vm, &option_text(options), Phase::Load) {
            Ok(()) => JNI_OK,
            Err(e) => {
                refuse(
                    &e,
                    "the JVM will not start; fix -agentpath:...libcqlready.so=<options>",
                );
                JNI_ERR
            }
        }
    })
    .unwrap_or(JNI_OK)
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
    crate::fence("Agent_OnAttach", || {
        match load(vm, &option_text(options), Phase::Live) {
            Ok(()) => JNI_OK,
            Err(e) => {
                refuse(&e, "not attached");
                JNI_ERR
            }
        }
    })
    .unwrap_or(JNI_ERR)
}

/// The `-javaagent` shim's native method, `cqlready.Shim.start(String)`:
/// starts the same agent with the same option string. Returns null, or the
/// error text for the shim to throw (bad options refuse the agent).
///
/// # Safety
/// Called by the JVM through JNI with a live `JNIEnv` and a String or null.
#[no_mangle]
pub unsafe extern "system" fn Java_cqlready_Shim_start(
    env: *mut JniEnv,
    _class: Jobject,
    options: Jobject,
) -> Jobject {
    crate::fence("Shim.start", || {
        let call = Call(env, Cell::new(false));
        let text = if options.is_null() {
            String::new()
        } else {
            call.to_text(options).unwrap_or_default()
        };
        type GetJavaVmFn = unsafe extern "system" fn(*mut JniEnv, *mut *mut JavaVm) -> Jint;
        let mut vm: *mut JavaVm = std::ptr::null_mut();
        // SAFETY: GetJavaVM on the calling thread's live JNIEnv.
        let rc = unsafe {
            let get: GetJavaVmFn = std::mem::transmute(call.f(jni::GET_JAVA_VM));
            get(env, &mut vm)
        };
        let outcome = if rc != JNI_OK || vm.is_null() {
            Err(format!("cqlready: no JavaVM from JNI (error {rc})"))
        } else {
            load(vm, &text, Phase::Live)
        };
        match outcome {
            Ok(()) => std::ptr::null_mut(),
            Err(e) => {
                refuse(&e, "the -javaagent shim will not start the agent");
                call.string(&e).unwrap_or(std::ptr::null_mut())
            }
        }
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Called by the JVM as it unloads the library; VMDeath has done the work.
///
/// # Safety
/// Called by the JVM.
#[no_mangle]
pub unsafe extern "system" fn Agent_OnUnload(_vm: *mut JavaVm) {}
