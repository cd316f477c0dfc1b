//! The JVM's entry points: `Agent_OnLoad`, `Agent_OnAttach`, `Agent_OnUnload`,
//! the VMInit and VMDeath callbacks and the `-javaagent` shim's native
//! method. Thin: read the option string and system properties through JVMTI,
//! hand them to [`crate::agent`], and fence every edge so no panic ever
//! crosses into the JVM.

use super::mbeans::Jni;
use super::{
    decode_modified_utf8, fun, jclass, jint, jobject, jstring, EventCallbacks, JNIEnv, JavaVM,
    JniMBeans, JvmtiEnv, JvmtiInterface, JNI_EDETACHED, JNI_ERR, JNI_OK, JVMTI_ENABLE,
    JVMTI_ERROR_NONE, JVMTI_EVENT_VM_DEATH, JVMTI_EVENT_VM_INIT, JVMTI_VERSION_1_2, LIVE, VM,
};
use crate::options::Options;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::Ordering;

/// A JVMTI environment; valid for the life of the VM once obtained.
struct Env(*mut JvmtiEnv);

impl Env {
    fn get(vm: *mut JavaVM) -> Result<Env, jint> {
        if vm.is_null() {
            return Err(JNI_ERR);
        }
        // SAFETY: `vm` is the non-null JavaVM the JVM passed to the entry
        // point: a pointer to its invocation table, live as long as the VM.
        let get_env = fun!(unsafe { &**vm }, GetEnv, JNI_ERR);
        let mut env: *mut c_void = std::ptr::null_mut();
        // SAFETY: GetEnv stores an environment pointer into a live local.
        let rc = unsafe { get_env(vm, &mut env, JVMTI_VERSION_1_2) };
        if rc == JNI_OK && !env.is_null() {
            Ok(Env(env.cast()))
        } else {
            Err(rc)
        }
    }

    fn t(&self) -> &JvmtiInterface {
        // SAFETY: self.0 is a live jvmtiEnv from GetEnv: a pointer to the
        // JVMTI function table, which lives as long as the VM.
        unsafe { &**self.0 }
    }

    /// Registers the VMInit (when `init`) and VMDeath callbacks and enables them.
    fn register(&self, init: bool) -> Result<(), String> {
        let (set, mode) = (
            fun!(self.t(), SetEventCallbacks),
            fun!(self.t(), SetEventNotificationMode),
        );
        let callbacks = EventCallbacks {
            VMInit: Some(vm_init),
            VMDeath: Some(vm_death),
        };
        let size = std::mem::size_of::<EventCallbacks>() as jint;
        // SAFETY: a prefix of jvmtiEventCallbacks and its size; JVMTI copies
        // it before returning, so a stack structure is fine.
        let rc = unsafe { set(self.0, &callbacks, size) };
        if rc != JVMTI_ERROR_NONE {
            return Err(format!("SetEventCallbacks: JVMTI error {rc}"));
        }
        let events: &[_] = if init {
            &[JVMTI_EVENT_VM_INIT, JVMTI_EVENT_VM_DEATH]
        } else {
            &[JVMTI_EVENT_VM_DEATH]
        };
        for &event in events {
            // SAFETY: enables an event for every thread (null thread), the
            // variadic tail left empty as JVMTI documents.
            let rc = unsafe { mode(self.0, JVMTI_ENABLE, event, std::ptr::null_mut()) };
            if rc != JVMTI_ERROR_NONE {
                return Err(format!("SetEventNotificationMode: JVMTI error {rc}"));
            }
        }
        Ok(())
    }

    /// A system property (the JVM's `-D` settings and its own).
    fn property(&self, name: &str) -> Option<String> {
        self.try_property(name).ok().flatten()
    }

    fn try_property(&self, name: &str) -> Result<Option<String>, String> {
        let (get, dealloc) = (
            fun!(self.t(), GetSystemProperty),
            fun!(self.t(), Deallocate),
        );
        let key = CString::new(name).map_err(|e| e.to_string())?;
        let mut value: *mut c_char = std::ptr::null_mut();
        // SAFETY: on success GetSystemProperty stores a JVMTI-allocated
        // NUL-terminated string (modified UTF-8), which is copied and then
        // given back with Deallocate.
        unsafe {
            if get(self.0, key.as_ptr(), &mut value) != JVMTI_ERROR_NONE || value.is_null() {
                return Ok(None);
            }
            let copy = decode_modified_utf8(CStr::from_ptr(value).to_bytes());
            dealloc(self.0, value.cast());
            Ok(Some(copy))
        }
    }
}

unsafe extern "system" fn vm_init(_env: *mut JvmtiEnv, _jni: *mut JNIEnv, _thread: jobject) {
    LIVE.store(true, Ordering::Release);
}

unsafe extern "system" fn vm_death(_env: *mut JvmtiEnv, _jni: *mut JNIEnv) {
    LIVE.store(false, Ordering::Release);
    crate::fence("VMDeath", || crate::agent::stop("JVM shutting down"));
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
fn load(vm: *mut JavaVM, text: &str, phase: Phase) -> Result<(), String> {
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
    if let Err(e) = env.register(phase == Phase::Load) {
        crate::warn!("cannot register for VM start and death ({e}); STOPPING=1 will not be sent");
    }
    crate::agent::start(&options, &|name| env.property(name), Box::new(JniMBeans))
}

/// The JVMTI environment. An attach that arrives while the JVM is still
/// being created (its SIGQUIT handler is up before `JNI_CreateJavaVM`
/// returns) sees JNI_EDETACHED: that attach-listener thread waits, a little,
/// for the creation to finish; no application thread is held.
fn env_for(vm: *mut JavaVM, phase: Phase) -> Result<Env, jint> {
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
    vm: *mut JavaVM,
    options: *mut c_char,
    _reserved: *mut c_void,
) -> jint {
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
    vm: *mut JavaVM,
    options: *mut c_char,
    _reserved: *mut c_void,
) -> jint {
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
    env: *mut JNIEnv,
    _class: jclass,
    options: jstring,
) -> jstring {
    crate::fence("Shim.start", || {
        // SAFETY: the JVM passed this thread's live env; `jni` stays here.
        let jni = unsafe { Jni::new(env) };
        let text = if options.is_null() {
            String::new()
        } else {
            jni.read_string(options).unwrap_or_default()
        };
        let outcome = jni
            .java_vm()
            .map_err(|e| format!("cqlready: {e}"))
            .and_then(|vm| load(vm, &text, Phase::Live));
        match outcome {
            Ok(()) => std::ptr::null_mut(),
            Err(e) => {
                refuse(&e, "the -javaagent shim will not start the agent");
                jni.new_string(&e).unwrap_or(std::ptr::null_mut())
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
pub unsafe extern "system" fn Agent_OnUnload(_vm: *mut JavaVM) {}
