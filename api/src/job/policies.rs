//! The policies a group or task carries: restart, reschedule, update, migrate, disk and
//! logs, with Nomad's defaults per job type.

use super::{JOB_TYPE_BATCH, JOB_TYPE_SERVICE, JOB_TYPE_SYSBATCH};
use serde::{Deserialize, Serialize};

/// What a task runner does when a task exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: i64,
    pub interval: i64,
    pub delay: i64,
    pub mode: String,
    pub render_templates: bool,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::default_for(JOB_TYPE_SERVICE)
    }
}

impl RestartPolicy {
    /// Nomad's defaults: services retry 2 times in 30m, batch 3 times in 24h, both
    /// waiting 15s and then failing.
    pub fn default_for(job_type: &str) -> Self {
        match job_type {
            JOB_TYPE_BATCH | JOB_TYPE_SYSBATCH => RestartPolicy {
                attempts: 3,
                interval: crate::secs(24 * 3600),
                delay: crate::secs(15),
                mode: "fail".into(),
                render_templates: false,
            },
            _ => RestartPolicy {
                attempts: 2,
                interval: crate::secs(30 * 60),
                delay: crate::secs(15),
                mode: "fail".into(),
                render_templates: false,
            },
        }
    }
}

/// How failed allocations are replaced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: i64,
    pub interval: i64,
    pub delay: i64,
    pub delay_function: String,
    pub max_delay: i64,
    pub unlimited: bool,
}

impl ReschedulePolicy {
    pub fn default_for(job_type: &str) -> Self {
        match job_type {
            JOB_TYPE_BATCH => ReschedulePolicy {
                attempts: 1,
                interval: crate::secs(24 * 3600),
                delay: crate::secs(5),
                delay_function: "constant".into(),
                max_delay: 0,
                unlimited: false,
            },
            _ => ReschedulePolicy {
                attempts: 0,
                interval: 0,
                delay: crate::secs(30),
                delay_function: "exponential".into(),
                max_delay: crate::secs(3600),
                unlimited: true,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: bool,
    pub migrate: bool,
    #[serde(rename = "SizeMB")]
    pub size_mb: i64,
}

impl Default for EphemeralDisk {
    fn default() -> Self {
        EphemeralDisk {
            sticky: false,
            migrate: false,
            size_mb: 300,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    pub stagger: i64,
    pub max_parallel: i64,
    pub health_check: String,
    pub min_healthy_time: i64,
    pub healthy_deadline: i64,
    pub progress_deadline: i64,
    pub auto_revert: bool,
    pub auto_promote: bool,
    pub canary: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: i64,
    pub health_check: String,
    pub min_healthy_time: i64,
    pub healthy_deadline: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: i64,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: i64,
    pub disabled: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
            disabled: false,
        }
    }
}
