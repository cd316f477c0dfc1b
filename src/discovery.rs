//! The CQL address as Cassandra sees it, when the options do not give it.
//!
//! Port: `-Dcassandra.native_transport_port`, else `native_transport_port`
//! in the cassandra.yaml Cassandra loads, else 9042. Host: `rpc_address` from
//! that yaml when it is a concrete address, else 127.0.0.1. Cassandra loads
//! the yaml named by `-Dcassandra.config` (a `file:` URL or a path), else
//! `cassandra.yaml` from its classpath (the package scripts put `conf/` there).
//! A missing or broken yaml is a warning, never a failure.

use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PORT: u16 = 9042;
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// A cassandra.yaml is tens of KiB; refuse to read anything absurd.
const MAX_YAML: u64 = 4 * 1024 * 1024;

/// Where a value came from, as shown in `/status` and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Option,
    Property,
    Yaml,
    /// `rpc_interface`'s address.
    Interface,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Option => "option",
            Source::Property => "property",
            Source::Yaml => "yaml",
            Source::Interface => "interface",
            Source::Default => "default",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub host_source: Source,
    pub port: u16,
    pub port_source: Source,
    /// The yaml that was read, if any.
    pub yaml: Option<PathBuf>,
    /// Whether the yaml makes the port TLS-only, and why.
    pub tls: (bool, &'static str),
    /// The yaml's `client_encryption_options`, when present.
    pub encryption: Option<ClientEncryption>,
    /// Warnings met on the way, one line each.
    pub warnings: Vec<String>,
}

/// What the yaml says that matters here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct YamlView {
    pub native_transport_port: Option<u16>,
    /// Cassandra 4.x's separate encrypted port, beside a plaintext
    /// `native_transport_port`.
    pub native_transport_port_ssl: Option<u16>,
    /// `rpc_address` when it names one address (not 0.0.0.0 or ::).
    pub rpc_address: Option<String>,
    pub rpc_interface: Option<String>,
    pub rpc_interface_prefer_ipv6: Option<bool>,
    pub start_native_transport: Option<bool>,
    pub client_encryption: Option<ClientEncryption>,
}

/// `client_encryption_options`, as far as the check cares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientEncryption {
    pub enabled: Option<bool>,
    pub optional: Option<bool>,
    /// `true`, `false` or (5.0) `optional`.
    pub require_client_auth: Option<String>,
    pub protocol: Option<String>,
    pub accepted_protocols: Vec<String>,
}

/// Deeper than any cassandra.yaml nests (seed_provider is 4 levels).
const MAX_DEPTH: usize = 64;

/// Where the walk is below the top level.
#[derive(Default)]
struct Section {
    /// Inside `client_encryption_options` (depth 2).
    encryption: bool,
    at_key: bool,
    wanted: Option<String>,
    /// Inside its `accepted_protocols` list (depth 3).
    protocols: bool,
}

/// Reads the settings from cassandra.yaml text.
///
/// Only the first document's top-level scalars and the scalars of
/// `client_encryption_options` matter, so this walks the parser's events
/// instead of building the document: nothing recurses per nesting level (a
/// deep yaml is refused at `MAX_DEPTH`), and aliases are never expanded (an
/// alias where a wanted value should be is refused).
pub fn parse_yaml(text: &str) -> Result<YamlView, String> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut walk = Walk::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| e.to_string())?;
        let node = match event {
            Event::StreamEnd | Event::DocumentEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart => continue,
            Event::MappingStart(..) if walk.depth == 0 => {
                walk.depth = 1;
                continue;
            }
            Event::SequenceStart(..) if walk.depth == 0 => {
                return Err("the top level is not a mapping".into())
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                walk.open(matches!(event, Event::MappingStart(..)), mark.line())?;
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if walk.close() {
                    break;
                }
                continue;
            }
            Event::Scalar(s, style, ..) => Value::Scalar(s, style),
            Event::Alias(_) => Value::Alias,
        };
        if walk.node(node)? {
            break;
        }
    }
    Ok(walk.view)
}

