//! `cqlready`: ask an agent (status, probe, wait), watch ports as a
//! `Type=notify` service (watch), or load the agent into a running JVM (attach).
//! Thin: every piece of work is the library's, shared with the agent.

use clap::{Args, Parser, Subcommand};
use cqlready::config::{Config, Endpoint};
use cqlready::monitor::{self, Ended, Pace, Probe, Shared};
use cqlready::notify::Notifier;
use cqlready::options::{default_of, Options};
use cqlready::probe::cql::{self, Prober, Target};
use cqlready::status::client::{self, ClientError};
use cqlready::status::model::{Snapshot, State};
use cqlready::status::view::Cl;
use cqlready::text::{format_duration, parse_duration};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exit codes shared by the subcommands.
const READY: u8 = 0;
const NOT_READY: u8 = 1;
const NO_AGENT: u8 = 2;
const USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "cqlready", version = cqlready::VERSION, about = "Is this Cassandra serving CQL? Ask the cqlready agent, or watch from outside.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
#[group(multiple = false)]
struct Which {
    /// The agent's status socket (default: $RUNTIME_DIRECTORY/cqlready.sock under systemd, else /run/cassandra/cqlready.sock when it exists).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The JVM's PID; its socket is found by itself, also inside a container.
    #[arg(long, value_name = "PID", value_parser = pid)]
    pid: Option<u32>,
}

/// A PID: 1 or more (0 and negative numbers name process groups to kill(2)).
fn pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(p) if p > 0 && p <= i32::MAX as u32 => Ok(p),
        _ => Err(format!("\"{s}\" is not a process ID (1 to {})", i32::MAX)),
    }
}

/// A TCP port: 1 to 65535 (0 would mean "any port").
fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("\"{s}\" is not a TCP port (1 to 65535)")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("\"{s}\" is not a duration like 500ms, 30s or 10m"))
}

/// A duration above zero (a probe period or budget of zero would spin).
fn period(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("\"{s}\" must be more than zero")),
        d => Ok(d),
    }
}

/// Which gate `probe` and `wait` ask for beyond this node's readiness.
#[derive(clap::Args)]
struct Gate {
    /// Also every node in this node's view UP and NORMAL; with --cl, instead no token range below that level.
    #[arg(long)]
    cluster: bool,
    /// With --cluster or --safe-to-stop: ONE, TWO, THREE, QUORUM, ALL, LOCAL_ONE, LOCAL_QUORUM or EACH_QUORUM
    /// (LOCAL_* count this node's datacenter only, EACH_QUORUM each datacenter's quorum).
    #[arg(long, value_parser = cl)]
    cl: Option<Cl>,
    /// Also every node of this node's datacenter (or of NAME) UP and NORMAL.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "", conflicts_with = "cluster")]
    dc: Option<String>,
}

