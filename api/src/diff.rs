//! Job diffs, as `job plan` shows them, and the bodies of `PUT /v1/job/:id/plan`.
//!
//! `job_diff` compares two versions of a job through their API JSON, so a field added
//! to the model shows up in plans without more code here. The shape is Nomad's:
//! a job diff holds field and object diffs and one diff per task group, which holds one
//! per task. Lists of objects (constraints, networks, services...) are compared as sets,
//! matched by `Name` or `Label` when their elements have one; free-form maps (`Meta`,
//! `Env`, `Config`) are flattened into `Meta[key]` fields. Server-owned fields (indexes,
//! version, status, submit time) never count as changes.
//!
//! `annotate` then adds what the scheduler's dry run decided: per group, how many
//! allocations would be created, updated or stopped, and what each change forces.

use crate::eval::{AllocMetric, Evaluation};
use crate::job::Job;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Whether something was added, deleted, edited or left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffType {
    #[default]
    None,
    Added,
    Deleted,
    Edited,
}

impl DiffType {
    /// The marker `job plan` prints in front of a line.
    pub fn marker(self) -> &'static str {
        match self {
            DiffType::None => "",
            DiffType::Added => "+",
            DiffType::Deleted => "-",
            DiffType::Edited => "+/-",
        }
    }

    fn of(old: bool, new: bool, changed: bool) -> Self {
        match (old, new) {
            (false, true) => DiffType::Added,
            (true, false) => DiffType::Deleted,
            (true, true) if changed => DiffType::Edited,
            _ => DiffType::None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    #[serde(rename = "ID")]
    pub id: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
    pub task_groups: Vec<TaskGroupDiff>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
    pub tasks: Vec<TaskDiff>,
    /// What the dry run would do to the group's allocations: "create", "destroy",
    /// "in-place update", "create/destroy update", "migrate", "canary", "ignore".
    pub updates: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
    /// What the change forces ("forces create", "forces create/destroy update"...).
    pub annotations: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ObjectDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub fields: Vec<FieldDiff>,
    pub objects: Vec<ObjectDiff>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FieldDiff {
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    pub name: String,
    pub old: String,
    pub new: String,
    pub annotations: Vec<String>,
}

/// Per task group, what a scheduler run would do with its allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredUpdates {
    pub ignore: u64,
    pub place: u64,
    pub migrate: u64,
    pub stop: u64,
    pub in_place_update: u64,
    pub destructive_update: u64,
    pub canary: u64,
    pub preemptions: u64,
}

impl DesiredUpdates {
    /// Whether allocations would be created or destroyed (`job plan` exits 1 then).
    pub fn creates_or_destroys(&self) -> bool {
        self.place + self.stop + self.migrate + self.destructive_update + self.canary > 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanAnnotations {
    #[serde(rename = "DesiredTGUpdates")]
    pub desired_tg_updates: BTreeMap<String, DesiredUpdates>,
}

/// Body of `PUT /v1/job/:id/plan`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobPlanRequest {
    pub job: Option<Job>,
    /// Return the diff against the registered job.
    pub diff: bool,
    pub policy_override: bool,
}

/// Answer of `PUT /v1/job/:id/plan`: the dry run's outcome; nothing was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobPlanResponse {
    pub index: u64,
    pub diff: Option<JobDiff>,
    pub annotations: Option<PlanAnnotations>,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    /// The registered job's modify index (0 for a new job): pass it to
    /// `job run -check-index` to submit only if nobody changed the job since.
    pub job_modify_index: u64,
    /// Evaluations the run would create (a blocked one when placements fail).
    pub created_evals: Vec<Evaluation>,
    pub warnings: String,
}

/// Job fields the servers own: they change without the user changing the job.
const SERVER_FIELDS: &[&str] = &[
    "ID",
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
    "SubmitTime",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "TaskGroups",
];

/// Maps with user-chosen keys: flattened into `Name[key]` fields.
const FLAT_MAPS: &[&str] = &["Meta", "Env", "Config"];

/// Whether submitting `new` over the registered `old` makes a new job version: the one
/// rule behind both `job plan` ("no change") and `job run` (the FSM keeps the version),
/// so the two cannot disagree. Only what the user wrote counts: fields the servers own
/// (status, version, indexes, submit time) are ignored, and an empty list or map is the
/// same as an absent one.
pub fn is_new_version(old: &Job, new: &Job) -> bool {
    job_diff(Some(old), new).diff_type != DiffType::None
}

/// The diff from `old` (None: the job is new) to `new`.
pub fn job_diff(old: Option<&Job>, new: &Job) -> JobDiff {
    let old_v = old.map(|j| object_without(j, SERVER_FIELDS));
    let new_v = object_without(new, SERVER_FIELDS);
    let (fields, objects) = diff_maps(old_v.as_ref(), Some(&new_v));

    let empty = Vec::new();
    let old_groups = old.map(|j| &j.task_groups).unwrap_or(&empty);
    let mut task_groups = Vec::new();
    for g in &new.task_groups {
        let before = old_groups.iter().find(|o| o.name == g.name);
        task_groups.push(group_diff(before, Some(g)));
    }
    for g in old_groups {
        if new.task_group(&g.name).is_none() {
            task_groups.push(group_diff(Some(g), None));
        }
    }
    let changed = !fields.is_empty()
        || !objects.is_empty()
        || task_groups.iter().any(|g| g.diff_type != DiffType::None);
    JobDiff {
        diff_type: DiffType::of(old.is_some(), true, changed),
        id: new.id.clone(),
        fields,
        objects,
        task_groups,
    }
}

fn group_diff(old: Option<&crate::TaskGroup>, new: Option<&crate::TaskGroup>) -> TaskGroupDiff {
    let skip = &["Name", "Tasks"];
    let old_v = old.map(|g| object_without(g, skip));
    let new_v = new.map(|g| object_without(g, skip));
    let (fields, objects) = diff_maps(old_v.as_ref(), new_v.as_ref());
    let no_tasks = Vec::new();
    let old_tasks = old.map(|g| &g.tasks).unwrap_or(&no_tasks);
    let new_tasks = new.map(|g| &g.tasks).unwrap_or(&no_tasks);
    let mut tasks = Vec::new();
    for t in new_tasks {
        let before = old_tasks.iter().find(|o| o.name == t.name);
        tasks.push(task_diff(before, Some(t)));
    }
    for t in old_tasks {
        if !new_tasks.iter().any(|n| n.name == t.name) {
            tasks.push(task_diff(Some(t), None));
        }
    }
    let changed = !fields.is_empty()
        || !objects.is_empty()
        || tasks.iter().any(|t| t.diff_type != DiffType::None);
    TaskGroupDiff {
        diff_type: DiffType::of(old.is_some(), new.is_some(), changed),
        name: new.or(old).map(|g| g.name.clone()).unwrap_or_default(),
        fields,
        objects,
        tasks,
        updates: BTreeMap::new(),
    }
}

fn task_diff(old: Option<&crate::Task>, new: Option<&crate::Task>) -> TaskDiff {
    let old_v = old.map(|t| object_without(t, &["Name"]));
    let new_v = new.map(|t| object_without(t, &["Name"]));
    let (fields, objects) = diff_maps(old_v.as_ref(), new_v.as_ref());
    let changed = !fields.is_empty() || !objects.is_empty();
    TaskDiff {
        diff_type: DiffType::of(old.is_some(), new.is_some(), changed),
        name: new.or(old).map(|t| t.name.clone()).unwrap_or_default(),
        fields,
        objects,
        annotations: Vec::new(),
    }
}

/// The JSON object of `v` without the keys in `skip`.
fn object_without<T: Serialize>(v: &T, skip: &[&str]) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(mut m)) => {
            for k in skip {
                m.remove(*k);
            }
            m
        }
        _ => Map::new(),
    }
}

