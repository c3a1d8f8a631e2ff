//! Deployments: how one job version rolls out (Nomad's `Deployment`), and the request and
//! response bodies of `/v1/deployment*`, `/v1/job/:id/revert|stable|scale`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DEPLOYMENT_STATUS_RUNNING: &str = "running";
pub const DEPLOYMENT_STATUS_PAUSED: &str = "paused";
pub const DEPLOYMENT_STATUS_FAILED: &str = "failed";
pub const DEPLOYMENT_STATUS_SUCCESSFUL: &str = "successful";
pub const DEPLOYMENT_STATUS_CANCELLED: &str = "cancelled";

pub const DEPLOYMENT_DESC_RUNNING: &str = "Deployment is running";
pub const DEPLOYMENT_DESC_NEEDS_PROMOTION: &str =
    "Deployment is running but requires manual promotion";
pub const DEPLOYMENT_DESC_AUTO_PROMOTION: &str =
    "Deployment is running pending automatic promotion";
pub const DEPLOYMENT_DESC_PAUSED: &str = "Deployment is paused";
pub const DEPLOYMENT_DESC_SUCCESSFUL: &str = "Deployment completed successfully";
pub const DEPLOYMENT_DESC_STOPPED_JOB: &str = "Cancelled because job is stopped";
pub const DEPLOYMENT_DESC_NEWER_JOB: &str = "Cancelled due to newer version of job";
pub const DEPLOYMENT_DESC_FAILED_ALLOCS: &str = "Failed due to unhealthy allocations";
pub const DEPLOYMENT_DESC_PROGRESS_DEADLINE: &str = "Failed due to progress deadline";
pub const DEPLOYMENT_DESC_FAILED_BY_USER: &str = "Deployment marked as failed";

/// `"<why> - rolling back to job version N"`.
pub fn deployment_desc_rollback(base: &str, version: u64) -> String {
    format!("{base} - rolling back to job version {version}")
}

/// `"<why> - no stable job version to auto revert to"`.
pub fn deployment_desc_no_rollback_target(base: &str) -> String {
    format!("{base} - no stable job version to auto revert to")
}

/// `"<why> - not rolling back to stable job version N as current job has same specification"`.
pub fn deployment_desc_rollback_noop(base: &str, version: u64) -> String {
    format!(
        "{base} - not rolling back to stable job version {version} as current job has same specification"
    )
}

/// The rollout of one job version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    pub job_modify_index: u64,
    pub job_spec_modify_index: u64,
    pub job_create_index: u64,
    pub is_multiregion: bool,
    pub task_groups: BTreeMap<String, DeploymentState>,
    pub status: String,
    pub status_description: String,
    pub eval_priority: i32,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    pub modify_time: i64,
}

impl Deployment {
    /// Still rolling out (running or paused): a newer version cancels it.
    pub fn active(&self) -> bool {
        matches!(
            self.status.as_str(),
            DEPLOYMENT_STATUS_RUNNING | DEPLOYMENT_STATUS_PAUSED
        )
    }

    /// Some group has canaries that wait for promotion.
    pub fn requires_promotion(&self) -> bool {
        self.task_groups
            .values()
            .any(|g| g.desired_canaries > 0 && !g.promoted)
    }

    /// Whether every group with canaries wants them promoted automatically.
    pub fn auto_promotes(&self) -> bool {
        let mut with_canaries = self
            .task_groups
            .values()
            .filter(|g| g.desired_canaries > 0)
            .peekable();
        with_canaries.peek().is_some() && with_canaries.all(|g| g.auto_promote)
    }

    /// Every group has its desired healthy allocations, canaries promoted.
    pub fn all_healthy(&self) -> bool {
        self.task_groups
            .values()
            .all(|g| (g.desired_canaries == 0 || g.promoted) && g.healthy_allocs >= g.desired_total)
    }
}

/// One task group's part of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentState {
    pub auto_revert: bool,
    pub auto_promote: bool,
    /// Nanoseconds an allocation has to become healthy before the deployment fails.
    pub progress_deadline: i64,
    /// Unix nanoseconds by which the next allocation must be healthy (0: not armed). On
    /// the wire an RFC 3339 time, as Nomad sends it (Go's zero time when not armed).
    #[serde(with = "rfc3339_nanos")]
    pub require_progress_by: i64,
    pub promoted: bool,
    /// Allocation IDs of the canaries placed.
    pub placed_canaries: Vec<String>,
    pub desired_canaries: i64,
    pub desired_total: i64,
    pub placed_allocs: i64,
    pub healthy_allocs: i64,
    pub unhealthy_allocs: i64,
}

/// A change of a deployment's status (a plan cancelling an older deployment, the
/// watcher failing one, a user pausing one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentStatusUpdate {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: String,
    pub status_description: String,
}

/// Body of `PUT /v1/deployment/promote/:id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentPromoteRequest {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub all: bool,
    pub groups: Vec<String>,
}

/// Body of `PUT /v1/deployment/fail/:id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentFailRequest {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
}

/// Body of `PUT /v1/deployment/pause/:id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentPauseRequest {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub pause: bool,
}