impl Gate {
    /// The `/ready` query's scope part (ending in `&` when not empty).
    fn query(&self, safe_to_stop: bool) -> Result<String, String> {
        if self.cl.is_some() && !self.cluster && !safe_to_stop {
            return Err("--cl goes with --cluster (or probe's --safe-to-stop)".into());
        }
        if let Some(dc) = &self.dc {
            if !dc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!(
                    "--dc \"{dc}\": a datacenter name of letters, digits, '-', '_' and '.'"
                ));
            }
            return Ok(match dc.as_str() {
                "" => "scope=dc&".into(),
                name => format!("scope=dc&dc={name}&"),
            });
        }
        Ok(match (self.cluster, self.cl) {
            (true, Some(cl)) => format!("scope=cluster&cl={}&", cl.as_str()),
            (true, None) => "scope=cluster&".into(),
            _ => String::new(),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Show the agent's state: a short summary, or its JSON.
    #[command(
        after_help = "Examples:\n  cqlready status --pid $(systemctl show -p MainPID --value cassandra)\n  cqlready status --socket /run/cassandra/cqlready.sock --json\n\nExit: 0 answered, 2 no agent to ask."
    )]
    Status {
        #[command(flatten)]
        which: Which,
        /// Print the agent's raw JSON.
        #[arg(long)]
        json: bool,
        /// The cluster as this node sees it, like `nodetool status`, with each keyspace's quorum per datacenter and every level now and without this node.
        #[arg(long)]
        cluster: bool,
    },
    /// One readiness check: exit 0 ready, 1 not ready, 2 no agent. For probes and scripts.
    #[command(
        after_help = "Examples:\n  cqlready probe --socket /var/run/cqlready/cqlready.sock   # Kubernetes exec probe\n  cqlready probe --port 9042                                 # no agent: check CQL directly\n\nExit: 0 ready, 1 not ready, 2 no agent to ask."
    )]
    Probe {
        #[command(flatten)]
        which: Which,
        /// Check CQL on this port directly (OPTIONS/SUPPORTED) instead of asking an agent.
        #[arg(long, conflicts_with_all = ["socket", "pid", "cluster", "cl", "dc"], value_parser = port)]
        port: Option<u16>,
        /// With --port: the host.
        #[arg(long, default_value = "127.0.0.1", requires = "port")]
        host: String,
        /// How long to wait for an answer.
        #[arg(long, default_value = "2s", value_parser = duration)]
        timeout: Duration,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        gate: Gate,
        /// Exit 0 when stopping this node now keeps every token range at --cl (default LOCAL_QUORUM), 1 when not (naming a range).
        #[arg(long, conflicts_with_all = ["port", "cluster", "dc"])]
        safe_to_stop: bool,
    },
    /// Block until the agent says ready (exit 0) or the timeout passes (exit 1).
    #[command(
        after_help = "Example, a rolling restart:\n  for h in node1 node2 node3; do\n    ssh $h 'systemctl restart cassandra && cqlready wait --socket /run/cassandra/cqlready.sock --timeout 15m' || break\n  done\n\nExit: 0 ready, 1 timed out (the last state is printed), 2 no such process or not a JVM\n(a shell that will exec its JVM, as cassandra -f does, is waited for).\n\nA socket that does not exist yet (the JVM is starting) is waited for; wait says so once."
    )]
    Wait {
        #[command(flatten)]
        which: Which,
        /// Give up after this long.
        #[arg(long, default_value = "10m", value_parser = duration)]
        timeout: Duration,
        #[command(flatten)]
        gate: Gate,
    },
    /// Run as a Type=notify service: READY=1 once every port answers, exit when one stops.
    #[command(
        after_help = "Examples:\n  cqlready watch --port 9042 --port 7199             # CQL by protocol, JMX by TCP\n  cqlready watch --socket /srv/cassandra/run/cqlready.sock   # an agent's socket bind-mounted out of a container\n\nExit: 1 when a port stops answering after it was ready."
    )]
    Watch(WatchArgs),
    /// Load the agent into a running HotSpot JVM, with no JDK tools.
    #[command(
        after_help = "Examples:\n  cqlready attach 4242\n  cqlready attach 4242 port=9142,log=debug --lib /opt/cqlready/libcqlready.so\n\nThe JVM must be HotSpot (OpenJDK, Temurin, ...) without -XX:+DisableAttachMechanism;\nrun as root or as the JVM's user."
    )]
    Attach {
        /// The JVM's PID (as seen from here).
        #[arg(value_parser = pid)]
        pid: u32,
        /// The agent's options, as after -agentpath:...= (e.g. port=9142,log=debug).
        #[arg(default_value = "", value_name = "AGENT_OPTIONS")]
        options: String,
        /// The agent library; default: libcqlready.so next to this binary.
        #[arg(long, value_name = "PATH")]
        lib: Option<PathBuf>,
        /// How long the JVM may take to answer the attach and load the agent.
        #[arg(long, default_value = "10s", value_parser = period)]
        timeout: Duration,
    },
}

#[derive(Args)]
struct WatchArgs {
    /// A port to watch; repeat for several. The first speaks CQL unless --probe tcp.
    #[arg(long = "port", value_name = "PORT", value_parser = port)]
    ports: Vec<u16>,
    /// The host of every --port.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// How the first port is checked; the others are always TCP.
    #[arg(long, value_enum, default_value = "cql")]
    probe: ProbeKind,
    /// Watch an agent's status socket instead of (or besides) ports.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Probe period until everything answers.
    #[arg(long, default_value = default_of("interval"), value_parser = period)]
    interval: Duration,
    /// Probe period once ready.
    #[arg(long, default_value = default_of("check"), value_parser = period)]
    check: Duration,
    /// One probe's budget: connect, ask, read the answer.
    #[arg(long, default_value = default_of("timeout"), value_parser = period)]
    timeout: Duration,
    /// Failed checks in a row that end a ready watch (exit 1).
    #[arg(long, default_value = default_of("failures"), value_parser = clap::value_parser!(u32).range(1..))]
    failures: u32,
    /// TLS for the CQL port (the first --port).
    #[command(flatten)]
    tls: TlsArgs,
    /// Over TLS, how long a connection that answered is kept for the next checks (0s: a new one every check).
    #[arg(long, default_value = default_of("tls_keep"), value_parser = duration, requires = "tls")]
    tls_keep: Duration,
}