/// Where [`parse_yaml`] is in the event stream, and what it found so far.
#[derive(Default)]
struct Walk {
    view: YamlView,
    /// Nesting of the next event: 0 outside the top-level mapping, 1 inside it.
    depth: usize,
    /// At depth 1, whether the next node is a value (not a key), and the
    /// wanted key whose value comes next.
    at_value: bool,
    wanted: Option<String>,
    section: Section,
}

impl Walk {
    /// A mapping or sequence starts below the top level.
    fn open(&mut self, mapping: bool, line: usize) -> Result<(), String> {
        if self.depth == 1 {
            if self.at_value {
                match self.wanted.take() {
                    Some(key) if key == "client_encryption_options" && mapping => {
                        self.section = Section {
                            encryption: true,
                            at_key: true,
                            ..Section::default()
                        };
                        self.view
                            .client_encryption
                            .get_or_insert_with(Default::default);
                    }
                    Some(key) => self.view.set(&key, Value::Collection)?,
                    None => {}
                }
            }
            self.wanted = None;
        } else if self.depth == 2 && self.section.encryption && !self.section.at_key {
            self.section.protocols =
                !mapping && self.section.wanted.as_deref() == Some("accepted_protocols");
            self.section.wanted = None;
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "nested more than {MAX_DEPTH} levels deep (line {line})"
            ));
        }
        Ok(())
    }

    /// A mapping or sequence ends; `true` when it was the top level.
    fn close(&mut self) -> bool {
        self.depth = self.depth.saturating_sub(1);
        match self.depth {
            0 => return true,
            // A whole collection key or value ended.
            1 => {
                self.at_value = !self.at_value;
                self.section.encryption = false;
            }
            2 if self.section.encryption => {
                self.section.at_key = !self.section.at_key;
                self.section.protocols = false;
            }
            _ => {}
        }
        false
    }

    /// A scalar or an alias; `Ok(true)` for an empty (null) document.
    fn node(&mut self, node: Value) -> Result<bool, String> {
        let section = &mut self.section;
        match self.depth {
            0 => match node {
                Value::Scalar(s, yaml_rust2::scanner::TScalarStyle::Plain) if is_null(&s) => {
                    return Ok(true)
                }
                _ => return Err("the top level is not a mapping".into()),
            },
            1 if !self.at_value => {
                self.wanted = match node {
                    Value::Scalar(s, _) if YamlView::KEYS.contains(&s.as_str()) => Some(s),
                    _ => None,
                };
                self.at_value = true;
            }
            1 => {
                if let Some(key) = self.wanted.take() {
                    self.view.set(&key, node)?;
                }
                self.at_value = false;
            }
            2 if section.encryption && section.at_key => {
                section.wanted = match node {
                    Value::Scalar(s, _) if ClientEncryption::KEYS.contains(&s.as_str()) => Some(s),
                    _ => None,
                };
                section.at_key = false;
            }
            2 if section.encryption => {
                if let (Some(key), Some(enc)) =
                    (section.wanted.take(), self.view.client_encryption.as_mut())
                {
                    enc.set(&key, node)?;
                }
                section.at_key = true;
            }
            3 if section.protocols => {
                if let (Value::Scalar(s, _), Some(enc)) =
                    (node, self.view.client_encryption.as_mut())
                {
                    if enc.accepted_protocols.len() < 16 {
                        enc.accepted_protocols.push(crate::text::sanitize(s.trim()));
                    }
                }
            }
            _ => {}
        }
        Ok(false)
    }
}

/// A value in the yaml, as far as `parse_yaml` looks at it.
enum Value {
    Scalar(String, yaml_rust2::scanner::TScalarStyle),
    Alias,
    Collection,
}

/// A plain `true`/`false` (YAML 1.2 core schema), else `None`.
fn boolean(s: &str, plain: bool) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" if plain => Some(true),
        "false" | "False" | "FALSE" if plain => Some(false),
        _ => None,
    }
}

/// A port number, or an error naming `key`.
fn port_number(key: &str, s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            format!(
                "{key} \"{}\" is not a port number",
                crate::text::sanitize(s)
            )
        })
}

impl YamlView {
    const KEYS: [&'static str; 7] = [
        "native_transport_port",
        "native_transport_port_ssl",
        "rpc_address",
        "rpc_interface",
        "rpc_interface_prefer_ipv6",
        "start_native_transport",
        "client_encryption_options",
    ];