/// Body of `PUT /v1/deployment/allocation-health/:id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentAllocHealthRequest {
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    #[serde(rename = "HealthyAllocationIDs")]
    pub healthy_allocation_ids: Vec<String>,
    /// python-nomad spells it `UnHealthyAllocationIDs` (Nomad's decoder ignores case).
    #[serde(rename = "UnhealthyAllocationIDs", alias = "UnHealthyAllocationIDs")]
    pub unhealthy_allocation_ids: Vec<String>,
}

/// Answer to a deployment write (Nomad's `DeploymentUpdateResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentUpdateResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub deployment_modify_index: u64,
    /// Set when the write registered an older job version again (auto revert).
    pub reverted_job_version: Option<u64>,
    pub index: u64,
}

/// Body of `PUT /v1/job/:id/revert`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRevertRequest {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    /// Revert only if the current version is this one.
    pub enforce_prior_version: Option<u64>,
}

/// Body of `PUT /v1/job/:id/stable`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStabilityRequest {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    pub stable: bool,
}

/// Answer to `PUT /v1/job/:id/stable`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStabilityResponse {
    pub index: u64,
}

/// Body of `PUT /v1/job/:id/scale` (Nomad's `ScalingRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingRequest {
    pub count: Option<i64>,
    /// `{"Group": "<task group>"}`.
    pub target: BTreeMap<String, String>,
    pub message: String,
    pub error: bool,
    pub meta: BTreeMap<String, serde_json::Value>,
    pub policy_override: bool,
}

/// `GET /v1/job/:id/scale` (Nomad's `JobScaleStatusResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobScaleStatus {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub namespace: String,
    pub job_create_index: u64,
    pub job_modify_index: u64,
    pub job_stopped: bool,
    pub task_groups: BTreeMap<String, TaskGroupScaleStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupScaleStatus {
    pub desired: i64,
    pub placed: i64,
    pub running: i64,
    pub healthy: i64,
    pub unhealthy: i64,
    pub events: Vec<serde_json::Value>,
}

/// Unix nanoseconds as the RFC 3339 text Go's `time.Time` marshals to (`0` is Go's zero
/// time); an integer is read too.
pub mod rfc3339_nanos {
    use serde::{Deserialize, Deserializer, Serializer};

    const NS: i64 = 1_000_000_000;
    const ZERO: &str = "0001-01-01T00:00:00Z";

    /// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + d - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }

    pub fn format(nanos: i64) -> String {
        if nanos == 0 {
            return ZERO.to_string();
        }
        let (secs, frac) = (nanos.div_euclid(NS), nanos.rem_euclid(NS));
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        if frac != 0 {
            out.push_str(format!(".{frac:09}").trim_end_matches('0'));
        }
        out.push('Z');
        out
    }

    pub fn parse(s: &str) -> Option<i64> {
        if s == ZERO || s.is_empty() {
            return Some(0);
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut rest = s.get(19..)?;
        let mut frac = 0;
        if let Some(r) = rest.strip_prefix('.') {
            let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            let text = format!("{:0<9}", &r[..digits.min(9)]);
            frac = text.parse::<i64>().ok()?;
            rest = &r[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let h: i64 = rest.get(1..3)?.parse().ok()?;
                let mi: i64 = rest.get(4..6)?.parse().ok()?;
                sign * (h * 3600 + mi * 60)
            }
        };
        let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset;
        Some(secs * NS + frac)
    }

    pub fn serialize<S: Serializer>(nanos: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*nanos))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(i64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(n),
            Either::Text(t) => parse(&t)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {t:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_deadlines_travel_as_rfc3339_like_nomads() {
        use super::rfc3339_nanos::{format, parse};
        assert_eq!(format(0), "0001-01-01T00:00:00Z");
        assert_eq!(
            format(1_796_082_579_816_274_515),
            "2026-11-30T23:49:39.816274515Z"
        );
        assert_eq!(format(951_782_400 * 1_000_000_000), "2000-02-29T00:00:00Z");
        for n in [0, 1, 1_796_082_579_816_274_515, 951_782_400 * 1_000_000_000] {
            assert_eq!(parse(&format(n)), Some(n));
        }
        assert_eq!(
            parse("2000-02-29T01:00:00+01:00"),
            Some(951_782_400 * 1_000_000_000)
        );
        let g = super::DeploymentState {
            require_progress_by: 1_500_000_000,
            ..Default::default()
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["RequireProgressBy"], "1970-01-01T00:00:01.5Z");
        let back: super::DeploymentState = serde_json::from_value(v).unwrap();
        assert_eq!(back.require_progress_by, 1_500_000_000);
    }

    use super::*;

    #[test]
    fn a_deployment_with_unpromoted_canaries_is_not_healthy_until_promoted() {
        let mut d = Deployment::default();
        d.task_groups.insert(
            "web".into(),
            DeploymentState {
                desired_canaries: 1,
                desired_total: 2,
                healthy_allocs: 2,
                ..Default::default()
            },
        );
        assert!(d.requires_promotion() && !d.all_healthy() && !d.auto_promotes());
        d.task_groups.get_mut("web").unwrap().promoted = true;
        assert!(!d.requires_promotion() && d.all_healthy());
        let v = serde_json::to_value(&d).unwrap();
        assert!(v["TaskGroups"]["web"]["DesiredCanaries"].is_i64());
        assert_eq!(
            deployment_desc_rollback(DEPLOYMENT_DESC_FAILED_ALLOCS, 3),
            "Failed due to unhealthy allocations - rolling back to job version 3"
        );
    }
}