impl WatchArgs {
    /// The agent's options with this command's flags in them: what the
    /// flags do not set (`extend`) is the table's default.
    fn options(&self) -> Options {
        Options {
            interval: self.interval,
            check: self.check,
            timeout: self.timeout,
            failures: self.failures,
            tls_keep: self.tls_keep,
            ..Options::default()
        }
    }
}

/// TLS for a CQL check by port: the agent's tls=on, tls_ca, tls_cert, tls_key.
#[derive(Args, Clone, Default)]
struct TlsArgs {
    /// Speak TLS to CQL (Cassandra's client_encryption_options enabled, not optional).
    #[arg(long)]
    tls: bool,
    /// A PEM file of CAs the server's certificate must chain to (default: not verified).
    #[arg(long, value_name = "PEM", requires = "tls")]
    tls_ca: Option<String>,
    /// A PEM client certificate, for require_client_auth: true.
    #[arg(long, value_name = "PEM", requires_all = ["tls", "tls_key"])]
    tls_cert: Option<String>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<String>,
}

impl TlsArgs {
    /// The same choice the agent makes from its options.
    fn choose(&self) -> Result<cqlready::probe::tls::Choice, String> {
        use cqlready::text::Toggle;
        let ca = self
            .tls_ca
            .as_deref()
            .map(cqlready::probe::tls::read_certs)
            .transpose()
            .map_err(|e| format!("--tls-ca: {e}"))?;
        let cert = self
            .tls_cert
            .as_deref()
            .map(cqlready::probe::tls::read_certs)
            .transpose()
            .map_err(|e| format!("--tls-cert: {e}"))?;
        let key = self
            .tls_key
            .as_deref()
            .map(cqlready::probe::tls::read_key)
            .transpose()
            .map_err(|e| format!("--tls-key: {e}"))?;
        let mode = if self.tls { Toggle::On } else { Toggle::Off };
        let choice = cqlready::probe::tls::choose(
            mode,
            (false, "option"),
            None,
            ca.as_ref(),
            cert.as_ref().zip(key.as_ref()),
        );
        match choice.warnings.first() {
            Some(w) if self.tls && choice.client.is_none() => Err(w.clone()),
            _ => Ok(choice),
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    /// The CQL protocol: OPTIONS, answered by SUPPORTED.
    Cql,
    /// A TCP connect.
    Tcp,
}

fn main() -> ExitCode {
    // Usage errors exit 64 (EX_USAGE), so that they never read as probe's
    // "no agent" (2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { USAGE } else { READY });
        }
    };
    let code = match cli.command {
        Command::Status {
            which,
            json,
            cluster: true,
        } => cluster_status(&which, json),
        Command::Status { which, json, .. } => status(&which, json),
        Command::Probe {
            which,
            port: Some(port),
            host,
            timeout,
            tls,
            ..
        } => {
            let _ = which;
            probe_port(host, port, timeout, &tls)
        }
        Command::Probe {
            which,
            timeout,
            safe_to_stop,
            gate,
            ..
        } => match gate.query(safe_to_stop) {
            Err(e) => usage(&e),
            Ok(_) if safe_to_stop => {
                safe_to_stop_at(&which, timeout, gate.cl.unwrap_or(Cl::LocalQuorum))
            }
            Ok(scope) => probe(&which, timeout, &scope),
        },
        Command::Wait {
            which,
            timeout,
            gate,
        } => match gate.query(false) {
            Err(e) => usage(&e),
            Ok(scope) => wait(&which, timeout, &scope),
        },
        Command::Watch(args) => watch(args),
        Command::Attach {
            pid,
            options,
            lib,
            timeout,
        } => attach(pid, &options, lib, timeout),
    };
    ExitCode::from(code)
}

/// The agent to ask, as the user named it.
enum Asked {
    /// `--socket`, or when neither is given `$RUNTIME_DIRECTORY/cqlready.sock`,
    /// else the packaged unit's socket.
    Socket(PathBuf),
    /// `--pid`: the JVM's socket is found from its command line.
    Pid(u32),
}

