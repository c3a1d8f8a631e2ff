//! Job summaries (`GET /v1/job/:id/summary`, every stub of `GET /v1/jobs`): allocation
//! counts per task group and client status, and what is still queued.
//!
//! The store keeps [`GroupCounts`] per `(namespace, job, group)`, moved by every
//! allocation write (`StateStore::count_alloc`), so a summary reads one counter per group
//! instead of the job's allocations: listing a thousand jobs of a thousand allocations
//! each no longer walks a million allocations. [`GroupCounts::of_alloc`] is the one
//! definition of what an allocation counts for, used by the counters and by
//! [`StateStore::job_summary_of`] over a list a caller already holds.

use super::StateStore;
use api::{Allocation, Job, JobSummary, TaskGroupSummary};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `(namespace, job ID, task group)`.
pub(super) type GroupKey = (String, String, String);

/// What a task group's allocations add up to for its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Allocations counted, whatever their status (the group is in the summary while
    /// it has one).
    pub allocs: u64,
    pub starting: u64,
    pub running: u64,
    pub complete: u64,
    pub failed: u64,
    pub lost: u64,
    pub unknown: u64,
    /// Not told to stop and pending, running or unknown: placed as far as "queued" goes.
    pub live: u64,
    /// Not told to stop and complete: placed for a batch job (its work is done).
    pub done: u64,
}

impl GroupCounts {
    /// Allocations the client has not finished with (`!Allocation::client_terminal`).
    pub fn client_live(&self) -> u64 {
        self.allocs - self.complete - self.failed - self.lost
    }

    pub fn of_alloc(a: &Allocation) -> GroupCounts {
        let mut c = GroupCounts {
            allocs: 1,
            ..Default::default()
        };
        match a.client_status.as_str() {
            api::ALLOC_CLIENT_PENDING => c.starting = 1,
            api::ALLOC_CLIENT_RUNNING => c.running = 1,
            api::ALLOC_CLIENT_COMPLETE => c.complete = 1,
            api::ALLOC_CLIENT_FAILED => c.failed = 1,
            api::ALLOC_CLIENT_LOST => c.lost = 1,
            api::ALLOC_CLIENT_UNKNOWN => c.unknown = 1,
            _ => {}
        }
        if !a.desired_stop() {
            c.live = u64::from(c.starting + c.running + c.unknown > 0);
            c.done = c.complete;
        }
        c
    }

    fn fields(&mut self) -> [&mut u64; 9] {
        [
            &mut self.allocs,
            &mut self.starting,
            &mut self.running,
            &mut self.complete,
            &mut self.failed,
            &mut self.lost,
            &mut self.unknown,
            &mut self.live,
            &mut self.done,
        ]
    }

    pub fn add(&mut self, mut o: GroupCounts) {
        for (a, b) in self.fields().into_iter().zip(o.fields()) {
            *a += *b;
        }
    }

    pub fn sub(&mut self, mut o: GroupCounts) {
        for (a, b) in self.fields().into_iter().zip(o.fields()) {
            *a = a.saturating_sub(*b);
        }
    }
}

pub(super) fn group_key(a: &Allocation) -> GroupKey {
    (
        a.namespace.to_string(),
        a.job_id.to_string(),
        a.task_group.to_string(),
    )
}

impl StateStore {
    /// Allocation counts per task group and client status, as `GET /v1/job/:id/summary`,
    /// from the store's counters.
    pub fn job_summary(&self, job: &Job) -> JobSummary {
        let (ns, id) = (job.ns(), job.id.as_str());
        let lo = (ns.to_string(), id.to_string(), String::new());
        let groups = self
            .group_counts
            .range(lo..)
            .take_while(|((n, j, _), _)| n == ns && j == id)
            .map(|((_, _, g), c)| (g.as_str(), *c));
        self.summary_from(job, groups)
    }

    /// What all of a job's allocations add up to, from the counters (no allocation read).
    pub fn job_alloc_counts(&self, namespace: &str, job_id: &str) -> GroupCounts {
        let lo = (namespace.to_string(), job_id.to_string(), String::new());
        let mut total = GroupCounts::default();
        for (_, c) in self
            .group_counts
            .range(lo..)
            .take_while(|((n, j, _), _)| n == namespace && j == job_id)
        {
            total.add(*c);
        }
        total
    }

    /// `job_summary` over the job's allocations (`allocs_for_job`) a caller already read.
    pub fn job_summary_of(&self, job: &Job, allocs: &[Arc<Allocation>]) -> JobSummary {
        let mut groups: BTreeMap<&str, GroupCounts> = BTreeMap::new();
        for a in allocs {
            groups
                .entry(a.task_group.as_str())
                .or_default()
                .add(GroupCounts::of_alloc(a));
        }
        self.summary_from(job, groups.into_iter())
    }

