//! Whether an ask fits on a node ([`check_fit`], the one place that decides it) and the
//! plan applier's re-check of one node's share of a plan ([`check_node_plan`]).

use super::{Ask, ClusterUsage, NodeUsage};
use crate::State;
use api::{Allocation, Node};
use std::collections::HashSet;
use std::fmt;

/// Why an ask does not fit on a node, with the numbers that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    Cpu {
        asked: i64,
        free: i64,
    },
    Memory {
        asked: i64,
        free: i64,
    },
    Disk {
        asked: i64,
        free: i64,
    },
    /// A static port the node already hands to another allocation (or the ask twice).
    Port(i64),
    /// A host port the scheduler assigned to a dynamic port, which another allocation
    /// took meanwhile (or the ask holds twice).
    DynamicPort(i64),
    /// Fewer free host ports in the dynamic range than the ask has dynamic ports.
    NoDynamicPort {
        asked: u32,
        free: i64,
    },
}

impl Exhausted {
    /// The name used in `AllocMetric::dimension_exhausted`.
    pub fn dimension(&self) -> &'static str {
        match self {
            Exhausted::Cpu { .. } => "cpu",
            Exhausted::Memory { .. } => "memory",
            Exhausted::Disk { .. } => "disk",
            Exhausted::Port(_) => "network: reserved port collision",
            Exhausted::DynamicPort(_) => "network: port collision",
            Exhausted::NoDynamicPort { .. } => crate::ports::DIMENSION_NO_DYNAMIC_PORT,
        }
    }
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exhausted::Cpu { asked, free } => {
                write!(
                    f,
                    "cpu exhausted: it asks {asked} MHz and {free} MHz are free"
                )
            }
            Exhausted::Memory { asked, free } => {
                write!(
                    f,
                    "memory exhausted: it asks {asked} MB and {free} MB are free"
                )
            }
            Exhausted::Disk { asked, free } => {
                write!(
                    f,
                    "disk exhausted: it asks {asked} MB and {free} MB are free"
                )
            }
            Exhausted::Port(p) => write!(
                f,
                "static port {p} is already reserved on the node by another allocation"
            ),
            Exhausted::DynamicPort(p) => write!(
                f,
                "dynamic port {p} was assigned to it but is already taken on the node by another allocation"
            ),
            Exhausted::NoDynamicPort { asked, free } => write!(
                f,
                "dynamic port selection failed: it asks {asked} dynamic ports and {free} of {}-{} are free",
                crate::ports::DYNAMIC_PORTS.start(),
                crate::ports::DYNAMIC_PORTS.end()
            ),
        }
    }
}

/// Whether the ask's CPU and memory fit beside `cpu` and `memory_mb` already held: the
/// first two checks of [`check_fit`], also answerable from a node's load counters
/// ([`super::NodeLoad`]) without reading its allocations.
pub fn check_cpu_memory(
    node: &Node,
    used_cpu: i64,
    used_memory_mb: i64,
    ask: &Ask,
) -> Result<(), Exhausted> {
    let (cpu, memory_mb, _) = node.allocatable();
    if used_cpu + ask.cpu > cpu {
        return Err(Exhausted::Cpu {
            asked: ask.cpu,
            free: (cpu - used_cpu).max(0),
        });
    }
    if used_memory_mb + ask.memory_mb > memory_mb {
        return Err(Exhausted::Memory {
            asked: ask.memory_mb,
            free: (memory_mb - used_memory_mb).max(0),
        });
    }
    Ok(())
}

/// Whether an ask fits on a node that already holds `usage`: CPU, memory and disk within
/// what the node may hand out, no host port (static, or dynamic already assigned) taken
/// twice, and enough free ports in the dynamic range for the dynamic ports still to
/// assign. The one place that decides "fits", for the scheduler's placements and the
/// plan applier's re-check.
pub fn check_fit(node: &Node, usage: &NodeUsage, ask: &Ask) -> Result<(), Exhausted> {
    let (_, _, disk_mb) = node.allocatable();
    check_cpu_memory(node, usage.cpu, usage.memory_mb, ask)?;
    if usage.disk_mb + ask.disk_mb > disk_mb {
        return Err(Exhausted::Disk {
            asked: ask.disk_mb,
            free: (disk_mb - usage.disk_mb).max(0),
        });
    }
    // Asks hold a handful of ports: a linear scan beats building a set.
    let mut in_range = 0i64;
    for (i, p) in ask.host_ports().enumerate() {
        let twice = ask.host_ports().take(i).any(|q| q == p);
        if usage.ports.contains_key(&p) || twice {
            return Err(if i < ask.reserved_ports.len() {
                Exhausted::Port(p)
            } else {
                Exhausted::DynamicPort(p)
            });
        }
        in_range += i64::from(crate::ports::DYNAMIC_PORTS.contains(&p));
    }
    if ask.unassigned_dynamic > 0 {
        let free = usage.free_dynamic_ports() - in_range;
        if free < i64::from(ask.unassigned_dynamic) {
            return Err(Exhausted::NoDynamicPort {
                asked: ask.unassigned_dynamic,
                free: free.max(0),
            });
        }
    }
    Ok(())
}

