//! ARCHITECTURE.md's rules, enforced: the crate graph points one way, the scheduler stays
//! pure (no async runtime, HTTP, Raft or storage crates in its build, no I/O, clock or
//! global RNG in its source), the client agent never reaches Raft or the server crate,
//! `api` depends on no other Drover crate, and `drover-tls` (shared by servers, client
//! agents and the CLI) depends on none either, so it can never pull a server into an agent.
//!
//! The dependency checks ask cargo itself (`cargo metadata`, `cargo tree -p <crate>`, which
//! resolves features for that crate alone, as `cargo build -p` does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's own crates.
const DROVER_CRATES: [&str; 10] = [
    "acl",
    "api",
    "drover-tls",
    "jobspecs",
    "scheduler",
    "server",
    "client-agent",
    "ui",
    "loadtest",
    "drover",
];

/// Crates that would bring an async runtime, networking, HTTP, Raft or storage into the
/// scheduler.
const NOT_IN_SCHEDULER: [&str; 14] = [
    "tokio",
    "mio",
    "socket2",
    "reqwest",
    "hyper",
    "hyper-util",
    "h2",
    "axum",
    "tower",
    "sled",
    "openraft",
    "bollard",
    "futures-util",
    "async-trait",
];

/// Source text that means I/O, a clock or a global RNG.
const NOT_IN_SCHEDULER_SOURCE: [&str; 13] = [
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::io::stdin",
    "std::io::stdout",
    "File::",
    "SystemTime",
    "Instant::now",
    "thread_rng",
    "rand::random",
    "OsRng",
    "tokio::",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo {args:?}: {e}"));
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo prints UTF-8")
}

/// Every crate in `krate`'s normal (non-dev, non-build) dependency tree, itself included.
fn dependency_tree(krate: &str) -> BTreeSet<String> {
    cargo(&[
        "tree", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}",
    ])
    .lines()
    .filter_map(|l| l.split_whitespace().next())
    .map(str::to_string)
    .collect()
}

/// Each workspace crate's direct normal dependencies on other workspace crates.
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let meta: serde_json::Value =
        serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--no-deps"]))
            .expect("cargo metadata prints JSON");
    let mut edges = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("package name").to_string();
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| DROVER_CRATES.contains(d))
            .map(str::to_string)
            .collect();
        edges.insert(name, deps);
    }
    edges
}

