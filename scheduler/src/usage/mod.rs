//! What each node already runs: resources, host ports and allocations per job group.
//!
//! Usage is the snapshot's non-terminal allocations on the node, minus the ones this plan
//! stops, plus the ones this plan places. It is loaded lazily per node, so an evaluation
//! that looks at a few nodes of a large cluster reads only those.

use crate::State;
use api::{Allocation, TaskGroup};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

mod fit;

pub use fit::{check_cpu_memory, check_fit, check_node_plan, fit, Exhausted, NodeRefusal};

/// FNV-1a: node IDs are short and trusted (they come from the state, not from a client),
/// so the DoS resistance of SipHash buys nothing on the placement hot path, and FNV is
/// several times cheaper there.
#[derive(Default, Clone, Copy)]
pub struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FnvHasher>>;

/// What one allocation takes from its node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ask {
    pub cpu: i64,
    pub memory_mb: i64,
    pub disk_mb: i64,
    /// Static (reserved) host ports.
    pub reserved_ports: Vec<i64>,
    /// Host ports the scheduler already assigned to the allocation's dynamic ports.
    pub dynamic_ports: Vec<i64>,
    /// Dynamic ports still to be given a host port (a new allocation's).
    pub unassigned_dynamic: u32,
}

impl Ask {
    /// What a new allocation of `group` asks for: its dynamic ports get host ports once
    /// a node is chosen ([`crate::ports::allocate`]).
    pub fn for_group(group: &TaskGroup) -> Ask {
        let r = group.combined_resources();
        Ask {
            cpu: r.cpu,
            memory_mb: r.memory_mb,
            disk_mb: r.disk_mb,
            reserved_ports: group_reserved_ports(group),
            dynamic_ports: Vec::new(),
            unassigned_dynamic: group_networks(group)
                .map(|n| n.dynamic_ports.len() as u32)
                .sum(),
        }
    }

    /// What an existing allocation holds. Ports come from its `AllocatedResources`, or
    /// for an allocation placed before the scheduler assigned ports, the static ports of
    /// the group of the job version it runs (its dynamic ports are the agent's secret).
    pub fn of_alloc(alloc: &Allocation) -> Ask {
        let (cpu, memory_mb, disk_mb) = alloc_resources(alloc);
        let (mut reserved_ports, mut dynamic_ports) = (Vec::new(), Vec::new());
        match &alloc.allocated_resources {
            Some(r) => {
                for (port, fixed) in r.host_ports() {
                    if fixed {
                        reserved_ports.push(port);
                    } else {
                        dynamic_ports.push(port);
                    }
                }
            }
            None => {
                reserved_ports = alloc
                    .job
                    .as_ref()
                    .and_then(|job| job.task_group(&alloc.task_group))
                    .map(group_reserved_ports)
                    .unwrap_or_default();
            }
        }
        Ask {
            cpu,
            memory_mb,
            disk_mb,
            reserved_ports,
            dynamic_ports,
            unassigned_dynamic: 0,
        }
    }

    /// Every host port the ask names: static ones, then assigned dynamic ones.
    pub fn host_ports(&self) -> impl Iterator<Item = i64> + '_ {
        self.reserved_ports
            .iter()
            .chain(&self.dynamic_ports)
            .copied()
    }
}

/// CPU, memory and disk an existing allocation holds.
fn alloc_resources(alloc: &Allocation) -> (i64, i64, i64) {
    match &alloc.resources {
        Some(r) => (r.cpu, r.memory_mb, r.disk_mb),
        None => alloc.task_resources.values().fold((0, 0, 0), |acc, r| {
            (acc.0 + r.cpu, acc.1 + r.memory_mb, acc.2 + r.disk_mb)
        }),
    }
}

/// The group's networks and its tasks' networks.
pub fn group_networks(group: &TaskGroup) -> impl Iterator<Item = &api::NetworkResource> {
    let task_networks = group
        .tasks
        .iter()
        .filter_map(|t| t.resources.as_ref())
        .flat_map(|r| r.networks.iter());
    group.networks.iter().chain(task_networks)
}

/// Static ports of the group's networks and of its tasks' networks.
pub fn group_reserved_ports(group: &TaskGroup) -> Vec<i64> {
    group_networks(group)
        .flat_map(|n| n.reserved_ports.iter())
        .map(|p| p.value)
        .filter(|&v| v > 0)
        .collect()
}

/// Identifies a task group of a job across namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub namespace: String,
    pub job_id: String,
    pub group: String,
}

