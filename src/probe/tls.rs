//! CQL over TLS: the handshake around the `OPTIONS` → `SUPPORTED` check.
//!
//! When Cassandra requires TLS on the native port (`client_encryption_options`
//! with `enabled: true` and not `optional`), every check is a TLS handshake
//! followed by `OPTIONS` inside it. rustls does the TLS, with *ring* as its
//! crypto provider.
//!
//! What is verified:
//! - with `tls_ca=PATH`, the server's certificate must chain to a CA in that
//!   PEM file; its name is not checked, because the agent connects to its own
//!   node's address, which node certificates rarely name;
//! - without it, the certificate is not verified (the agent talks to the
//!   process it runs in), nor the handshake's signature made with its key.
//!
//! With `require_client_auth: true` the agent presents `tls_cert`/`tls_key`
//! when given. Without them, a server that completes its half of the
//! handshake and then asks for a client certificate is
//! [`ProbeError::ClientCertRequired`](crate::probe::ProbeError): CQL is served
//! over TLS, the check just cannot go further.

use crate::probe::ProbeError;
use crate::status::model::Tls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct};
use rustls::{HandshakeKind, RootCertStore, SignatureScheme};
use std::fmt;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// PEM files are a few KiB; refuse to read anything absurd.
const MAX_PEM: u64 = 1024 * 1024;

/// Certificates read from a PEM file (DER, in file order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certs {
    pub path: PathBuf,
    pub der: Vec<Vec<u8>>,
}

/// A private key read from a PEM file (PKCS#8, PKCS#1 or SEC1). Its bytes
/// never reach `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub path: PathBuf,
    der: Vec<u8>,
    kind: u8,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.path.display())
    }
}

fn read_pem(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if path.is_empty() {
        return Err("a path to a PEM file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(format!("{path} is larger than {MAX_PEM} bytes"));
    }
    Ok(bytes)
}

/// Reads the certificates of a PEM file: at least one, all well-formed.
pub fn read_certs(path: &str) -> Result<Certs, String> {
    let bytes = read_pem(path)?;
    let der = parse_certs(&bytes).map_err(|e| format!("{path}: {e}"))?;
    Ok(Certs {
        path: PathBuf::from(path),
        der,
    })
}

/// The certificates in PEM text; an error for none or a malformed one.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut der = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("malformed PEM ({e})"))?;
        // The certificate itself must parse, not just its base64.
        webpki_check(&cert)?;
        der.push(cert.as_ref().to_vec());
    }
    if der.is_empty() {
        return Err("no CERTIFICATE in the PEM file".into());
    }
    Ok(der)
}

fn webpki_check(cert: &CertificateDer<'_>) -> Result<(), String> {
    // An end-entity parse is the strictest check rustls offers without a
    // trust anchor; CA certificates parse the same way.
    rustls::server::ParsedCertificate::try_from(cert)
        .map(|_| ())
        .map_err(|e| format!("not an X.509 certificate ({e})"))
}

/// Reads a private key from a PEM file.
pub fn read_key(path: &str) -> Result<Key, String> {
    let bytes = read_pem(path)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{path}: no usable PRIVATE KEY ({e})"))?;
    // The provider must be able to sign with it.
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("{path}: unusable private key ({e})"))?;
    let kind = match key {
        PrivateKeyDer::Pkcs1(_) => 1,
        PrivateKeyDer::Sec1(_) => 2,
        _ => 8,
    };
    Ok(Key {
        path: PathBuf::from(path),
        der: key.secret_der().to_vec(),
        kind,
    })
}

impl Key {
    fn to_der(&self) -> PrivateKeyDer<'static> {
        let der = self.der.clone();
        match self.kind {
            1 => PrivateKeyDer::Pkcs1(der.into()),
            2 => PrivateKeyDer::Sec1(der.into()),
            _ => PrivateKeyDer::Pkcs8(der.into()),
        }
    }
}

/// What the probe needs to speak TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Verify the server's certificate against these CAs.
    pub ca: Option<Certs>,
    /// Present this certificate chain and key when the server asks.
    pub identity: Option<(Certs, Key)>,
    /// `accepted_protocols`/`protocol` from the yaml ("TLSv1.2", ...);
    /// empty means TLS 1.2 and 1.3.
    pub protocols: Vec<String>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client configuration, built once and used for every check (so
/// later handshakes can resume the session).
pub struct Client {
    config: Arc<ClientConfig>,
    /// Set when the server asks for a client certificate.
    asked: Arc<AtomicBool>,
    /// How the last completed handshake went: 0 none yet, 1 full, 2 resumed.
    handshake: AtomicU8,
    has_identity: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("has_identity", &self.has_identity)
            .finish()
    }
}