    fn set(&mut self, key: &str, value: Value) -> Result<(), String> {
        use yaml_rust2::scanner::TScalarStyle::Plain;
        let (s, plain) = match value {
            Value::Alias => return Err(format!("{key} is an alias; aliases are not followed")),
            Value::Collection if key.starts_with("native_transport_port") => {
                return Err(format!("{key} is not a number"))
            }
            Value::Collection => return Ok(()),
            Value::Scalar(s, Plain) if is_null(&s) => return Ok(()),
            Value::Scalar(s, style) => (s, style == Plain),
        };
        match key {
            "native_transport_port" => self.native_transport_port = Some(port_number(key, &s)?),
            "native_transport_port_ssl" => {
                self.native_transport_port_ssl = Some(port_number(key, &s)?)
            }
            "rpc_address" => self.rpc_address = concrete(&s).then(|| s.trim().to_string()),
            "rpc_interface" => self.rpc_interface = Some(s),
            "rpc_interface_prefer_ipv6" => self.rpc_interface_prefer_ipv6 = boolean(&s, plain),
            "start_native_transport" => self.start_native_transport = boolean(&s, plain),
            _ => {}
        }
        Ok(())
    }

    /// Whether the CQL port `port` needs TLS, and why, by this yaml.
    pub fn tls_on(&self, port: u16) -> (bool, &'static str) {
        let Some(enc) = self
            .client_encryption
            .as_ref()
            .filter(|e| e.enabled == Some(true))
        else {
            return (false, "client_encryption_options not enabled");
        };
        let native = self.native_transport_port.unwrap_or(DEFAULT_PORT);
        if let Some(ssl) = self.native_transport_port_ssl.filter(|p| *p != native) {
            return if port == ssl {
                (true, "native_transport_port_ssl")
            } else {
                (false, "plaintext beside native_transport_port_ssl")
            };
        }
        if enc.optional == Some(true) {
            return (false, "client_encryption_options optional");
        }
        (true, "client_encryption_options enabled")
    }
}

impl ClientEncryption {
    const KEYS: [&'static str; 5] = [
        "enabled",
        "optional",
        "require_client_auth",
        "protocol",
        "accepted_protocols",
    ];

    fn set(&mut self, key: &str, value: Value) -> Result<(), String> {
        use yaml_rust2::scanner::TScalarStyle::Plain;
        let (s, plain) = match value {
            Value::Alias => {
                return Err(format!(
                    "client_encryption_options.{key} is an alias; aliases are not followed"
                ))
            }
            Value::Collection => return Ok(()),
            Value::Scalar(s, Plain) if is_null(&s) => return Ok(()),
            Value::Scalar(s, style) => (s, style == Plain),
        };
        match key {
            "enabled" => self.enabled = boolean(&s, plain),
            "optional" => self.optional = boolean(&s, plain),
            "require_client_auth" => {
                self.require_client_auth = Some(crate::text::sanitize(s.trim()))
            }
            "protocol" => self.protocol = Some(crate::text::sanitize(s.trim())),
            _ => {}
        }
        Ok(())
    }

    /// Whether Cassandra demands a client certificate.
    pub fn client_auth(&self) -> bool {
        self.require_client_auth.as_deref() == Some("true")
    }

    /// The TLS versions Cassandra accepts, `accepted_protocols` first.
    pub fn protocols(&self) -> Vec<String> {
        if !self.accepted_protocols.is_empty() {
            return self.accepted_protocols.clone();
        }
        self.protocol.iter().cloned().collect()
    }

    /// What this asks of a TLS client, for [`crate::probe::tls::choose`].
    pub fn server(&self) -> crate::probe::tls::Server {
        crate::probe::tls::Server {
            protocols: self.protocols(),
            client_auth: self.client_auth(),
        }
    }
}

/// YAML's plain null: `~`, `null`, or nothing.
fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn concrete(addr: &str) -> bool {
    let a = addr.trim();
    match a.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_unspecified(),
        Err(_) => {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
    }
}

