//! What a simulation run prints: how evenly the spread algorithm placed the even job, how
//! tightly bin-packing filled nodes against a lower bound, and counters.

use super::SimConfig;
use crate::mock::MemState;
use crate::usage::Ask;
use crate::Algorithm;
use api::Job;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub evals: u64,
    pub placements: u64,
    pub stops: u64,
    pub blocked_evals: u64,
    pub forced_drains: u64,
    /// Jobs whose last evaluation could not place everything, with the reasons.
    pub unplaced: BTreeMap<String, Vec<String>>,
}

/// Bin-packing's promise, checked by the simulator: after submission, the service and batch
/// allocations sit on at most this many times the fewest nodes that could hold them, plus
/// [`Packing::distinct_allowance`] nodes.
pub const MAX_PACKING_RATIO: f64 = 1.3;

/// Nodes holding service and batch allocations, against the fewest that could hold them.
#[derive(Debug, Clone, Default)]
pub struct Packing {
    pub allocs: usize,
    pub nodes_used: usize,
    /// Fewest nodes whose capacity covers the CPU and memory asked for (largest first):
    /// no placement can use fewer.
    pub lower_bound: usize,
    /// The most allocations of one job that need a node each (a static port): placed
    /// after the busy nodes filled up, such a job opens up to that many nodes, which no
    /// online placement can avoid and the capacity bound does not see. On 300 nodes one
    /// such job can be most of the gap; on 5,000 it is noise.
    pub distinct_allowance: usize,
}

impl Packing {
    /// Nodes used over the lower bound (1.0 is perfect).
    pub fn ratio(&self) -> f64 {
        self.nodes_used as f64 / self.lower_bound.max(1) as f64
    }

    /// The most nodes bin-packing may use: [`MAX_PACKING_RATIO`] x the lower bound plus
    /// the distinct-node allowance.
    pub fn allowed(&self) -> usize {
        (MAX_PACKING_RATIO * self.lower_bound as f64).ceil() as usize + self.distinct_allowance
    }
}

/// Allocations of the even job per schedulable node.
#[derive(Debug, Clone, Default)]
pub struct Evenness {
    pub nodes: usize,
    pub allocs: usize,
    pub min: usize,
    pub max: usize,
}

impl Evenness {
    pub fn spread(&self) -> usize {
        self.max - self.min
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub config: SimConfig,
    pub packing: Packing,
    /// The even job submitted last.
    pub evenness: Evenness,
    /// The even job submitted first, after updates, failures and drains moved it around.
    pub evenness_after_churn: Evenness,
    pub stats: Stats,
    pub failed_nodes: usize,
    pub drained_nodes: usize,
}

impl Report {
    /// The spread algorithm's promise: a job with count = k x nodes ends with per-node
    /// counts at most one apart.
    pub fn evenness_holds(&self) -> bool {
        self.config.algorithm != Algorithm::Spread || self.evenness.spread() <= 1
    }

    /// Bin-packing's promise: the service and batch allocations use at most
    /// [`Packing::allowed`] nodes.
    pub fn packing_holds(&self) -> bool {
        self.config.algorithm != Algorithm::BinPack
            || self.packing.nodes_used <= self.packing.allowed()
    }

    /// Both promises of the algorithm the run used.
    pub fn placement_holds(&self) -> bool {
        self.evenness_holds() && self.packing_holds()
    }
}

pub fn packing(state: &MemState, include: impl Fn(&Job) -> bool) -> Packing {
    let mut used = HashSet::new();
    let (mut cpu, mut mem, mut allocs) = (0i64, 0i64, 0usize);
    let mut distinct: BTreeMap<&str, usize> = BTreeMap::new();
    for a in state.allocs.values().filter(|a| !a.terminal()) {
        let Some(job) = a.job.as_ref() else { continue };
        if !include(job) || !matches!(job.job_type.as_str(), "service" | "batch") {
            continue;
        }
        let ask = Ask::of_alloc(a);
        cpu += ask.cpu;
        mem += ask.memory_mb;
        allocs += 1;
        used.insert(a.node_id.clone());
        if !ask.reserved_ports.is_empty() {
            *distinct.entry(&a.job_id).or_default() += 1;
        }
    }
    let mut caps: Vec<(i64, i64)> = state
        .nodes
        .values()
        .map(|n| {
            let (c, m, _) = n.allocatable();
            (c, m)
        })
        .collect();
    caps.sort_by(|a, b| b.cmp(a));
    let (mut have_cpu, mut have_mem, mut lower_bound) = (0, 0, 0);
    for (c, m) in caps {
        if have_cpu >= cpu && have_mem >= mem {
            break;
        }
        have_cpu += c;
        have_mem += m;
        lower_bound += 1;
    }
    Packing {
        allocs,
        nodes_used: used.len(),
        lower_bound,
        distinct_allowance: distinct.values().copied().max().unwrap_or(0),
    }
}

pub fn evenness(state: &MemState, job_id: &str) -> Evenness {
    let mut per_node: BTreeMap<&str, usize> = state
        .nodes
        .values()
        .filter(|n| n.ready_and_eligible())
        .map(|n| (n.id.as_str(), 0))
        .collect();
    let mut allocs = 0;
    for a in state
        .allocs
        .values()
        .filter(|a| !a.terminal() && a.job_id == job_id)
    {
        allocs += 1;
        if let Some(n) = per_node.get_mut(a.node_id.as_str()) {
            *n += 1;
        }
    }
    Evenness {
        nodes: per_node.len(),
        allocs,
        min: per_node.values().copied().min().unwrap_or(0),
        max: per_node.values().copied().max().unwrap_or(0),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "simulated {} nodes, {} jobs, seed {}, algorithm {:?}",
            c.nodes, c.jobs, c.seed, c.algorithm
        )?;
        let s = &self.stats;
        writeln!(
            f,
            "  {} evaluations, {} placements, {} stops, {} blocked evaluations; \
             {} nodes failed and recovered, {} drained ({} forced)",
            s.evals,
            s.placements,
            s.stops,
            s.blocked_evals,
            self.failed_nodes,
            self.drained_nodes,
            s.forced_drains
        )?;
        writeln!(f, "  invariants: held after every evaluation")?;
        for (job, why) in self.stats.unplaced.iter().take(5) {
            writeln!(f, "  job {job} waits for room: {}", why.join(" | "))?;
        }
        let p = &self.packing;
        writeln!(
            f,
            "  packing (after submission): {} service/batch allocs on {} nodes; lower bound {} nodes ({:.2}x){}",
            p.allocs,
            p.nodes_used,
            p.lower_bound,
            p.ratio(),
            match (c.algorithm, self.packing_holds()) {
                (Algorithm::Spread, _) => String::new(),
                (Algorithm::BinPack, holds) => format!(
                    "; allowed {MAX_PACKING_RATIO}x + {} for one static-port job = {}{}",
                    p.distinct_allowance,
                    p.allowed(),
                    if holds { "" } else { "  ** LOOSE **" }
                ),
            }
        )?;
        let e = &self.evenness;
        writeln!(
            f,
            "  evenness (job \"{}\", {} allocs on {} schedulable nodes): min {} max {} per node, max - min = {}{}",
            super::world::EVEN_FINAL_JOB,
            e.allocs,
            e.nodes,
            e.min,
            e.max,
            e.spread(),
            if self.evenness_holds() { "" } else { "  ** UNEVEN **" }
        )?;
        let c = &self.evenness_after_churn;
        write!(
            f,
            "  after churn (job \"{}\", submitted first, not rebalanced): min {} max {} per node",
            super::world::EVEN_JOB,
            c.min,
            c.max
        )
    }
}
