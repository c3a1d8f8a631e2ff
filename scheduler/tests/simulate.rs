//! The simulator on a small cluster, so CI exercises every invariant through submissions,
//! updates, failures and drains with both algorithms.

use scheduler::sim::{SimConfig, Simulator};
use scheduler::Algorithm;

fn run(algorithm: Algorithm, seed: u64) -> scheduler::sim::Report {
    let config = SimConfig {
        nodes: 300,
        jobs: 30,
        seed,
        algorithm,
        fail_percent: 3,
        drain_percent: 3,
    };
    match Simulator::new(config).run() {
        Ok(report) => report,
        Err(v) => panic!("invariant broken: {v}"),
    }
}

#[test]
fn simulated_cluster_keeps_every_invariant_and_spreads_evenly() {
    let report = run(Algorithm::Spread, 7);
    assert!(report.evenness_holds(), "{report}");
    assert!(
        report.evenness.allocs > 0 && report.stats.stops > 0,
        "{report}"
    );
}

#[test]
fn simulated_cluster_keeps_every_invariant_when_bin_packing() {
    let report = run(Algorithm::BinPack, 8);
    assert!(
        report.packing.nodes_used >= report.packing.lower_bound,
        "{report}"
    );
}

#[test]
fn simulation_is_deterministic() {
    let a = run(Algorithm::Spread, 3).to_string();
    let b = run(Algorithm::Spread, 3).to_string();
    assert_eq!(a, b);
}