/// `--socket`, `--pid`, or (neither) `$RUNTIME_DIRECTORY`, else the packaged
/// unit's socket when it exists; none of them is a usage error, said at once
/// (exit 64), never a wait for nothing.
fn asked(which: &Which) -> Result<Asked, u8> {
    if let Some(p) = &which.socket {
        return Ok(Asked::Socket(p.clone()));
    }
    if let Some(pid) = which.pid {
        return Ok(Asked::Pid(pid));
    }
    match std::env::var("RUNTIME_DIRECTORY") {
        Ok(dir) if !dir.is_empty() => Ok(Asked::Socket(cqlready::status::server::default_path(
            0,
            Some(&dir),
        ))),
        _ if Path::new(PACKAGED_SOCKET).exists() => Ok(Asked::Socket(PACKAGED_SOCKET.into())),
        _ => {
            eprintln!(
                "cqlready: which agent? give --socket PATH or --pid PID (no {PACKAGED_SOCKET} here, and RUNTIME_DIRECTORY is not set)"
            );
            Err(USAGE)
        }
    }
}

/// Where the packages' `cassandra.service` puts the status socket
/// (`RuntimeDirectory=cassandra`): the default on a host that runs it.
const PACKAGED_SOCKET: &str = "/run/cassandra/cqlready.sock";

fn socket_of(asked: &Asked) -> Result<PathBuf, ClientError> {
    match asked {
        Asked::Socket(p) => Ok(p.clone()),
        Asked::Pid(pid) => client::locate(*pid),
    }
}

fn ask(which: &Which, target: &str, timeout: Duration) -> Result<client::Response, u8> {
    let asked = asked(which)?;
    socket_of(&asked)
        .and_then(|s| client::get(&s, target, timeout))
        .map_err(|e| no_agent(&e))
}

fn no_agent(e: &ClientError) -> u8 {
    eprintln!("cqlready: {e}");
    NO_AGENT
}

fn ago(unix_ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let secs = now.saturating_sub(unix_ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h{}m ago", secs / 3600, secs / 60 % 60),
    }
}

fn summary(s: &Snapshot) -> String {
    let mut out = format!(
        "{} since {} (pid {}, cqlready {}{})\nCQL      {}:{} (port from {}, host from {}){}\n",
        s.state.as_str(),
        ago(s.state_since_unix_ms),
        s.pid,
        s.version,
        if s.commit.is_empty() {
            String::new()
        } else {
            format!(", commit {}", s.commit)
        },
        s.cql.host,
        s.cql.port,
        s.cql.source,
        s.cql.host_source,
        s.cql
            .protocol_version
            .map(|v| format!(", protocol v{v}"))
            .unwrap_or_default()
    );
    if let Some(t) = &s.cql.tls {
        out += &format!(
            "TLS      from {}, certificate {}{}{}{}\n",
            t.why,
            t.ca.as_deref()
                .map(|ca| format!("verified against {ca}"))
                .unwrap_or_else(|| "not verified".into()),
            if t.client_cert {
                ", client certificate given"
            } else {
                ""
            },
            t.reached
                .as_deref()
                .map(|r| format!("; last check reached: {r}"))
                .unwrap_or_default(),
            match (t.kept, t.resumed) {
                (true, Some(true)) => " on a kept connection (its handshake resumed a session)",
                (true, Some(false)) => " on a kept connection (its handshake was a full one)",
                (true, None) => " on a kept connection",
                (false, Some(true)) => " (handshake resumed a session)",
                (false, Some(false)) => " (full handshake)",
                (false, None) => "",
            }
        );
    }
    if let Some(c) = &s.cassandra {
        out += &match (&c.mode, &c.error) {
            (Some(mode), _) => format!(
                "node     Cassandra {mode}, native transport {}\n",
                match c.native_transport {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "unknown",
                }
            ),
            (None, Some(e)) => format!("node     Cassandra's view unavailable: {e}\n"),
            (None, None) => String::new(),
        };
    }
    if let Some(t) = s.time_to_ready_ms {
        out += &format!("ready    after {:.1} s\n", t / 1e3);
    }
    if let Some(c) = &s.last_check {
        out += &format!(
            "check    {} {:.2} ms, {}{}; {} checks, {} failed\n",
            if c.ok { "ok" } else { "FAILED" },
            c.latency_ms,
            ago(c.at_unix_ms),
            c.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            s.checks.total,
            s.checks.failed
        );
    }
    let n = &s.notify;
    out += &match &n.socket {
        None => "notify   no service manager (NOTIFY_SOCKET unset)\n".to_string(),
        Some(sock) => format!(
            "notify   {sock}: READY {}, STOPPING {}, watchdog {}{}\n",
            if n.ready_sent { "sent" } else { "not yet" },
            if n.stopping_sent { "sent" } else { "not sent" },
            n.watchdog_usec
                .map(|u| format!(
                    "every {} ({} pings)",
                    format_duration(Duration::from_micros(u / 2)),
                    n.watchdog_pings
                ))
                .unwrap_or_else(|| "off".into()),
            if n.errors > 0 {
                format!(", {} send errors", n.errors)
            } else {
                String::new()
            }
        ),
    };
    if let Some(st) = &n.last_status {
        out += &format!("status   {st}\n");
    }
    out
}

