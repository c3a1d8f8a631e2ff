//! Test helpers: [`MemState`], an in-memory [`State`] built from vectors, and fixtures for
//! nodes, jobs, allocations and evaluations. Public so the server's tests (and simulators)
//! can drive the scheduler without a state store.

use crate::State;
use api::{
    Allocation, DriverInfo, Evaluation, Job, Node, NodeCpuResources, NodeDiskResources,
    NodeMemoryResources, NodeResources, Plan, Resources, Task, TaskGroup,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A snapshot held in plain maps, ordered by ID, with allocation indexes by node and by
/// job. Read the maps freely; change allocations only through the methods, which keep the
/// indexes.
#[derive(Debug, Clone, Default)]
pub struct MemState {
    pub index: u64,
    pub jobs: BTreeMap<(String, String), Arc<Job>>,
    pub nodes: BTreeMap<String, Arc<Node>>,
    pub allocs: BTreeMap<String, Arc<Allocation>>,
    by_node: HashMap<String, Vec<String>>,
    by_job: HashMap<String, Vec<String>>,
}

impl MemState {
    pub fn new() -> Self {
        MemState {
            index: 1,
            ..Default::default()
        }
    }

    pub fn with_nodes(mut self, nodes: impl IntoIterator<Item = Node>) -> Self {
        for n in nodes {
            self.upsert_node(n);
        }
        self
    }

    pub fn with_jobs(mut self, jobs: impl IntoIterator<Item = Job>) -> Self {
        for j in jobs {
            self.upsert_job(j);
        }
        self
    }

    pub fn with_allocs(mut self, allocs: impl IntoIterator<Item = Allocation>) -> Self {
        for a in allocs {
            self.upsert_alloc(a);
        }
        self
    }

    pub fn upsert_node(&mut self, node: Node) {
        self.index += 1;
        self.nodes.insert(node.id.clone(), Arc::new(node));
    }

    pub fn upsert_job(&mut self, job: Job) -> Arc<Job> {
        self.index += 1;
        let job = Arc::new(job);
        self.jobs
            .insert((job.ns().to_string(), job.id.clone()), job.clone());
        job
    }

    pub fn upsert_alloc(&mut self, alloc: Allocation) {
        self.index += 1;
        self.put_alloc(Arc::new(alloc));
    }

    /// Inserts or replaces an allocation, keeping the indexes. An allocation never moves
    /// between nodes or jobs, so only new IDs are indexed.
    fn put_alloc(&mut self, alloc: Arc<Allocation>) {
        if !self.allocs.contains_key(alloc.id.as_str()) {
            self.by_node
                .entry(alloc.node_id.to_string())
                .or_default()
                .push(alloc.id.to_string());
            self.by_job
                .entry(alloc.job_id.to_string())
                .or_default()
                .push(alloc.id.to_string());
        }
        self.allocs.insert(alloc.id.to_string(), alloc);
    }

    /// Forgets terminal allocations that nothing points at any more (garbage collection),
    /// keeping failed ones whose replacement chain the reconciler still reads.
    pub fn gc_terminal(&mut self) {
        let doomed: Vec<String> = self
            .allocs
            .values()
            .filter(|a| a.terminal() && a.client_status != api::ALLOC_CLIENT_FAILED)
            .map(|a| a.id.to_string())
            .collect();
        if doomed.is_empty() {
            return;
        }
        self.index += 1;
        for id in &doomed {
            self.allocs.remove(id);
        }
        let allocs = &self.allocs;
        for ids in self.by_node.values_mut().chain(self.by_job.values_mut()) {
            ids.retain(|id| allocs.contains_key(id));
        }
    }

    fn indexed<'a>(
        &'a self,
        ids: Option<&'a Vec<String>>,
    ) -> impl Iterator<Item = &'a Arc<Allocation>> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
    }

    /// Commits a plan as a permissive plan applier would: stops, then new and updated
    /// allocations (a replacement links its predecessor through `next_allocation`).
    pub fn apply_plan(&mut self, plan: &Plan) {
        self.index += 1;
        for alloc in plan.node_update.values().flatten() {
            self.put_alloc(Arc::new(alloc.clone()));
        }
        for alloc in plan.node_allocation.values().flatten() {
            let mut alloc = alloc.clone();
            alloc.create_index = alloc.create_index.max(self.index);
            alloc.modify_index = self.index;
            if let Some(prev) = self.allocs.get(alloc.previous_allocation.as_str()).cloned() {
                let mut prev = (*prev).clone();
                prev.next_allocation = alloc.id.clone();
                self.put_alloc(Arc::new(prev));
            }
            self.put_alloc(Arc::new(alloc));
        }
    }

    /// Sets a client status, as an agent's update would.
    pub fn set_client_status(&mut self, alloc_id: &str, status: &str) {
        if let Some(a) = self.allocs.get(alloc_id).cloned() {
            let mut a = (*a).clone();
            a.client_status = status.into();
            self.upsert_alloc(a);
        }
    }
}

