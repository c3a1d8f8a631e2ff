//! The docker driver against the machine's real Docker Engine, with a busybox image built
//! locally by the tests (nothing is ever pulled).

mod common;

use client_agent::driver::{DockerDriver, Driver, FsIsolation, TaskHandle};
use client_agent::ports::PortAllocator;
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn container_id(h: &TaskHandle) -> String {
    h.driver_state["container_id"].as_str().unwrap().to_string()
}

fn container_name(h: &TaskHandle) -> String {
    h.driver_state["container_name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn busybox_task(name: &str, script: &str) -> api::Task {
    task(
        name,
        "docker",
        serde_json::json!({
            "image": BUSYBOX_IMAGE,
            "command": "/bin/sh",
            "args": ["-c", script],
        }),
    )
}

#[tokio::test]
async fn docker_fingerprint_reports_a_healthy_daemon_and_its_version() {
    let info = DockerDriver::new().fingerprint().await.unwrap();
    assert!(info.detected, "{info:?}");
    assert!(info.healthy, "{info:?}");
    assert_eq!(info.health_description, "Healthy");
    let v = &info.attributes["driver.docker.version"];
    assert!(v.chars().next().unwrap().is_ascii_digit(), "{v}");
}

#[tokio::test]
async fn docker_task_with_a_port_serves_http_on_the_mapped_host_port() {
    let Some(image) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alloc = alloc_id("http");
    let network = api::NetworkResource {
        dynamic_ports: vec![api::Port {
            label: "http".into(),
            to: 8080,
            ..Default::default()
        }],
        ..Default::default()
    };
    let ports = PortAllocator::new()
        .assign(&[network], "127.0.0.1")
        .unwrap();
    let host_port = ports[0].value;
    let t = task(
        "web",
        "docker",
        serde_json::json!({
            "image": image,
            "command": "/bin/sh",
            "args": ["-c", "echo port=$NOMAD_PORT_http host=$NOMAD_HOST_PORT_http; exec httpd -f -p $NOMAD_PORT_http -h /www"],
            "ports": ["http"],
        }),
    );
    let ctx = task_ctx(tmp.path(), &alloc, t, ports, FsIsolation::Image);
    let d = DockerDriver::new();
    let h = d.start(&ctx).await.unwrap();
    let _g = ContainerGuard(vec![container_id(&h)]);
    let body = poll(
        Duration::from_secs(20),
        "HTTP answer on the host port",
        || async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", host_port))
                .await
                .ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.ok()?;
            buf.contains("200").then_some(buf)
        },
    )
    .await;
    assert!(body.contains("hello from drover"), "{body}");
    let out = wait_for_content(&ctx.dirs.stdout, "port=").await;
    assert!(
        out.contains(&format!("port=8080 host={host_port}")),
        "{out}"
    );

    d.stop(&h, "SIGTERM", Duration::from_secs(5)).await.unwrap();
    assert!(
        !container_exists(&container_id(&h)).await,
        "container left behind"
    );
}

