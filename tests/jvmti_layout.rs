//! The JVMTI/JNI slots and constants that `src/jvm.rs` calls by number must be
//! the JDK's own: compile a C program against each installed JDK's `jvmti.h`
//! and `jni.h`, let it print what they say, and compare.

use cqlready::jvm;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <jvmti.h>
#define SLOT(s, f) (offsetof(s, f) / sizeof(void *))
int main(void) {
  printf("GET_ENV %zu\n", SLOT(struct JNIInvokeInterface_, GetEnv));
  printf("ATTACH_CURRENT_THREAD_AS_DAEMON %zu\n", SLOT(struct JNIInvokeInterface_, AttachCurrentThreadAsDaemon));
  printf("FIND_CLASS %zu\n", SLOT(struct JNINativeInterface_, FindClass));
  printf("EXCEPTION_OCCURRED %zu\n", SLOT(struct JNINativeInterface_, ExceptionOccurred));
  printf("EXCEPTION_CLEAR %zu\n", SLOT(struct JNINativeInterface_, ExceptionClear));
  printf("PUSH_LOCAL_FRAME %zu\n", SLOT(struct JNINativeInterface_, PushLocalFrame));
  printf("POP_LOCAL_FRAME %zu\n", SLOT(struct JNINativeInterface_, PopLocalFrame));
  printf("NEW_OBJECT_A %zu\n", SLOT(struct JNINativeInterface_, NewObjectA));
  printf("GET_METHOD_ID %zu\n", SLOT(struct JNINativeInterface_, GetMethodID));
  printf("CALL_OBJECT_METHOD_A %zu\n", SLOT(struct JNINativeInterface_, CallObjectMethodA));
  printf("GET_STATIC_METHOD_ID %zu\n", SLOT(struct JNINativeInterface_, GetStaticMethodID));
  printf("CALL_STATIC_OBJECT_METHOD_A %zu\n", SLOT(struct JNINativeInterface_, CallStaticObjectMethodA));
  printf("NEW_STRING_UTF %zu\n", SLOT(struct JNINativeInterface_, NewStringUTF));
  printf("GET_STRING_UTF_CHARS %zu\n", SLOT(struct JNINativeInterface_, GetStringUTFChars));
  printf("RELEASE_STRING_UTF_CHARS %zu\n", SLOT(struct JNINativeInterface_, ReleaseStringUTFChars));
  printf("NEW_OBJECT_ARRAY %zu\n", SLOT(struct JNINativeInterface_, NewObjectArray));
  printf("SET_OBJECT_ARRAY_ELEMENT %zu\n", SLOT(struct JNINativeInterface_, SetObjectArrayElement));
  printf("GET_JAVA_VM %zu\n", SLOT(struct JNINativeInterface_, GetJavaVM));
  printf("EXCEPTION_CHECK %zu\n", SLOT(struct JNINativeInterface_, ExceptionCheck));
  printf("SET_EVENT_NOTIFICATION_MODE %zu\n", SLOT(struct jvmtiInterface_1_, SetEventNotificationMode));
  printf("DEALLOCATE %zu\n", SLOT(struct jvmtiInterface_1_, Deallocate));
  printf("SET_EVENT_CALLBACKS %zu\n", SLOT(struct jvmtiInterface_1_, SetEventCallbacks));
  printf("GET_SYSTEM_PROPERTY %zu\n", SLOT(struct jvmtiInterface_1_, GetSystemProperty));
  printf("CB_VM_INIT %zu\n", SLOT(jvmtiEventCallbacks, VMInit));
  printf("CB_VM_DEATH %zu\n", SLOT(jvmtiEventCallbacks, VMDeath));
  printf("JVMTI_VERSION_1_2 %d\n", (int)JVMTI_VERSION_1_2);
  printf("JVMTI_ENABLE %d\n", (int)JVMTI_ENABLE);
  printf("JVMTI_EVENT_VM_INIT %d\n", (int)JVMTI_EVENT_VM_INIT);
  printf("JVMTI_EVENT_VM_DEATH %d\n", (int)JVMTI_EVENT_VM_DEATH);
  printf("JNI_VERSION_1_8 %d\n", (int)JNI_VERSION_1_8);
  printf("JNI_OK %d\n", (int)JNI_OK);
  printf("JNI_ERR %d\n", (int)JNI_ERR);
  return 0;
}
"#;

fn jdk_includes() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/jvm")
        .map(|rd| rd.flatten().map(|e| e.path().join("include")).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("jvmti.h").is_file() && !d.parent().is_some_and(|p| p.is_symlink()));
    dirs.sort();
    dirs
}