fn forbidden_in(tree: &BTreeSet<String>, forbidden: &[&str]) -> Vec<String> {
    forbidden
        .iter()
        .filter(|f| tree.contains(**f))
        .map(|f| f.to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = e.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// `file:line: text` for each line of code (comments skipped) containing a pattern.
fn source_violations(dir: &Path, patterns: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a source file");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if let Some(p) = patterns.iter().find(|p| code.contains(**p)) {
                found.push(format!("{}:{}: {p}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn crate_dependencies_point_one_way() {
    // ARCHITECTURE.md: `api` <- `jobspecs`, `scheduler`, `client-agent`;
    // `scheduler`, `jobspecs` <- `server` <- `ui` (it reads the server's snapshot);
    // all of them <- the `drover` binary.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("api", &[][..]),
        ("acl", &[][..]),
        ("drover-tls", &[][..]),
        ("jobspecs", &["api"][..]),
        ("scheduler", &["api"][..]),
        ("client-agent", &["api", "drover-tls"][..]),
        ("ui", &["api", "scheduler", "server"][..]),
        (
            "server",
            &["api", "acl", "scheduler", "jobspecs", "drover-tls"][..],
        ),
        ("loadtest", &["api", "client-agent"][..]),
    ]);
    let edges = workspace_edges();
    let mut wrong = Vec::new();
    for (krate, allowed) in &allowed {
        let deps = edges
            .get(*krate)
            .unwrap_or_else(|| panic!("crate {krate} is not in the workspace"));
        for d in deps {
            if !allowed.contains(&d.as_str()) {
                wrong.push(format!("{krate} depends on {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against ARCHITECTURE.md's direction (change the code or the map): {wrong:?}"
    );
}

#[test]
fn api_depends_on_no_other_drover_crate() {
    let tree = dependency_tree("api");
    let others: Vec<&str> = DROVER_CRATES
        .iter()
        .copied()
        .filter(|c| *c != "api" && tree.contains(*c))
        .collect();
    assert!(others.is_empty(), "api depends on {others:?}");
}

#[test]
fn the_scheduler_builds_without_runtime_network_raft_or_storage_crates() {
    let tree = dependency_tree("scheduler");
    assert!(tree.contains("api"), "cargo tree saw no api: {tree:?}");
    let mut bad = forbidden_in(&tree, &NOT_IN_SCHEDULER);
    bad.extend(
        DROVER_CRATES
            .iter()
            .filter(|c| !["api", "scheduler"].contains(c) && tree.contains(**c))
            .map(|c| c.to_string()),
    );
    assert!(
        bad.is_empty(),
        "the scheduler must stay pure, but its build pulls in {bad:?} \
         (see `cargo tree -p scheduler -e normal -i <crate>`)"
    );
}

#[test]
fn the_scheduler_source_does_no_io_reads_no_clock_and_uses_no_global_rng() {
    let found = source_violations(&root().join("scheduler/src"), &NOT_IN_SCHEDULER_SOURCE);
    assert!(
        found.is_empty(),
        "the scheduler is pure (time arrives in the evaluation, randomness from the seed):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_client_agent_never_reaches_raft_or_the_server_crate() {
    let tree = dependency_tree("client-agent");
    assert!(tree.contains("api"), "cargo tree saw no api: {tree:?}");
    let bad = forbidden_in(&tree, &["openraft", "server", "sled", "scheduler"]);
    assert!(
        bad.is_empty(),
        "the client agent talks to servers only through api::Client, but depends on {bad:?}"
    );
}

#[test]
fn the_tls_crate_depends_on_no_other_drover_crate() {
    // Servers, client agents and the CLI all use it: a Drover crate under it would reach
    // every one of them (a server crate under it would put Raft into the agent).
    let tree = dependency_tree("drover-tls");
    assert!(
        tree.contains("rustls"),
        "cargo tree saw no rustls: {tree:?}"
    );
    let others: Vec<&str> = DROVER_CRATES
        .iter()
        .copied()
        .filter(|c| *c != "drover-tls" && tree.contains(*c))
        .collect();
    assert!(
        others.is_empty(),
        "drover-tls depends on {others:?} (it must not depend on server, client-agent, \
         scheduler, ui or any other Drover crate)"
    );
    // And it is what the agent's TLS comes from, not a path to the server.
    let agent = dependency_tree("client-agent");
    assert!(agent.contains("drover-tls"), "{agent:?}");
}

#[test]
fn the_source_scan_finds_a_planted_violation() {
    // The scan itself must be able to fail: plant one violation and one comment.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/x.rs"),
        "// std::fs in a comment is fine\nfn f() { let _ = std::fs::read(\"a\"); }\n",
    )
    .unwrap();
    let found = source_violations(dir.path(), &NOT_IN_SCHEDULER_SOURCE);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("x.rs:2"), "{found:?}");
}

#[test]
fn the_dependency_probe_sees_the_crates_the_rules_forbid() {
    // The rules above pass by absence; show the probe would report them where they are.
    let server = dependency_tree("server");
    for c in [
        "tokio",
        "hyper",
        "axum",
        "openraft",
        "sled",
        "scheduler",
        "api",
    ] {
        assert!(
            server.contains(c),
            "cargo tree -p server shows no {c}: {server:?}"
        );
    }
    assert!(forbidden_in(&server, &NOT_IN_SCHEDULER).contains(&"openraft".to_string()));
}
