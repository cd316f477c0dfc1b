//! Native methods of the test fixture (`tests/fixtures/CqlFixture.java`),
//! in debug builds only: the same MBean reads as the agent's, from a Java
//! thread, so tests can drive `invoke` and see the lookup count in a real
//! JVM. Kept apart from the product's JNI code in `mbeans.rs`.

use super::mbeans::{capacity, lookups, Jni};
use super::{fun, jclass, jobjectArray, jstring, JNIEnv};

/// "ok:TEXT", "none" or "err:TEXT", as a Java string (null if even that fails).
fn answer(jni: &Jni, r: Result<Option<String>, String>) -> jstring {
    let text = match r {
        Ok(Some(t)) => format!("ok:{t}"),
        Ok(None) => "none".into(),
        Err(e) => format!("err:{e}"),
    };
    jni.new_string(&text).unwrap_or(std::ptr::null_mut())
}

fn strings(jni: &Jni, array: jobjectArray) -> Result<Vec<String>, String> {
    let (len, get) = (
        fun!(jni.t(), GetArrayLength),
        fun!(jni.t(), GetObjectArrayElement),
    );
    // SAFETY: GetArrayLength on the String[] the fixture passed.
    let n = unsafe { len(jni.env, array) };
    (0..n)
        .map(|i| {
            // SAFETY: `i` is within the array.
            let s = unsafe { get(jni.env, array, i) };
            jni.read_string(s)
        })
        .collect()
}

/// `static native String invoke(String object, String op, String[] args)`.
///
/// # Safety
/// Called by the JVM with the calling thread's live JNIEnv.
#[no_mangle]
pub unsafe extern "system" fn Java_CqlFixture_invoke(
    env: *mut JNIEnv,
    _class: jclass,
    object: jstring,
    op: jstring,
    args: jobjectArray,
) -> jstring {
    crate::fence("CqlFixture.invoke", || {
        // SAFETY: the JVM passed this thread's env; `jni` stays here.
        let jni = unsafe { Jni::new(env) };
        let r = (|| {
            let (object, op) = (jni.read_string(object)?, jni.read_string(op)?);
            let args = strings(&jni, args)?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            jni.run(capacity(args.len()), |jni, ids| {
                jni.invoke(ids, &object, &op, &args)
            })
        })();
        answer(&jni, r)
    })
    .unwrap_or(std::ptr::null_mut())
}

/// `static native String attribute(String object, String attribute)`.
///
/// # Safety
/// Called by the JVM with the calling thread's live JNIEnv.
#[no_mangle]
pub unsafe extern "system" fn Java_CqlFixture_attribute(
    env: *mut JNIEnv,
    _class: jclass,
    object: jstring,
    attr: jstring,
) -> jstring {
    crate::fence("CqlFixture.attribute", || {
        // SAFETY: the JVM passed this thread's env; `jni` stays here.
        let jni = unsafe { Jni::new(env) };
        let r = (|| {
            let (object, attr) = (jni.read_string(object)?, jni.read_string(attr)?);
            jni.run(capacity(1), |jni, ids| {
                jni.attributes(ids, &object, &[&attr])
            })
        })();
        answer(&jni, r.map(|v| v.into_iter().next().flatten()))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// `static native long lookups()`.
///
/// # Safety
/// Called by the JVM.
#[no_mangle]
pub unsafe extern "system" fn Java_CqlFixture_lookups(_env: *mut JNIEnv, _class: jclass) -> i64 {
    i64::try_from(lookups()).unwrap_or(i64::MAX)
}