/// A value that counts as "not set": null, or an empty list or map.
fn absent(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    })
}

/// The changed fields and objects between two JSON objects (either may be missing).
fn diff_maps(
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> (Vec<FieldDiff>, Vec<ObjectDiff>) {
    let mut keys: Vec<&String> = old.into_iter().chain(new).flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut fields = Vec::new();
    let mut objects = Vec::new();
    for key in keys {
        let o = absent(old.and_then(|m| m.get(key)));
        let n = absent(new.and_then(|m| m.get(key)));
        let Some(sample) = n.or(o) else { continue };
        match sample {
            Value::Object(_) if FLAT_MAPS.contains(&key.as_str()) => {
                let mut of = BTreeMap::new();
                let mut nf = BTreeMap::new();
                if let Some(v) = o {
                    flatten(key, v, &mut of);
                }
                if let Some(v) = n {
                    flatten(key, v, &mut nf);
                }
                let mut names: Vec<&String> = of.keys().chain(nf.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    fields.extend(field(name, of.get(name), nf.get(name)));
                }
            }
            Value::Object(_) => {
                let (f, ob) = diff_maps(o.and_then(Value::as_object), n.and_then(Value::as_object));
                let t = DiffType::of(o.is_some(), n.is_some(), !f.is_empty() || !ob.is_empty());
                if t != DiffType::None {
                    objects.push(ObjectDiff {
                        diff_type: t,
                        name: key.clone(),
                        fields: f,
                        objects: ob,
                    });
                }
            }
            Value::Array(_) => {
                let empty = Vec::new();
                let ol = o.and_then(Value::as_array).unwrap_or(&empty);
                let nl = n.and_then(Value::as_array).unwrap_or(&empty);
                if ol.iter().chain(nl).all(|v| !v.is_object() && !v.is_array()) {
                    objects.extend(primitive_list(key, o.is_some(), n.is_some(), ol, nl));
                } else {
                    objects.extend(object_list(key, ol, nl));
                }
            }
            _ => {
                let (os, ns) = (o.map(text), n.map(text));
                fields.extend(field(key, os.as_ref(), ns.as_ref()));
            }
        }
    }
    (fields, objects)
}

fn field(name: &str, old: Option<&String>, new: Option<&String>) -> Option<FieldDiff> {
    let t = DiffType::of(old.is_some(), new.is_some(), old != new);
    (t != DiffType::None).then(|| FieldDiff {
        diff_type: t,
        name: name.to_string(),
        old: old.cloned().unwrap_or_default(),
        new: new.cloned().unwrap_or_default(),
        annotations: Vec::new(),
    })
}

/// A primitive as the diff shows it: strings bare, everything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `Meta` {"a": "1"} -> `Meta[a]` = "1"; nested values get one `[key]` per level.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}[{k}]"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_string(), text(other));
        }
    }
}

