//! The one JNI use: the platform MBean server's `getAttribute` and `invoke`,
//! from the monitor thread, which is attached to the VM as a daemon on first
//! use (so it never holds the VM up at exit).
//!
//! Classes and method IDs are looked up once per JVM and kept (classes and
//! the MBean server as global references), so a read after the first makes
//! no `FindClass`/`GetMethodID` call; [`lookups`] counts them. Each read runs
//! inside a local frame that a guard pops, whatever happens. Strings cross as
//! UTF-16 (`NewString`, `GetStringRegion`), so NUL and supplementary
//! characters survive both ways.

use super::{
    fun, jboolean, jclass, jint, jmethodID, jobject, jobjectArray, jsize, jstring, jvalue, JNIEnv,
    JNINativeInterface_, JavaVM, JavaVMAttachArgs, JNI_OK, JNI_VERSION_1_8, LIVE, VM,
};
use crate::cassandra::MBeans;
use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// `FindClass`, `GetMethodID` and `GetStaticMethodID` calls made so far.
static LOOKUPS: AtomicU64 = AtomicU64::new(0);
/// The count last logged.
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// How many class and method lookups the MBean reads have made in this JVM:
/// all of them in the first read, none after (the debug log says so).
pub fn lookups() -> u64 {
    LOOKUPS.load(Ordering::Relaxed)
}

fn report_lookups() {
    let n = lookups();
    if REPORTED.swap(n, Ordering::Relaxed) != n {
        crate::debug!("MBean reads: {n} JNI class/method lookups so far; later reads reuse them");
    }
}

/// One thread's JNI calls. Not `Send` (it holds the thread's raw `JNIEnv`).
/// The flag stops describing an exception from recursing into another one.
pub(crate) struct Jni {
    pub(super) env: *mut JNIEnv,
    describing: Cell<bool>,
}

/// Pops the local frame [`Jni::frame`] pushed, on every path out.
struct Frame<'a>(&'a Jni);

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.pop_frame() {
            crate::warn!("{e}");
        }
    }
}

/// A JNI reference or ID that is null on failure.
trait Nullable: Copy {
    fn is_null(self) -> bool;
}

impl<T> Nullable for *mut T {
    fn is_null(self) -> bool {
        <*mut T>::is_null(self)
    }
}

fn l(object: jobject) -> jvalue {
    jvalue { l: object }
}

impl Jni {
    /// # Safety
    /// `env` must be the calling thread's live `JNIEnv`, and the value must
    /// stay on this thread (the raw pointer keeps it `!Send`).
    pub(crate) unsafe fn new(env: *mut JNIEnv) -> Jni {
        Jni {
            env,
            describing: Cell::new(false),
        }
    }

    pub(super) fn t(&self) -> &JNINativeInterface_ {
        // SAFETY: per `new`'s contract `env` is a live JNIEnv: a pointer to
        // the JVM's function table, which lives as long as the VM.
        unsafe { &**self.env }
    }