fn header_says(include: &Path, dir: &Path) -> Vec<(String, i64)> {
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, PROGRAM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(include.join("linux"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("a C compiler (cc) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn slots_and_constants_match_every_installed_jdk() {
    let includes = jdk_includes();
    assert!(
        !includes.is_empty(),
        "no JDK headers under /usr/lib/jvm/*/include"
    );
    let ours: Vec<(&str, i64)> = vec![
        ("GET_ENV", jvm::invoke::GET_ENV as i64),
        (
            "ATTACH_CURRENT_THREAD_AS_DAEMON",
            jvm::invoke::ATTACH_CURRENT_THREAD_AS_DAEMON as i64,
        ),
        ("FIND_CLASS", jvm::jni::FIND_CLASS as i64),
        ("EXCEPTION_OCCURRED", jvm::jni::EXCEPTION_OCCURRED as i64),
        ("EXCEPTION_CLEAR", jvm::jni::EXCEPTION_CLEAR as i64),
        ("PUSH_LOCAL_FRAME", jvm::jni::PUSH_LOCAL_FRAME as i64),
        ("POP_LOCAL_FRAME", jvm::jni::POP_LOCAL_FRAME as i64),
        ("NEW_OBJECT_A", jvm::jni::NEW_OBJECT_A as i64),
        ("GET_METHOD_ID", jvm::jni::GET_METHOD_ID as i64),
        (
            "CALL_OBJECT_METHOD_A",
            jvm::jni::CALL_OBJECT_METHOD_A as i64,
        ),
        (
            "GET_STATIC_METHOD_ID",
            jvm::jni::GET_STATIC_METHOD_ID as i64,
        ),
        (
            "CALL_STATIC_OBJECT_METHOD_A",
            jvm::jni::CALL_STATIC_OBJECT_METHOD_A as i64,
        ),
        ("NEW_STRING_UTF", jvm::jni::NEW_STRING_UTF as i64),
        (
            "GET_STRING_UTF_CHARS",
            jvm::jni::GET_STRING_UTF_CHARS as i64,
        ),
        (
            "RELEASE_STRING_UTF_CHARS",
            jvm::jni::RELEASE_STRING_UTF_CHARS as i64,
        ),
        ("NEW_OBJECT_ARRAY", jvm::jni::NEW_OBJECT_ARRAY as i64),
        (
            "SET_OBJECT_ARRAY_ELEMENT",
            jvm::jni::SET_OBJECT_ARRAY_ELEMENT as i64,
        ),
        ("GET_JAVA_VM", jvm::jni::GET_JAVA_VM as i64),
        ("EXCEPTION_CHECK", jvm::jni::EXCEPTION_CHECK as i64),
        (
            "SET_EVENT_NOTIFICATION_MODE",
            jvm::jvmti::SET_EVENT_NOTIFICATION_MODE as i64,
        ),
        ("DEALLOCATE", jvm::jvmti::DEALLOCATE as i64),
        (
            "SET_EVENT_CALLBACKS",
            jvm::jvmti::SET_EVENT_CALLBACKS as i64,
        ),
        (
            "GET_SYSTEM_PROPERTY",
            jvm::jvmti::GET_SYSTEM_PROPERTY as i64,
        ),
        ("CB_VM_INIT", jvm::callbacks::VM_INIT as i64),
        ("CB_VM_DEATH", jvm::callbacks::VM_DEATH as i64),
        ("JVMTI_VERSION_1_2", jvm::JVMTI_VERSION_1_2 as i64),
        ("JVMTI_ENABLE", jvm::JVMTI_ENABLE as i64),
        ("JVMTI_EVENT_VM_INIT", jvm::JVMTI_EVENT_VM_INIT as i64),
        ("JVMTI_EVENT_VM_DEATH", jvm::JVMTI_EVENT_VM_DEATH as i64),
        ("JNI_VERSION_1_8", jvm::JNI_VERSION_1_8 as i64),
        ("JNI_OK", jvm::JNI_OK as i64),
        ("JNI_ERR", jvm::JNI_ERR as i64),
    ];
    for include in includes {
        let dir = std::env::temp_dir().join(format!(
            "cqlready-layout-{}-{}",
            std::process::id(),
            include
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let theirs = header_says(&include, &dir);
        assert_eq!(theirs.len(), ours.len());
        for ((name, value), (their_name, their_value)) in ours.iter().zip(&theirs) {
            assert_eq!(name, their_name);
            assert_eq!(
                value,
                their_value,
                "{name} differs from {}",
                include.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
