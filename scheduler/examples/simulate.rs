//! Runs the deterministic cluster simulator (`scheduler::sim`) and prints its report.
//!
//! ```text
//! cargo run --release -p scheduler --example simulate -- --nodes 5000 --jobs 200 --seed 7 --algorithm spread
//! ```
//!
//! Exits 1 when an invariant breaks (with the step it broke at), when the spread
//! algorithm leaves the even job more than one allocation apart between nodes, or when
//! bin-packing uses more than `MAX_PACKING_RATIO` times the lower bound of nodes; 2 on bad
//! arguments.

use scheduler::sim::{SimConfig, Simulator};
use scheduler::Algorithm;
use std::process::ExitCode;

fn parse(args: &[String]) -> Result<SimConfig, String> {
    let mut config = SimConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--nodes" => config.nodes = number(value()?)? as usize,
            "--jobs" => config.jobs = number(value()?)? as usize,
            "--seed" => config.seed = number(value()?)?,
            "--fail-percent" => config.fail_percent = number(value()?)? as usize,
            "--drain-percent" => config.drain_percent = number(value()?)? as usize,
            "--algorithm" => {
                config.algorithm = match value()?.as_str() {
                    "spread" => Algorithm::Spread,
                    "binpack" => Algorithm::BinPack,
                    other => {
                        return Err(format!("--algorithm: {other:?} is not spread or binpack"))
                    }
                }
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("simulate: {e}\nusage: simulate [--nodes N] [--jobs N] [--seed N] [--algorithm spread|binpack] [--fail-percent P] [--drain-percent P]");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    match Simulator::new(config).run() {
        Ok(report) => {
            println!("{report}");
            println!("  wall time: {:.1}s", started.elapsed().as_secs_f64());
            if report.placement_holds() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(violation) => {
            eprintln!("simulate: invariant broken at {violation}");
            ExitCode::FAILURE
        }
    }
}