/// `file:///etc/cassandra/cassandra.yaml`, `file:/x`, or a plain path.
pub fn config_path(value: &str) -> Result<PathBuf, String> {
    let v = value.trim();
    let path = if let Some(rest) = v.strip_prefix("file://") {
        // file://host/path is not local; file:///path is.
        if !rest.starts_with('/') {
            return Err(format!("{v}: only local file: URLs are supported"));
        }
        percent_decode(rest)
    } else if let Some(rest) = v.strip_prefix("file:") {
        percent_decode(rest)
    } else if v.contains("://") {
        return Err(format!("{v}: only file: URLs and paths are supported"));
    } else {
        v.to_string()
    };
    Ok(PathBuf::from(path))
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The yaml Cassandra would load: `cassandra.config`, else the first
/// classpath directory holding a cassandra.yaml.
fn find_yaml(prop: &dyn Fn(&str) -> Option<String>) -> Result<Option<PathBuf>, String> {
    if let Some(config) = prop("cassandra.config") {
        return config_path(&config).map(Some);
    }
    let classpath = prop("java.class.path").unwrap_or_default();
    Ok(classpath
        .split(':')
        .filter(|e| !e.is_empty() && !e.ends_with(".jar") && !e.ends_with('*'))
        .map(|dir| Path::new(dir).join("cassandra.yaml"))
        .find(|p| p.is_file()))
}

fn read_yaml(path: &Path) -> Result<YamlView, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_YAML + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_YAML {
        return Err(format!("larger than {MAX_YAML} bytes"));
    }
    parse_yaml(&text)
}

/// Works out host and port. `prop` reads the JVM's system properties.
pub fn discover(
    port: Option<u16>,
    host: Option<&str>,
    prop: &dyn Fn(&str) -> Option<String>,
) -> Endpoint {
    let mut warnings = Vec::new();
    // Always read: even with host and port given, TLS comes from the yaml.
    let (view, yaml_path) = yaml_of(prop, &mut warnings);
    let (port, port_source) = match port {
        Some(p) => (p, Source::Option),
        None => port_of(&view, prop, &mut warnings),
    };
    let (host, host_source) = match host {
        Some(h) => (h.to_string(), Source::Option),
        None => host_of(&view, &mut warnings),
    };
    if view.start_native_transport == Some(false) {
        warnings.push(
            "start_native_transport is false: CQL will not answer until it is enabled".into(),
        );
    }
    Endpoint {
        host,
        host_source,
        tls: view.tls_on(port),
        encryption: view.client_encryption,
        port,
        port_source,
        yaml: yaml_path,
        warnings,
    }
}