#[tokio::test]
async fn docker_container_gets_nomads_name_labels_limits_and_task_dirs() {
    let Some(_) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alloc = alloc_id("labels");
    let mut t = busybox_task(
        "shape",
        "echo $NOMAD_TASK_DIR $NOMAD_ALLOC_DIR > /alloc/data/dirs; echo hi > /local/hi; echo v > /vol/v; sleep 300",
    );
    t.config
        .insert("labels".into(), serde_json::json!([{ "team": "infra" }]));
    t.config
        .insert("volumes".into(), serde_json::json!(["local:/vol"]));
    t.config
        .insert("work_dir".into(), serde_json::json!("/tmp"));
    t.config
        .insert("hostname".into(), serde_json::json!("shape-host"));
    let mut t = with_memory(t, 64, 128);
    t.resources.as_mut().unwrap().cpu = 300;
    let ctx = task_ctx(tmp.path(), &alloc, t, vec![], FsIsolation::Image);
    let d = DockerDriver::new();
    let h = d.start(&ctx).await.unwrap();
    let _g = ContainerGuard(vec![container_id(&h)]);
    assert_eq!(container_name(&h), format!("shape-{alloc}"));

    let info = docker()
        .await
        .inspect_container(&container_id(&h), None)
        .await
        .unwrap();
    assert_eq!(
        info.name.as_deref(),
        Some(format!("/shape-{alloc}").as_str())
    );
    let cfg = info.config.unwrap();
    let labels = cfg.labels.unwrap();
    assert_eq!(labels["com.hashicorp.nomad.alloc_id"], alloc);
    assert_eq!(labels["com.hashicorp.nomad.task_name"], "shape");
    assert_eq!(labels["com.hashicorp.nomad.job_id"], "job-test");
    assert_eq!(labels["team"], "infra");
    assert_eq!(cfg.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(cfg.hostname.as_deref(), Some("shape-host"));
    let hc = info.host_config.unwrap();
    assert_eq!(hc.memory, Some(128 << 20));
    assert_eq!(hc.memory_reservation, Some(64 << 20));
    assert_eq!(hc.cpu_shares, Some(300));

    let dirs = wait_for_content(&ctx.dirs.shared.join("data/dirs"), "\n").await;
    assert_eq!(dirs.trim(), "/local /alloc");
    wait_for_content(&ctx.dirs.local.join("hi"), "hi").await;
    // `volumes` host paths are relative to the task directory.
    wait_for_content(&ctx.dirs.local.join("v"), "v").await;
    d.stop(&h, "", Duration::from_secs(1)).await.unwrap();
    assert!(!container_exists(&container_id(&h)).await);
}

#[tokio::test]
async fn docker_nonzero_exit_is_a_normal_exit_and_output_reaches_the_log_files() {
    let Some(_) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ctx = task_ctx(
        tmp.path(),
        &alloc_id("exit"),
        busybox_task("exit3", "echo to-stdout; echo to-stderr >&2; exit 3"),
        vec![],
        FsIsolation::Image,
    );
    let d = DockerDriver::new();
    let h = d.start(&ctx).await.unwrap();
    let _g = ContainerGuard(vec![container_id(&h)]);
    let res = tokio::time::timeout(Duration::from_secs(30), d.wait(&h))
        .await
        .unwrap();
    assert_eq!(res.exit_code, 3, "{res:?}");
    assert_eq!(res.err, None);
    assert!(!res.oom_killed);
    let out = std::fs::read_to_string(&ctx.dirs.stdout).unwrap();
    let err = std::fs::read_to_string(&ctx.dirs.stderr).unwrap();
    assert_eq!(out, "to-stdout\n");
    assert_eq!(err, "to-stderr\n");
    // An exited container is removed once its exit and logs are collected.
    assert!(!container_exists(&container_id(&h)).await);
}

#[tokio::test]
async fn docker_task_over_its_memory_limit_is_oom_killed_and_reported_so() {
    let Some(_) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alloc = alloc_id("oom");
    // Doubling a shell string allocates without bound.
    let t = with_memory(
        busybox_task("hog", "a=x; while true; do a=\"$a$a\"; done"),
        32,
        0,
    );
    let events = run_to_death(Arc::new(DockerDriver::new()), tmp.path(), &alloc, t).await;
    let _g = ContainerGuard(vec![format!("hog-{alloc}")]);
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let oom = types.iter().position(|t| *t == "OOM Killed");
    let term = types.iter().position(|t| *t == "Terminated");
    assert!(oom.is_some() && term.is_some() && oom < term, "{types:?}");
    let term = &events[term.unwrap()];
    assert_eq!(term.detail().exit_code, 137, "{term:?}");
    assert_eq!(term.detail().details["oom_killed"], "true");
    assert!(
        term.display_message.contains("OOM Killed"),
        "{}",
        term.display_message
    );
    assert!(!container_exists(&format!("hog-{alloc}")).await);
}

#[tokio::test]
async fn docker_missing_image_is_a_clear_unrecoverable_error_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = busybox_task("ghost", "true");
    t.config.insert(
        "image".into(),
        serde_json::json!("drover-test-no-such-image:404"),
    );
    let ctx = task_ctx(
        tmp.path(),
        &alloc_id("missing"),
        t,
        vec![],
        FsIsolation::Image,
    );
    let started = Instant::now();
    let err = DockerDriver::new().start(&ctx).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!err.recoverable());
    let msg = err.to_string();
    assert!(
        msg.contains(
            "image \"drover-test-no-such-image:404\" not found locally and cannot be pulled"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn docker_recover_reattaches_to_the_same_container_without_restarting_it() {
    let Some(_) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ctx = task_ctx(
        tmp.path(),
        &alloc_id("recover"),
        busybox_task("long", "echo started; sleep 300"),
        vec![],
        FsIsolation::Image,
    );
    // The first agent: starts the container, then dies (its runtime and every task of
    // it go away, as with kill -9).
    let h = std::thread::spawn({
        let ctx = ctx.clone();
        move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let h = rt.block_on(async { DockerDriver::new().start(&ctx).await.unwrap() });
            drop(rt);
            h
        }
    })
    .join()
    .unwrap();
    let id = container_id(&h);
    let _g = ContainerGuard(vec![id.clone()]);
    assert!(container_exists(&id).await);
    let before = docker().await.inspect_container(&id, None).await.unwrap();

    // A new driver instance, as after an agent restart, from the persisted handle.
    let persisted: TaskHandle = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    let second = Arc::new(DockerDriver::new());
    assert!(second.recover(&persisted).await.unwrap());
    // The log stream resumes into the task's log file.
    wait_for_content(&ctx.dirs.stdout, "started").await;
    let after = docker().await.inspect_container(&id, None).await.unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!(after.restart_count, before.restart_count);
    assert_eq!(
        after.state.as_ref().unwrap().started_at,
        before.state.as_ref().unwrap().started_at,
        "the container was restarted"
    );
    assert_eq!(after.state.unwrap().running, Some(true));

    let waiter = tokio::spawn({
        let (h, d) = (persisted.clone(), second.clone());
        async move { d.wait(&h).await }
    });
    second
        .stop(&persisted, "SIGKILL", Duration::from_secs(5))
        .await
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.exit_code, 137, "{res:?}");
    assert!(!container_exists(&id).await);
    // A container that is gone cannot be recovered.
    assert!(!DockerDriver::new().recover(&persisted).await.unwrap());
}