fn status(which: &Which, json: bool) -> u8 {
    let r = match ask(which, "/status", Duration::from_secs(2)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if r.code != 200 {
        return no_agent(&ClientError::Protocol(format!(
            "unexpected answer {}: {}",
            r.code,
            r.body.trim()
        )));
    }
    if json {
        print!("{}", r.body);
        return READY;
    }
    match Snapshot::from_json(&r.body) {
        Ok(s) => {
            print!("{}", summary(&s));
            let maps = std::fs::read_to_string(format!("/proc/{}/maps", s.pid)).unwrap_or_default();
            let installed = std::fs::read_link(INSTALLED_LINK).ok();
            if let Some(note) = upgrade_note(&maps, &s.version, installed.as_deref()) {
                println!("upgrade  {note}");
            }
            READY
        }
        Err(e) => no_agent(&ClientError::Protocol(e)),
    }
}

/// The packages' stable link to the installed agent,
/// `<version>/libcqlready.so` (docs/packages.md).
const INSTALLED_LINK: &str = "/usr/lib/cqlready/libcqlready.so";

/// `<version>` of a path `.../cqlready/<version>/libcqlready.so`, the
/// packages' layout; `None` for any other path.
fn version_dir(path: &Path) -> Option<String> {
    let mut parts = path.iter().rev();
    let (file, version, parent) = (parts.next()?, parts.next()?, parts.next()?);
    let version = version.to_str()?;
    let ok = file == "libcqlready.so"
        && parent == "cqlready"
        && version.starts_with(|c: char| c.is_ascii_digit());
    ok.then(|| version.to_string())
}

/// "restart to load X" when the installed agent (the version behind the
/// stable link, `installed`) is not the one this JVM runs: the version
/// directory of the libcqlready.so in its `maps` (an upgrade leaves it
/// mapped, "(deleted)"), else the version the agent reports.
fn upgrade_note(maps: &str, agent_version: &str, installed: Option<&Path>) -> Option<String> {
    let installed = version_dir(&Path::new("/usr/lib/cqlready").join(installed?))?;
    let loaded = maps
        .lines()
        .filter_map(|l| l.split_once('/').map(|(_, p)| format!("/{p}")))
        .map(|p| p.trim_end_matches(" (deleted)").to_string())
        .find_map(|p| version_dir(Path::new(&p)))
        .unwrap_or_else(|| agent_version.to_string());
    (loaded != installed).then(|| {
        format!("installed {installed}, this JVM runs {loaded}: restart to load {installed}")
    })
}

fn usage(e: &str) -> u8 {
    eprintln!("cqlready: {e}");
    USAGE
}

/// `scope`: the gate's query part ([`Gate::query`]), empty for the node alone.
fn probe(which: &Which, timeout: Duration, scope: &str) -> u8 {
    let target = format!("/ready?{}", scope.trim_end_matches('&'));
    let cluster = !scope.is_empty();
    // A first ask of the cluster view waits for one read of it.
    let timeout = timeout.max(if cluster { CLUSTER_TIMEOUT } else { timeout });
    match ask(which, &target, timeout) {
        Ok(r) if r.code == 200 => {
            println!("ready");
            READY
        }
        Ok(r) if r.code == 503 => {
            println!("not ready: {}", r.body.trim());
            NOT_READY
        }
        Ok(r) if r.code == 400 => usage(r.body.trim()),
        Ok(r) => no_agent(&ClientError::Protocol(format!(
            "unexpected answer {}: {}",
            r.code,
            r.body.trim()
        ))),
        Err(code) => code,
    }
}

fn probe_port(host: String, port: u16, timeout: Duration, tls: &TlsArgs) -> u8 {
    let choice = match tls.choose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cqlready: {e}");
            return USAGE;
        }
    };
    let subject = choice.subject;
    let mut p = Prober::with_tls(
        Target {
            host,
            port,
            timeout,
        },
        choice.client,
    );
    let started = Instant::now();
    match p.check() {
        Ok(a) => {
            println!(
                "ready: {subject} v{} on {} in {:.2} ms",
                a.version,
                p.target,
                started.elapsed().as_secs_f64() * 1e3
            );
            READY
        }
        Err(e) => {
            println!("not ready: {subject} on {}: {e}", p.target);
            NOT_READY
        }
    }
}

