//! What to check, and how often, built once from the options, the endpoint
//! and the TLS choice: the one builder the agent and `cqlready watch` share,
//! so the prober, its pacing and the snapshot's CQL facts cannot disagree.

use crate::monitor::Pace;
use crate::options::Options;
use crate::probe::cql::{Prober, Target};
use crate::probe::tls::Choice;
use crate::status::model::Cql;

/// Where the check goes and where each half of that came from ("yaml",
/// "option", "default", ...), for `/status` and the log.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub port_source: String,
    pub host_source: String,
}

/// The check, built.
#[derive(Debug)]
pub struct Config {
    pub prober: Prober,
    pub pace: Pace,
    /// The snapshot's CQL facts before the first check.
    pub cql: Cql,
}

impl Config {
    pub fn new(options: &Options, ep: Endpoint, tls: Choice) -> Config {
        let target = Target {
            host: ep.host.clone(),
            port: ep.port,
            timeout: options.timeout,
        };
        let pace = Pace::from_options(options, tls.subject, target.to_string());
        let mut prober = Prober::with_tls(target, tls.client);
        prober.keep = options.tls_keep;
        let cql = Cql {
            host: ep.host,
            port: ep.port,
            source: ep.port_source,
            host_source: ep.host_source,
            protocol_version: None,
            tls: tls.info,
        };
        Config { prober, pace, cql }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Toggle;
    use std::time::Duration;

    #[test]
    fn one_build_for_prober_pace_and_snapshot() {
        let options = Options::parse("timeout=250ms,tls_keep=5s,extend=1m").unwrap();
        let tls = crate::probe::tls::choose(Toggle::On, (false, "option"), None, None, None);
        let ep = Endpoint {
            host: "127.0.0.2".into(),
            port: 9142,
            port_source: "yaml".into(),
            host_source: "option".into(),
        };
        let c = Config::new(&options, ep, tls);
        assert_eq!(c.prober.target.to_string(), "127.0.0.2:9142");
        assert_eq!(c.prober.target.timeout, Duration::from_millis(250));
        assert_eq!(c.prober.keep, Duration::from_secs(5));
        assert!(c.prober.tls.is_some());
        assert_eq!(
            (c.pace.subject.as_str(), c.pace.place.as_str()),
            ("CQL over TLS", "127.0.0.2:9142")
        );
        assert_eq!(c.pace.extend, Duration::from_secs(60));
        assert_eq!(
            (c.cql.source.as_str(), c.cql.host_source.as_str()),
            ("yaml", "option")
        );
        assert_eq!(c.cql.tls.as_ref().map(|t| t.why.as_str()), Some("option"));
    }
}