    fn frame(&self, capacity: jint) -> Result<Frame<'_>, String> {
        let push = fun!(self.t(), PushLocalFrame);
        // SAFETY: PushLocalFrame on this thread's env; the Frame pops it.
        if unsafe { push(self.env, capacity) } != JNI_OK {
            return Err(self
                .exception("local frame")
                .unwrap_or_else(|| "no room for local references".into()));
        }
        Ok(Frame(self))
    }

    fn pop_frame(&self) -> Result<(), String> {
        let pop = fun!(self.t(), PopLocalFrame);
        // SAFETY: pops the frame this Jni pushed (only Frame calls this),
        // keeping no result; allowed with an exception pending.
        unsafe { pop(self.env, std::ptr::null_mut()) };
        Ok(())
    }

    /// Clears a pending exception and returns its text.
    fn exception(&self, what: &str) -> Option<String> {
        let thrown = match self.take_exception() {
            Ok(None) => return None,
            Ok(Some(thrown)) => thrown,
            Err(e) => return Some(format!("{what}: {e}")),
        };
        if self.describing.replace(true) {
            return Some(format!("{what}: an exception"));
        }
        let text = self
            .describe(thrown)
            .unwrap_or_else(|_| "an exception".into());
        self.describing.set(false);
        Some(format!("{what}: {text}"))
    }

    fn take_exception(&self) -> Result<Option<jobject>, String> {
        let t = self.t();
        let (check, occurred, clear) = (
            fun!(t, ExceptionCheck),
            fun!(t, ExceptionOccurred),
            fun!(t, ExceptionClear),
        );
        // SAFETY: the three take only this thread's env and are allowed with
        // an exception pending; it is cleared before anything else is called.
        unsafe {
            if check(self.env) == jboolean::default() {
                return Ok(None);
            }
            let thrown = occurred(self.env);
            clear(self.env);
            Ok(Some(thrown))
        }
    }

    /// `String.valueOf(thrown)`, with the cached IDs once there are some.
    fn describe(&self, thrown: jobject) -> Result<String, String> {
        let (string, value_of) = match IDS.get() {
            Some(ids) => (ids.string, ids.value_of),
            None => {
                let string = self.class(c"java/lang/String")?;
                (string, self.value_of(string)?)
            }
        };
        self.text_with(string, value_of, thrown)?
            .ok_or_else(|| "an exception".into())
    }

    /// `r`, or the pending exception as an error.
    fn unless_thrown<T>(&self, r: T, what: &str) -> Result<T, String> {
        match self.exception(what) {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }

    /// A null result or a pending exception becomes an error.
    fn checked<T: Nullable>(&self, p: T, what: &str) -> Result<T, String> {
        self.unless_thrown((), what)?;
        if p.is_null() {
            return Err(format!("{what}: null"));
        }
        Ok(p)
    }

    fn class(&self, name: &CStr) -> Result<jclass, String> {
        let find = fun!(self.t(), FindClass);
        LOOKUPS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: FindClass with a NUL-terminated binary class name.
        let class = unsafe { find(self.env, name.as_ptr()) };
        self.checked(class, &name.to_string_lossy())
    }

    fn method(&self, class: jclass, name: &CStr, sig: &CStr) -> Result<jmethodID, String> {
        let get = fun!(self.t(), GetMethodID);
        LOOKUPS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: GetMethodID on a live class reference with NUL-terminated
        // name and signature.
        let id = unsafe { get(self.env, class, name.as_ptr(), sig.as_ptr()) };
        self.checked(id, &name.to_string_lossy())
    }

    fn static_method(&self, class: jclass, name: &CStr, sig: &CStr) -> Result<jmethodID, String> {
        let get = fun!(self.t(), GetStaticMethodID);
        LOOKUPS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `method`, for a static method.
        let id = unsafe { get(self.env, class, name.as_ptr(), sig.as_ptr()) };
        self.checked(id, &name.to_string_lossy())
    }

    fn value_of(&self, string: jclass) -> Result<jmethodID, String> {
        self.static_method(
            string,
            c"valueOf",
            c"(Ljava/lang/Object;)Ljava/lang/String;",
        )
    }

    /// Global references for `locals`, all or none.
    fn globals<const N: usize>(&self, locals: [jobject; N]) -> Result<[jobject; N], String> {
        let (new, delete) = (
            fun!(self.t(), NewGlobalRef),
            fun!(self.t(), DeleteGlobalRef),
        );
        // SAFETY: NewGlobalRef on live local references of this thread.
        let globals = locals.map(|local| unsafe { new(self.env, local) });
        if globals.iter().any(|g| g.is_null()) {
            for g in globals.into_iter().filter(|g| !g.is_null()) {
                // SAFETY: a global reference made just above, used by no one.
                unsafe { delete(self.env, g) };
            }
            return Err(self
                .exception("global reference")
                .unwrap_or_else(|| "global reference: out of memory".into()));
        }
        Ok(globals)
    }

    /// A Java string with the same characters (UTF-16, so NUL and
    /// supplementary characters come through).
    pub(crate) fn new_string(&self, s: &str) -> Result<jstring, String> {
        let new = fun!(self.t(), NewString);
        let units: Vec<u16> = s.encode_utf16().collect();
        let len = jsize::try_from(units.len()).map_err(|_| "string too long for Java")?;
        // SAFETY: NewString copies `len` UTF-16 units from a live buffer.
        let string = unsafe { new(self.env, units.as_ptr(), len) };
        self.checked(string, "string")
    }

    /// A Java string's characters; lone surrogates become U+FFFD.
    pub(crate) fn read_string(&self, s: jstring) -> Result<String, String> {
        let (length, region) = (
            fun!(self.t(), GetStringLength),
            fun!(self.t(), GetStringRegion),
        );
        if s.is_null() {
            return Err("string: null".into());
        }
        // SAFETY: GetStringLength on a live, non-null String reference.
        let len = unsafe { length(self.env, s) };
        let mut units = vec![0u16; usize::try_from(len).unwrap_or(0)];
        // SAFETY: copies exactly `len` units, the string's length, into a
        // buffer of that many.
        unsafe { region(self.env, s, 0, len, units.as_mut_ptr()) };
        if let Some(e) = self.exception("string characters") {
            return Err(e);
        }
        Ok(String::from_utf16_lossy(&units))
    }

    fn call_object(
        &self,
        target: jobject,
        method: jmethodID,
        args: &[jvalue],
        what: &str,
    ) -> Result<jobject, String> {
        let call = fun!(self.t(), CallObjectMethodA);
        // SAFETY: `method` is an instance method of `target`'s class (or an
        // interface it implements) returning an object, and `args` is a real
        // jvalue array of the arguments it takes.
        let r = unsafe { call(self.env, target, method, args.as_ptr()) };
        self.unless_thrown(r, what)
    }

    fn call_static_object(
        &self,
        class: jclass,
        method: jmethodID,
        args: &[jvalue],
        what: &str,
    ) -> Result<jobject, String> {
        let call = fun!(self.t(), CallStaticObjectMethodA);
        // SAFETY: as `call_object`, for a static method of `class`.
        let r = unsafe { call(self.env, class, method, args.as_ptr()) };
        self.unless_thrown(r, what)
    }

    fn new_object(
        &self,
        class: jclass,
        ctor: jmethodID,
        args: &[jvalue],
        what: &str,
    ) -> Result<jobject, String> {
        let new = fun!(self.t(), NewObjectA);
        // SAFETY: NewObjectA with a constructor of `class` and a jvalue
        // array of its arguments.
        let o = unsafe { new(self.env, class, ctor, args.as_ptr()) };
        self.checked(o, what)
    }

    /// `new C[] { items... }` for element class `class`.
    fn object_array(&self, class: jclass, items: &[jobject]) -> Result<jobjectArray, String> {
        let (new, set) = (
            fun!(self.t(), NewObjectArray),
            fun!(self.t(), SetObjectArrayElement),
        );
        let len = jsize::try_from(items.len()).map_err(|_| "too many arguments")?;
        // SAFETY: NewObjectArray with a live element class and no initial value.
        let array = self.checked(
            unsafe { new(self.env, len, class, std::ptr::null_mut()) },
            "array",
        )?;
        for (i, &item) in (0..len).zip(items) {
            // SAFETY: `i` is within the array just made; items are instances
            // of its element class.
            unsafe { set(self.env, array, i, item) };
            if let Some(e) = self.exception("array element") {
                return Err(e);
            }
        }
        Ok(array)
    }

    /// The VM of this thread's env.
    pub(crate) fn java_vm(&self) -> Result<*mut JavaVM, String> {
        let get = fun!(self.t(), GetJavaVM);
        let mut vm: *mut JavaVM = std::ptr::null_mut();
        // SAFETY: GetJavaVM stores the VM pointer into a live local.
        let rc = unsafe { get(self.env, &mut vm) };
        if rc != JNI_OK || vm.is_null() {
            return Err(format!("no JavaVM from JNI (error {rc})"));
        }
        Ok(vm)
    }

    /// `String.valueOf(obj)`, `None` for null.
    fn text_with(
        &self,
        string: jclass,
        value_of: jmethodID,
        obj: jobject,
    ) -> Result<Option<String>, String> {
        if obj.is_null() {
            return Ok(None);
        }
        let s = self.call_static_object(string, value_of, &[l(obj)], "String.valueOf")?;
        if s.is_null() {
            return Ok(None);
        }
        self.read_string(s).map(Some)
    }

    fn text(&self, ids: &Ids, obj: jobject) -> Result<Option<String>, String> {
        self.text_with(ids.string, ids.value_of, obj)
    }

    fn object_name(&self, ids: &Ids, object: &str) -> Result<jobject, String> {
        let name = self.new_string(object)?;
        self.new_object(ids.object_name, ids.object_name_new, &[l(name)], object)
    }

    /// `server.getAttribute(new ObjectName(object), a)` for each a.
    pub(super) fn attributes(
        &self,
        ids: &Ids,
        object: &str,
        attrs: &[&str],
    ) -> Result<Vec<Option<String>>, String> {
        let name = self.object_name(ids, object)?;
        let mut out = Vec::with_capacity(attrs.len());
        for attr in attrs {
            let a = self.new_string(attr)?;
            match self.call_object(ids.server, ids.get_attribute, &[l(name), l(a)], attr) {
                Ok(v) => out.push(self.text(ids, v).ok().flatten()),
                // No such MBean: the whole object is absent (not Cassandra, or too early).
                Err(e) if e.contains("InstanceNotFoundException") => return Err(e),
                Err(_) => out.push(None),
            }
        }
        Ok(out)
    }

    /// `server.invoke(new ObjectName(object), operation, args, {"java.lang.String", ...})`.
    pub(super) fn invoke(
        &self,
        ids: &Ids,
        object: &str,
        operation: &str,
        args: &[&str],
    ) -> Result<Option<String>, String> {
        let name = self.object_name(ids, object)?;
        let op = self.new_string(operation)?;
        let params = args
            .iter()
            .map(|a| self.new_string(a))
            .collect::<Result<Vec<_>, _>>()?;
        let params = self.object_array(ids.object, &params)?;
        let sig = self.new_string("java.lang.String")?;
        let signature = self.object_array(ids.string, &vec![sig; args.len()])?;
        let r = self.call_object(
            ids.server,
            ids.invoke,
            &[l(name), l(op), l(params), l(signature)],
            operation,
        )?;
        self.text(ids, r)
    }

    /// Runs `f` inside a local frame of `capacity` references, with the IDs.
    pub(super) fn run<T>(
        &self,
        capacity: usize,
        f: impl FnOnce(&Jni, &Ids) -> Result<T, String>,
    ) -> Result<T, String> {
        let _frame = self.frame(jint::try_from(capacity).unwrap_or(jint::MAX))?;
        let result = ids(self).and_then(|ids| f(self, ids));
        report_lookups();
        result
    }
}

