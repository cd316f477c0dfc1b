//! CQL over TLS and mutual TLS against a rustls CQL server in this process:
//! the command's `probe --port --tls*`, and the agent in a real JVM with
//! `tls=on`, `tls_ca=`, `tls_cert=`/`tls_key=`, or TLS found in
//! cassandra.yaml. (`tests/cassandra.rs` does the same against real
//! Cassandra.)

mod common;
#[path = "support/tls_server.rs"]
mod tls_server;

use common::*;
use serde_json::Value;
use std::process::Command;
use tls_server::{serve, Mode, Pki, ServerSpec};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cqlready"))
}

/// `cqlready probe --port P ARGS`: (exit code, stdout + stderr).
fn probe(port: u16, args: &[&str]) -> (i32, String) {
    let out = cli()
        .args(["probe", "--port", &port.to_string(), "--timeout", "5s"])
        .args(args)
        .output()
        .expect("run cqlready");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn spec(pki: &Pki, mode: Mode, client_auth: bool, tls12_only: bool) -> ServerSpec<'_> {
    ServerSpec {
        pki,
        mode,
        client_auth,
        tls12_only,
    }
}

#[test]
fn the_command_probes_cql_over_tls() {
    let dir = TempDir::new("tls-cli");
    let pki = Pki::new(dir.path());
    let ca = pki.path("ca.pem");
    for tls12_only in [false, true] {
        let server = serve(spec(&pki, Mode::Cql, false, tls12_only));
        let (code, out) = probe(server.port, &["--tls"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("ready: CQL over TLS v5"), "{out}");
        let (code, out) = probe(server.port, &["--tls", "--tls-ca", &ca]);
        assert_eq!(code, 0, "verified against the right CA: {out}");
        let (code, out) = probe(
            server.port,
            &["--tls", "--tls-ca", &pki.path("other-ca.pem")],
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("does not chain to a CA in tls_ca"), "{out}");
        // Plaintext against a TLS-only port: not ready.
        let (code, out) = probe(server.port, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(server.handshakes.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    }
}

#[test]
fn the_command_and_mutual_tls() {
    let dir = TempDir::new("tls-mtls");
    let pki = Pki::new(dir.path());
    for tls12_only in [false, true] {
        let server = serve(spec(&pki, Mode::Cql, true, tls12_only));
        let (code, out) = probe(server.port, &["--tls"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("CQL serving TLS, client certificate required"),
            "TLS 1.2 only: {tls12_only}: {out}"
        );
        let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
        let args = [
            "--tls",
            "--tls-ca",
            &pki.path("ca.pem"),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let (code, out) = probe(server.port, &args);
        assert_eq!(code, 0, "with the client certificate: {out}");
        // A certificate the server's CA did not sign is refused.
        let args = [
            "--tls",
            "--tls-cert",
            &pki.path("stranger.pem"),
            "--tls-key",
            &pki.path("stranger.key"),
        ];
        let (code, out) = probe(server.port, &args);
        assert_eq!(code, 1, "{out}");
    }
}

#[test]
fn tls_mismatches_are_named() {
    let dir = TempDir::new("tls-bad");
    let pki = Pki::new(dir.path());
    // A plaintext listener that is not TLS: the handshake fails, named.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in plain.incoming().flatten() {
            use std::io::Write;
            let mut c = c;
            let _ = c.write_all(b"\x84\x00\x00\x00\x00\x00\x00\x00\x00");
        }
    });
    let (code, out) = probe(port, &["--tls"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the server did not speak TLS"), "{out}");
    // TLS, but not CQL behind it.
    let server = serve(spec(&pki, Mode::NotCql, false, false));
    let (code, out) = probe(server.port, &["--tls"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a CQL response"), "{out}");
    // Bad PEM files and half an identity are usage errors.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.display().to_string();
    for args in [
        vec!["--tls", "--tls-ca", junk.as_str()],
        vec!["--tls", "--tls-ca", "/nonexistent/ca.pem"],
        vec![
            "--tls",
            "--tls-cert",
            junk.as_str(),
            "--tls-key",
            junk.as_str(),
        ],
    ] {
        let (code, out) = probe(server.port, &args);
        assert_eq!(code, 64, "{args:?}: {out}");
        assert!(out.contains("--tls-"), "{args:?}: {out}");
    }
    let (code, out) = probe(
        server.port,
        &["--tls", "--tls-cert", &pki.path("client.pem")],
    );
    assert_eq!(code, 64, "{out}");
}

/// A JVM with the agent pointed at `port`.
fn agent(java: &std::path::Path, n: &NotifySocket, port: u16, extra: &[String]) -> Jvm {
    let mut b = Jvm::builder(java)
        .notify(n)
        .opt(format!("port={port}"))
        .opt("interval=20ms")
        .opt("cassandra=off");
    for e in extra {
        b = b.opt(e.clone());
    }
    b.spawn()
}

#[test]
fn the_agent_speaks_tls_and_says_so() {
    let dir = TempDir::new("tls-agent");
    let pki = Pki::new(dir.path());
    let server = serve(spec(&pki, Mode::Cql, false, false));
    let counts = || {
        use std::sync::atomic::Ordering::Relaxed;
        (
            server.handshakes.load(Relaxed),
            server.requests.load(Relaxed),
        )
    };
    for (i, java) in jvms().iter().enumerate() {
        // A kept connection (tls_keep=1h) on every JVM, then on the first
        // a new connection every check (tls_keep=0s).
        for keep in ["1h", "0s"].into_iter().take(if i == 0 { 2 } else { 1 }) {
            let before = counts();
            let n = NotifySocket::new();
            let mut jvm = agent(
                java,
                &n,
                server.port,
                &[
                    "tls=on".into(),
                    format!("tls_ca={}", pki.path("ca.pem")),
                    "check=100ms".into(),
                    format!("tls_keep={keep}"),
                ],
            );
            let pid = jvm.pid as i32;
            let ready = n.wait_msg("READY=1", deadline(), |m| {
                m.pid == pid && m.has_line("READY=1")
            });
            assert!(
                ready.has_line_starting(&format!(
                    "STATUS=CQL over TLS ready on 127.0.0.1:{}",
                    server.port
                )),
                "{}",
                n.describe()
            );
            let s = jvm.wait_status("TLS reached SUPPORTED", deadline(), |s| {
                s.pointer("/cql/tls/reached").and_then(Value::as_str) == Some("SUPPORTED over TLS")
            });
            assert_eq!(json_str(&s, "/cql/tls/why"), "option");
            assert_eq!(json_str(&s, "/cql/tls/ca"), pki.path("ca.pem"));
            assert_eq!(s["cql"]["tls"]["client_cert"], false);
            let s = if keep == "1h" {
                // Checks after the first ride on its connection: one handshake.
                jvm.wait_status("five checks on a kept connection", deadline(), |s| {
                    s.pointer("/cql/tls/kept").and_then(Value::as_bool) == Some(true)
                        && counts().1 - before.1 >= 5
                })
            } else {
                // A new connection every check; with one TLS client
                // configuration kept, later handshakes resume the session.
                jvm.wait_status("a resumed TLS session", deadline(), |s| {
                    s.pointer("/cql/tls/resumed").and_then(Value::as_bool) == Some(true)
                })
            };
            let out = cli()
                .args(["status", "--socket"])
                .arg(jvm.socket())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!(
                    "TLS      from option, certificate verified against {}",
                    pki.path("ca.pem")
                )),
                "{text}"
            );
            jvm.exit(0);
            let (handshakes, requests) = (counts().0 - before.0, counts().1 - before.1);
            if keep == "1h" {
                assert_eq!(handshakes, 1, "{requests} checks: {s}");
                assert!(
                    text.contains("SUPPORTED over TLS on a kept connection"),
                    "{text}"
                );
            } else {
                assert_eq!(handshakes, requests, "one handshake per check: {s}");
                assert_eq!(s["cql"]["tls"]["kept"], false, "{s}");
                assert!(text.contains("(handshake resumed a session)"), "{text}");
            }
        }
    }
}

/// A server that closes each connection after one answer: the check on the
/// kept connection finds it closed and opens a new one at once, so no check
/// fails.
#[test]
fn a_kept_connection_that_the_server_closed_is_replaced_at_once() {
    let dir = TempDir::new("tls-closed");
    let pki = Pki::new(dir.path());
    let server = serve(spec(&pki, Mode::CqlOnce, false, false));
    let n = NotifySocket::new();
    let mut jvm = agent(
        &jvms()[0],
        &n,
        server.port,
        &["tls=on".into(), "check=50ms".into(), "tls_keep=1h".into()],
    );
    let s = jvm.wait_status("ten checks", deadline(), |s| {
        s.pointer("/checks/ok").and_then(Value::as_u64) >= Some(10)
    });
    assert_eq!(s["checks"]["failed"], 0, "{s}");
    assert_eq!(s["state"], "ready", "{s}");
    assert_eq!(s["cql"]["tls"]["kept"], false, "{s}");
    let handshakes = server.handshakes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(handshakes >= 10, "{handshakes} handshakes: {s}");
    jvm.exit(0);
}

#[test]
fn the_agent_finds_tls_in_cassandra_yaml() {
    let dir = TempDir::new("tls-yaml");
    let pki = Pki::new(dir.path());
    let server = serve(spec(&pki, Mode::Cql, false, false));
    let yaml = dir.join("cassandra.yaml");
    std::fs::write(
        &yaml,
        format!(
            "native_transport_port: {}\nclient_encryption_options:\n  enabled: true\n  optional: false\n  \
             keystore: /etc/cassandra/keystore.jks\n  keystore_password: secret\n  accepted_protocols: [TLSv1.2, TLSv1.3]\n",
            server.port
        ),
    )
    .unwrap();
    let java = &jvms()[0];
    let n = NotifySocket::new();
    let mut jvm = Jvm::builder(java)
        .notify(&n)
        .arg(format!("-Dcassandra.config=file://{}", yaml.display()))
        .opt("interval=20ms")
        .opt("cassandra=off")
        .spawn();
    let pid = jvm.pid as i32;
    n.wait_msg("READY=1", deadline(), |m| {
        m.pid == pid && m.has_line("READY=1")
    });
    let s = jvm.status();
    assert_eq!(json_str(&s, "/cql/source"), "yaml");
    assert_eq!(
        json_str(&s, "/cql/tls/why"),
        "client_encryption_options enabled"
    );
    assert_eq!(s["cql"]["tls"]["ca"], Value::Null);
    jvm.exit(0);
}

#[test]
fn the_agent_and_a_server_that_wants_a_client_certificate() {
    let dir = TempDir::new("tls-agent-mtls");
    let pki = Pki::new(dir.path());
    let server = serve(spec(&pki, Mode::Cql, true, false));
    let java = &jvms()[0];
    // Without Cassandra's view: never ready, and the reason names tls_cert.
    let n = NotifySocket::new();
    let mut jvm = agent(java, &n, server.port, &["tls=on".into()]);
    let s = jvm.wait_status("the client-certificate refusal", deadline(), |s| {
        s.pointer("/last_check/error")
            .and_then(Value::as_str)
            .is_some_and(|e| e.contains("client certificate required") && e.contains("tls_cert"))
    });
    assert_eq!(json_str(&s, "/state"), "starting");
    assert_eq!(
        json_str(&s, "/cql/tls/reached"),
        "TLS handshake; client certificate required"
    );
    assert_eq!(n.count(|m| m.has_line("READY=1")), 0, "{}", n.describe());
    jvm.exit(0);
    // With the client certificate: ready, all the way to SUPPORTED.
    let n = NotifySocket::new();
    let mut jvm = agent(
        java,
        &n,
        server.port,
        &[
            "tls=on".into(),
            format!("tls_ca={}", pki.path("ca.pem")),
            format!("tls_cert={}", pki.path("client.pem")),
            format!("tls_key={}", pki.path("client.key")),
        ],
    );
    let pid = jvm.pid as i32;
    n.wait_msg("READY=1", deadline(), |m| {
        m.pid == pid && m.has_line("READY=1")
    });
    let s = jvm.wait_status("reached SUPPORTED", deadline(), |s| {
        s.pointer("/cql/tls/reached").and_then(Value::as_str) == Some("SUPPORTED over TLS")
    });
    assert_eq!(s["cql"]["tls"]["client_cert"], true);
    jvm.exit(0);
}

#[test]
fn never_ready_when_tls_does_not_fit() {
    let dir = TempDir::new("tls-never");
    let pki = Pki::new(dir.path());
    let java = &jvms()[0];
    let tls = serve(spec(&pki, Mode::Cql, false, false));
    let not_cql = serve(spec(&pki, Mode::NotCql, false, false));
    // A plaintext CQL listener (the fixture's own) with tls=on.
    let plain_port = free_port();
    let cases: Vec<(u16, Vec<String>, &str)> = vec![
        (
            tls.port,
            vec![
                "tls=on".into(),
                format!("tls_ca={}", pki.path("other-ca.pem")),
            ],
            "does not chain to a CA in tls_ca",
        ),
        (not_cql.port, vec!["tls=on".into()], "not a CQL response"),
        (plain_port, vec!["tls=on".into()], "did not speak TLS"),
    ];
    for (port, opts, why) in cases {
        let n = NotifySocket::new();
        let mut jvm = agent(java, &n, port, &opts);
        if port == plain_port {
            jvm.listen(port, "cql");
        }
        let s = jvm.wait_status(why, deadline(), |s| {
            s.pointer("/checks/failed").and_then(Value::as_u64) >= Some(3)
                && s.pointer("/last_check/error")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.contains(why))
        });
        assert_eq!(json_str(&s, "/state"), "starting", "{s}");
        assert_eq!(
            n.count(|m| m.has_line("READY=1")),
            0,
            "{why}: {}",
            n.describe()
        );
        // The reason is logged once, not once per check.
        let lines = jvm.stderr_lines();
        let named = lines.iter().filter(|l| l.contains(why)).count();
        assert!(
            named <= 1,
            "{why} logged {named} times:\n{}",
            lines.join("\n")
        );
        jvm.exit(0);
    }
}

#[test]
fn bad_pem_options_stop_the_jvm_naming_option_and_file() {
    let dir = TempDir::new("tls-pem");
    let pki = Pki::new(dir.path());
    let junk = dir.join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let junk = junk.display().to_string();
    let java = &jvms()[0];
    for (opts, key, file) in [
        (format!("tls=on,tls_ca={junk}"), "tls_ca", junk.clone()),
        (
            "tls=on,tls_ca=/nonexistent/ca.pem".to_string(),
            "tls_ca",
            "/nonexistent/ca.pem".into(),
        ),
        (
            format!("tls=on,tls_cert={},tls_key={junk}", pki.path("client.pem")),
            "tls_key",
            junk.clone(),
        ),
        (
            format!("tls=on,tls_cert={}", pki.path("client.pem")),
            "tls_key",
            String::new(),
        ),
    ] {
        let mut jvm = Jvm::builder(java).raw_opts(opts.clone()).spawn();
        let status = jvm.wait_exit(deadline());
        assert!(
            !status.success(),
            "{opts}: the JVM started\n{}",
            jvm.describe()
        );
        let lines = jvm.stderr_lines();
        let named: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("cqlready") && l.contains(key) && l.contains(&file))
            .collect();
        assert_eq!(
            named.len(),
            1,
            "{opts}: one line naming {key} and {file}\n{}",
            jvm.describe()
        );
    }
}

/// A server certificate as `openssl x509 -req` makes it without
/// extensions: X.509 v1, which Cassandra serves happily. Without `tls_ca`
/// the check takes it; with `tls_ca` it cannot be verified and says why.
#[test]
fn an_x509_v1_certificate_is_fine_without_tls_ca() {
    let dir = TempDir::new("tls-v1");
    let d = dir.path();
    let ossl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output();
        let out = out.unwrap_or_else(|e| panic!("openssl (apt-get install openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    ossl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=v1 CA"],
        ]
        .concat(),
    );
    ossl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=node",
            ],
        ]
        .concat(),
    );
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
    ]);
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(d.join("server.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"));
    let pki = Pki {
        dir: d.to_path_buf(),
    };
    let server = serve(spec(&pki, Mode::Cql, false, false));
    let (code, out) = probe(server.port, &["--tls"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = probe(server.port, &["--tls", "--tls-ca", &pki.path("ca.pem")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not X.509 v3"), "{out}");
}