/// Whether bin-packing counts the allocation as work that opens a node: service and batch
/// allocations do; system and sysbatch ones run on every node anyway.
pub fn is_packed(alloc: &Allocation) -> bool {
    alloc.job.as_ref().is_none_or(|job| {
        !matches!(
            job.job_type.as_str(),
            api::JOB_TYPE_SYSTEM | api::JOB_TYPE_SYSBATCH
        )
    })
}

impl GroupKey {
    pub fn of_alloc(alloc: &Allocation) -> GroupKey {
        GroupKey {
            namespace: alloc.namespace.to_string(),
            job_id: alloc.job_id.to_string(),
            group: alloc.task_group.to_string(),
        }
    }
}

/// Everything live on one node.
#[derive(Debug, Clone, Default)]
pub struct NodeUsage {
    pub cpu: i64,
    pub memory_mb: i64,
    pub disk_mb: i64,
    /// Host port -> number of allocations holding it (more than one only in a broken
    /// state): static ports and the dynamic ports the scheduler assigned.
    pub ports: FastMap<i64, u32>,
    /// How many distinct ports of `ports` lie in the dynamic range
    /// ([`crate::ports::DYNAMIC_PORTS`]), so the free ones are counted without a scan.
    pub dynamic_range_used: u32,
    /// Live allocations per job group, for anti-affinity and distinct_hosts. A usage
    /// built for one job ([`ClusterUsage::for_job`]) counts that job's groups only.
    pub groups: HashMap<GroupKey, u32>,
    /// Live service and batch allocations ([`is_packed`]): bin-packing fills nodes that
    /// hold some before opening others.
    pub packed_allocs: u32,
}

impl NodeUsage {
    fn add(&mut self, key: Option<GroupKey>, ask: &Ask, packed: bool) {
        self.packed_allocs += u32::from(packed);
        self.cpu += ask.cpu;
        self.memory_mb += ask.memory_mb;
        self.disk_mb += ask.disk_mb;
        for p in ask.host_ports() {
            self.hold_port(p);
        }
        if let Some(key) = key {
            *self.groups.entry(key).or_default() += 1;
        }
    }

    /// Counts one more holder of a host port.
    pub fn hold_port(&mut self, port: i64) {
        let holders = self.ports.entry(port).or_default();
        *holders += 1;
        if *holders == 1 && crate::ports::DYNAMIC_PORTS.contains(&port) {
            self.dynamic_range_used += 1;
        }
    }

    /// Counts one holder of a host port fewer.
    pub fn release_port(&mut self, port: i64) {
        if let Some(n) = self.ports.get_mut(&port) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.ports.remove(&port);
                if crate::ports::DYNAMIC_PORTS.contains(&port) {
                    self.dynamic_range_used = self.dynamic_range_used.saturating_sub(1);
                }
            }
        }
    }

    /// Ports of the dynamic range no allocation on the node holds.
    pub fn free_dynamic_ports(&self) -> i64 {
        crate::ports::dynamic_range_size() - i64::from(self.dynamic_range_used)
    }

    fn remove(&mut self, key: Option<GroupKey>, ask: &Ask, packed: bool) {
        self.packed_allocs = self.packed_allocs.saturating_sub(u32::from(packed));
        self.cpu -= ask.cpu;
        self.memory_mb -= ask.memory_mb;
        self.disk_mb -= ask.disk_mb;
        for p in ask.host_ports() {
            self.release_port(p);
        }
        let Some(key) = key else { return };
        if let Some(n) = self.groups.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.groups.remove(&key);
            }
        }
    }

    /// Live allocations of `job_id` on this node, any group.
    pub fn job_allocs(&self, namespace: &str, job_id: &str) -> u32 {
        self.groups
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.job_id == job_id)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Live allocations of one job group on this node.
    pub fn group_allocs(&self, namespace: &str, job_id: &str, group: &str) -> u32 {
        self.groups
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.job_id == job_id && k.group == group)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// A node's live service and batch allocations and the CPU and memory everything live
/// there holds: see [`ClusterUsage::load_of`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub packed_allocs: u32,
    pub cpu: i64,
    pub memory_mb: i64,
    pub disk_mb: i64,
    /// Live allocations holding at least one host port: while there are none, a node's
    /// usage is these counters and the run's own job's allocations there
    /// ([`ClusterUsage::node`]), with no look at the others.
    pub port_allocs: u32,
}

