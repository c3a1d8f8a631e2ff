//! Heap bytes the state store holds per allocation, measured with a counting allocator:
//! `cargo run --release -p server --example state_memory -- snapshot.json`
//! (a file from `drover operator snapshot save`). Prints the whole store's heap and what
//! parts of an allocation cost, so a change to the in-memory shape can be measured.

use server::state::StateStore;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn measure<T>(what: &str, per: usize, build: impl FnOnce() -> T) -> T {
    let before = live();
    let v = build();
    let d = live() - before;
    println!(
        "{what:<40} {:>12} bytes {:>8} per allocation",
        d,
        d / per.max(1) as isize
    );
    v
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: state_memory SNAPSHOT.json");
    let bytes = std::fs::read(&path).expect("read snapshot");
    let bytes_len = bytes.len();
    let before = live();
    let state: StateStore = serde_json::from_slice(&bytes).expect("a snapshot");
    drop(bytes);
    let n = state.alloc_table().len();
    println!(
        "allocations {n}, nodes {}, jobs {}",
        state.node_table().len(),
        state.job_table().len()
    );
    // The file's bytes were allocated before `before` and freed after: what is left is
    // the store.
    println!(
        "{:<40} {:>12} bytes {:>8} per allocation",
        "whole store",
        live() - before + bytes_len as isize,
        (live() - before + bytes_len as isize) / n.max(1) as isize
    );
    let nodes: Vec<_> = state.node_table().values().cloned().collect();
    let _nodes = measure("nodes (deep copies), per allocation", n, || {
        nodes.iter().map(|x| (**x).clone()).collect::<Vec<_>>()
    });
    println!(
        "  per node: {} bytes as JSON",
        nodes
            .first()
            .map_or(0, |x| serde_json::to_vec(&**x).unwrap().len())
    );
    let allocs: Vec<_> = state.alloc_table().values().cloned().collect();
    let _plain = measure("allocations (deep copies, no job)", n, || {
        allocs
            .iter()
            .map(|a| {
                let mut a = (**a).clone();
                a.job = None;
                a
            })
            .collect::<Vec<_>>()
    });
    // As decoded from JSON (a Raft entry, a snapshot), before and after giving back the
    // vectors' spare room: what `Allocation::shrink_to_fit` saves for each stored one.
    let json: Vec<Vec<u8>> = allocs
        .iter()
        .map(|a| {
            let mut a = (**a).clone();
            a.job = None;
            serde_json::to_vec(&a).unwrap()
        })
        .collect();
    let mut decoded = measure("allocations as decoded (no job)", n, || {
        json.iter()
            .map(|j| serde_json::from_slice::<api::Allocation>(j).unwrap())
            .collect::<Vec<_>>()
    });
    drop(json);
    let before = live();
    decoded.iter_mut().for_each(|a| a.shrink_to_fit());
    let d = live() - before;
    println!(
        "{:<40} {:>12} bytes {:>8} per allocation",
        "  shrink_to_fit",
        d,
        d / n.max(1) as isize
    );
    drop(decoded);
    let _ts = measure("  task_states", n, || {
        allocs
            .iter()
            .map(|a| a.task_states.clone())
            .collect::<Vec<_>>()
    });
    let _ar = measure("  allocated_resources", n, || {
        allocs
            .iter()
            .map(|a| a.allocated_resources.clone())
            .collect::<Vec<_>>()
    });
    // Deep copies: what each would cost alone (the store shares a group's one copy).
    let _r = measure("  resources + task_resources, unshared", n, || {
        allocs
            .iter()
            .map(|a| (a.resources.as_deref().cloned(), (*a.task_resources).clone()))
            .collect::<Vec<_>>()
    });
    let distinct = |ptrs: Vec<usize>| {
        ptrs.into_iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    println!(
        "  distinct copies held: task_resources {}, resources {}",
        distinct(
            allocs
                .iter()
                .map(|a| Arc::as_ptr(&a.task_resources) as usize)
                .collect()
        ),
        distinct(
            allocs
                .iter()
                .filter_map(|a| a.resources.as_ref().map(|r| Arc::as_ptr(r) as usize))
                .collect()
        )
    );
    let _tr = measure("  reschedule/deployment/transition", n, || {
        allocs
            .iter()
            .map(|a| {
                (
                    a.reschedule_tracker.clone(),
                    a.deployment_status.clone(),
                    a.desired_transition.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    let _s = measure("  strings, unshared (as String)", n, || {
        allocs
            .iter()
            .map(|a| {
                [
                    a.id.to_string(),
                    a.namespace.to_string(),
                    a.eval_id.to_string(),
                    a.name.to_string(),
                    a.node_id.to_string(),
                    a.node_name.to_string(),
                    a.job_id.to_string(),
                    a.task_group.to_string(),
                    a.desired_status.to_string(),
                    a.desired_description.to_string(),
                    a.client_status.to_string(),
                    a.client_description.to_string(),
                    a.previous_allocation.to_string(),
                    a.next_allocation.to_string(),
                    a.followup_eval_id.to_string(),
                    a.deployment_id.to_string(),
                ]
            })
            .collect::<Vec<_>>()
    });
    println!(
        "  distinct copies held: job_id {}, eval_id {}, node_id {}, node_name {}",
        distinct(allocs.iter().map(|a| a.job_id.as_ptr() as usize).collect()),
        distinct(allocs.iter().map(|a| a.eval_id.as_ptr() as usize).collect()),
        distinct(allocs.iter().map(|a| a.node_id.as_ptr() as usize).collect()),
        distinct(
            allocs
                .iter()
                .map(|a| a.node_name.as_ptr() as usize)
                .collect()
        ),
    );
    println!(
        "size_of::<Allocation>() = {}",
        std::mem::size_of::<api::Allocation>()
    );
    if let Some(a) = allocs.first() {
        println!(
            "one allocation as JSON: {} bytes",
            serde_json::to_vec(&**a).unwrap().len()
        );
        println!("{}", serde_json::to_string_pretty(&a.task_states).unwrap());
    }
}