impl State for MemState {
    fn index(&self) -> u64 {
        self.index
    }

    fn job(&self, namespace: &str, id: &str) -> Option<Arc<Job>> {
        self.jobs
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
    }

    fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.values().cloned().collect()
    }

    fn node(&self, id: &str) -> Option<Arc<Node>> {
        self.nodes.get(id).cloned()
    }

    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        self.indexed(self.by_job.get(job_id))
            .filter(|a| a.namespace == namespace || a.namespace.is_empty())
            .cloned()
            .collect()
    }

    fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        self.indexed(self.by_node.get(node_id)).cloned().collect()
    }
}

/// A ready, eligible node in `dc1` with 4000 MHz, 8192 MB, 100 GB of disk and the `exec`,
/// `raw_exec` and `docker` drivers. Its ID and name are both `name`.
pub fn node(name: &str) -> Node {
    let healthy = DriverInfo {
        detected: true,
        healthy: true,
        ..Default::default()
    };
    Node {
        id: name.to_string(),
        name: name.to_string(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        attributes: BTreeMap::from([
            ("kernel.name".to_string(), "linux".to_string()),
            ("cpu.arch".to_string(), "amd64".to_string()),
            ("unique.hostname".to_string(), name.to_string()),
        ]),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: 4000,
                total_cpu_cores: 4,
            },
            memory: NodeMemoryResources { memory_mb: 8192 },
            disk: NodeDiskResources {
                disk_mb: 100 * 1024,
            },
        },
        drivers: BTreeMap::from([
            ("exec".to_string(), healthy.clone()),
            ("raw_exec".to_string(), healthy.clone()),
            ("docker".to_string(), healthy),
        ]),
        status: api::NODE_STATUS_READY.into(),
        scheduling_eligibility: api::NODE_ELIGIBLE.into(),
        ..Default::default()
    }
}

/// A canonical job of `job_type` with one group `web` (count 1) of one `exec` task asking
/// for 500 MHz and 256 MB, plus the 300 MB default ephemeral disk.
pub fn job(id: &str, job_type: &str) -> Job {
    let mut job = Job {
        id: id.to_string(),
        job_type: job_type.to_string(),
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count: 1,
            tasks: vec![Task {
                name: "server".into(),
                driver: "exec".into(),
                resources: Some(Resources {
                    cpu: 500,
                    memory_mb: 256,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    job
}

/// A running allocation of `job`'s `group` with index `index` on `node`, as the scheduler
/// would have created it. Its ID is `job.group[index]@node`.
pub fn alloc(job: &Arc<Job>, group: &str, index: u64, node: &Node) -> Allocation {
    let tg = job.task_group(group);
    let resources = tg.map(|g| Arc::new(g.combined_resources()));
    let task_resources = Arc::new(
        tg.map(|g| {
            g.tasks
                .iter()
                .map(|t| (t.name.clone(), t.resources.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default(),
    );
    let name = crate::reconcile::alloc_name(&job.id, group, index);
    Allocation {
        id: format!("{name}@{}", node.id).into(),
        namespace: job.ns().to_string().into(),
        eval_id: "mock-eval".into(),
        name: name.into(),
        node_id: node.id.as_str().into(),
        node_name: node.name.as_str().into(),
        job_id: job.id.as_str().into(),
        job: Some(job.clone()),
        task_group: group.to_string().into(),
        resources,
        task_resources,
        desired_status: api::ALLOC_DESIRED_RUN.into(),
        client_status: api::ALLOC_CLIENT_RUNNING.into(),
        ..Default::default()
    }
}

/// A pending job-register evaluation for `job`.
pub fn eval(job: &Job) -> Evaluation {
    Evaluation {
        id: format!("eval-{}", job.id),
        namespace: job.ns().to_string(),
        priority: job.priority,
        eval_type: job.job_type.clone(),
        triggered_by: api::TRIGGER_JOB_REGISTER.into(),
        job_id: job.id.clone(),
        job_modify_index: job.job_modify_index,
        status: api::EVAL_STATUS_PENDING.into(),
        ..Default::default()
    }
}