impl NodeLoad {
    /// What one allocation adds to its node's load: nothing once it is terminal. The
    /// one definition both the scheduler's own sum and the state's counters use.
    pub fn of_alloc(alloc: &Allocation) -> NodeLoad {
        if alloc.terminal() {
            return NodeLoad::default();
        }
        NodeLoad::of_ask(&Ask::of_alloc(alloc), is_packed(alloc))
    }

    fn of_ask(ask: &Ask, packed: bool) -> NodeLoad {
        NodeLoad {
            packed_allocs: u32::from(packed),
            cpu: ask.cpu,
            memory_mb: ask.memory_mb,
            disk_mb: ask.disk_mb,
            port_allocs: u32::from(ask.host_ports().next().is_some()),
        }
    }

    pub fn add(&mut self, o: NodeLoad) {
        self.packed_allocs += o.packed_allocs;
        self.cpu += o.cpu;
        self.memory_mb += o.memory_mb;
        self.disk_mb += o.disk_mb;
        self.port_allocs += o.port_allocs;
    }

    pub fn sub(&mut self, o: NodeLoad) {
        self.packed_allocs = self.packed_allocs.saturating_sub(o.packed_allocs);
        self.cpu -= o.cpu;
        self.memory_mb -= o.memory_mb;
        self.disk_mb -= o.disk_mb;
        self.port_allocs = self.port_allocs.saturating_sub(o.port_allocs);
    }
}

/// Usage of every node the run has looked at, kept current as the plan grows.
pub struct ClusterUsage<'s, S: State> {
    state: &'s S,
    nodes: FastMap<String, NodeUsage>,
    /// Allocations this plan stops, so a node loaded later does not count them.
    stopped: HashSet<String>,
    /// The nodes of the `stopped` allocations: their state counters still count them.
    stopped_nodes: HashSet<String>,
    /// What this plan places, for nodes loaded after the placement (with [`is_packed`]).
    placed: FastMap<String, Vec<(GroupKey, Ask, bool)>>,
    /// The one job this run places ([`ClusterUsage::for_job`]), if it was told.
    job: Option<RunJob>,
}

/// The job a [`ClusterUsage`] is built for.
struct RunJob {
    namespace: String,
    /// Whose groups the node usages count: the other jobs' allocations then cost no key
    /// of their own (cloning three strings per allocation on every node a run loaded was
    /// a third of building a node's usage at C100K). A job of that ID in another
    /// namespace is counted too: the queries ([`NodeUsage::group_allocs`]) name the
    /// namespace.
    id: String,
    /// Its live allocations per node, group keys only, read once from `allocs_by_job`.
    nodes: Option<FastMap<String, Vec<GroupKey>>>,
}

impl<'s, S: State> ClusterUsage<'s, S> {
    pub fn new(state: &'s S) -> Self {
        ClusterUsage {
            state,
            nodes: FastMap::default(),
            stopped: HashSet::new(),
            stopped_nodes: HashSet::new(),
            placed: FastMap::default(),
            job: None,
        }
    }

    /// A usage whose nodes count the groups of job `job_id` (in `namespace`) only: all a
    /// run for that job asks of [`NodeUsage::groups`]. A node without host ports in use
    /// is then built from the state's counters ([`State::node_load`]) and this job's
    /// allocations, not by reading every allocation there: at C1M a node holds hundreds
    /// of other jobs' allocations, and reading them was a third of the leader's CPU.
    pub fn for_job(state: &'s S, namespace: &str, job_id: &str) -> Self {
        ClusterUsage {
            job: Some(RunJob {
                namespace: if namespace.is_empty() {
                    api::DEFAULT_NAMESPACE.to_string()
                } else {
                    namespace.to_string()
                },
                id: job_id.to_string(),
                nodes: None,
            }),
            ..Self::new(state)
        }
    }

    /// The node's usage from the state's counters, when they say all of it: the node
    /// holds no host port, this run stops nothing there, and the run is for one job
    /// (whose groups are counted from its own allocations).
    fn node_from_counters(&mut self, node_id: &str) -> Option<NodeUsage> {
        let job = self.job.as_mut()?;
        if self.stopped_nodes.contains(node_id) {
            return None;
        }
        let load = self.state.node_load(node_id)?;
        if load.port_allocs > 0 {
            return None;
        }
        let state = self.state;
        let job_nodes = job.nodes.get_or_insert_with(|| {
            let mut by_node: FastMap<String, Vec<GroupKey>> = FastMap::default();
            for a in state.allocs_by_job(&job.namespace, &job.id) {
                if !a.terminal() {
                    by_node
                        .entry(a.node_id.to_string())
                        .or_default()
                        .push(GroupKey::of_alloc(&a));
                }
            }
            by_node
        });
        let mut usage = NodeUsage {
            cpu: load.cpu,
            memory_mb: load.memory_mb,
            disk_mb: load.disk_mb,
            packed_allocs: load.packed_allocs,
            ..Default::default()
        };
        for key in job_nodes.get(node_id).into_iter().flatten() {
            *usage.groups.entry(key.clone()).or_default() += 1;
        }
        Some(usage)
    }

