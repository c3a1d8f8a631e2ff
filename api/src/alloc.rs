//! Allocations: one task group placed on one node, and what happened to it there.

use crate::job::{Job, Resources};
pub use arcstr::ArcStr;
use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-task values of one allocation, by task name: a sorted vector, serialised as a JSON
/// object like a `BTreeMap`. An allocation has a task or two, and a `BTreeMap` holding
/// even one entry allocates a node for eleven; at C100K the allocations' per-task maps
/// were over half of the state store's memory (`server/examples/state_memory.rs`).
pub type TaskMap<V> = litemap::LiteMap<String, V>;

pub const ALLOC_DESIRED_RUN: &str = "run";
pub const ALLOC_DESIRED_STOP: &str = "stop";
pub const ALLOC_DESIRED_EVICT: &str = "evict";

pub const ALLOC_CLIENT_PENDING: &str = "pending";
pub const ALLOC_CLIENT_RUNNING: &str = "running";
pub const ALLOC_CLIENT_COMPLETE: &str = "complete";
pub const ALLOC_CLIENT_FAILED: &str = "failed";
pub const ALLOC_CLIENT_LOST: &str = "lost";
pub const ALLOC_CLIENT_UNKNOWN: &str = "unknown";

pub const TASK_STATE_PENDING: &str = "pending";
pub const TASK_STATE_RUNNING: &str = "running";
pub const TASK_STATE_DEAD: &str = "dead";

/// Nomad's task event types, and the display messages a client gives the common ones.
pub mod task_event {
    pub const RECEIVED: &str = "Received";
    pub const SETUP: &str = "Task Setup";
    pub const STARTED: &str = "Started";
    pub const TERMINATED: &str = "Terminated";
    pub const OOM_KILLED: &str = "OOM Killed";
    pub const RESTARTING: &str = "Restarting";
    pub const NOT_RESTARTING: &str = "Not Restarting";
    pub const KILLING: &str = "Killing";
    pub const KILLED: &str = "Killed";
    pub const DRIVER_FAILURE: &str = "Driver Failure";
    pub const SIBLING_FAILED: &str = "Sibling Task Failed";
    pub const LEADER_DEAD: &str = "Leader Task Dead";
    pub const SIGNALING: &str = "Signaling";
    pub const RESTART_SIGNALED: &str = "Restart Signaled";
    pub const DOWNLOADING_ARTIFACTS: &str = "Downloading Artifacts";
    pub const FAILED_ARTIFACT_DOWNLOAD: &str = "Failed Artifact Download";
    pub const MAIN_TASKS_DEAD: &str = "Main Tasks Dead";
    pub const RECEIVED_MESSAGE: &str = "Task received by client";
    pub const SETUP_MESSAGE: &str = "Building Task Directory";
    pub const STARTED_MESSAGE: &str = "Task started by client";
    pub const KILLED_MESSAGE: &str = "Task successfully killed";
}

/// The words stored allocations repeat most: status words, task states, the default
/// namespace, task event types and common display messages, as literals.
static WORDS: [ArcStr; 33] = {
    use arcstr::literal;
    use task_event::*;
    [
        literal!(ALLOC_DESIRED_RUN),
        literal!(ALLOC_DESIRED_STOP),
        literal!(ALLOC_DESIRED_EVICT),
        literal!(ALLOC_CLIENT_PENDING),
        literal!(ALLOC_CLIENT_RUNNING),
        literal!(ALLOC_CLIENT_COMPLETE),
        literal!(ALLOC_CLIENT_FAILED),
        literal!(ALLOC_CLIENT_LOST),
        literal!(ALLOC_CLIENT_UNKNOWN),
        literal!(TASK_STATE_DEAD),
        literal!("default"),
        literal!(RECEIVED),
        literal!(SETUP),
        literal!(STARTED),
        literal!(TERMINATED),
        literal!(OOM_KILLED),
        literal!(RESTARTING),
        literal!(NOT_RESTARTING),
        literal!(KILLING),
        literal!(KILLED),
        literal!(DRIVER_FAILURE),
        literal!(SIBLING_FAILED),
        literal!(LEADER_DEAD),
        literal!(SIGNALING),
        literal!(RESTART_SIGNALED),
        literal!(DOWNLOADING_ARTIFACTS),
        literal!(FAILED_ARTIFACT_DOWNLOAD),
        literal!(MAIN_TASKS_DEAD),
        literal!(RECEIVED_MESSAGE),
        literal!(SETUP_MESSAGE),
        literal!(STARTED_MESSAGE),
        literal!(KILLED_MESSAGE),
        literal!("Exit Code: 0"),
    ]
};

