//! The scheduler configuration (`/v1/operator/scheduler/configuration`), Nomad's shape.

use serde::{Deserialize, Serialize};

/// `SchedulerAlgorithm` values.
pub const SCHEDULER_ALGORITHM_BINPACK: &str = "binpack";
pub const SCHEDULER_ALGORITHM_SPREAD: &str = "spread";

/// The cluster-wide scheduler settings, stored through Raft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchedulerConfiguration {
    /// "binpack" (fill nodes up) or "spread" (prefer the emptiest node).
    pub scheduler_algorithm: String,
    pub preemption_config: PreemptionConfig,
    pub memory_oversubscription_enabled: bool,
    /// Refuse job registration, dispatch and scaling (an operator's brake).
    pub reject_job_registration: bool,
    pub pause_eval_broker: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for SchedulerConfiguration {
    /// Nomad's defaults: bin-packing, preemption for system jobs only.
    fn default() -> Self {
        SchedulerConfiguration {
            scheduler_algorithm: SCHEDULER_ALGORITHM_BINPACK.into(),
            preemption_config: PreemptionConfig::default(),
            memory_oversubscription_enabled: false,
            reject_job_registration: false,
            pause_eval_broker: false,
            create_index: 0,
            modify_index: 0,
        }
    }
}

impl SchedulerConfiguration {
    /// Problems that make the configuration unusable, as a sentence.
    pub fn validate(&self) -> Result<(), String> {
        match self.scheduler_algorithm.as_str() {
            SCHEDULER_ALGORITHM_BINPACK | SCHEDULER_ALGORITHM_SPREAD => Ok(()),
            other => Err(format!(
                "invalid scheduler algorithm {other:?}: it must be \"binpack\" or \"spread\""
            )),
        }
    }

    pub fn spreads(&self) -> bool {
        self.scheduler_algorithm == SCHEDULER_ALGORITHM_SPREAD
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreemptionConfig {
    pub system_scheduler_enabled: bool,
    pub sys_batch_scheduler_enabled: bool,
    pub batch_scheduler_enabled: bool,
    pub service_scheduler_enabled: bool,
}

impl Default for PreemptionConfig {
    fn default() -> Self {
        PreemptionConfig {
            system_scheduler_enabled: true,
            sys_batch_scheduler_enabled: false,
            batch_scheduler_enabled: false,
            service_scheduler_enabled: false,
        }
    }
}

/// `GET /v1/operator/scheduler/configuration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchedulerConfigurationResponse {
    pub scheduler_config: SchedulerConfiguration,
    pub index: u64,
    pub last_contact: u64,
    pub known_leader: bool,
}

/// `PUT /v1/operator/scheduler/configuration`: whether the write took (a `cas` that no
/// longer matches leaves it unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchedulerSetConfigurationResponse {
    pub updated: bool,
    pub index: u64,
}