#[tokio::test]
async fn docker_stop_sends_kill_signal_first_and_sigkill_after_kill_timeout() {
    let Some(_) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = DockerDriver::new();

    // A task that handles the configured kill_signal exits by itself.
    let polite = task_ctx(
        tmp.path(),
        &alloc_id("polite"),
        busybox_task(
            "polite",
            "trap 'echo got-int; exit 0' INT; echo ready; while true; do sleep 0.1; done",
        ),
        vec![],
        FsIsolation::Image,
    );
    let h = d.start(&polite).await.unwrap();
    let _g1 = ContainerGuard(vec![container_id(&h)]);
    wait_for_content(&polite.dirs.stdout, "ready").await;
    let started = Instant::now();
    d.stop(&h, "SIGINT", Duration::from_secs(20)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let res = d.wait(&h).await;
    assert_eq!(res.exit_code, 0, "{res:?}");
    wait_for_content(&polite.dirs.stdout, "got-int").await;

    // PID 1 of a container ignores SIGTERM it does not handle: SIGKILL after the timeout.
    let stubborn = task_ctx(
        tmp.path(),
        &alloc_id("stubborn"),
        busybox_task(
            "stubborn",
            "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        ),
        vec![],
        FsIsolation::Image,
    );
    let h = d.start(&stubborn).await.unwrap();
    let _g2 = ContainerGuard(vec![container_id(&h)]);
    wait_for_content(&stubborn.dirs.stdout, "ready").await;
    let started = Instant::now();
    d.stop(&h, "SIGTERM", Duration::from_millis(700))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(650),
        "SIGKILL came early: {took:?}"
    );
    assert_eq!(d.wait(&h).await.exit_code, 137);
    assert!(!container_exists(&container_id(&h)).await);
}

#[tokio::test]
async fn docker_host_volume_is_refused_with_a_sentence_and_no_container_unless_enabled() {
    let Some(image) = busybox_image().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "host-file\n").unwrap();
    let script = "cat /host/marker && ls /root-of-host/ >/dev/null && echo saw-host-root";
    let t = |name: &str| {
        task(
            name,
            "docker",
            serde_json::json!({
                "image": image,
                "command": "/bin/sh",
                "args": ["-c", script],
                "volumes": ["/:/root-of-host:ro", format!("{}:/host", host.path().display())],
            }),
        )
    };

    // Default agent: refused before Docker is asked to create anything.
    let alloc = alloc_id("hostvol");
    let ctx = task_ctx(tmp.path(), &alloc, t("hostvol"), vec![], FsIsolation::Image);
    let name = client_agent::driver::docker::container_name(&ctx);
    let _g = ContainerGuard(vec![name.clone()]);
    let err = DockerDriver::new().start(&ctx).await.unwrap_err();
    assert!(!err.recoverable(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("volume \"/\" binds the host path / into the container")
            && msg.contains("host volumes are disabled on this agent")
            && msg.contains("plugin \"docker\" { config { volumes { enabled = true } } }"),
        "{msg}"
    );
    assert!(!container_exists(&name).await, "a container was created");

    // An agent that enables volumes mounts them.
    let alloc = alloc_id("hostvol-on");
    let ctx = task_ctx(
        tmp.path(),
        &alloc,
        t("hostvolon"),
        vec![],
        FsIsolation::Image,
    );
    let d = DockerDriver::with_config(client_agent::driver::docker::DockerPluginConfig {
        volumes_enabled: true,
    });
    let h = d.start(&ctx).await.unwrap();
    let _g2 = ContainerGuard(vec![container_id(&h)]);
    let res = tokio::time::timeout(Duration::from_secs(30), d.wait(&h))
        .await
        .unwrap();
    let out = wait_for_content(&ctx.dirs.stdout, "saw-host-root").await;
    assert!(res.successful(), "{res:?} {out}");
    assert!(out.contains("host-file"), "{out}");
}