/// Why an ask does not fit on a node: the name used in `AllocMetric::dimension_exhausted`.
pub fn fit(node: &Node, usage: &NodeUsage, ask: &Ask) -> Result<(), &'static str> {
    check_fit(node, usage, ask).map_err(|e| e.dimension())
}

/// Why the plan applier refuses one node's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRefusal {
    /// The node left the state since the plan was made.
    NodeGone { node_id: String },
    /// New allocations on a node that is down, ineligible or draining.
    NotReady { node: String, why: String },
    /// One of the node's allocations does not fit beside what the node holds now.
    NoRoom {
        node: String,
        alloc: String,
        reason: Exhausted,
    },
}

impl NodeRefusal {
    /// The exhausted dimension, when the refusal is about room.
    pub fn exhausted(&self) -> Option<&Exhausted> {
        match self {
            NodeRefusal::NoRoom { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl fmt::Display for NodeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRefusal::NodeGone { node_id } => {
                write!(f, "node {node_id} no longer exists")
            }
            NodeRefusal::NotReady { node, why } => {
                write!(f, "node {node} takes no new allocations: it is {why}")
            }
            NodeRefusal::NoRoom {
                node,
                alloc,
                reason,
            } => write!(f, "node {node} has no room for {alloc}: {reason}"),
        }
    }
}

/// The plan applier's check of one node's share of a plan against a newer state: the
/// allocations the plan places or updates there, after the ones it stops anywhere
/// (`stopping`) are gone. Uses the same usage and [`check_fit`] as placement, so the
/// applier and the scheduler can never disagree about what fits.
///
/// Allocations that are already terminal (re-sent only to record a follow-up evaluation)
/// take no room; in-place updates replace the version the node holds.
pub fn check_node_plan<S: State>(
    state: &S,
    node_id: &str,
    stopping: &HashSet<&str>,
    placing: &[Allocation],
) -> Result<(), NodeRefusal> {
    let Some(node) = state.node(node_id) else {
        return Err(NodeRefusal::NodeGone {
            node_id: node_id.to_string(),
        });
    };
    let label = if node.name.is_empty() || node.name == node.id {
        node.id.clone()
    } else {
        format!("{} ({})", node.name, node.id)
    };
    let existing = state.allocs_by_node(node_id);
    let held: HashSet<&str> = existing.iter().map(|a| a.id.as_str()).collect();
    let updating: HashSet<&str> = placing.iter().map(|a| a.id.as_str()).collect();
    if !node.ready_and_eligible() && placing.iter().any(|a| !held.contains(a.id.as_str())) {
        let mut why = vec![node.status.clone()];
        if node.scheduling_eligibility == api::NODE_INELIGIBLE {
            why.push("ineligible".into());
        }
        if node.drain {
            why.push("draining".into());
        }
        return Err(NodeRefusal::NotReady {
            node: label,
            why: why.join(", "),
        });
    }
    let mut usage = ClusterUsage::new(state);
    for a in &existing {
        if stopping.contains(a.id.as_str()) || updating.contains(a.id.as_str()) {
            usage.stop(a);
        }
    }
    for a in placing.iter().filter(|a| !a.terminal()) {
        let ask = Ask::of_alloc(a);
        if let Err(reason) = check_fit(&node, usage.node(node_id), &ask) {
            let alloc = if a.name.is_empty() {
                format!("allocation {}", a.id)
            } else {
                format!("allocation {} ({})", a.name, a.id)
            };
            return Err(NodeRefusal::NoRoom {
                node: label,
                alloc,
                reason,
            });
        }
        if a.node_id == node_id {
            usage.place(a);
        } else {
            let mut on_node = a.clone();
            on_node.node_id = node_id.to_string().into();
            usage.place(&on_node);
        }
    }
    Ok(())
}