    /// The allocation's group key, when the node usages count its job's groups.
    fn group_key(&self, alloc: &Allocation) -> Option<GroupKey> {
        match &self.job {
            Some(job) if alloc.job_id != job.id => None,
            _ => Some(GroupKey::of_alloc(alloc)),
        }
    }

    pub fn node(&mut self, node_id: &str) -> &NodeUsage {
        if !self.nodes.contains_key(node_id) {
            let mut usage = match self.node_from_counters(node_id) {
                Some(counted) => counted,
                None => self.scan_node(node_id),
            };
            for (key, ask, packed) in self.placed.get(node_id).into_iter().flatten() {
                usage.add(Some(key.clone()), ask, *packed);
            }
            self.nodes.insert(node_id.to_string(), usage);
        }
        &self.nodes[node_id]
    }

    /// The node's usage from every live allocation on it (this run's stops left out).
    fn scan_node(&self, node_id: &str) -> NodeUsage {
        let mut usage = NodeUsage::default();
        for alloc in self.state.allocs_by_node(node_id) {
            if !alloc.terminal() && !self.stopped.contains(alloc.id.as_str()) {
                let packed = is_packed(&alloc);
                usage.add(self.group_key(&alloc), &Ask::of_alloc(&alloc), packed);
            }
        }
        usage
    }

    /// What bin-packing's order needs to know about a node, without building (or caching)
    /// its full usage: probing every node of a large cluster then costs one counter read
    /// (or, from a state without counters, one `allocs_by_node` sum) per node, and no
    /// allocation of ours.
    pub fn load_of(&self, node_id: &str) -> NodeLoad {
        if let Some(u) = self.nodes.get(node_id) {
            return NodeLoad {
                packed_allocs: u.packed_allocs,
                cpu: u.cpu,
                memory_mb: u.memory_mb,
                disk_mb: u.disk_mb,
                // Kept by the state's counters only; nothing reads it from here.
                port_allocs: 0,
            };
        }
        let counted = (!self.stopped_nodes.contains(node_id))
            .then(|| self.state.node_load(node_id))
            .flatten();
        let mut load = counted.unwrap_or_else(|| {
            let mut sum = NodeLoad::default();
            for alloc in self.state.allocs_by_node(node_id) {
                if self.stopped.is_empty() || !self.stopped.contains(alloc.id.as_str()) {
                    sum.add(NodeLoad::of_alloc(&alloc));
                }
            }
            sum
        });
        for (_, ask, packed) in self.placed.get(node_id).into_iter().flatten() {
            load.add(NodeLoad::of_ask(ask, *packed));
        }
        load
    }

    /// Counts a new allocation of this plan against its node.
    pub fn place(&mut self, alloc: &Allocation) {
        let (key, ask) = (GroupKey::of_alloc(alloc), Ask::of_alloc(alloc));
        let packed = is_packed(alloc);
        // A node not loaded yet counts `placed` when it is.
        if let Some(u) = self.nodes.get_mut(alloc.node_id.as_str()) {
            u.add(Some(key.clone()), &ask, packed);
        }
        self.placed
            .entry(alloc.node_id.to_string())
            .or_default()
            .push((key, ask, packed));
    }

    /// Frees what a live allocation stopped by this plan held.
    pub fn stop(&mut self, alloc: &Allocation) {
        if alloc.terminal() || !self.stopped.insert(alloc.id.to_string()) {
            return;
        }
        self.stopped_nodes.insert(alloc.node_id.to_string());
        let key = self.group_key(alloc);
        if let Some(u) = self.nodes.get_mut(alloc.node_id.as_str()) {
            u.remove(key, &Ask::of_alloc(alloc), is_packed(alloc));
        }
    }