/// The TLS versions to offer: those of `protocols` rustls speaks (1.2, 1.3).
fn versions(
    protocols: &[String],
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    if protocols.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let (mut v13, mut v12) = (false, false);
    for p in protocols {
        match p.trim() {
            "TLSv1.3" => v13 = true,
            "TLSv1.2" => v12 = true,
            // Java's "TLS" means the JVM's defaults, which include 1.2 and 1.3.
            "TLS" => (v13, v12) = (true, true),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if v13 {
        out.push(&rustls::version::TLS13);
    }
    if v12 {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err(format!(
            "Cassandra accepts only {}; the check speaks TLSv1.2 and TLSv1.3",
            crate::text::sanitize(&protocols.join(", "))
        ));
    }
    Ok(out)
}

impl Client {
    pub fn new(settings: &Settings) -> Result<Client, String> {
        let provider = provider();
        let asked = Arc::new(AtomicBool::new(false));
        let verifier: Arc<dyn ServerCertVerifier> = match &settings.ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for der in &ca.der {
                    roots
                        .add(CertificateDer::from(der.clone()))
                        .map_err(|e| format!("{}: {e}", ca.path.display()))?;
                }
                let inner =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("{}: {e}", ca.path.display()))?;
                Arc::new(ChainOnly(inner))
            }
            None => Arc::new(Unverified(provider.clone())),
        };
        let identity = match &settings.identity {
            Some((certs, key)) => {
                let signer = provider
                    .key_provider
                    .load_private_key(key.to_der())
                    .map_err(|e| format!("{}: {e}", key.path.display()))?;
                let chain = certs
                    .der
                    .iter()
                    .map(|d| CertificateDer::from(d.clone()))
                    .collect();
                Some(Arc::new(CertifiedKey::new(chain, signer)))
            }
            None => None,
        };
        let has_identity = identity.is_some();
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions(&settings.protocols)?)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(Identity {
                key: identity,
                asked: asked.clone(),
            }));
        Ok(Client {
            config: Arc::new(config),
            asked,
            handshake: AtomicU8::new(0),
            has_identity,
        })
    }

    /// Starts a TLS session on `tcp` and completes the handshake by
    /// `deadline`.
    pub fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        deadline: Instant,
    ) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>, ProbeError> {
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .map_err(|_| ProbeError::Tls(format!("{host} is not a valid TLS server name")))?,
        };
        self.asked.store(false, Ordering::Relaxed);
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| ProbeError::Tls(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            let left = crate::probe::remaining(deadline, "in the TLS handshake")?;
            let _ = stream.sock.set_read_timeout(Some(left));
            let _ = stream.sock.set_write_timeout(Some(left));
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                return Err(self.error(e, "in the TLS handshake"));
            }
        }
        let kind = match stream.conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => 2,
            _ => 1,
        };
        self.handshake.store(kind, Ordering::Relaxed);
        Ok(stream)
    }

    /// Whether the last completed handshake resumed an earlier session
    /// (no certificate sent or signed with; Cassandra still does the key
    /// exchange); `None` before the first.
    pub fn last_resumed(&self) -> Option<bool> {
        match self.handshake.load(Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// Whether the server asked for a client certificate that the check
    /// could not give.
    fn refused_for_certificate(&self) -> bool {
        self.asked.load(Ordering::Relaxed) && !self.has_identity
    }

    /// What an I/O error on a TLS stream means, at `stage`.
    pub fn error(&self, e: std::io::Error, stage: &'static str) -> ProbeError {
        let tls = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::InvalidCertificate(c)) => {
                ProbeError::Tls(format!("the server's certificate {}", certificate_error(c)))
            }
            Some(
                rustls::Error::InvalidMessage(_)
                | rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. },
            ) if stage == "in the TLS handshake" => {
                ProbeError::NotTls(tls.map(ToString::to_string).unwrap_or_default())
            }
            _ if self.refused_for_certificate() => ProbeError::ClientCertRequired,
            Some(other) => ProbeError::Tls(other.to_string()),
            None => match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    ProbeError::Timeout(stage)
                }
                std::io::ErrorKind::UnexpectedEof if stage == "in the TLS handshake" => {
                    ProbeError::NotTls("the connection closed during the handshake".into())
                }
                _ => ProbeError::Io(e.to_string()),
            },
        }
    }

    /// A connection that ended after the handshake without a CQL answer.
    pub fn closed(&self) -> ProbeError {
        if self.refused_for_certificate() {
            ProbeError::ClientCertRequired
        } else {
            ProbeError::Closed
        }
    }
}

fn certificate_error(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => {
            "does not chain to a CA in tls_ca (unknown issuer)".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "has expired".into(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet".into()
        }
        CertificateError::Other(o) if format!("{o:?}").contains("UnsupportedCertVersion") => {
            "is not X.509 v3, so it cannot be verified against tls_ca (reissue it as v3, or drop tls_ca)"
                .into()
        }
        other => format!("did not verify: {other:?}"),
    }
}

/// Verifies the chain against `tls_ca` but not the name (see the module docs).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name, so a name error means the
        // chain verified.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate and any handshake signature: without `tls_ca`
/// the server is not authenticated, so checking that it holds the key of a
/// certificate nobody vouches for proves nothing, and parsing that
/// certificate would refuse ones Cassandra serves happily (X.509 v1 from
/// `openssl x509 -req`, unusual key types).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client certificate, if any; records that the server asked for one.
#[derive(Debug)]
struct Identity {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }
    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// The TLS side of the check, decided once from `tls=` (or the command's