/// `s` as an [`ArcStr`], a literal (no allocation, nothing counted) when it is one of
/// [`WORDS`]: a million stored allocations then keep no copy of "running", "default" or
/// "Task started by client" each.
pub fn word(s: &str) -> ArcStr {
    literal_word(s).unwrap_or_else(|| ArcStr::from(s))
}

/// The literal [`word`] gives for `s`, if it is one of [`WORDS`] (or empty).
pub fn literal_word(s: &str) -> Option<ArcStr> {
    if s.is_empty() {
        return Some(ArcStr::new());
    }
    WORDS.iter().find(|w| w.as_str() == s).cloned()
}

/// Decodes a string field through [`word`].
fn de_word<'de, D: Deserializer<'de>>(d: D) -> Result<ArcStr, D::Error> {
    struct Words;
    impl serde::de::Visitor<'_> for Words {
        type Value = ArcStr;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ArcStr, E> {
            Ok(word(v))
        }
    }
    d.deserialize_str(Words)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: ArcStr,
    #[serde(deserialize_with = "de_word")]
    pub namespace: ArcStr,
    #[serde(rename = "EvalID")]
    pub eval_id: ArcStr,
    pub name: ArcStr,
    #[serde(rename = "NodeID")]
    pub node_id: ArcStr,
    pub node_name: ArcStr,
    #[serde(rename = "JobID")]
    pub job_id: ArcStr,
    /// The job version this allocation runs. Shared: many allocs point at one job.
    pub job: Option<Arc<Job>>,
    pub task_group: ArcStr,
    pub resources: Option<Arc<Resources>>,
    pub task_resources: Arc<TaskMap<Resources>>,
    /// What the scheduler gave the allocation on its node, host ports included.
    #[serde(rename = "AllocatedResources")]
    pub allocated_resources: Option<crate::alloc_resources::AllocatedResources>,
    #[serde(deserialize_with = "de_word")]
    pub desired_status: ArcStr,
    pub desired_description: ArcStr,
    #[serde(deserialize_with = "de_word")]
    pub client_status: ArcStr,
    pub client_description: ArcStr,
    pub task_states: TaskMap<TaskState>,
    #[serde(rename = "PreviousAllocation")]
    pub previous_allocation: ArcStr,
    #[serde(rename = "NextAllocation")]
    pub next_allocation: ArcStr,
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: ArcStr,
    /// The chain of reschedules that led to this allocation. Boxed: most allocations
    /// have none, and without the 16 bytes it would take inline a stored allocation (with
    /// its `Arc`'s counts) fits mimalloc's 384-byte size class instead of the 448-byte one
    /// (a test holds it there).
    pub reschedule_tracker: Option<Box<RescheduleTracker>>,
    /// What the servers want to happen to the alloc next (set by the drainer).
    pub desired_transition: DesiredTransition,
    /// Health as the client judged it (`migrate`/`update` health checks).
    pub deployment_status: Option<AllocDeploymentStatus>,
    /// The deployment that placed it (service jobs with an `update` block).
    #[serde(rename = "DeploymentID")]
    pub deployment_id: ArcStr,
    pub create_index: u64,
    pub modify_index: u64,
    pub alloc_modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Allocation {
    /// The alloc's index within its group, parsed from its name `job.group[N]`.
    pub fn index(&self) -> u64 {
        self.name
            .rsplit_once('[')
            .and_then(|(_, rest)| rest.trim_end_matches(']').parse().ok())
            .unwrap_or(0)
    }

    /// The server no longer wants it running.
    pub fn desired_stop(&self) -> bool {
        self.desired_status == ALLOC_DESIRED_STOP || self.desired_status == ALLOC_DESIRED_EVICT
    }

    /// The client reports it finished (successfully or not) or it was lost.
    pub fn client_terminal(&self) -> bool {
        matches!(
            self.client_status.as_str(),
            ALLOC_CLIENT_COMPLETE | ALLOC_CLIENT_FAILED | ALLOC_CLIENT_LOST
        )
    }

    /// Terminal from either side: it does not count towards the desired count.
    pub fn terminal(&self) -> bool {
        self.desired_stop() || self.client_terminal()
    }

    pub fn job_version(&self) -> u64 {
        self.job.as_ref().map(|j| j.version).unwrap_or(0)
    }

    /// Give back the spare capacity of every vector and per-task map. A decoded vector
    /// grows as its elements arrive, so one task's map or three task events hold room for
    /// four, and a stored allocation keeps that room for its life: measured at C100K, the
    /// spare room was over a third of the state store (`server/examples/state_memory.rs`).
    pub fn shrink_to_fit(&mut self) {
        fn networks(ns: &mut Vec<crate::job::NetworkResource>) {
            for n in ns.iter_mut() {
                n.reserved_ports.shrink_to_fit();
                n.dynamic_ports.shrink_to_fit();
            }
            ns.shrink_to_fit();
        }
        // Shared resources (`Arc`s another allocation holds too) were shrunk before.
        if let Some(r) = self.resources.as_mut().and_then(Arc::get_mut) {
            networks(&mut r.networks);
        }
        if let Some(m) = Arc::get_mut(&mut self.task_resources) {
            shrink_task_map(m, |r| networks(&mut r.networks));
        }
        if let Some(r) = self.allocated_resources.as_mut() {
            shrink_task_map(&mut r.tasks, |t| {
                t.cpu.reserved_cores.shrink_to_fit();
                networks(&mut t.networks);
            });
            shrink_task_map(&mut r.task_lifecycles, |_| {});
            networks(&mut r.shared.networks);
            r.shared.ports.shrink_to_fit();
        }
        shrink_task_map(&mut self.task_states, |t| t.events.shrink_to_fit());
        if let Some(t) = self.reschedule_tracker.as_mut() {
            t.events.shrink_to_fit();
        }
    }
}