    /// Undoes `stop` when the replacement it made room for could not be placed.
    pub fn unstop(&mut self, alloc: &Allocation) {
        if !self.stopped.remove(alloc.id.as_str()) {
            return;
        }
        let key = self.group_key(alloc);
        if let Some(u) = self.nodes.get_mut(alloc.node_id.as_str()) {
            u.add(key, &Ask::of_alloc(alloc), is_packed(alloc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use api::Node;

    #[test]
    fn fit_reports_the_exhausted_dimension() {
        let node = mock::node("n1"); // 4000 MHz, 8192 MB, 100 GB
        let usage = NodeUsage {
            cpu: 3800,
            ..Default::default()
        };
        let ask = Ask {
            cpu: 300,
            memory_mb: 100,
            disk_mb: 0,
            reserved_ports: vec![],
            ..Default::default()
        };
        assert_eq!(fit(&node, &usage, &ask), Err("cpu"));
        let ask = Ask {
            cpu: 100,
            memory_mb: 9000,
            ..ask
        };
        assert_eq!(fit(&node, &usage, &ask), Err("memory"));
        let ask = Ask {
            memory_mb: 100,
            ..ask
        };
        assert_eq!(fit(&node, &usage, &ask), Ok(()));
    }

    #[test]
    fn fit_respects_reserved_resources() {
        let mut node = mock::node("n1");
        node.reserved_resources.memory.memory_mb = 8000;
        let ask = Ask {
            cpu: 100,
            memory_mb: 300,
            disk_mb: 0,
            reserved_ports: vec![],
            ..Default::default()
        };
        assert_eq!(fit(&node, &NodeUsage::default(), &ask), Err("memory"));
    }

    #[test]
    fn static_port_collisions_do_not_fit() {
        let node = mock::node("n1");
        let mut usage = NodeUsage::default();
        usage.ports.insert(8080, 1);
        let ask = Ask {
            cpu: 1,
            memory_mb: 1,
            disk_mb: 0,
            reserved_ports: vec![8080],
            ..Default::default()
        };
        assert_eq!(
            fit(&node, &usage, &ask),
            Err("network: reserved port collision")
        );
        let twice = Ask {
            reserved_ports: vec![9000, 9000],
            ..ask
        };
        assert!(fit(&node, &NodeUsage::default(), &twice).is_err());
    }

    #[test]
    fn cluster_usage_counts_live_allocs_and_plan_changes() {
        let node = mock::node("n1");
        let job = std::sync::Arc::new(mock::job("web", api::JOB_TYPE_SERVICE));
        let running = mock::alloc(&job, "web", 0, &node);
        let mut done = mock::alloc(&job, "web", 1, &node);
        done.client_status = api::ALLOC_CLIENT_COMPLETE.into();
        let state = mock::MemState::new()
            .with_nodes([node.clone()])
            .with_allocs([running.clone(), done]);
        let mut usage = ClusterUsage::new(&state);
        assert_eq!(usage.node("n1").cpu, 500);
        usage.stop(&running);
        assert_eq!(usage.node("n1").cpu, 0);
        usage.unstop(&running);
        assert_eq!(usage.node("n1").cpu, 500);
        let mut placed = mock::alloc(&job, "web", 2, &node);
        placed.id = "new".into();
        usage.place(&placed);
        assert_eq!(usage.node("n1").cpu, 1000);
        assert_eq!(usage.node("n1").group_allocs("default", "web", "web"), 2);
    }

    #[test]
    fn a_usage_for_one_job_counts_that_jobs_groups_and_every_jobs_resources() {
        let node = mock::node("n1");
        let web = std::sync::Arc::new(mock::job("web", api::JOB_TYPE_SERVICE));
        let db = std::sync::Arc::new(mock::job("db", api::JOB_TYPE_SERVICE));
        let state = mock::MemState::new()
            .with_nodes([node.clone()])
            .with_allocs([
                mock::alloc(&web, "web", 0, &node),
                mock::alloc(&db, "web", 0, &node),
            ]);
        let mut usage = ClusterUsage::for_job(&state, "default", "web");
        let n1 = usage.node("n1");
        assert_eq!(n1.cpu, 1000, "both jobs' allocations hold the node's CPU");
        assert_eq!(n1.group_allocs("default", "web", "web"), 1);
        assert_eq!(n1.groups.len(), 1, "the other job's group is not counted");
        // A placement and a stop of the run's job move its count.
        let mut placed = mock::alloc(&web, "web", 1, &node);
        placed.id = "new".into();
        usage.place(&placed);
        assert_eq!(usage.node("n1").group_allocs("default", "web", "web"), 2);
        usage.stop(&placed);
        assert_eq!(usage.node("n1").group_allocs("default", "web", "web"), 1);
        let all = ClusterUsage::new(&state).node("n1").groups.len();
        assert_eq!(all, 2, "a usage for no job counts every group");
    }

    /// A state that keeps node load counters, as the server's store does.
    struct Counted(mock::MemState);

    impl State for Counted {
        fn index(&self) -> u64 {
            self.0.index()
        }
        fn job(&self, namespace: &str, id: &str) -> Option<std::sync::Arc<api::Job>> {
            self.0.job(namespace, id)
        }
        fn nodes(&self) -> Vec<std::sync::Arc<api::Node>> {
            self.0.nodes()
        }
        fn node(&self, id: &str) -> Option<std::sync::Arc<api::Node>> {
            self.0.node(id)
        }
        fn allocs_by_job(&self, ns: &str, job: &str) -> Vec<std::sync::Arc<Allocation>> {
            self.0.allocs_by_job(ns, job)
        }
        fn allocs_by_node(&self, node_id: &str) -> Vec<std::sync::Arc<Allocation>> {
            self.0.allocs_by_node(node_id)
        }
        fn node_load(&self, node_id: &str) -> Option<NodeLoad> {
            let mut sum = NodeLoad::default();
            for a in self.0.allocs_by_node(node_id) {
                sum.add(NodeLoad::of_alloc(&a));
            }
            Some(sum)
        }
    }

    #[test]
    fn load_of_reads_the_states_counters_and_still_honours_the_plans_stops_and_placements() {
        let (n1, n2) = (mock::node("n1"), mock::node("n2"));
        let job = std::sync::Arc::new(mock::job("web", api::JOB_TYPE_SERVICE));
        let a1 = mock::alloc(&job, "web", 0, &n1);
        let a2 = mock::alloc(&job, "web", 1, &n2);
        let mem = mock::MemState::new()
            .with_nodes([n1.clone(), n2.clone()])
            .with_allocs([a1.clone(), a2]);
        let counted = Counted(mem.clone());
        let mut scan = ClusterUsage::new(&mem);
        let mut count = ClusterUsage::new(&counted);
        let mut placed = mock::alloc(&job, "web", 2, &n2);
        placed.id = "new".into();
        scan.stop(&a1);
        scan.place(&placed);
        count.stop(&a1);
        count.place(&placed);
        for n in ["n1", "n2"] {
            assert_eq!(scan.load_of(n), count.load_of(n), "node {n}");
        }
        assert_eq!(
            count.load_of("n1").cpu,
            0,
            "the stopped allocation still counted"
        );
        assert_eq!(count.load_of("n2").cpu, 1000);
        assert_eq!(count.load_of("n2").packed_allocs, 2);
    }

    /// The usage a run for one job builds from the state's counters is the one it would
    /// have added up from every allocation on the node; a node holding a host port, or
    /// one where the run stops something, is still read in full.
    #[test]
    fn a_node_usage_from_counters_equals_the_one_read_from_every_allocation() {
        let (n1, n2) = (mock::node("n1"), mock::node("n2"));
        let web = std::sync::Arc::new(mock::job("web", api::JOB_TYPE_SERVICE));
        let other = std::sync::Arc::new(mock::job("other", api::JOB_TYPE_SERVICE));
        let ported = job_with_static_port("ported", 8080);
        let mut done = mock::alloc(&web, "web", 9, &n1);
        done.client_status = api::ALLOC_CLIENT_COMPLETE.into();
        let web0 = mock::alloc(&web, "web", 0, &n1);
        let allocs = [
            web0.clone(),
            mock::alloc(&web, "web", 1, &n1),
            done,
            mock::alloc(&other, "web", 0, &n1),
            mock::alloc(&other, "web", 1, &n2),
            mock::alloc(&ported, "web", 0, &n2),
        ];
        let scanned = mock::MemState::new()
            .with_nodes([n1.clone(), n2.clone()])
            .with_allocs(allocs.clone());
        let counted = Counted(
            mock::MemState::new()
                .with_nodes([n1.clone(), n2.clone()])
                .with_allocs(allocs),
        );
        let view = |u: &NodeUsage| {
            let mut groups: Vec<_> = u.groups.iter().map(|(k, n)| (k.clone(), *n)).collect();
            groups.sort_by(|a, b| a.0.job_id.cmp(&b.0.job_id));
            let mut ports: Vec<_> = u.ports.iter().map(|(p, n)| (*p, *n)).collect();
            ports.sort();
            (
                u.cpu,
                u.memory_mb,
                u.disk_mb,
                u.packed_allocs,
                groups,
                ports,
            )
        };
        let mut placed = mock::alloc(&web, "web", 2, &n2);
        placed.id = "new".into();
        for node in ["n1", "n2"] {
            let mut a = ClusterUsage::for_job(&scanned, "default", "web");
            let mut b = ClusterUsage::for_job(&counted, "default", "web");
            assert!(
                b.node_from_counters("n1").is_some(),
                "n1 holds no host port"
            );
            assert!(b.node_from_counters("n2").is_none(), "n2 holds port 8080");
            a.place(&placed);
            b.place(&placed);
            assert_eq!(view(a.node(node)), view(b.node(node)), "{node}");
        }
        let mut b = ClusterUsage::for_job(&counted, "default", "web");
        b.stop(&web0);
        assert!(
            b.node_from_counters("n1").is_none(),
            "a stop there reads n1 in full"
        );
        assert_eq!(b.node("n1").group_allocs("default", "web", "web"), 1);
    }

    fn job_with_static_port(id: &str, port: i64) -> std::sync::Arc<api::Job> {
        let mut job = mock::job(id, api::JOB_TYPE_SERVICE);
        job.task_groups[0].networks = vec![api::NetworkResource {
            reserved_ports: vec![api::Port {
                label: "http".into(),
                value: port,
                ..Default::default()
            }],
            ..Default::default()
        }];
        std::sync::Arc::new(job)
    }

    #[test]
    fn plan_check_refuses_a_static_port_another_job_holds_and_names_it() {
        let node = mock::node("n1");
        let a = job_with_static_port("a", 8080);
        let b = job_with_static_port("b", 8080);
        let held = mock::alloc(&a, "web", 0, &node);
        let state = mock::MemState::new()
            .with_nodes([node.clone()])
            .with_allocs([held.clone()]);
        let wanted = mock::alloc(&b, "web", 0, &node);
        let refusal = check_node_plan(&state, "n1", &HashSet::new(), std::slice::from_ref(&wanted))
            .unwrap_err();
        assert_eq!(refusal.exhausted(), Some(&Exhausted::Port(8080)));
        let sentence = refusal.to_string();
        assert!(sentence.contains("static port 8080"), "{sentence}");
        assert!(sentence.contains("b.web[0]"), "{sentence}");
        // Once the plan stops the holder, the port is free for the newcomer.
        let stopping = HashSet::from([held.id.as_str()]);
        assert_eq!(check_node_plan(&state, "n1", &stopping, &[wanted]), Ok(()));
    }

    /// An allocation of `job` on `node` whose dynamic port `http` was assigned `port`.
    fn alloc_with_dynamic_port(
        job: &std::sync::Arc<api::Job>,
        index: u64,
        node: &Node,
        port: i64,
    ) -> Allocation {
        let mut alloc = mock::alloc(job, "web", index, node);
        alloc.allocated_resources = Some(api::AllocatedResources {
            shared: api::AllocatedSharedResources {
                networks: vec![api::NetworkResource {
                    dynamic_ports: vec![api::Port {
                        label: "http".into(),
                        value: port,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        });
        alloc
    }

    #[test]
    fn plan_check_refuses_a_dynamic_port_another_plan_took_meanwhile_and_names_it() {
        let node = mock::node("n1");
        let a = std::sync::Arc::new(mock::job("a", api::JOB_TYPE_SERVICE));
        let b = std::sync::Arc::new(mock::job("b", api::JOB_TYPE_SERVICE));
        // Two workers planned from the same empty snapshot and both drew port 23456.
        let first = alloc_with_dynamic_port(&a, 0, &node, 23_456);
        let second = alloc_with_dynamic_port(&b, 0, &node, 23_456);
        let mut state = mock::MemState::new().with_nodes([node.clone()]);
        let none = HashSet::new();
        assert_eq!(
            check_node_plan(&state, "n1", &none, std::slice::from_ref(&first)),
            Ok(())
        );
        assert_eq!(
            check_node_plan(&state, "n1", &none, std::slice::from_ref(&second)),
            Ok(())
        );
        // The first plan is committed; the second no longer fits.
        state.upsert_alloc(first.clone());
        let refusal =
            check_node_plan(&state, "n1", &none, std::slice::from_ref(&second)).unwrap_err();
        assert_eq!(refusal.exhausted(), Some(&Exhausted::DynamicPort(23_456)));
        let sentence = refusal.to_string();
        assert!(sentence.contains("dynamic port 23456"), "{sentence}");
        assert!(sentence.contains("b.web[0]"), "{sentence}");
        // Another port on the same node is fine, and so is the same port elsewhere.
        let other = alloc_with_dynamic_port(&b, 0, &node, 23_457);
        assert_eq!(check_node_plan(&state, "n1", &none, &[other]), Ok(()));
        // Within one plan, two placements may not share a port either.
        let twins = [
            alloc_with_dynamic_port(&b, 0, &node, 24_000),
            alloc_with_dynamic_port(&b, 1, &node, 24_000),
        ];
        let refusal = check_node_plan(&state, "n1", &none, &twins).unwrap_err();
        assert_eq!(refusal.exhausted(), Some(&Exhausted::DynamicPort(24_000)));
    }

    #[test]
    fn usage_counts_free_dynamic_ports_as_allocs_come_and_go() {
        let node = mock::node("n1");
        let job = std::sync::Arc::new(mock::job("a", api::JOB_TYPE_SERVICE));
        let held = alloc_with_dynamic_port(&job, 0, &node, 20_000);
        let outside = job_with_static_port("s", 8080);
        let state = mock::MemState::new()
            .with_nodes([node.clone()])
            .with_allocs([held.clone(), mock::alloc(&outside, "web", 0, &node)]);
        let mut usage = ClusterUsage::new(&state);
        let all = crate::ports::dynamic_range_size();
        assert_eq!(usage.node("n1").free_dynamic_ports(), all - 1);
        assert!(usage.node("n1").ports.contains_key(&8080));
        usage.stop(&held);
        assert_eq!(usage.node("n1").free_dynamic_ports(), all);
        usage.unstop(&held);
        assert_eq!(usage.node("n1").free_dynamic_ports(), all - 1);
    }

    #[test]
    fn plan_check_counts_placements_of_the_same_plan_against_each_other() {
        let node = mock::node("n1"); // 4000 MHz: room for 8 allocations of 500 MHz
        let job = std::sync::Arc::new(mock::job("web", api::JOB_TYPE_SERVICE));
        let state = mock::MemState::new().with_nodes([node.clone()]);
        let eight: Vec<_> = (0..8).map(|i| mock::alloc(&job, "web", i, &node)).collect();
        assert_eq!(
            check_node_plan(&state, "n1", &HashSet::new(), &eight),
            Ok(())
        );
        let nine: Vec<_> = (0..9).map(|i| mock::alloc(&job, "web", i, &node)).collect();
        let refusal = check_node_plan(&state, "n1", &HashSet::new(), &nine).unwrap_err();
        assert_eq!(
            refusal.exhausted(),
            Some(&Exhausted::Cpu {
                asked: 500,
                free: 0
            })
        );
    }

    #[test]
    fn plan_check_does_not_count_an_in_place_update_or_a_terminal_resend_twice() {
        let node = mock::node("n1");
        let job = job_with_static_port("web", 9000);
        let running = mock::alloc(&job, "web", 0, &node);
        let mut failed = mock::alloc(&job, "web", 1, &node);
        failed.client_status = api::ALLOC_CLIENT_FAILED.into();
        let state = mock::MemState::new()
            .with_nodes([node.clone()])
            .with_allocs([running.clone(), failed.clone()]);
        // The same allocation on a new job version keeps its own port.
        let mut updated = running.clone();
        updated.eval_id = "e2".into();
        failed.followup_eval_id = "follow".into();
        assert_eq!(
            check_node_plan(&state, "n1", &HashSet::new(), &[updated, failed]),
            Ok(())
        );
    }

    #[test]
    fn plan_check_refuses_new_allocations_on_a_node_that_is_not_ready_or_gone() {
        let mut node = mock::node("n1");
        node.status = api::NODE_STATUS_DOWN.into();
        let job = std::sync::Arc::new(mock::job("web", api::JOB_TYPE_SERVICE));
        let state = mock::MemState::new().with_nodes([node.clone()]);
        let placing = [mock::alloc(&job, "web", 0, &node)];
        let refusal = check_node_plan(&state, "n1", &HashSet::new(), &placing).unwrap_err();
        assert!(refusal.to_string().contains("it is down"), "{refusal}");
        let gone = check_node_plan(&state, "n2", &HashSet::new(), &placing).unwrap_err();
        assert_eq!(gone.to_string(), "node n2 no longer exists");
    }
}
