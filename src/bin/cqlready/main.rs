//! `cqlready`: ask an agent (status, probe, wait), watch ports as a
//! `Type=notify` service (watch), or load the agent into a running JVM (attach).
//! This file parses the arguments and hands each subcommand to its module;
//! the text the command prints is `render`'s. Thin: every piece of work is
//! the library's, shared with the agent.

mod ask;
mod attach;
mod probe;
mod render;
mod status;
mod wait;
mod watch;

use clap::{Args, Parser, Subcommand};
use cqlready::options::{default_of, Options};
use cqlready::status::view::Cl;
use cqlready::text::parse_duration;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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

fn cl(s: &str) -> Result<Cl, String> {
    Cl::parse(s)
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
        } => status::cluster_status(&which, json),
        Command::Status { which, json, .. } => status::status(&which, json),
        Command::Probe {
            which,
            port: Some(port),
            host,
            timeout,
            tls,
            ..
        } => {
            let _ = which;
            probe::probe_port(host, port, timeout, &tls)
        }
        Command::Probe {
            which,
            timeout,
            safe_to_stop,
            gate,
            ..
        } => match gate.query(safe_to_stop) {
            Err(e) => ask::usage(&e),
            Ok(_) if safe_to_stop => {
                probe::safe_to_stop_at(&which, timeout, gate.cl.unwrap_or(Cl::LocalQuorum))
            }
            Ok(scope) => probe::probe(&which, timeout, &scope),
        },
        Command::Wait {
            which,
            timeout,
            gate,
        } => match gate.query(false) {
            Err(e) => ask::usage(&e),
            Ok(scope) => wait::wait(&which, timeout, &scope),
        },
        Command::Watch(args) => watch::watch(args),
        Command::Attach {
            pid,
            options,
            lib,
            timeout,
        } => attach::attach(pid, &options, lib, timeout),
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use cqlready::monitor::Pace;

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
