//! Evaluations: the unit of scheduling work.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const EVAL_STATUS_PENDING: &str = "pending";
pub const EVAL_STATUS_COMPLETE: &str = "complete";
pub const EVAL_STATUS_FAILED: &str = "failed";
pub const EVAL_STATUS_BLOCKED: &str = "blocked";
pub const EVAL_STATUS_CANCELED: &str = "canceled";

pub const TRIGGER_JOB_REGISTER: &str = "job-register";
pub const TRIGGER_JOB_DEREGISTER: &str = "job-deregister";
pub const TRIGGER_NODE_UPDATE: &str = "node-update";
pub const TRIGGER_ALLOC_FAILURE: &str = "alloc-failure";
pub const TRIGGER_QUEUED_ALLOCS: &str = "queued-allocs";
pub const TRIGGER_RETRY_FAILED_ALLOC: &str = "alloc-failure";
pub const TRIGGER_DEPLOYMENT_WATCHER: &str = "deployment-watcher";
pub const TRIGGER_ALLOC_HEALTH: &str = "alloc-health";
pub const TRIGGER_JOB_SCALING: &str = "job-scaling";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub eval_type: String,
    pub triggered_by: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_modify_index: u64,
    pub status: String,
    pub status_description: String,
    /// Unix nanoseconds before which the eval must not run (reschedule delays).
    pub wait_until: i64,
    pub next_eval: String,
    pub previous_eval: String,
    pub blocked_eval: String,
    /// The deployment whose progress triggered it.
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    pub queued_allocations: BTreeMap<String, u64>,
    pub snapshot_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Evaluation {
    /// A fresh pending evaluation of `job`, the one way servers start one: `id` and `now`
    /// (Unix nanoseconds) are chosen by the caller, so a leader can carry them in a Raft
    /// entry. Callers set what is specific to them (`node_id`, `job_modify_index`) on the
    /// result.
    pub fn new_for_job(job: &crate::Job, trigger: &str, now: i64, id: String) -> Evaluation {
        Evaluation {
            id,
            namespace: job.ns().to_string(),
            priority: job.priority,
            eval_type: job.job_type.clone(),
            triggered_by: trigger.into(),
            job_id: job.id.clone(),
            status: EVAL_STATUS_PENDING.into(),
            create_time: now,
            modify_time: now,
            ..Default::default()
        }
    }

    pub fn terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            EVAL_STATUS_COMPLETE | EVAL_STATUS_FAILED | EVAL_STATUS_CANCELED
        )
    }
}

/// Why placements failed, counted per reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocMetric {
    pub nodes_evaluated: u64,
    pub nodes_filtered: u64,
    pub nodes_available: BTreeMap<String, u64>,
    pub class_filtered: BTreeMap<String, u64>,
    pub constraint_filtered: BTreeMap<String, u64>,
    pub nodes_exhausted: u64,
    pub class_exhausted: BTreeMap<String, u64>,
    pub dimension_exhausted: BTreeMap<String, u64>,
    pub coalesced_failures: u64,
    /// Drover extension: nodes not considered at all, by reason ("draining",
    /// "ineligible", "down", "outside the job's datacenters", ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes_excluded: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_evaluation_is_pending_for_its_jobs_namespace_type_and_priority() {
        let job = crate::Job {
            id: "web".into(),
            job_type: "batch".into(),
            priority: 70,
            ..Default::default()
        };
        let e = Evaluation::new_for_job(&job, TRIGGER_JOB_REGISTER, 5, "e1".into());
        assert_eq!((e.id.as_str(), e.job_id.as_str()), ("e1", "web"));
        assert_eq!(
            (e.namespace.as_str(), e.eval_type.as_str()),
            ("default", "batch")
        );
        assert_eq!((e.priority, e.create_time, e.modify_time), (70, 5, 5));
        assert_eq!(e.triggered_by, TRIGGER_JOB_REGISTER);
        assert_eq!(e.status, EVAL_STATUS_PENDING);
        assert!(e.node_id.is_empty() && e.job_modify_index == 0);
    }
}