/// Shrink a per-task map's vector, and each value with `each`.
fn shrink_task_map<V>(m: &mut TaskMap<V>, each: impl Fn(&mut V)) {
    for (_, v) in m.iter_mut() {
        each(v);
    }
    let mut v = std::mem::take(m).into_tuple_vec();
    v.shrink_to_fit();
    // Still sorted and unique: only the capacity changed.
    *m = TaskMap::from_sorted_store_unchecked(v);
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    #[serde(deserialize_with = "de_word")]
    pub state: ArcStr,
    pub failed: bool,
    pub restarts: u64,
    pub last_restart: Option<ArcStr>,
    pub started_at: Option<ArcStr>,
    pub finished_at: Option<ArcStr>,
    pub events: Vec<TaskEvent>,
}

/// One thing that happened to a task. On the wire every field of Nomad's `TaskEvent`;
/// in memory the fields most events leave empty (exit code, signal, messages, details)
/// live in a [`TaskEventDetail`] that is only allocated when one is set: a running task's
/// three events are what a stored allocation holds most of, and boxing the rare part
/// takes each from 200 bytes to 64.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskEvent {
    /// Nomad's event types and common display messages ("Task received by client") are
    /// literals ([`word`]): one pointer each and no allocation of their own.
    pub event_type: ArcStr,
    /// Unix nanoseconds.
    pub time: i64,
    pub display_message: ArcStr,
    detail: Option<Box<TaskEventDetail>>,
}

/// The parts of a [`TaskEvent`] that most events leave empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEventDetail {
    pub details: BTreeMap<String, String>,
    pub exit_code: i64,
    pub signal: i64,
    pub message: String,
    pub fails_task: bool,
    pub restart_reason: String,
    pub kill_timeout: i64,
    pub driver_error: String,
}

static NO_DETAIL: TaskEventDetail = TaskEventDetail {
    details: BTreeMap::new(),
    exit_code: 0,
    signal: 0,
    message: String::new(),
    fails_task: false,
    restart_reason: String::new(),
    kill_timeout: 0,
    driver_error: String::new(),
};

impl TaskEvent {
    pub fn new(event_type: impl AsRef<str>, time: i64, display: impl AsRef<str>) -> Self {
        TaskEvent {
            event_type: word(event_type.as_ref()),
            time,
            display_message: word(display.as_ref()),
            detail: None,
        }
    }

    /// The rare fields (all empty when none was set).
    pub fn detail(&self) -> &TaskEventDetail {
        self.detail.as_deref().unwrap_or(&NO_DETAIL)
    }