/// What every read uses, looked up once per JVM. Classes and the server are
/// global references (never deleted: they live as long as the VM).
pub(super) struct Ids {
    server: jobject,
    object: jclass,
    string: jclass,
    value_of: jmethodID,
    object_name: jclass,
    object_name_new: jmethodID,
    get_attribute: jmethodID,
    invoke: jmethodID,
}

// SAFETY: global references and method IDs are valid on every thread of the
// VM for as long as it runs (JNI spec); they are only ever used through a
// thread's own JNIEnv, and after VMDeath no read runs.
unsafe impl Send for Ids {}
// SAFETY: as above; nothing in Ids is ever mutated.
unsafe impl Sync for Ids {}

static IDS: OnceLock<Ids> = OnceLock::new();
/// One thread looks the IDs up; another waits instead of doing it too.
static LOOKING_UP: Mutex<()> = Mutex::new(());

fn ids(jni: &Jni) -> Result<&'static Ids, String> {
    if let Some(ids) = IDS.get() {
        return Ok(ids);
    }
    let _one = LOOKING_UP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ids) = IDS.get() {
        return Ok(ids);
    }
    let ids = Ids::look_up(jni)?;
    Ok(IDS.get_or_init(|| ids))
}

impl Ids {
    /// Every lookup on local references (in the caller's frame), then the
    /// global references, all or none.
    fn look_up(jni: &Jni) -> Result<Ids, String> {
        let factory = jni.class(c"java/lang/management/ManagementFactory")?;
        let get_server = jni.static_method(
            factory,
            c"getPlatformMBeanServer",
            c"()Ljavax/management/MBeanServer;",
        )?;
        let server = jni.call_static_object(factory, get_server, &[], "getPlatformMBeanServer")?;
        let server = jni.checked(server, "getPlatformMBeanServer")?;
        let server_class = jni.class(c"javax/management/MBeanServer")?;
        let get_attribute = jni.method(
            server_class,
            c"getAttribute",
            c"(Ljavax/management/ObjectName;Ljava/lang/String;)Ljava/lang/Object;",
        )?;
        let invoke = jni.method(
            server_class,
            c"invoke",
            c"(Ljavax/management/ObjectName;Ljava/lang/String;[Ljava/lang/Object;[Ljava/lang/String;)Ljava/lang/Object;",
        )?;
        let object_name = jni.class(c"javax/management/ObjectName")?;
        let object_name_new = jni.method(object_name, c"<init>", c"(Ljava/lang/String;)V")?;
        let string = jni.class(c"java/lang/String")?;
        let value_of = jni.value_of(string)?;
        let object = jni.class(c"java/lang/Object")?;
        let [server, object, string, object_name] =
            jni.globals([server, object, string, object_name])?;
        Ok(Ids {
            server,
            object,
            string,
            value_of,
            object_name,
            object_name_new,
            get_attribute,
            invoke,
        })
    }
}

