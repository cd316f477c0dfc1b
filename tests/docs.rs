//! The documents show what the code and the measurements say, not what
//! someone typed once:
//!
//! - every `<!-- tables of bench/results-X.md ... -->` block in README.md and
//!   docs/ is the tables of that results file, as its script last wrote it,
//!   and every `<!-- text of F ... -->` block the whole of F;
//! - README.md's options table is rendered from the options code;
//! - docs/design.md's module figures are tools/structure.py's, with no
//!   import circle, no import from a lower layer up, no function over its limit;
//! - the `/status` JSON sample has the keys a running agent's `/status` has.
//!
//! `CQLREADY_WRITE_DOCS=1 cargo test --test docs` rewrites the generated
//! blocks (not the sample) from their sources.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn writing() -> bool {
    std::env::var("CQLREADY_WRITE_DOCS").as_deref() == Ok("1")
}

/// README.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let root = manifest_dir();
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// The Markdown tables of a results file, one blank line between tables.
fn tables_of(file: &Path) -> String {
    let text = fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let row = line.starts_with('|');
        if row && !in_table && !out.is_empty() {
            out.push(String::new());
        }
        if row {
            out.push(line.to_string());
        }
        in_table = row;
    }
    out.join("\n")
}

/// Replaces (or checks) the text between `begin` and `end` lines; returns
/// the differences found, one line each.
fn fill(doc: &Path, text: &mut String, begin: &str, end: &str, want: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
        return vec![format!("{}: no block {begin:?} … {end:?}", doc.display())];
    };
    let body_start = a + text[a..].find('\n').expect("a line after the marker") + 1;
    let have = text[body_start..b].trim_end_matches('\n');
    if have == want {
        return Vec::new();
    }
    if writing() {
        text.replace_range(body_start..b, &format!("{want}\n"));
        return Vec::new();
    }
    vec![format!(
        "{}: the block after {begin:?} is not its source's (CQLREADY_WRITE_DOCS=1 cargo test --test docs rewrites it)",
        doc.display()
    )]
}

/// The blocks `<!-- KIND F ...-->` … `<!-- end of F -->` in `text`: (F, begin marker).
fn blocks(text: &str, kind: &str) -> Vec<(String, String)> {
    let opening = format!("<!-- {kind} ");
    text.match_indices(&opening)
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let name = rest[..rest.find(' ').expect("a file name")].to_string();
            let begin = format!("{opening}{name} ");
            (name, begin)
        })
        .collect()
}

#[test]
fn result_tables_are_the_results_files() {
    let root = manifest_dir();
    let mut problems = Vec::new();
    let mut count = 0;
    for doc in documents() {
        let mut text = fs::read_to_string(&doc).expect("read a document");
        for kind in ["tables of", "text of"] {
            for (name, begin) in blocks(&text.clone(), kind) {
                count += 1;
                let end = format!("<!-- end of {name} -->");
                let file = root.join(&name);
                if !file.exists() {
                    problems.push(format!("{}: {name} does not exist", doc.display()));
                    continue;
                }
                let want = if kind == "tables of" {
                    tables_of(&file)
                } else {
                    fs::read_to_string(&file)
                        .unwrap_or_default()
                        .trim_end()
                        .to_string()
                };
                if want.is_empty() {
                    problems.push(format!("{}: {name} has nothing to show", doc.display()));
                    continue;
                }
                problems.extend(fill(&doc, &mut text, &begin, &end, &want));
            }
        }
        if writing() {
            fs::write(&doc, &text).expect("write a document");
        }
    }
    assert!(count >= 10, "only {count} generated blocks found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The options table as the options code has it.
fn options_table() -> String {
    let mut rows = vec![
        "| key | default | meaning |".to_string(),
        "|---|---|---|".to_string(),
    ];
    for key in cqlready::options::KEYS {
        rows.push(format!(
            "| `{}` | `{}` | {} |",
            key.name,
            key.default,
            key.help.replace('|', "\\|")
        ));
    }
    rows.join("\n")
}

#[test]
fn the_options_table_is_the_options_code() {
    let path = manifest_dir().join("README.md");
    let mut text = fs::read_to_string(&path).expect("read README.md");
    let problems = fill(
        &path,
        &mut text,
        "<!-- options table",
        "<!-- end of options table -->",
        &options_table(),
    );
    if writing() {
        fs::write(&path, &text).expect("write README.md");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_module_figures_are_the_modules() {
    let mut cmd = Command::new("python3");
    cmd.arg(manifest_dir().join("tools/structure.py"));
    cmd.arg(if writing() { "--write" } else { "--check" });
    let o = cmd.output().expect("run python3 tools/structure.py");
    assert!(
        o.status.success(),
        "tools/structure.py --check:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every key path of a JSON value ("cql.tls.kept"), objects only.
fn keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.push(path.clone());
            keys(child, &path, out);
        }
    }
}

/// The first ```json block after `heading` in `doc`.
fn json_sample(doc: &Path, heading: &str) -> Value {
    let text = fs::read_to_string(doc).expect("read the document");
    let from = text.find(heading).expect("the sample's heading");
    let start = from + text[from..].find("```json\n").expect("a json block") + 8;
    let end = start + text[start..].find("```").expect("its end");
    serde_json::from_str(&text[start..end]).expect("the sample is JSON")
}

#[test]
fn the_status_sample_has_the_keys_an_agent_serves() {
    let doc = manifest_dir().join("docs/status-socket.md");
    let sample = json_sample(&doc, "A ready Cassandra node's `/status`");
    let java = jvms().into_iter().next().expect("a JVM");
    let port = free_port();
    let mut jvm = Jvm::builder(&java)
        .opt(format!("port={port}"))
        .opt("interval=20ms")
        .spawn();
    jvm.listen(port, "cql");
    // wait_status returns the /status JSON the agent served.
    let live = jvm.wait_status("ready", deadline(), |s| s["state"] == "ready");
    let (mut have, mut want) = (Vec::new(), Vec::new());
    keys(&sample, "", &mut have);
    keys(&live, "", &mut want);
    // The fixture is not Cassandra: its `cassandra` and `cluster` are null,
    // and it speaks no TLS; the sample's keys below those are a real node's.
    let missing: Vec<&String> = want.iter().filter(|k| !have.contains(k)).collect();
    let extra: Vec<&String> = have
        .iter()
        .filter(|k| !want.contains(k))
        .filter(|k| {
            !["cassandra.", "cluster.", "cql.tls."]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/status-socket.md's sample lacks {missing:?} and has {extra:?} that /status does not"
    );
}

#[test]
fn every_relative_link_reaches_a_file() {
    let mut broken = Vec::new();
    let mut links = 0;
    for doc in documents() {
        let text = fs::read_to_string(&doc).expect("read a document");
        let dir = doc.parent().expect("a directory");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links += 1;
            if !dir.join(target).exists() {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(links >= 10, "only {links} relative links found");
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}