    /// The rare fields, to set one.
    pub fn detail_mut(&mut self) -> &mut TaskEventDetail {
        self.detail.get_or_insert_with(Default::default)
    }
}

/// `TaskEvent` as it is on the wire: every field at the top level.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskEventOut<'a> {
    #[serde(rename = "Type")]
    event_type: &'a str,
    time: i64,
    display_message: &'a str,
    details: &'a BTreeMap<String, String>,
    exit_code: i64,
    signal: i64,
    message: &'a str,
    fails_task: bool,
    restart_reason: &'a str,
    kill_timeout: i64,
    driver_error: &'a str,
}

impl Serialize for TaskEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.detail();
        TaskEventOut {
            event_type: &self.event_type,
            time: self.time,
            display_message: &self.display_message,
            details: &d.details,
            exit_code: d.exit_code,
            signal: d.signal,
            message: &d.message,
            fails_task: d.fails_task,
            restart_reason: &d.restart_reason,
            kill_timeout: d.kill_timeout,
            driver_error: &d.driver_error,
        }
        .serialize(s)
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TaskEventIn {
    #[serde(rename = "Type")]
    event_type: CompactString,
    time: i64,
    display_message: CompactString,
    details: BTreeMap<String, String>,
    exit_code: i64,
    signal: i64,
    message: String,
    fails_task: bool,
    restart_reason: String,
    kill_timeout: i64,
    driver_error: String,
}

impl<'de> Deserialize<'de> for TaskEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = TaskEventIn::deserialize(d)?;
        let detail = TaskEventDetail {
            details: w.details,
            exit_code: w.exit_code,
            signal: w.signal,
            message: w.message,
            fails_task: w.fails_task,
            restart_reason: w.restart_reason,
            kill_timeout: w.kill_timeout,
            driver_error: w.driver_error,
        };
        Ok(TaskEvent {
            event_type: word(&w.event_type),
            time: w.time,
            display_message: word(&w.display_message),
            detail: (detail != NO_DETAIL).then(|| Box::new(detail)),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleTracker {
    pub events: Vec<RescheduleEvent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleEvent {
    /// Unix nanoseconds of the reschedule.
    pub reschedule_time: i64,
    #[serde(rename = "PrevAllocID")]
    pub prev_alloc_id: String,
    #[serde(rename = "PrevNodeID")]
    pub prev_node_id: String,
    /// Nanoseconds the replacement waited after the failure.
    pub delay: i64,
}

/// Transitions the servers ask of an allocation; the scheduler acts on them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredTransition {
    /// Move the alloc off its (draining) node: place a replacement, then stop it.
    pub migrate: Option<bool>,
    pub reschedule: Option<bool>,
    pub force_reschedule: Option<bool>,
}

impl DesiredTransition {
    pub fn should_migrate(&self) -> bool {
        self.migrate == Some(true)
    }
}

/// The client's verdict on an allocation's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocDeploymentStatus {
    /// `None` until decided: healthy once every task ran for `min_healthy_time`,
    /// unhealthy when a task failed or `healthy_deadline` passed first.
    pub healthy: Option<bool>,
    /// Unix nanoseconds of the verdict. On the wire an RFC 3339 time, as Nomad sends it
    /// (Go's zero time before a verdict); a number is still read (older local state).
    #[serde(with = "crate::deployment::rfc3339_nanos")]
    pub timestamp: i64,
    pub canary: bool,
    pub modify_index: u64,
}

/// One row of `GET /v1/allocations` and `GET /v1/job/:id/allocations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocationListStub {
    #[serde(rename = "ID")]
    pub id: ArcStr,
    #[serde(rename = "EvalID")]
    pub eval_id: ArcStr,
    pub name: ArcStr,
    #[serde(deserialize_with = "de_word")]
    pub namespace: ArcStr,
    #[serde(rename = "NodeID")]
    pub node_id: ArcStr,
    pub node_name: ArcStr,
    #[serde(rename = "JobID")]
    pub job_id: ArcStr,
    pub job_type: String,
    pub job_version: u64,
    pub task_group: ArcStr,
    #[serde(deserialize_with = "de_word")]
    pub desired_status: ArcStr,
    pub desired_description: ArcStr,
    #[serde(deserialize_with = "de_word")]
    pub client_status: ArcStr,
    pub client_description: ArcStr,
    pub task_states: TaskMap<TaskState>,
    pub deployment_status: Option<AllocDeploymentStatus>,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: ArcStr,
    pub follow_up_eval_id: ArcStr,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
    /// Only with `?resources=true`, as in Nomad.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_resources: Option<crate::alloc_resources::AllocatedResources>,
}