/// A list of primitives (`Datacenters`, `Tags`) as a set: one field per element added
/// or removed.
fn primitive_list(
    key: &str,
    had: bool,
    has: bool,
    old: &[Value],
    new: &[Value],
) -> Option<ObjectDiff> {
    let mut fields = Vec::new();
    for v in old.iter().filter(|v| !new.contains(v)) {
        fields.extend(field(key, Some(&text(v)), None));
    }
    for v in new.iter().filter(|v| !old.contains(v)) {
        fields.extend(field(key, None, Some(&text(v))));
    }
    let t = DiffType::of(had, has, !fields.is_empty());
    (t != DiffType::None).then(|| ObjectDiff {
        diff_type: t,
        name: key.to_string(),
        fields,
        objects: Vec::new(),
    })
}

/// The name an element of a list is matched by across versions, when it has one.
fn element_key(v: &Value) -> Option<&str> {
    v.get("Name")
        .or_else(|| v.get("Label"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A list of objects (`Constraints`, `Networks`, `Services`) as a set of objects:
/// elements with the same name are edited, others added or deleted whole.
fn object_list(key: &str, old: &[Value], new: &[Value]) -> Vec<ObjectDiff> {
    let name = singular(key);
    let mut out = Vec::new();
    let mut matched = vec![false; old.len()];
    for n in new {
        let found = old.iter().enumerate().position(|(i, o)| {
            !matched[i]
                && match (element_key(o), element_key(n)) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => o == n,
                    _ => false,
                }
        });
        let o = found.map(|i| {
            matched[i] = true;
            &old[i]
        });
        let (fields, objects) = diff_maps(o.and_then(Value::as_object), n.as_object());
        let t = DiffType::of(o.is_some(), true, !fields.is_empty() || !objects.is_empty());
        if t != DiffType::None {
            out.push(ObjectDiff {
                diff_type: t,
                name: name.clone(),
                fields,
                objects,
            });
        }
    }
    for (o, _) in old.iter().zip(&matched).filter(|(_, m)| !**m) {
        let (fields, objects) = diff_maps(o.as_object(), None);
        out.push(ObjectDiff {
            diff_type: DiffType::Deleted,
            name: name.clone(),
            fields,
            objects,
        });
    }
    out
}

/// `Constraints` -> `Constraint`, `Affinities` -> `Affinity`.
fn singular(key: &str) -> String {
    if let Some(stem) = key.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = key.strip_suffix('s') {
        stem.to_string()
    } else {
        key.to_string()
    }
}

/// Adds the dry run's decisions to a diff: each group's update counts, what a changed
/// count forces, and what each changed task forces.
pub fn annotate(diff: &mut JobDiff, updates: &BTreeMap<String, DesiredUpdates>) {
    for g in &mut diff.task_groups {
        let u = updates.get(&g.name).cloned().unwrap_or_default();
        for (label, n) in [
            ("ignore", u.ignore),
            ("create", u.place),
            ("destroy", u.stop),
            ("migrate", u.migrate),
            ("in-place update", u.in_place_update),
            ("create/destroy update", u.destructive_update),
            ("canary", u.canary),
        ] {
            if n > 0 {
                g.updates.insert(label.to_string(), n);
            }
        }
        for f in g.fields.iter_mut().filter(|f| f.name == "Count") {
            let (old, new) = (f.old.parse::<i64>(), f.new.parse::<i64>());
            if let (Ok(old), Ok(new)) = (old, new) {
                if new > old {
                    f.annotations.push("forces create".into());
                } else if new < old {
                    f.annotations.push("forces destroy".into());
                }
            }
        }
        let task_note = match g.diff_type {
            DiffType::Added => Some("forces create"),
            DiffType::Deleted => Some("forces destroy"),
            DiffType::Edited if u.destructive_update > 0 => Some("forces create/destroy update"),
            DiffType::Edited if u.in_place_update > 0 => Some("forces in-place update"),
            _ => None,
        };
        for t in g.tasks.iter_mut() {
            if let (Some(note), true) = (task_note, t.diff_type != DiffType::None) {
                t.annotations.push(note.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Constraint, Task, TaskGroup};

    fn job(count: i64, image: &str) -> Job {
        Job {
            id: "web".into(),
            datacenters: vec!["dc1".into()],
            meta: [("owner".to_string(), "ops".to_string())].into(),
            task_groups: vec![TaskGroup {
                name: "api".into(),
                count,
                tasks: vec![Task {
                    name: "server".into(),
                    driver: "docker".into(),
                    config: [("image".to_string(), Value::from(image))].into(),
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        }
    }

    #[test]
    fn a_new_job_is_added_with_its_groups_and_tasks() {
        let d = job_diff(None, &job(1, "redis:7"));
        assert_eq!(d.diff_type, DiffType::Added);
        assert_eq!(d.id, "web");
        assert_eq!(d.task_groups[0].diff_type, DiffType::Added);
        assert_eq!(d.task_groups[0].tasks[0].diff_type, DiffType::Added);
        let dcs = d.objects.iter().find(|o| o.name == "Datacenters").unwrap();
        assert_eq!(dcs.fields[0].new, "dc1");
        assert!(d
            .fields
            .iter()
            .any(|f| f.name == "Meta[owner]" && f.new == "ops"));
    }

    #[test]
    fn an_identical_job_has_no_changes_even_with_new_indexes() {
        let old = job(2, "redis:7");
        let mut new = old.clone();
        new.version = 4;
        new.job_modify_index = 99;
        new.status = "running".into();
        let d = job_diff(Some(&old), &new);
        assert_eq!(d.diff_type, DiffType::None, "{d:#?}");
        assert!(d.fields.is_empty() && d.objects.is_empty());
        assert_eq!(d.task_groups[0].diff_type, DiffType::None);
    }

    #[test]
    fn a_count_change_edits_the_group_and_annotates_the_count() {
        let mut d = job_diff(Some(&job(1, "redis:7")), &job(3, "redis:7"));
        assert_eq!(d.diff_type, DiffType::Edited);
        let g = &d.task_groups[0];
        assert_eq!(g.diff_type, DiffType::Edited);
        let count = &g.fields[0];
        assert_eq!(
            (count.name.as_str(), count.old.as_str(), count.new.as_str()),
            ("Count", "1", "3")
        );
        assert_eq!(g.tasks[0].diff_type, DiffType::None);
        let updates = [(
            "api".to_string(),
            DesiredUpdates {
                place: 2,
                in_place_update: 1,
                ..Default::default()
            },
        )]
        .into();
        annotate(&mut d, &updates);
        let g = &d.task_groups[0];
        assert_eq!(g.fields[0].annotations, vec!["forces create"]);
        assert_eq!(g.updates["create"], 2);
        assert_eq!(g.updates["in-place update"], 1);
        assert!(g.tasks[0].annotations.is_empty());
    }

    #[test]
    fn a_task_config_change_is_a_flattened_field_that_forces_replacement() {
        let mut d = job_diff(Some(&job(1, "redis:7")), &job(1, "redis:8"));
        let t = &d.task_groups[0].tasks[0];
        assert_eq!(t.diff_type, DiffType::Edited);
        assert_eq!(t.fields.len(), 1);
        let f = &t.fields[0];
        assert_eq!(
            (f.name.as_str(), f.old.as_str(), f.new.as_str(), f.diff_type),
            ("Config[image]", "redis:7", "redis:8", DiffType::Edited)
        );
        let updates = [(
            "api".to_string(),
            DesiredUpdates {
                destructive_update: 1,
                ..Default::default()
            },
        )]
        .into();
        annotate(&mut d, &updates);
        assert_eq!(
            d.task_groups[0].tasks[0].annotations,
            vec!["forces create/destroy update"]
        );
        assert_eq!(d.task_groups[0].updates["create/destroy update"], 1);
    }

    #[test]
    fn lists_of_objects_compare_as_sets_and_groups_can_go_away() {
        let old = job(1, "redis:7");
        let mut new = old.clone();
        new.constraints.push(Constraint {
            l_target: "${attr.kernel.name}".into(),
            r_target: "linux".into(),
            operand: "=".into(),
        });
        new.datacenters = vec!["dc2".into()];
        new.task_groups[0].name = "cache".into();
        let d = job_diff(Some(&old), &new);
        let c = d.objects.iter().find(|o| o.name == "Constraint").unwrap();
        assert_eq!(c.diff_type, DiffType::Added);
        assert!(c
            .fields
            .iter()
            .any(|f| f.name == "RTarget" && f.new == "linux"));
        let dcs = d.objects.iter().find(|o| o.name == "Datacenters").unwrap();
        assert_eq!(dcs.diff_type, DiffType::Edited);
        let kinds: Vec<(DiffType, &str)> = dcs
            .fields
            .iter()
            .map(|f| (f.diff_type, f.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (DiffType::Deleted, "Datacenters"),
                (DiffType::Added, "Datacenters")
            ]
        );
        let groups: Vec<(&str, DiffType)> = d
            .task_groups
            .iter()
            .map(|g| (g.name.as_str(), g.diff_type))
            .collect();
        assert_eq!(
            groups,
            vec![("cache", DiffType::Added), ("api", DiffType::Deleted)]
        );
    }

    #[test]
    fn plan_response_uses_nomads_field_names() {
        let resp = JobPlanResponse {
            annotations: Some(PlanAnnotations {
                desired_tg_updates: [("api".to_string(), DesiredUpdates::default())].into(),
            }),
            diff: Some(job_diff(None, &job(1, "x"))),
            ..Default::default()
        };
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["Diff"]["Type"], "Added");
        assert_eq!(v["Diff"]["TaskGroups"][0]["Name"], "api");
        assert!(v["Annotations"]["DesiredTGUpdates"]["api"]["InPlaceUpdate"].is_number());
        assert!(v["FailedTGAllocs"].is_object());
        assert!(v["JobModifyIndex"].is_number());
    }
}