fn wait(which: &Which, timeout: Duration, scope: &str) -> u8 {
    let cluster = !scope.is_empty();
    let asked = match asked(which) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // A PID that is no process, or no JVM, will never get an agent: say so
    // now rather than after the whole timeout.
    if let Asked::Pid(pid) = asked {
        if let Err(e) = client::check_jvm(pid) {
            return no_agent(&e);
        }
    }
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    let mut said_waiting = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "cqlready: not ready after {}: {last}",
                format_duration(timeout)
            );
            return NOT_READY;
        }
        // Long-poll in slices so a socket that appears late is found.
        let slice = left.min(Duration::from_secs(30));
        let answer = socket_of(&asked).and_then(|s| {
            client::get(
                &s,
                &format!("/ready?{scope}wait={}ms", slice.as_millis().max(1)),
                slice
                    + Duration::from_secs(2)
                    + if cluster {
                        CLUSTER_TIMEOUT
                    } else {
                        Duration::ZERO
                    },
            )
        });
        match answer {
            Ok(r) if r.code == 200 => {
                println!("ready");
                return READY;
            }
            // A question the agent cannot take (a datacenter it does not know).
            Ok(r) if r.code == 400 => return usage(r.body.trim()),
            Ok(r) => {
                last = format!("agent says {}", r.body.trim());
                if r.body.trim() == State::Stopping.as_str() {
                    eprintln!("cqlready: the JVM is stopping");
                    return NOT_READY;
                }
            }
            Err(ClientError::Permission(m)) => return no_agent(&ClientError::Permission(m)),
            Err(e) => {
                if let Asked::Pid(pid) = asked {
                    if let Err(gone) = client::check_jvm(pid) {
                        return no_agent(&gone);
                    }
                }
                if !said_waiting && matches!(e, ClientError::NoAgent(_)) {
                    said_waiting = true;
                    let what = match &asked {
                        Asked::Socket(p) => format!("{} to appear", p.display()),
                        Asked::Pid(pid) => {
                            format!("process {pid}'s agent to open its status socket")
                        }
                    };
                    eprintln!(
                        "cqlready: waiting up to {} for {what}",
                        format_duration(timeout)
                    );
                }
                last = e.to_string();
                // No agent yet (the JVM is starting): look again shortly.
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }
}

/// How long a cluster request may take: a first ask waits for one read of the view.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

fn cl(s: &str) -> Result<Cl, String> {
    Cl::parse(s)
}

fn cluster_view(which: &Which, cl: Cl, timeout: Duration) -> Result<String, u8> {
    match ask(which, &format!("/cluster?cl={}", cl.as_str()), timeout) {
        Ok(r) if r.code == 200 => Ok(r.body),
        Ok(r) if r.code == 503 => {
            println!("not ready: {}", r.body.trim());
            Err(NOT_READY)
        }
        Ok(r) if r.code == 400 => Err(usage(r.body.trim())),
        Ok(r) => Err(no_agent(&ClientError::Protocol(format!(
            "unexpected answer {}: {}",
            r.code,
            r.body.trim()
        )))),
        Err(code) => Err(code),
    }
}

fn cluster_status(which: &Which, json: bool) -> u8 {
    let body = match cluster_view(which, Cl::EachQuorum, CLUSTER_TIMEOUT) {
        Ok(b) => b,
        Err(code) => return code,
    };
    if json {
        print!("{body}");
        return READY;
    }
    match cqlready::status::cluster::render(&body) {
        Ok(text) => {
            print!("{text}");
            READY
        }
        Err(e) => no_agent(&ClientError::Protocol(e)),
    }
}

fn safe_to_stop_at(which: &Which, timeout: Duration, cl: Cl) -> u8 {
    let body = match cluster_view(which, cl, timeout.max(CLUSTER_TIMEOUT)) {
        Ok(b) => b,
        Err(code) => return code,
    };
    match cqlready::status::cluster::verdict(&body) {
        Ok((true, why)) => {
            println!("safe to stop at {}: {why}", cl.as_str());
            READY
        }
        Ok((false, why)) => {
            println!("not safe to stop at {}: {why}", cl.as_str());
            NOT_READY
        }
        Err(e) => no_agent(&ClientError::Protocol(e)),
    }
}

