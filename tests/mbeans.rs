//! The agent's JNI edge in real JVMs: MBean operations invoked with String
//! arguments, text that crosses in both directions intact, and class and
//! method lookups made once per JVM, not per check. The fixture's `invoke`,
//! `attribute` and `lookups` commands are native methods the agent's debug
//! build exports; the stand-in StorageService makes every check read MBeans.

mod common;

use common::*;

fn fixture(java: &std::path::Path) -> Jvm {
    let mut jvm = Jvm::builder(java)
        .opt("cassandra=on")
        .opt("log=debug")
        .spawn();
    jvm.send("mbeans");
    jvm.expect("mbeans registered", deadline());
    jvm
}

/// The fixture's answer to one command line.
fn ask(jvm: &mut Jvm, cmd: &str, answer: &str) -> String {
    jvm.send(cmd);
    let (_, line) = jvm.expect(answer, deadline());
    line[answer.len()..].trim_start().to_string()
}

const ECHO: &str = "cqlready.test:type=Echo";

#[test]
fn invoke_runs_operations_with_string_arguments() {
    for java in jvms() {
        let mut jvm = fixture(&java);
        let mut invoke = |args: &str| ask(&mut jvm, &format!("invoke {ECHO} {args}"), "invoked");
        assert_eq!(invoke("echo plain"), "ok:plain", "{}", java.display());
        // NUL and a supplementary character, there and back.
        assert_eq!(
            invoke("echo a%00b%F0%9F%98%80c"),
            r"ok:a\u0000b\uD83D\uDE00c",
            "{}",
            java.display()
        );
        assert_eq!(invoke("concat one two"), "ok:one|two");
        // The wrong number of arguments: refused by the MBean server.
        let wrong = invoke("echo");
        assert!(
            wrong.starts_with("err:echo: javax.management.ReflectionException"),
            "{wrong}"
        );
        // Results that are not Strings come through String.valueOf; null is none.
        assert_eq!(invoke("length %F0%9F%98%80"), "ok:2");
        assert_eq!(invoke("nothing x"), "none");
        // What the operation throws, the exception cleared and reported.
        let thrown = invoke("fail boom");
        assert!(
            thrown.starts_with("err:fail: javax.management.RuntimeMBeanException")
                && thrown.ends_with("java.lang.IllegalStateException: boom"),
            "{thrown}"
        );
        let absent = invoke("missing x");
        assert!(absent.contains("ReflectionException"), "{absent}");
        let no_object = ask(&mut jvm, "invoke cqlready.test:type=Nope echo x", "invoked");
        assert!(
            no_object.contains("InstanceNotFoundException"),
            "{no_object}"
        );
        let bad_name = ask(&mut jvm, "invoke not-a-name echo x", "invoked");
        assert!(
            bad_name.contains("MalformedObjectNameException"),
            "{bad_name}"
        );
        // The JVM goes on answering after every exception.
        assert_eq!(
            ask(&mut jvm, &format!("invoke {ECHO} echo still"), "invoked"),
            "ok:still"
        );
        assert_eq!(
            ask(&mut jvm, &format!("attribute {ECHO} Text"), "attribute"),
            r"ok:nul\u0000 smile\uD83D\uDE00 euro\u20AC",
            "{}",
            java.display()
        );
        jvm.close_stdin();
        assert!(jvm.wait_exit(deadline()).success(), "{}", jvm.describe());
    }
}

#[test]
fn checks_after_the_first_look_nothing_up() {
    for java in jvms() {
        let mut jvm = fixture(&java);
        let first = jvm.wait_status("Cassandra's view read", deadline(), |s| {
            s.pointer("/cassandra/mode").and_then(|m| m.as_str()) == Some("NORMAL")
        });
        let lookups: u64 = ask(&mut jvm, "lookups", "lookups").parse().unwrap();
        assert!(lookups > 0, "no lookups counted");
        let checks = json_u64(&first, "/checks/total");
        jvm.wait_status("five more checks", deadline(), |s| {
            json_u64(s, "/checks/total") >= checks + 5
        });
        let later: u64 = ask(&mut jvm, "lookups", "lookups").parse().unwrap();
        assert_eq!(
            later,
            lookups,
            "checks after the first looked classes up again ({})",
            java.display()
        );
        // An operation on the same JVM reuses them too.
        ask(&mut jvm, &format!("invoke {ECHO} echo x"), "invoked");
        let after_invoke: u64 = ask(&mut jvm, "lookups", "lookups").parse().unwrap();
        assert_eq!(after_invoke, lookups);
        let counted = jvm
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("JNI class/method lookups so far"))
            .count();
        assert_eq!(counted, 1, "{}", jvm.describe());
        jvm.close_stdin();
        assert!(jvm.wait_exit(deadline()).success(), "{}", jvm.describe());
    }
}