impl AllocationListStub {
    pub fn from_alloc(a: &Allocation) -> Self {
        AllocationListStub {
            id: a.id.clone(),
            eval_id: a.eval_id.clone(),
            name: a.name.clone(),
            namespace: a.namespace.clone(),
            node_id: a.node_id.clone(),
            node_name: a.node_name.clone(),
            job_id: a.job_id.clone(),
            job_type: a
                .job
                .as_ref()
                .map(|j| j.job_type.clone())
                .unwrap_or_default(),
            job_version: a.job_version(),
            task_group: a.task_group.clone(),
            desired_status: a.desired_status.clone(),
            desired_description: a.desired_description.clone(),
            client_status: a.client_status.clone(),
            client_description: a.client_description.clone(),
            task_states: a.task_states.clone(),
            deployment_status: a.deployment_status.clone(),
            deployment_id: a.deployment_id.clone(),
            follow_up_eval_id: a.followup_eval_id.clone(),
            create_index: a.create_index,
            modify_index: a.modify_index,
            create_time: a.create_time,
            modify_time: a.modify_time,
            allocated_resources: None,
        }
    }

    /// The stub with its `AllocatedResources` (`?resources=true`).
    pub fn with_resources(mut self, a: &Allocation) -> Self {
        self.allocated_resources = Some(a.allocated_resources.clone().unwrap_or_default());
        self
    }
}

/// What a client reports about one of its allocations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocClientUpdate {
    #[serde(rename = "ID")]
    pub id: String,
    pub client_status: String,
    pub client_description: String,
    pub task_states: TaskMap<TaskState>,
    /// Set once the client has judged the alloc healthy or unhealthy.
    pub deployment_status: Option<AllocDeploymentStatus>,
}

#[cfg(test)]
mod deployment_status_tests {
    use super::AllocDeploymentStatus;

    #[test]
    fn the_verdicts_timestamp_travels_as_rfc3339_and_numbers_are_still_read() {
        let s = AllocDeploymentStatus {
            healthy: Some(true),
            timestamp: 1_700_000_000_123_456_789,
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["Timestamp"], "2023-11-14T22:13:20.123456789Z");
        let back: AllocDeploymentStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        let none = serde_json::to_value(AllocDeploymentStatus::default()).unwrap();
        assert_eq!(none["Timestamp"], "0001-01-01T00:00:00Z");
        let old: AllocDeploymentStatus =
            serde_json::from_str(r#"{"Healthy":false,"Timestamp":42}"#).unwrap();
        assert_eq!(old.timestamp, 42);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_event_keeps_nomads_flat_shape_and_boxes_only_what_is_set() {
        let plain = TaskEvent::new("Started", 7, "Task started by client");
        let json = serde_json::to_value(&plain).unwrap();
        // Every field of Nomad's TaskEvent, at the top level, as before.
        for field in [
            "Type",
            "Time",
            "DisplayMessage",
            "Details",
            "ExitCode",
            "Signal",
            "Message",
            "FailsTask",
            "RestartReason",
            "KillTimeout",
            "DriverError",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["Type"], "Started");
        let back: TaskEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, plain);
        assert!(back.detail.is_none(), "no rare field set, nothing boxed");

        let mut term = TaskEvent::new("Terminated", 8, "Exit Code: 137");
        term.detail_mut().exit_code = 137;
        term.detail_mut()
            .details
            .insert("signal".into(), "9".into());
        let json = serde_json::to_string(&term).unwrap();
        assert!(json.contains("\"ExitCode\":137"), "{json}");
        let back: TaskEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, term);
        assert_eq!(back.detail().details["signal"], "9");
        // Two pointers, a time and a pointer, not 200 bytes.
        assert!(std::mem::size_of::<TaskEvent>() <= 32);
    }