    fn summary_from<'a>(
        &self,
        job: &Job,
        groups: impl Iterator<Item = (&'a str, GroupCounts)>,
    ) -> JobSummary {
        let mut summary = JobSummary {
            job_id: job.id.clone(),
            namespace: job.ns().to_string(),
            create_index: job.create_index,
            modify_index: job.modify_index,
            ..Default::default()
        };
        for g in &job.task_groups {
            summary
                .summary
                .insert(g.name.clone(), TaskGroupSummary::default());
        }
        let batch = job.job_type == api::JOB_TYPE_BATCH;
        let mut placed: BTreeMap<String, u64> = BTreeMap::new();
        for (g, c) in groups.filter(|(_, c)| c.allocs > 0) {
            let s = summary.summary.entry(g.to_string()).or_default();
            s.starting = c.starting;
            s.running = c.running;
            s.complete = c.complete;
            s.failed = c.failed;
            s.lost = c.lost;
            s.unknown = c.unknown;
            placed.insert(g.to_string(), c.live + if batch { c.done } else { 0 });
        }
        // Queued: every wanted allocation not placed (Nomad: desired minus placed, kept
        // from the evaluations' QueuedAllocations). For service and batch groups the
        // count says what is wanted, so it is derived from the allocations themselves and
        // can never say 0 while some are missing (an evaluation that failed or was never
        // run included). System groups have no count: their newest finished evaluation
        // says how many nodes still wait.
        if job.stop || job.status == api::JOB_STATUS_DEAD {
            return summary;
        }
        let counted = matches!(
            job.job_type.as_str(),
            api::JOB_TYPE_SERVICE | api::JOB_TYPE_BATCH | ""
        );
        if counted {
            for g in &job.task_groups {
                let want = g.count.max(0) as u64;
                let have = placed.get(&g.name).copied().unwrap_or(0);
                if let Some(s) = summary.summary.get_mut(&g.name) {
                    s.queued = want.saturating_sub(have);
                }
            }
        } else if let Some(e) = self
            .evals_for_job(job.ns(), &job.id)
            .into_iter()
            .filter(|e| {
                e.status != api::EVAL_STATUS_PENDING && e.status != api::EVAL_STATUS_CANCELED
            })
            .max_by_key(|e| e.modify_index)
        {
            for (g, n) in &e.queued_allocations {
                summary.summary.entry(g.clone()).or_default().queued = *n;
            }
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::test_writer;

    #[test]
    fn counted_summaries_equal_summaries_added_up_from_the_allocations() {
        let statuses = [
            api::ALLOC_CLIENT_PENDING,
            api::ALLOC_CLIENT_RUNNING,
            api::ALLOC_CLIENT_COMPLETE,
            api::ALLOC_CLIENT_FAILED,
            api::ALLOC_CLIENT_LOST,
            api::ALLOC_CLIENT_UNKNOWN,
            "odd",
        ];
        for job_type in [api::JOB_TYPE_SERVICE, api::JOB_TYPE_BATCH] {
            let mut job = Job {
                id: "web".into(),
                namespace: "default".into(),
                job_type: job_type.into(),
                task_groups: ["a", "b"]
                    .iter()
                    .map(|g| api::TaskGroup {
                        name: g.to_string(),
                        count: 9,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            job.canonicalize();
            let job = Arc::new(job);
            let mut s = StateStore::default();
            let mut index = 1;
            // Groups "a", "b" and "gone" (no longer in the job); every status, some
            // allocations told to stop, then moved on and some deleted.
            for i in 0..60u64 {
                index += 1;
                let mut w = test_writer(&mut s, index);
                let a = Allocation {
                    id: format!("a{i}").into(),
                    namespace: "default".into(),
                    job_id: "web".into(),
                    task_group: ["a", "b", "gone"][(i % 3) as usize].into(),
                    client_status: statuses[(i % 7) as usize].into(),
                    desired_status: if i % 4 == 0 {
                        api::ALLOC_DESIRED_STOP.into()
                    } else {
                        api::ALLOC_DESIRED_RUN.into()
                    },
                    ..Default::default()
                };
                w.upsert_alloc(a.clone());
                if i % 5 == 0 {
                    let mut moved = a.clone();
                    moved.client_status = statuses[((i + 3) % 7) as usize].into();
                    w.upsert_client_alloc(moved);
                }
                if i % 11 == 0 {
                    w.delete_alloc(&format!("a{}", i / 2));
                }
                drop(w);
                let scanned = s.job_summary_of(&job, &s.allocs_for_job("default", "web"));
                assert_eq!(s.job_summary(&job), scanned, "{job_type} after a{i}");
            }
            // Every allocation of "gone" deleted: the group leaves the summary.
            let mut w = test_writer(&mut s, index + 1);
            for i in (2..60).step_by(3) {
                w.delete_alloc(&format!("a{i}"));
            }
            drop(w);
            assert!(!s.job_summary(&job).summary.contains_key("gone"));
            let back: StateStore =
                serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            assert_eq!(back.job_summary(&job), s.job_summary(&job));
        }
    }
}
