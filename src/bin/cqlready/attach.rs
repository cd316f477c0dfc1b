//! `cqlready attach`: load the agent into a running HotSpot JVM.

use crate::{NOT_READY, READY, USAGE};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `libcqlready.so` next to this binary, or in ../lib.
pub fn default_lib() -> Option<PathBuf> {
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

pub fn attach(pid: u32, options: &str, lib: Option<PathBuf>, timeout: Duration) -> u8 {
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
