//! One module per page. Each page has a pure `render` over a `StateStore` snapshot (what
//! the unit tests call) and a handler that takes the snapshot and wraps it in the layout.

pub mod alloc;
pub mod allocs;
pub mod clients;
pub mod diff;
pub mod evals;
pub mod files;
pub mod job;
pub mod jobs;
pub mod logs;
pub mod run;
pub mod search;
pub mod servers;
pub mod topology;

use crate::layout::{self, Nav};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::html;

/// A page that says what went wrong, in a sentence, with `status`.
pub fn problem(index: u64, status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        h1 { (title) }
        (layout::notice("error", message))
        p { a href="/ui/jobs" { "Back to the jobs" } }
    };
    let mut resp = crate::html(layout::page(title, Nav::None, index, body));
    *resp.status_mut() = status;
    resp
}

pub async fn not_found(uri: Uri) -> Response {
    let msg = format!("There is no page at {}.", uri.path());
    let resp = problem(0, StatusCode::NOT_FOUND, "Not found", &msg);
    resp.into_response()
}

/// The notice an action's redirect asks for (`?done=`): fixed sentences only, so a link
/// cannot make the UI say something it did not do.
pub fn done_notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "stopped" => "The job was stopped; its allocations are being stopped.",
        "purged" => "The job was stopped and purged.",
        "eligible" => "The node is eligible for new allocations.",
        "ineligible" => "The node is ineligible: it takes no new allocations.",
        "drain" => "The drain was set.",
        "undrain" => "The drain was disabled.",
        "submitted" => "The job was submitted; its evaluation is being scheduled.",
        "promoted" => "The deployment was promoted.",
        "deployment-failed" => "The deployment was marked as failed.",
        "alloc-stopped" => {
            "The allocation is being stopped; the scheduler replaces it if the job still wants it."
        }
        "alloc-restarted" => "The allocation's tasks are being restarted.",
        "task-restarted" => "The task is being restarted.",
        "signalled" => "The signal was sent.",
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod testdata {
    //! A state store built from JSON in the shape snapshots are saved in, so renderer
    //! tests need no FSM.
    use serde_json::{json, Value};
    use server::state::StateStore;

    pub fn job(id: &str, kind: &str, status: &str, count: i64) -> Value {
        json!({
            "ID": id, "Name": id, "Namespace": "default", "Type": kind, "Priority": 50,
            "Status": status, "Datacenters": ["dc1"],
            "TaskGroups": [{"Name": "main", "Count": count, "Tasks": [{"Name": "t", "Driver": "raw_exec"}]}]
        })
    }

    pub fn alloc(id: &str, job: &str, node: &str, client_status: &str, create_index: u64) -> Value {
        json!({
            "ID": id, "Namespace": "default", "JobID": job, "TaskGroup": "main",
            "NodeID": node, "NodeName": node, "Name": format!("{job}.main[0]"),
            "DesiredStatus": "run", "ClientStatus": client_status, "CreateIndex": create_index,
            "Resources": {"CPU": 100, "MemoryMB": 64}
        })
    }

    pub fn node(id: &str, name: &str) -> Value {
        json!({
            "ID": id, "Name": name, "Datacenter": "dc1", "Status": "ready",
            "SchedulingEligibility": "eligible",
            "NodeResources": {"Cpu": {"CpuShares": 4000}, "Memory": {"MemoryMB": 8192}, "Disk": {"DiskMB": 10000}}
        })
    }

    pub fn state(
        jobs: Vec<Value>,
        allocs: Vec<Value>,
        evals: Vec<Value>,
        nodes: Vec<Value>,
    ) -> StateStore {
        let allocs: Vec<Value> = allocs.into_iter().map(|a| json!([null, a])).collect();
        serde_json::from_value(json!({
            "index": 42,
            "tables": {"jobs": 1, "allocs": 1, "evals": 1, "nodes": 1},
            "jobs": jobs.clone(),
            "job_versions": jobs,
            "alloc_jobs": [],
            "allocs": allocs,
            "evals": evals,
            "nodes": nodes,
        }))
        .expect("a state store from JSON")
    }
}