thread_local! {
    /// This thread's JNIEnv once it is attached to the VM.
    static THREAD_ENV: Cell<*mut JNIEnv> = const { Cell::new(std::ptr::null_mut()) };
}

/// Reads MBeans through JNI from the thread that calls it. Calls nothing
/// before VMInit or after VMDeath.
pub struct JniMBeans;

impl JniMBeans {
    /// This thread's JNIEnv, attaching it as a daemon the first time.
    fn env() -> Result<*mut JNIEnv, String> {
        if !LIVE.load(Ordering::Acquire) {
            return Err("the JVM is not running Java code yet".into());
        }
        let known = THREAD_ENV.with(Cell::get);
        if !known.is_null() {
            return Ok(known);
        }
        let vm = VM.load(Ordering::Acquire);
        if vm.is_null() {
            return Err("the JVM is not running Java code yet".into());
        }
        // SAFETY: `vm` is the JavaVM saved at load and the VM is live: a
        // pointer to its invocation table, which lives as long as the VM.
        let attach = fun!(unsafe { &**vm }, AttachCurrentThreadAsDaemon);
        let mut env: *mut c_void = std::ptr::null_mut();
        let mut args = JavaVMAttachArgs {
            version: JNI_VERSION_1_8,
            name: c"cqlready".as_ptr().cast_mut(),
            group: std::ptr::null_mut(),
        };
        // SAFETY: attaches this native thread; the VM only reads the name
        // and the arguments during the call.
        let rc = unsafe { attach(vm, &mut env, (&mut args as *mut JavaVMAttachArgs).cast()) };
        if rc != JNI_OK || env.is_null() {
            crate::warn!("cannot attach the monitor thread to the JVM (JNI error {rc}); Cassandra's own view is off");
            return Err(format!("cannot attach to the JVM (JNI error {rc})"));
        }
        THREAD_ENV.with(|c| c.set(env.cast()));
        Ok(env.cast())
    }

    fn run<T>(
        capacity: usize,
        f: impl FnOnce(&Jni, &Ids) -> Result<T, String>,
    ) -> Result<T, String> {
        let env = JniMBeans::env()?;
        // SAFETY: `env` is this thread's own JNIEnv (thread-local, from
        // attach) and the Jni does not leave this function.
        let jni = unsafe { Jni::new(env) };
        jni.run(capacity, f)
    }
}

/// Local references a read may hold: the name, and per value its name,
/// its object and its text.
pub(super) fn capacity(values: usize) -> usize {
    8 + 3 * values
}

impl MBeans for JniMBeans {
    fn attributes(&mut self, object: &str, attrs: &[&str]) -> Result<Vec<Option<String>>, String> {
        JniMBeans::run(capacity(attrs.len()), |jni, ids| {
            jni.attributes(ids, object, attrs)
        })
    }

    fn invoke(
        &mut self,
        object: &str,
        operation: &str,
        args: &[&str],
    ) -> Result<Option<String>, String> {
        JniMBeans::run(capacity(args.len()), |jni, ids| {
            jni.invoke(ids, object, operation, args)
        })
    }

    fn thread_attached(&self) -> bool {
        !THREAD_ENV.with(Cell::get).is_null()
    }
}
