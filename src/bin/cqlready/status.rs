//! `cqlready status`: the agent's state, its cluster view, and whether the
//! installed agent is the one the JVM runs.

use crate::ask::{ask, cluster_view, no_agent, CLUSTER_TIMEOUT};
use crate::render::{cluster, summary};
use crate::{Which, READY};
use cqlready::status::client::ClientError;
use cqlready::status::model::Snapshot;
use cqlready::status::view::Cl;
use std::path::Path;
use std::time::Duration;

pub fn status(which: &Which, json: bool) -> u8 {
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
pub const INSTALLED_LINK: &str = "/usr/lib/cqlready/libcqlready.so";

/// `<version>` of a path `.../cqlready/<version>/libcqlready.so`, the
/// packages' layout; `None` for any other path.
pub fn version_dir(path: &Path) -> Option<String> {
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
pub fn upgrade_note(maps: &str, agent_version: &str, installed: Option<&Path>) -> Option<String> {
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

pub fn cluster_status(which: &Which, json: bool) -> u8 {
    let body = match cluster_view(which, Cl::EachQuorum, CLUSTER_TIMEOUT) {
        Ok(b) => b,
        Err(code) => return code,
    };
    if json {
        print!("{body}");
        return READY;
    }
    match cluster(&body) {
        Ok(text) => {
            print!("{text}");
            READY
        }
        Err(e) => no_agent(&ClientError::Protocol(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
