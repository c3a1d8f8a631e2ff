//! The C10K rung of the C1M harness, as CI runs it: three debug-build servers and the
//! node simulator on loopback, 10 service jobs of 1,000 allocations on 1,000 simulated
//! nodes. It must end with every allocation running and no node marked down; its
//! timings are printed, never asserted (a debug build on a shared machine says little).

use std::path::PathBuf;
use std::process::Command;

/// The `drover` binary under test: `DROVER_BIN`, else the workspace's debug build.
fn drover_bin() -> PathBuf {
    std::env::var_os("DROVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/drover"))
}

// Against the debug build on the 2-core machine this takes about 15 s of load (30 s with
// the nodes' registration); the harness gives up after 5 minutes, so a pipeline that
// stalls fails the run instead of hanging it.
#[test]
fn c10k_places_and_runs_every_allocation_with_no_node_marked_down() {
    let drover = drover_bin();
    assert!(
        drover.exists(),
        "{} not found: run `cargo build --bin drover` first (or set DROVER_BIN)",
        drover.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_c1m"))
        .args(["--scale", "c10k", "--timeout-s", "300"])
        .env("DROVER_BIN", &drover)
        .env("NODE_SIM_BIN", env!("CARGO_BIN_EXE_node-sim"))
        .output()
        .expect("running the c1m harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("the harness prints a RESULT line");
    assert_eq!(result["nodes_down"], 0, "nodes were marked down: {result}");
    assert_eq!(
        result["complete"], true,
        "not every allocation ran: {result}"
    );
    assert_eq!(result["placed"], result["total"], "{result}");
    assert!(out.status.success(), "the harness failed: {result}");
}
