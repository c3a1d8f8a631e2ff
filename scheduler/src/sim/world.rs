//! The simulated cluster and workload, generated from the seed: nodes of two sizes in
//! three datacenters, and a mix of service, batch and system jobs with constraints, static
//! ports and rolling updates, plus one "even" job for the evenness report.

use api::{Constraint, EphemeralDisk, Job, NetworkResource, Node, Port, UpdateStrategy};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const EVEN_JOB: &str = "even";
/// The even job submitted last, on the cluster as failures and drains left it.
pub const EVEN_FINAL_JOB: &str = "even-final";
/// Allocations of the even job per schedulable node.
pub const EVEN_PER_NODE: i64 = 2;

pub fn node(i: usize, rng: &mut ChaCha8Rng) -> Node {
    let mut n = crate::mock::node(&format!("node-{i:05}"));
    n.datacenter = format!("dc{}", 1 + i % 3);
    let big = rng.gen_bool(0.25);
    if big {
        n.node_resources.cpu.cpu_shares = 8000;
        n.node_resources.memory.memory_mb = 16384;
    }
    let windows = rng.gen_bool(0.05);
    if windows {
        n.attributes.insert("kernel.name".into(), "windows".into());
    }
    n.meta.insert("rack".into(), format!("r{}", i % 20));
    n.node_class = if big { "large" } else { "small" }.into();
    n.computed_class = format!("{}-{}-{}", n.datacenter, n.node_class, windows);
    n
}

fn linux_only() -> Constraint {
    Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "linux".into(),
        operand: "=".into(),
    }
}

/// Job `i` of the workload. About 85% services, 10% batch, 5% system.
pub fn job(i: usize, rng: &mut ChaCha8Rng) -> Job {
    let roll = rng.gen_range(0..100);
    let job_type = match roll {
        0..=84 => api::JOB_TYPE_SERVICE,
        85..=94 => api::JOB_TYPE_BATCH,
        _ => api::JOB_TYPE_SYSTEM,
    };
    let mut job = crate::mock::job(&format!("job-{i:04}"), job_type);
    job.datacenters = if rng.gen_bool(0.2) {
        vec!["dc1".into(), "dc2".into()]
    } else {
        vec!["dc*".into()]
    };
    if rng.gen_bool(0.5) {
        job.constraints.push(linux_only());
    }
    let group = &mut job.task_groups[0];
    let resources = group.tasks[0]
        .resources
        .as_mut()
        .expect("mock job has resources");
    if job_type == api::JOB_TYPE_SYSTEM {
        resources.cpu = 50;
        resources.memory_mb = 64;
    } else {
        group.count = rng.gen_range(1..=30);
        resources.cpu = rng.gen_range(1..=10) * 100;
        resources.memory_mb = rng.gen_range(1..=16) * 128;
    }
    if job_type == api::JOB_TYPE_SERVICE && rng.gen_bool(0.1) {
        group.networks.push(NetworkResource {
            reserved_ports: vec![Port {
                label: "http".into(),
                value: 8000 + (i % 50) as i64,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if job_type == api::JOB_TYPE_SERVICE && rng.gen_bool(0.5) {
        group.update = Some(UpdateStrategy {
            max_parallel: rng.gen_range(1..=3),
            min_healthy_time: api::secs(10),
            ..Default::default()
        });
    }
    job
}

/// Tiny allocations, `EVEN_PER_NODE` per node, spread over every node.
pub fn even_job(nodes: usize) -> Job {
    let mut job = crate::mock::job(EVEN_JOB, api::JOB_TYPE_SERVICE);
    job.datacenters = vec!["*".into()];
    let group = &mut job.task_groups[0];
    group.count = EVEN_PER_NODE * nodes as i64;
    group.ephemeral_disk = Some(EphemeralDisk {
        size_mb: 0,
        ..Default::default()
    });
    let resources = group.tasks[0]
        .resources
        .as_mut()
        .expect("mock job has resources");
    resources.cpu = 10;
    resources.memory_mb = 16;
    job
}

/// A new version of `job` that needs new allocations (a changed environment).
pub fn destructive_change(job: &Job) -> Job {
    let mut new = job.clone();
    new.version += 1;
    new.job_modify_index += 1;
    new.task_groups[0].tasks[0]
        .env
        .insert("VERSION".into(), new.version.to_string());
    new
}