    /// A stored allocation is an `Arc<Allocation>`: two counts and the allocation. At 384
    /// bytes or less it takes mimalloc's 384-byte size class; eight bytes more and each of
    /// a million takes 448 (61 MiB per server at C1M).
    #[test]
    fn a_stored_allocation_fits_a_384_byte_allocation() {
        let stored = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Allocation>();
        assert!(stored <= 384, "{stored} bytes");
    }

    #[test]
    fn an_allocations_common_words_decode_as_literals_and_encode_unchanged() {
        let json = serde_json::json!({
            "ID": "a1", "Namespace": "default", "DesiredStatus": "run",
            "ClientStatus": "running", "ClientDescription": "Tasks are running",
            "TaskStates": {"web": {"State": "running", "StartedAt": "2026-12-03T19:00:00Z",
                "Events": [
                    {"Type": "Received", "Time": 1, "DisplayMessage": "Task received by client"},
                    {"Type": "Started", "Time": 2, "DisplayMessage": "Task started by client"},
                    {"Type": "Custom Hook", "Time": 3, "DisplayMessage": "something else"}]}}
        });
        let a: Allocation = serde_json::from_str(&json.to_string()).unwrap();
        let literal = |s: &ArcStr| ArcStr::as_static(s).is_some();
        assert!(literal(&a.namespace) && literal(&a.desired_status) && literal(&a.client_status));
        let t = &a.task_states.get("web").unwrap();
        assert!(literal(&t.state));
        for e in &t.events[..2] {
            assert!(
                literal(&e.event_type) && literal(&e.display_message),
                "{e:?}"
            );
        }
        // Anything else is its own string, unchanged.
        assert!(!literal(&t.events[2].event_type) && !literal(&a.id));
        assert_eq!(&*t.events[2].display_message, "something else");
        assert_eq!(t.started_at.as_deref(), Some("2026-12-03T19:00:00Z"));
        // The same JSON back, field for field.
        let out = serde_json::to_value(&a).unwrap();
        for (k, v) in json.as_object().unwrap() {
            if k != "TaskStates" {
                assert_eq!(&out[k], v, "{k}");
            }
        }
        let events = &out["TaskStates"]["web"]["Events"];
        assert_eq!(events[0]["DisplayMessage"], "Task received by client");
        assert_eq!(events[2]["Type"], "Custom Hook");
        assert_eq!(out["TaskStates"]["web"]["State"], "running");
    }

    #[test]
    fn a_decoded_allocation_gives_back_its_vectors_spare_room() {
        let event = |t: &str| serde_json::json!({"Type": t, "Time": 1});
        let json = serde_json::json!({
            "ID": "a1",
            "TaskStates": {"web": {"State": "running",
                "Events": [event("Received"), event("Task Setup"), event("Started")]}},
            "TaskResources": {"web": {"CPU": 100, "Networks": [{"DynamicPorts": [{"Label": "http"}]}]}},
            "AllocatedResources": {"Tasks": {"web": {"Cpu": {"CpuShares": 100}}},
                "Shared": {"Ports": [{"Label": "http", "Value": 20000}]}}
        });
        // From text, as a Raft entry is read (a `Value` would tell each vector its length).
        let mut a: Allocation = serde_json::from_str(&json.to_string()).unwrap();
        // As JSON: a clone would share the `Arc`ed task resources, which neither
        // `shrink_to_fit` nor `room` may then change in place.
        let before = serde_json::to_value(&a).unwrap();
        let room = |a: &mut Allocation| {
            let states = std::mem::take(&mut a.task_states).into_tuple_vec();
            let events = states[0].1.events.capacity();
            let shared_ports = a
                .allocated_resources
                .as_ref()
                .unwrap()
                .shared
                .ports
                .capacity();
            let tasks = std::mem::take(Arc::make_mut(&mut a.task_resources)).into_tuple_vec();
            let ports = tasks[0].1.networks[0].dynamic_ports.capacity();
            let maps = (states.capacity(), tasks.capacity());
            a.task_states = TaskMap::from_sorted_store_unchecked(states);
            a.task_resources = Arc::new(TaskMap::from_sorted_store_unchecked(tasks));
            (maps, events, shared_ports, ports)
        };
        // Decoding left room for four of each.
        assert_eq!(room(&mut a), ((4, 4), 4, 4, 4));
        a.shrink_to_fit();
        assert_eq!(room(&mut a), ((1, 1), 3, 1, 1));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            before,
            "only the capacity changed"
        );
    }
}
