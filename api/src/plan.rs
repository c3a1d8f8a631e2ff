//! Plans: what a scheduler wants changed, for the plan applier to check and commit.

use crate::alloc::Allocation;
use crate::eval::{AllocMetric, Evaluation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The output of one scheduler run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Plan {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub priority: i32,
    /// New or updated allocations, per node.
    pub node_allocation: BTreeMap<String, Vec<Allocation>>,
    /// Allocations to stop, per node (desired status and description set).
    pub node_update: BTreeMap<String, Vec<Allocation>>,
    /// Groups that could not be placed, with the reasons.
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    /// Evaluations the scheduler wants created (blocked evals, delayed reschedules).
    pub create_evals: Vec<Evaluation>,
    /// Placements that could not be made now and wait for capacity, per group.
    pub queued_allocations: BTreeMap<String, u64>,
    /// The state index the scheduler read.
    pub snapshot_index: u64,
    /// A deployment this plan starts (a new version of a service job with `update`).
    pub deployment: Option<crate::deployment::Deployment>,
    /// Status changes of other deployments (an older version's, cancelled).
    pub deployment_updates: Vec<crate::deployment::DeploymentStatusUpdate>,
}

impl Plan {
    pub fn is_no_op(&self) -> bool {
        self.node_allocation.values().all(Vec::is_empty)
            && self.node_update.values().all(Vec::is_empty)
            && self.create_evals.is_empty()
            && self.deployment.is_none()
            && self.deployment_updates.is_empty()
    }

    pub fn placements(&self) -> usize {
        self.node_allocation.values().map(Vec::len).sum()
    }

    pub fn stops(&self) -> usize {
        self.node_update.values().map(Vec::len).sum()
    }
}

/// What the plan applier committed of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanResult {
    pub node_allocation: BTreeMap<String, Vec<Allocation>>,
    pub node_update: BTreeMap<String, Vec<Allocation>>,
    /// Nodes whose part of the plan no longer fit and was refused.
    pub rejected_nodes: Vec<String>,
    pub alloc_index: u64,
    /// Set when part of the plan was refused: the scheduler must read at least this index.
    pub refresh_index: u64,
}