/// The yaml Cassandra reads and what it says, or an empty view and a warning.
fn yaml_of(
    prop: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> (YamlView, Option<PathBuf>) {
    match find_yaml(prop) {
        Ok(Some(path)) => match read_yaml(&path) {
            Ok(v) => (v, Some(path)),
            Err(e) => {
                warnings.push(format!(
                    "cannot use {}: {}",
                    path.display(),
                    crate::text::sanitize(&e)
                ));
                (YamlView::default(), None)
            }
        },
        Ok(None) => (YamlView::default(), None),
        Err(e) => {
            warnings.push(format!("-Dcassandra.config={}", crate::text::sanitize(&e)));
            (YamlView::default(), None)
        }
    }
}

/// The port as Cassandra picks it: `-Dcassandra.native_transport_port`, the
/// yaml, the default.
fn port_of(
    view: &YamlView,
    prop: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> (u16, Source) {
    let Some(v) = prop("cassandra.native_transport_port") else {
        return yaml_or_default(view);
    };
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => (p, Source::Property),
        _ => {
            warnings.push(format!(
                "-Dcassandra.native_transport_port={} is not a port number; ignored",
                crate::text::sanitize(&v)
            ));
            yaml_or_default(view)
        }
    }
}

/// The host as Cassandra binds it: `rpc_address`, `rpc_interface`'s
/// address, the default.
fn host_of(view: &YamlView, warnings: &mut Vec<String>) -> (String, Source) {
    if let Some(a) = view.rpc_address.clone() {
        return (a, Source::Yaml);
    }
    let Some(i) = &view.rpc_interface else {
        return (DEFAULT_HOST.to_string(), Source::Default);
    };
    let prefer_v6 = view.rpc_interface_prefer_ipv6 == Some(true);
    match crate::netif::addresses(i).map(|a| crate::netif::pick(&a, prefer_v6)) {
        Ok(Some(ip)) => (ip.to_string(), Source::Interface),
        outcome => {
            let why = match outcome {
                Err(e) => e,
                _ => "it has no address".into(),
            };
            warnings.push(format!(
                "rpc_interface {}: {}; probing {DEFAULT_HOST}",
                crate::text::sanitize(i),
                crate::text::sanitize(&why)
            ));
            (DEFAULT_HOST.to_string(), Source::Default)
        }
    }
}

fn yaml_or_default(view: &YamlView) -> (u16, Source) {
    match view.native_transport_port {
        Some(p) => (p, Source::Yaml),
        None => (DEFAULT_PORT, Source::Default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn props(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn temp_yaml(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cqlready-disc-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cassandra.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn yaml_views() {
        let v = parse_yaml("cluster_name: x\nnative_transport_port: 9142\nrpc_address: 10.1.2.3\n")
            .unwrap();
        assert_eq!(v.native_transport_port, Some(9142));
        assert_eq!(v.rpc_address.as_deref(), Some("10.1.2.3"));
        assert_eq!(
            parse_yaml("native_transport_port: '9043'")
                .unwrap()
                .native_transport_port,
            Some(9043)
        );
        assert_eq!(
            parse_yaml("rpc_address: 0.0.0.0").unwrap().rpc_address,
            None
        );
        assert_eq!(parse_yaml("rpc_address: '::'").unwrap().rpc_address, None);
        assert_eq!(
            parse_yaml("rpc_address: localhost")
                .unwrap()
                .rpc_address
                .as_deref(),
            Some("localhost")
        );
        assert_eq!(parse_yaml("").unwrap(), YamlView::default());
        assert!(parse_yaml("native_transport_port: 70000").is_err());
        assert!(parse_yaml("native_transport_port: [1]").is_err());
        assert!(parse_yaml("- a\n- b").is_err());
        assert!(parse_yaml("a: [unclosed").is_err());
        assert_eq!(
            parse_yaml("start_native_transport: false")
                .unwrap()
                .start_native_transport,
            Some(false)
        );
    }

    #[test]
    fn yaml_walk_reads_only_top_level_scalars() {
        let v = parse_yaml(
            "seed_provider:\n  - class_name: x\n    parameters:\n      - seeds: \"a\"\n\
             client_encryption_options: {native_transport_port: 1, rpc_address: 10.9.9.9}\n\
             ? [complex, key]\n: native_transport_port\n\
             native_transport_port: 9142\nrpc_interface: eth1\nstart_native_transport: TRUE\n\
             ---\nnative_transport_port: 1\n",
        )
        .unwrap();
        assert_eq!(
            v,
            YamlView {
                native_transport_port: Some(9142),
                rpc_interface: Some("eth1".into()),
                start_native_transport: Some(true),
                client_encryption: Some(ClientEncryption::default()),
                ..YamlView::default()
            }
        );
        assert_eq!(parse_yaml("~").unwrap(), YamlView::default());
        assert_eq!(
            parse_yaml("native_transport_port: ~\nrpc_address:\n").unwrap(),
            YamlView::default()
        );
        assert_eq!(
            parse_yaml("start_native_transport: 'false'")
                .unwrap()
                .start_native_transport,
            None
        );
    }

    #[test]
    fn client_encryption_options() {
        let v = parse_yaml(
            "client_encryption_options:\n  enabled: true\n  optional: false\n  keystore: /k.jks\n  \
             require_client_auth: true\n  accepted_protocols:\n    - TLSv1.2\n    - TLSv1.3\n  \
             cipher_suites: [a, b]\n  protocol: TLS\nnative_transport_port: 9142\n",
        )
        .unwrap();
        let enc = v.client_encryption.clone().unwrap();
        assert_eq!(enc.enabled, Some(true));
        assert_eq!(enc.optional, Some(false));
        assert!(enc.client_auth());
        assert_eq!(enc.protocols(), ["TLSv1.2", "TLSv1.3"]);
        assert_eq!(v.native_transport_port, Some(9142));
        assert_eq!(v.tls_on(9142), (true, "client_encryption_options enabled"));
        // Flow style, optional, and 5.0's require_client_auth: optional.
        let v = parse_yaml(
            "client_encryption_options: {enabled: true, optional: true, require_client_auth: optional, protocol: TLSv1.2}",
        )
        .unwrap();
        let enc = v.client_encryption.clone().unwrap();
        assert!(!enc.client_auth());
        assert_eq!(enc.protocols(), ["TLSv1.2"]);
        assert_eq!(
            v.tls_on(9042),
            (false, "client_encryption_options optional")
        );
        // Not enabled, or absent: plaintext.
        let v = parse_yaml("client_encryption_options:\n  enabled: false\n").unwrap();
        assert!(!v.tls_on(9042).0);
        assert!(!parse_yaml("").unwrap().tls_on(9042).0);
        // Cassandra 4.x's separate encrypted port beside a plaintext one.
        let v = parse_yaml(
            "native_transport_port: 9042\nnative_transport_port_ssl: 9142\n\
             client_encryption_options: {enabled: true}\n",
        )
        .unwrap();
        assert_eq!(
            v.tls_on(9042),
            (false, "plaintext beside native_transport_port_ssl")
        );
        assert_eq!(v.tls_on(9142), (true, "native_transport_port_ssl"));
        // The same port twice is one TLS port.
        let v = parse_yaml(
            "native_transport_port: 9142\nnative_transport_port_ssl: 9142\n\
             client_encryption_options: {enabled: true}\n",
        )
        .unwrap();
        assert!(v.tls_on(9142).0);
        assert!(parse_yaml("native_transport_port_ssl: x").is_err());
        let e = parse_yaml("a: &a true\nclient_encryption_options: {enabled: *a}").unwrap_err();
        assert!(
            e.contains("client_encryption_options.enabled is an alias"),
            "{e}"
        );
        // Keys of other sections are not mistaken for these.
        let v =
            parse_yaml("server_encryption_options:\n  enabled: true\n  optional: false\n").unwrap();
        assert_eq!(v.client_encryption, None);
    }

    #[test]
    fn addresses_as_cassandra_resolves_them() {
        let y = temp_yaml("v6", "rpc_address: '::1'\n");
        let e = discover(
            None,
            None,
            &props(&[("cassandra.config", &y.display().to_string())]),
        );
        assert_eq!((e.host.as_str(), e.host_source), ("::1", Source::Yaml));
        let t = crate::probe::cql::Target {
            host: e.host.clone(),
            port: e.port,
            timeout: std::time::Duration::from_millis(50),
        };
        assert_eq!(t.to_string(), "[::1]:9042");
        std::fs::write(&y, "rpc_interface: lo\n").unwrap();
        let e = discover(
            None,
            None,
            &props(&[("cassandra.config", &y.display().to_string())]),
        );
        assert_eq!(
            (e.host.as_str(), e.host_source),
            ("127.0.0.1", Source::Interface)
        );
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        std::fs::write(
            &y,
            "rpc_interface: nosuch0\nrpc_interface_prefer_ipv6: true\n",
        )
        .unwrap();
        let e = discover(
            None,
            None,
            &props(&[("cassandra.config", &y.display().to_string())]),
        );
        assert_eq!(e.host_source, Source::Default);
        assert!(
            e.warnings[0].contains("rpc_interface nosuch0: no such interface"),
            "{:?}",
            e.warnings
        );
        let _ = std::fs::remove_dir_all(y.parent().unwrap());
    }

    #[test]
    fn yaml_depth_and_aliases_are_bounded() {
        let flow = |n: usize| format!("a: {}{}", "[".repeat(n), "]".repeat(n));
        let block =
            |n: usize| -> String { (0..n).map(|i| format!("{}a:\n", " ".repeat(i))).collect() };
        for deep in [flow(MAX_DEPTH), block(MAX_DEPTH + 1)] {
            let e = parse_yaml(&deep).unwrap_err();
            assert!(e.starts_with("nested more than 64 levels deep"), "{e}");
        }
        assert!(parse_yaml(&flow(MAX_DEPTH - 1)).is_ok());
        assert!(parse_yaml(&block(MAX_DEPTH)).is_ok());
        // Aliases are not expanded: elsewhere they cost nothing ...
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for c in b'b'..=b'z' {
            let prev = (c - 1) as char;
            bomb.push_str(&format!(
                "{}: &{} [{}]\n",
                c as char,
                c as char,
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        bomb.push_str("native_transport_port: 9142\n");
        assert_eq!(parse_yaml(&bomb).unwrap().native_transport_port, Some(9142));
        // ... and where a wanted value should be, they are refused.
        let e = parse_yaml("p: &p 9142\nnative_transport_port: *p\n").unwrap_err();
        assert_eq!(
            e,
            "native_transport_port is an alias; aliases are not followed"
        );
    }

    #[test]
    fn config_urls() {
        assert_eq!(
            config_path("file:///etc/cassandra/cassandra.yaml").unwrap(),
            PathBuf::from("/etc/cassandra/cassandra.yaml")
        );
        assert_eq!(
            config_path("file:/a%20b/c.yaml").unwrap(),
            PathBuf::from("/a b/c.yaml")
        );
        assert_eq!(
            config_path("/x/c.yaml").unwrap(),
            PathBuf::from("/x/c.yaml")
        );
        assert_eq!(config_path("file:///x%2").unwrap(), PathBuf::from("/x%2"));
        assert!(config_path("http://x/c.yaml").is_err());
        assert!(config_path("file://host/c.yaml").is_err());
    }

    #[test]
    fn precedence() {
        let e = discover(
            Some(1),
            Some("h"),
            &props(&[("cassandra.native_transport_port", "2")]),
        );
        assert_eq!(
            (e.port, e.port_source, e.host.as_str(), e.host_source),
            (1, Source::Option, "h", Source::Option)
        );

        let y = temp_yaml(
            "prec",
            "native_transport_port: 9300\nrpc_address: 127.0.0.2\n",
        );
        let url = format!("file://{}", y.display());
        let e = discover(
            None,
            None,
            &props(&[
                ("cassandra.native_transport_port", "9200"),
                ("cassandra.config", &url),
            ]),
        );
        assert_eq!((e.port, e.port_source), (9200, Source::Property));
        assert_eq!(
            (e.host.as_str(), e.host_source),
            ("127.0.0.2", Source::Yaml)
        );

        let e = discover(None, None, &props(&[("cassandra.config", &url)]));
        assert_eq!((e.port, e.port_source), (9300, Source::Yaml));
        assert_eq!(e.yaml.as_deref(), Some(y.as_path()));

        let cp = format!("/nonexistent.jar:{}", y.parent().unwrap().display());
        let e = discover(None, None, &props(&[("java.class.path", &cp)]));
        assert_eq!((e.port, e.port_source), (9300, Source::Yaml));

        let _ = std::fs::remove_dir_all(y.parent().unwrap());
        let e = discover(None, None, &props(&[]));
        assert_eq!(
            (e.port, e.port_source, e.host.as_str(), e.host_source),
            (9042, Source::Default, "127.0.0.1", Source::Default)
        );
        assert!(e.warnings.is_empty());
    }

    #[test]
    fn broken_inputs_warn() {
        let e = discover(
            None,
            None,
            &props(&[("cassandra.config", "/nonexistent/cassandra.yaml")]),
        );
        assert_eq!(e.port, 9042);
        assert!(
            e.warnings[0].contains("/nonexistent/cassandra.yaml"),
            "{:?}",
            e.warnings
        );

        let y = temp_yaml("broken", "native_transport_port: [\n");
        let e = discover(
            None,
            None,
            &props(&[("cassandra.config", &y.display().to_string())]),
        );
        assert_eq!(e.port_source, Source::Default);
        assert_eq!(e.warnings.len(), 1);
        let _ = std::fs::remove_dir_all(y.parent().unwrap());

        let e = discover(
            None,
            None,
            &props(&[("cassandra.native_transport_port", "x\nREADY=1")]),
        );
        assert_eq!(e.port, 9042);
        assert!(!e.warnings[0].contains('\n'));
    }
}
