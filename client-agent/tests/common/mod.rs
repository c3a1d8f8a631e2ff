//! Helpers shared by the driver tests: task contexts in temporary alloc dirs, a task
//! runner driven to its end, a tiny busybox image built locally (never pulled), cleanup
//! guards and bounded polling.

#![allow(dead_code)]

use api::{Allocation, Node, Resources, RestartPolicy, Task, TaskEvent};
use client_agent::allocdir::AllocDir;
use client_agent::driver::{Driver, FsIsolation, TaskContext};
use client_agent::ports::AllocatedPort;
use client_agent::state::LocalTaskState;
use client_agent::task_runner::TaskRunner;
use client_agent::taskenv::TaskEnv;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The image the docker tests run; built by [`busybox_image`].
pub const BUSYBOX_IMAGE: &str = "drover-test-busybox:1";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "echo", "cat", "ls", "id", "head", "tr", "dd", "true", "false", "env",
    "ps", "touch", "mkdir", "wget", "grep", "wc", "printf", "test", "[",
];

/// A unique alloc ID per test, so container and cgroup names never collide.
pub fn alloc_id(test: &str) -> String {
    format!(
        "{}-{}-{}",
        test,
        std::process::id(),
        api::new_id().get(..8).unwrap_or("x")
    )
}

/// A task of `driver` with `config`, its resources, in a fresh alloc dir under `root`.
pub fn task_ctx(
    root: &Path,
    alloc_id: &str,
    task: Task,
    ports: Vec<AllocatedPort>,
    fs: FsIsolation,
) -> TaskContext {
    let dirs = AllocDir::new(root, alloc_id)
        .build_task(&task.name)
        .unwrap();
    let alloc = allocation(alloc_id, &task);
    let env = TaskEnv::build_with(&node(), &alloc, &task, &dirs, &ports, fs);
    TaskContext {
        alloc_id: alloc_id.into(),
        task,
        dirs,
        env,
        ports,
    }
}

pub fn node() -> Node {
    Node {
        id: "node-test".into(),
        name: "node-test".into(),
        datacenter: "dc1".into(),
        ..Default::default()
    }
}

pub fn allocation(alloc_id: &str, task: &Task) -> Allocation {
    let mut job = api::Job {
        id: "job-test".into(),
        job_type: "batch".into(),
        task_groups: vec![api::TaskGroup {
            name: "g".into(),
            tasks: vec![task.clone()],
            ..Default::default()
        }],
        ..Default::default()
    };
    job.canonicalize();
    Allocation {
        id: alloc_id.into(),
        name: "job-test.g[0]".into(),
        job_id: "job-test".into(),
        task_group: "g".into(),
        job: Some(Arc::new(job)),
        ..Default::default()
    }
}

pub fn task(name: &str, driver: &str, config: serde_json::Value) -> Task {
    let config: BTreeMap<String, serde_json::Value> = serde_json::from_value(config).unwrap();
    let mut t = Task {
        name: name.into(),
        driver: driver.into(),
        config,
        ..Default::default()
    };
    t.canonicalize();
    t
}

pub fn with_memory(mut t: Task, memory_mb: i64, memory_max_mb: i64) -> Task {
    let r = t.resources.get_or_insert_with(Resources::default);
    r.memory_mb = memory_mb;
    r.memory_max_mb = memory_max_mb;
    t
}

