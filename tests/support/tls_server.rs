//! Test certificates (a CA, a server and a client certificate, made with
//! rcgen) and a small CQL-over-TLS server on a free port: rustls on the
//! server side, answering `OPTIONS` with `SUPPORTED` as Cassandra does.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// PEM files in `dir`: `ca.pem`, `server.pem` + `server.key`, `client.pem` +
/// `client.key`, and `other-ca.pem` with the `stranger.pem`/`.key` it signed.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = make_ca("cqlready test CA");
        std::fs::write(dir.join("ca.pem"), ca.0.pem()).unwrap();
        let other = make_ca("some other CA");
        std::fs::write(dir.join("other-ca.pem"), other.0.pem()).unwrap();
        for (name, ee, issuer) in [
            ("server", "node1.cqlready.test", &ca.1),
            ("client", "cqlready-agent", &ca.1),
            ("stranger", "someone-else", &other.1),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![ee.to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, ee);
            let cert = params.signed_by(&key, issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn certs(&self, name: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(self.dir.join(name))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn key(&self, name: &str) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(self.dir.join(name)).unwrap()
    }
}

fn make_ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

/// What the server does after the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Answer OPTIONS with SUPPORTED.
    Cql,
    /// Answer anything with an HTTP error: TLS, but not CQL.
    NotCql,
    /// Answer one OPTIONS per connection, then close it.
    CqlOnce,
}

pub struct Server {
    pub port: u16,
    /// Connections whose handshake completed and that sent a request.
    pub handshakes: Arc<AtomicU64>,
    /// Requests answered, on any connection.
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Options of [`serve`].
pub struct ServerSpec<'a> {
    pub pki: &'a Pki,
    pub mode: Mode,
    /// Require a client certificate signed by the CA.
    pub client_auth: bool,
    /// Offer only TLS 1.2.
    pub tls12_only: bool,
}

pub fn serve(spec: ServerSpec<'_>) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if spec.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = if spec.client_auth {
        let mut roots = rustls::RootCertStore::empty();
        for c in spec.pki.certs("ca.pem") {
            roots.add(c).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    // A resolver rather than with_single_cert, which refuses certificates
    // it cannot parse (X.509 v1) that real servers do serve.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(spec.pki.key("server.key"))
        .unwrap();
    let key = Arc::new(rustls::sign::CertifiedKey::new(
        spec.pki.certs("server.pem"),
        signer,
    ));
    let config = Arc::new(builder.with_cert_resolver(Arc::new(Fixed(key))));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (stop2, mode) = (stop.clone(), spec.mode);
    let (count, asked) = (handshakes.clone(), requests.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            let Ok(tcp) = conn else { continue };
            let (config, count, asked) = (config.clone(), count.clone(), asked.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 64];
                // Like Cassandra: one answer per request, until the client goes.
                for n in 0u64.. {
                    let mut got = Vec::new();
                    while got.len() < 9 {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    if n == 0 {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    asked.fetch_add(1, Ordering::Relaxed);
                    let reply = match mode {
                        Mode::Cql | Mode::CqlOnce => {
                            supported(got[0] & 0x7f, i16::from_be_bytes([got[2], got[3]]))
                        }
                        Mode::NotCql => b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
                    };
                    let _ = tls.write_all(&reply);
                    let _ = tls.flush();
                    if mode != Mode::Cql {
                        tls.conn.send_close_notify();
                        let _ = tls.conn.complete_io(&mut tls.sock);
                        return;
                    }
                }
            });
        }
    });
    Server {
        port,
        handshakes,
        requests,
        stop,
    }
}

/// Always the same certificate and key.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A `SUPPORTED` frame for `version` on `stream`.
fn supported(version: u8, stream: i16) -> Vec<u8> {
    let mut body = 1u16.to_be_bytes().to_vec();
    for s in ["CQL_VERSION", "3.4.7"] {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
        if s == "CQL_VERSION" {
            body.extend_from_slice(&1u16.to_be_bytes());
        }
    }
    let mut f = vec![0x80 | version, 0];
    f.extend_from_slice(&stream.to_be_bytes());
    f.push(0x06);
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}