/// Every watched thing must pass for the whole to be ready.
struct All(Vec<Watched>);

enum Watched {
    Cql(Prober),
    Tcp(Target),
    Agent(PathBuf, Duration),
}

impl Probe for All {
    fn check(&mut self) -> Result<Option<u8>, String> {
        let mut version = None;
        for w in &mut self.0 {
            match w {
                Watched::Cql(p) => {
                    version = p
                        .check()
                        .map(|a| Some(a.version))
                        .map_err(|e| format!("CQL on {}: {e}", p.target))?
                }
                Watched::Tcp(t) => cql::tcp_check(t).map_err(|e| format!("TCP {t}: {e}"))?,
                Watched::Agent(path, timeout) => match client::get(path, "/ready", *timeout) {
                    Ok(r) if r.code == 200 => {}
                    Ok(r) => {
                        return Err(format!(
                            "agent at {} says {}",
                            path.display(),
                            r.body.trim()
                        ))
                    }
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
        Ok(version)
    }
}

fn watch(a: WatchArgs) -> u8 {
    if a.ports.is_empty() && a.socket.is_none() {
        eprintln!("cqlready: watch needs at least one --port or --socket");
        return USAGE;
    }
    let tls = match a.tls.choose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cqlready: {e}");
            return USAGE;
        }
    };
    let endpoint = Endpoint {
        host: a.host.clone(),
        port: a.ports.first().copied().unwrap_or(0),
        port_source: "option".into(),
        host_source: "option".into(),
    };
    let Config {
        prober,
        pace,
        mut cql,
    } = Config::new(&a.options(), endpoint, tls);
    let (watched, labels) = watched(&a, prober);
    if !matches!(watched.first(), Some(Watched::Cql(_))) {
        cql.tls = None;
    }
    let pid = std::process::id();
    let notifier = Arc::new(Notifier::from_env(pid));
    let mut snap = Snapshot::new(pid, cql);
    snap.notify.socket = notifier.socket.clone();
    let shared = Shared::new(snap);
    let only_cql = watched.len() == 1 && matches!(watched[0], Watched::Cql(_));
    let pace = Pace {
        exit_on_degraded: true,
        ..if only_cql {
            pace
        } else {
            Pace {
                subject: "All watched".into(),
                place: labels.join(", "),
                ..pace
            }
        }
    };
    match monitor::run(&mut All(watched), pace, notifier, shared.clone()) {
        Ended::Degraded => {
            let s = shared.snapshot();
            eprintln!(
                "cqlready: {}",
                s.notify
                    .last_status
                    .unwrap_or_else(|| "stopped answering".into())
            );
            NOT_READY
        }
        Ended::Stopped => READY,
    }
}

/// What `watch` checks, each with its label: the first port by CQL (with
/// `prober`) unless `--probe tcp`, the other ports by TCP, then the agent.
fn watched(a: &WatchArgs, prober: Prober) -> (Vec<Watched>, Vec<String>) {
    let (mut watched, mut labels) = (Vec::new(), Vec::new());
    let mut prober = (a.probe == ProbeKind::Cql).then_some(prober);
    for &port in &a.ports {
        let t = Target {
            host: a.host.clone(),
            port,
            timeout: a.timeout,
        };
        match prober.take() {
            Some(p) => {
                labels.push(format!("{t} (CQL)"));
                watched.push(Watched::Cql(p));
            }
            None => {
                labels.push(format!("{t} (TCP)"));
                watched.push(Watched::Tcp(t));
            }
        }
    }
    if let Some(s) = &a.socket {
        labels.push(format!("the agent at {}", s.display()));
        watched.push(Watched::Agent(s.clone(), a.timeout));
    }
    (watched, labels)
}

/// `libcqlready.so` next to this binary, or in ../lib.
fn default_lib() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("libcqlready.so"),
        dir.join("../lib/libcqlready.so"),
        dir.join("../lib/cqlready/libcqlready.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn attach(pid: u32, options: &str, lib: Option<PathBuf>, timeout: Duration) -> u8 {
    if let Err(e) = cqlready::options::Options::parse(options) {
        eprintln!("cqlready: {e}");
        return USAGE;
    }
    let Some(lib) = lib.or_else(default_lib) else {
        eprintln!("cqlready: libcqlready.so is not next to this binary; give --lib PATH");
        return USAGE;
    };
    match cqlready::attach::load_agent(pid, Path::new(&lib), options, timeout) {
        Ok(what) => {
            println!("{what}");
            READY
        }
        Err(e) => {
            eprintln!("cqlready: {e}");
            NOT_READY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// What `cqlready status` says about the installed agent, for each
    /// layout and upgrade state.
    #[test]
    fn upgrade_note_names_the_version_to_restart_into() {
        let mapped = |p: &str| format!("7f0c1000-7f0c2000 r-xp 00000000 08:01 42  {p}\n");
        let old = mapped("/usr/lib/cqlready/0.1.0/libcqlready.so (deleted)");
        let new = mapped("/usr/lib/cqlready/0.3.0/libcqlready.so");
        let elsewhere = mapped("/opt/agent/libcqlready.so");
        let link = Path::new("0.3.0/libcqlready.so");
        let restart =
            Some("installed 0.3.0, this JVM runs 0.1.0: restart to load 0.3.0".to_string());
        let rows: [(&str, &str, Option<&Path>, Option<String>); 7] = [
            (&old, "0.1.0", Some(link), restart.clone()),
            (&new, "0.3.0", Some(link), None),
            // Not the packages' layout: the agent's own word.
            (&elsewhere, "0.1.0", Some(link), restart.clone()),
            (&elsewhere, "0.3.0", Some(link), None),
            ("", "0.1.0", Some(link), restart),
            // No package installed, or a link of another shape: nothing to say.
            (&old, "0.1.0", None, None),
            (
                &old,
                "0.1.0",
                Some(Path::new("/opt/x/libcqlready.so")),
                None,
            ),
        ];
        for (maps, agent, installed, want) in rows {
            assert_eq!(
                upgrade_note(maps, agent, installed),
                want,
                "{maps} {agent} {installed:?}"
            );
        }
    }

    /// `watch`'s pacing flags default to the agent's options table, and
    /// `--help` shows those defaults.
    #[test]
    fn watch_defaults_are_the_options_table() {
        let cli = Cli::try_parse_from(["cqlready", "watch", "--port", "9042"]).unwrap();
        let Command::Watch(args) = cli.command else {
            panic!("not parsed as watch");
        };
        let (got, table) = (args.options(), Options::default());
        assert_eq!(got, table);
        assert_eq!(args.timeout, table.timeout);
        let pace = Pace::from_options(&got, "CQL".into(), "127.0.0.1:9042".into());
        assert_eq!(
            (pace.interval, pace.check, pace.failures, pace.extend),
            (table.interval, table.check, table.failures, table.extend)
        );
        let help = Cli::command()
            .find_subcommand_mut("watch")
            .expect("a watch subcommand")
            .render_help()
            .to_string();
        for key in ["interval", "check", "timeout", "failures"] {
            let shown = format!("[default: {}]", default_of(key));
            assert!(
                help.contains(&shown),
                "watch --help lacks {shown} for --{key}:\n{help}"
            );
        }
    }

    /// Every subcommand's arguments hang together (clap checks conflicts
    /// and requirements only when a subcommand is first parsed).
    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gates_and_their_queries() {
        let gate = |args: &[&str]| {
            let cli =
                Cli::try_parse_from([&["cqlready", "probe", "--socket", "/s"], args].concat())
                    .map_err(|e| e.to_string())?;
            let Command::Probe {
                gate, safe_to_stop, ..
            } = cli.command
            else {
                return Err("not probe".into());
            };
            gate.query(safe_to_stop)
        };
        for (args, want) in [
            (&[][..], Ok("")),
            (&["--cluster"], Ok("scope=cluster&")),
            (
                &["--cluster", "--cl", "each_quorum"],
                Ok("scope=cluster&cl=EACH_QUORUM&"),
            ),
            (&["--dc"], Ok("scope=dc&")),
            (&["--dc", "dc-2"], Ok("scope=dc&dc=dc-2&")),
            (&["--safe-to-stop", "--cl", "TWO"], Ok("")),
        ] {
            assert_eq!(gate(args).as_deref(), want, "{args:?}");
        }
        for (args, says) in [
            (&["--cl", "ONE"][..], "--cl goes with --cluster"),
            (&["--dc", "a&b"], "a datacenter name of letters"),
            (&["--cluster", "--cl", "ANY"], "EACH_QUORUM"),
            (&["--cluster", "--dc"], "cannot be used with"),
        ] {
            let e = gate(args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