/// `--tls`) and cassandra.yaml: the agent and the command share it.
pub struct Choice {
    /// `None`: plaintext.
    pub client: Option<Client>,
    /// For `/status`.
    pub info: Option<Tls>,
    /// What the STATUS= lines call the check: "CQL", "CQL over TLS", ...
    pub subject: String,
    /// One line each, for the log.
    pub warnings: Vec<String>,
}

/// What the server asks of a TLS client, as its configuration says: the
/// versions it accepts (empty: any) and whether it requires a client
/// certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Server {
    pub protocols: Vec<String>,
    pub client_auth: bool,
}

/// Decides whether and how to speak TLS. `yaml` is the yaml's verdict for
/// the probed port and where it comes from; `server` what the yaml asks of
/// clients, when it says.
pub fn choose(
    mode: crate::text::Toggle,
    yaml: (bool, &'static str),
    server: Option<&Server>,
    ca: Option<&Certs>,
    identity: Option<(&Certs, &Key)>,
) -> Choice {
    use crate::text::Toggle;
    let (on, why) = match mode {
        Toggle::On => (true, "option"),
        Toggle::Off => (false, "option"),
        Toggle::Auto => yaml,
    };
    let mut warnings = Vec::new();
    if !on {
        return Choice {
            client: None,
            info: None,
            subject: "CQL".into(),
            warnings,
        };
    }
    let client = client_for(
        Settings {
            ca: ca.cloned(),
            identity: identity.map(|(c, k)| (c.clone(), k.clone())),
            protocols: server.map(|e| e.protocols.clone()).unwrap_or_default(),
        },
        &mut warnings,
    );
    let client_auth = server.is_some_and(|e| e.client_auth);
    let subject = if client_auth && identity.is_none() {
        warnings.push(
            "Cassandra requires client certificates (require_client_auth) and no tls_cert is given: \
             the check goes as far as the TLS handshake and relies on Cassandra's own view"
                .into(),
        );
        "CQL over TLS (handshake only: client certificate required)"
    } else {
        "CQL over TLS"
    };
    Choice {
        client,
        info: Some(Tls {
            why: why.into(),
            ca: ca.map(|c| c.path.display().to_string()),
            client_cert: identity.is_some(),
            reached: None,
            resumed: None,
            kept: false,
        }),
        subject: subject.into(),
        warnings,
    }
}

/// The client for `settings`; when the server's protocol list cannot be
/// offered, one offering TLS 1.2 and 1.3; `None` (with a warning) when not
/// even that can be set up.
fn client_for(mut settings: Settings, warnings: &mut Vec<String>) -> Option<Client> {
    match Client::new(&settings) {
        Ok(c) => Some(c),
        Err(e) => {
            warnings.push(format!("{e}; offering TLSv1.2 and TLSv1.3 anyway"));
            settings.protocols.clear();
            match Client::new(&settings) {
                Ok(c) => Some(c),
                Err(e) => {
                    warnings.push(format!("cannot set up TLS: {e}; CQL will not be checked"));
                    None
                }
            }
        }
    }
}

/// Feeds `bytes` to a fresh client session as if a server had sent them:
/// what the probe does with whatever comes back. For the fuzzer and tests.
pub fn feed_server_bytes(bytes: &[u8]) -> Result<(), String> {
    let client = Client::new(&Settings::default())?;
    let mut conn = ClientConnection::new(
        client.config.clone(),
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
    .map_err(|e| e.to_string())?;
    let mut sink = Vec::new();
    let _ = conn.write_tls(&mut sink);
    let mut rest = bytes;
    while !rest.is_empty() {
        match conn.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {
                conn.process_new_packets().map_err(|e| e.to_string())?;
                sink.clear();
                let _ = conn.write_tls(&mut sink);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_yaml() {
        assert_eq!(versions(&[]).unwrap().len(), 2);
        let v = versions(&["TLSv1.2".into()]).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version, rustls::ProtocolVersion::TLSv1_2);
        assert_eq!(
            versions(&["TLS".into(), "TLSv1.3".into()]).unwrap().len(),
            2
        );
        let e = versions(&["TLSv1.1".into(), "TLSv1".into()]).unwrap_err();
        assert!(e.contains("TLSv1.1, TLSv1"), "{e}");
    }

    #[test]
    fn bad_pem_is_named() {
        assert!(parse_certs(b"").unwrap_err().contains("no CERTIFICATE"));
        let garbage = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(parse_certs(garbage).is_err());
        let not_x509 = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(parse_certs(not_x509).unwrap_err().contains("X.509"));
        let e = read_certs("/nonexistent/ca.pem").unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = read_key("/nonexistent/key.pem").unwrap_err();
        assert!(e.contains("/nonexistent/key.pem"), "{e}");
    }

    #[test]
    fn garbage_from_a_server_is_an_error_not_a_panic() {
        assert!(feed_server_bytes(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
        assert!(feed_server_bytes(&[0x84, 0, 0, 0x2a, 6, 0, 0, 0, 0]).is_err());
        assert!(feed_server_bytes(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0]).is_err());
    }
}