/// Runs `task` through a real TaskRunner with `driver` and no restarts, until it is dead;
/// returns its events.
pub async fn run_to_death(
    driver: Arc<dyn Driver>,
    data_dir: &Path,
    alloc_id: &str,
    task: Task,
) -> Vec<TaskEvent> {
    let alloc = Arc::new(allocation(alloc_id, &task));
    let (upd_tx, mut upd_rx) = mpsc::unbounded_channel();
    let (_cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let runner = TaskRunner {
        alloc,
        task,
        node: Arc::new(node()),
        alloc_dir: AllocDir::new(data_dir, alloc_id),
        driver: Some(driver),
        restart_policy: RestartPolicy {
            attempts: 0,
            interval: 60_000_000_000,
            delay: 1_000_000_000,
            mode: "fail".into(),
            ..Default::default()
        },
        job_type: "batch".into(),
        state: LocalTaskState::default(),
        restored: false,
        ports: Ok(Arc::from(Vec::new())),
        updates: upd_tx,
        commands: cmd_rx,
        shutdown: CancellationToken::new(),
        start_gate: None,
        artifacts_fetched: false,
        template_client: None,
        template_watch: None,
        template_waiting: None,
    };
    tokio::time::timeout(Duration::from_secs(60), runner.run())
        .await
        .expect("the task runner did not finish within 60s");
    let mut last = None;
    while let Ok(u) = upd_rx.try_recv() {
        last = Some(u.state);
    }
    last.expect("the task runner reported nothing").state.events
}

/// Polls `probe` until it returns `Some`, at most `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a file until it contains `needle`.
pub async fn wait_for_content(path: &Path, needle: &str) -> String {
    poll(
        Duration::from_secs(20),
        &format!("{} to contain {needle:?}", path.display()),
        || async {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            text.contains(needle).then_some(text)
        },
    )
    .await
}

// ---- Docker

pub async fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .expect("the docker tests need a Docker daemon")
}

static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds [`BUSYBOX_IMAGE`] from Debian's static busybox (`FROM scratch`, no pull).
/// `None`, with a loud message, when /bin/busybox is missing.
pub async fn busybox_image() -> Option<&'static str> {
    if !Path::new(BUSYBOX).exists() {
        // In CI a missing tool is a failure, never a silent skip.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{BUSYBOX} is missing and CI=true: install Debian's busybox-static \
             (apt-get install -y busybox-static) to run the docker driver tests"
        );
        eprintln!(
            "\n!!!!! SKIPPED: {BUSYBOX} is missing; install Debian's busybox-static \
             (apt-get install -y busybox-static) to run the docker driver tests !!!!!\n"
        );
        return None;
    }
    let _guard = BUILD.lock().await;
    let docker = docker().await;
    if docker.inspect_image(BUSYBOX_IMAGE).await.is_ok() {
        return Some(BUSYBOX_IMAGE);
    }
    let mut tar = tar::Builder::new(Vec::new());
    let add_file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    add_file(
        &mut tar,
        "Dockerfile",
        b"FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sh\"]\n",
        0o644,
    );
    let busybox = std::fs::read(BUSYBOX).unwrap();
    add_file(&mut tar, "rootfs/bin/busybox", &busybox, 0o755);
    add_file(
        &mut tar,
        "rootfs/www/index.html",
        b"hello from drover\n",
        0o644,
    );
    add_file(
        &mut tar,
        "rootfs/etc/passwd",
        b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    );
    add_file(
        &mut tar,
        "rootfs/etc/group",
        b"root:x:0:\nnogroup:x:65534:\n",
        0o644,
    );
    for applet in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_link(&mut h, format!("rootfs/bin/{applet}"), "busybox")
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o1777);
    h.set_cksum();
    tar.append_data(&mut h, "rootfs/tmp/", std::io::empty())
        .unwrap();
    let body = tar.into_inner().unwrap();

    let opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(BUSYBOX_IMAGE)
        .rm(true)
        .forcerm(true)
        .build();
    use futures_util::StreamExt;
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(body.into())));
    while let Some(item) = stream.next().await {
        let info = item.expect("building the busybox test image");
        if let Some(err) = info.error_detail {
            panic!("building the busybox test image: {err:?}");
        }
    }
    Some(BUSYBOX_IMAGE)
}

/// Removes the named containers when dropped, whatever happened in the test.
pub struct ContainerGuard(pub Vec<String>);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.0);
        // Drop cannot await: use a runtime of our own on a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let d = docker().await;
                for n in names {
                    let _ = d
                        .remove_container(
                            &n,
                            Some(bollard::query_parameters::RemoveContainerOptions {
                                force: true,
                                v: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                }
            })
        })
        .join();
    }
}

/// Does a container with this name or ID exist?
pub async fn container_exists(name: &str) -> bool {
    docker().await.inspect_container(name, None).await.is_ok()
}
