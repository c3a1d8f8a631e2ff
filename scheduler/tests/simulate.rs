//! The simulator on a small cluster, so CI exercises every invariant through submissions,
//! updates, failures and drains with both algorithms.

use scheduler::sim::{SimConfig, Simulator, MAX_PACKING_RATIO};
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
fn simulated_cluster_keeps_every_invariant_and_packs_tightly_when_bin_packing() {
    for seed in [7, 8] {
        let report = run(Algorithm::BinPack, seed);
        let p = &report.packing;
        assert!(p.allocs > 0 && p.nodes_used >= p.lower_bound, "{report}");
        // Random samples of log2(N) nodes used ~4.6x the lower bound at 5,000 nodes.
        assert!(
            report.packing_holds(),
            "bin-packing used {:.2}x the lower bound (at most {MAX_PACKING_RATIO}x):\n{report}",
            p.ratio()
        );
    }
}

#[test]
fn simulation_is_deterministic() {
    let a = run(Algorithm::Spread, 3).to_string();
    let b = run(Algorithm::Spread, 3).to_string();
    assert_eq!(a, b);
}
