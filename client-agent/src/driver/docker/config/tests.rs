use super::*;
use crate::allocdir::AllocDir;
use crate::driver::FsIsolation;
use crate::taskenv::TaskEnv;

fn ctx_with(root: &Path, config: serde_json::Value, ports: Vec<AllocatedPort>) -> TaskContext {
    let mut task = api::Task {
        name: "web".into(),
        driver: NAME.into(),
        config: serde_json::from_value(config).unwrap(),
        ..Default::default()
    };
    task.canonicalize();
    let dirs = AllocDir::new(root, "a1").build_task("web").unwrap();
    let alloc = api::Allocation {
        id: "a1".into(),
        job_id: "j".into(),
        task_group: "g".into(),
        ..Default::default()
    };
    let env = TaskEnv::build_with(
        &api::Node::default(),
        &alloc,
        &task,
        &dirs,
        &ports,
        FsIsolation::Image,
    );
    TaskContext {
        alloc_id: "a1".into(),
        task,
        dirs,
        env,
        ports,
    }
}

fn ctx(root: &Path, config: serde_json::Value) -> TaskContext {
    ctx_with(root, config, vec![])
}

fn body(c: &TaskContext, plugin: &DockerPluginConfig) -> Result<ContainerCreateBody, DriverError> {
    create_body(c, &parse_config(c)?, plugin)
}

fn refused(c: &TaskContext) -> String {
    let e = body(c, &DockerPluginConfig::default()).unwrap_err();
    assert!(!e.recoverable(), "{e}");
    e.to_string()
}

#[test]
fn task_config_translates_to_the_container_nomad_would_create() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = vec![
        AllocatedPort {
            label: "http".into(),
            value: 23456,
            to: 8080,
            host_ip: "127.0.0.1".into(),
        },
        AllocatedPort {
            label: "admin".into(),
            value: 23457,
            to: 0,
            host_ip: "127.0.0.1".into(),
        },
    ];
    let mut c = ctx_with(
        tmp.path(),
        serde_json::json!({
            "image": "busybox:1",
            "command": "/bin/sh",
            "args": ["-c", "echo ${NOMAD_TASK_NAME}"],
            "entrypoint": ["/bin/env"],
            "ports": ["http", "admin"],
            "volumes": ["local/conf:/etc/conf:ro"],
            "mount": [{ "type": "bind", "source": "secrets", "target": "/s", "readonly": true }],
            "labels": [{ "team": "web" }],
            "work_dir": "/srv",
            "hostname": "h1",
            "network_mode": "bridge",
        }),
        ports,
    );
    let r = c.task.resources.get_or_insert_with(Default::default);
    r.cpu = 300;
    r.memory_mb = 64;
    r.memory_max_mb = 128;
    let b = body(&c, &DockerPluginConfig::default()).unwrap();
    assert_eq!(b.image.as_deref(), Some("busybox:1"));
    assert_eq!(
        b.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "echo web".into()])
    );
    assert_eq!(b.entrypoint, Some(vec!["/bin/env".to_string()]));
    assert_eq!(b.working_dir.as_deref(), Some("/srv"));
    assert_eq!(b.hostname.as_deref(), Some("h1"));
    let labels = b.labels.unwrap();
    assert_eq!(labels["team"], "web");
    assert_eq!(labels["com.hashicorp.nomad.alloc_id"], "a1");
    assert_eq!(labels["com.hashicorp.nomad.task_name"], "web");
    assert!(b.env.unwrap().contains(&"NOMAD_TASK_NAME=web".to_string()));
    let mut exposed = b.exposed_ports.unwrap();
    exposed.sort();
    assert_eq!(
        exposed,
        vec!["23457/tcp", "23457/udp", "8080/tcp", "8080/udp"]
    );
    let hc = b.host_config.unwrap();
    let task_dir = c.dirs.dir.display().to_string();
    assert_eq!(
        hc.binds.unwrap(),
        vec![
            format!("{}:/alloc", c.dirs.shared.display()),
            format!("{}:/local", c.dirs.local.display()),
            format!("{}:/secrets", c.dirs.secrets.display()),
            format!("{task_dir}/local/conf:/etc/conf:ro"),
        ]
    );
    let m = &hc.mounts.unwrap()[0];
    assert_eq!(m.typ, Some(MountType::BIND));
    assert_eq!(
        m.source.as_deref(),
        Some(format!("{task_dir}/secrets").as_str())
    );
    assert_eq!(m.target.as_deref(), Some("/s"));
    assert_eq!(m.read_only, Some(true));
    let pb = hc.port_bindings.unwrap();
    let http = pb["8080/tcp"].as_ref().unwrap();
    assert_eq!(http[0].host_port.as_deref(), Some("23456"));
    assert_eq!(http[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(hc.cpu_shares, Some(300));
    // memory_max is the limit, memory the reservation; no swap on top.
    assert_eq!(hc.memory, Some(128 << 20));
    assert_eq!(hc.memory_swap, Some(128 << 20));
    assert_eq!(hc.memory_reservation, Some(64 << 20));
    assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
    assert_eq!(hc.log_config.unwrap().typ.as_deref(), Some("json-file"));
}

#[test]
fn legacy_port_map_and_plain_memory_translate_too() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = vec![AllocatedPort {
        label: "db".into(),
        value: 30000,
        to: 0,
        host_ip: "10.0.0.1".into(),
    }];
    let mut c = ctx_with(
        tmp.path(),
        serde_json::json!({ "image": "x", "args": ["a"], "port_map": [{ "db": 5432 }] }),
        ports,
    );
    c.task
        .resources
        .get_or_insert_with(Default::default)
        .memory_mb = 32;
    let b = body(&c, &DockerPluginConfig::default()).unwrap();
    // Without command, args alone are the container's command.
    assert_eq!(b.cmd, Some(vec!["a".to_string()]));
    let hc = b.host_config.unwrap();
    let db = hc.port_bindings.unwrap()["5432/tcp"].clone().unwrap();
    assert_eq!(db[0].host_port.as_deref(), Some("30000"));
    assert_eq!(hc.memory, Some(32 << 20));
    assert_eq!(hc.memory_reservation, None);
    assert_eq!(hc.mounts, None);
}

#[test]
fn wrong_task_config_is_an_unrecoverable_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let e = refused(&ctx(tmp.path(), serde_json::json!({})));
    assert!(e.contains("\"image\" is missing"), "{e}");
    let e = refused(&ctx(
        tmp.path(),
        serde_json::json!({ "image": "x", "volumes": ["nocolon"] }),
    ));
    assert!(
        e.contains("must look like \"host_path:container_path\""),
        "{e}"
    );
    let e = refused(&ctx(
        tmp.path(),
        serde_json::json!({ "image": "x", "mount": [{ "type": "tmpfs", "target": "/t" }] }),
    ));
    assert!(e.contains("mount type \"tmpfs\" is not supported"), "{e}");
    let e = refused(&ctx(
        tmp.path(),
        serde_json::json!({ "image": "x", "ports": ["nope"] }),
    ));
    assert!(e.contains("port \"nope\" is not declared"), "{e}");
}

#[test]
fn host_paths_are_refused_unless_the_agent_enables_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    for volumes in [
        serde_json::json!(["/:/host"]),
        serde_json::json!(["/etc:/etc:ro"]),
        serde_json::json!(["../../../../../../..:/up"]),
        serde_json::json!(["local/../../..:/up"]),
    ] {
        let c = ctx(
            tmp.path(),
            serde_json::json!({ "image": "x", "volumes": volumes }),
        );
        let e = refused(&c);
        assert!(
            e.starts_with("docker: volume")
                && e.contains("host volumes are disabled on this agent")
                && e.contains("volumes { enabled = true }"),
            "{e}"
        );
        let enabled = DockerPluginConfig {
            volumes_enabled: true,
        };
        assert!(body(&c, &enabled).is_ok(), "{volumes}");
    }
    let c = ctx(
        tmp.path(),
        serde_json::json!({ "image": "x",
            "mount": [{ "type": "bind", "source": "/var/run/docker.sock", "target": "/s" }] }),
    );
    let e = refused(&c);
    assert!(
        e.starts_with("docker: bind mount source \"/var/run/docker.sock\""),
        "{e}"
    );
}

#[test]
fn paths_inside_the_allocation_directory_stay_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path(), serde_json::json!({ "image": "x" }));
    let shared = c.dirs.shared.display().to_string();
    let c = ctx(
        tmp.path(),
        serde_json::json!({ "image": "x",
            "volumes": ["local:/l", "../alloc/data:/d", "new/dir:/n", format!("{shared}/data:/abs")],
            "mount": [{ "type": "bind", "source": "../alloc", "target": "/a" }] }),
    );
    let b = body(&c, &DockerPluginConfig::default()).unwrap();
    assert_eq!(b.host_config.unwrap().binds.unwrap().len(), 7);
}

#[test]
fn a_symlink_planted_in_the_task_dir_does_not_lead_a_volume_out() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(
        tmp.path(),
        serde_json::json!({ "image": "x", "volumes": ["local/hostroot/etc:/h"] }),
    );
    // What a previous run of the task could have left behind.
    std::os::unix::fs::symlink("/", c.dirs.local.join("hostroot")).unwrap();
    let e = refused(&c);
    assert!(
        e.contains("binds the host path /etc into the container"),
        "{e}"
    );
}

#[test]
fn plugin_config_reads_nomads_volumes_block_and_refuses_unknown_keys() {
    let cfg = |v: serde_json::Value| {
        let m: BTreeMap<String, serde_json::Value> = serde_json::from_value(v).unwrap();
        DockerPluginConfig::from_agent_config(Some(&m))
    };
    assert!(
        cfg(serde_json::json!({ "volumes": { "enabled": true } }))
            .unwrap()
            .volumes_enabled
    );
    assert!(
        cfg(serde_json::json!({ "volumes": [{ "enabled": true }] }))
            .unwrap()
            .volumes_enabled
    );
    assert!(
        !cfg(serde_json::json!({ "volumes": { "enabled": false } }))
            .unwrap()
            .volumes_enabled
    );
    assert!(
        !DockerPluginConfig::from_agent_config(None)
            .unwrap()
            .volumes_enabled
    );
    let e = cfg(serde_json::json!({ "volumes": { "enabled": "yes" } })).unwrap_err();
    assert!(e.contains("volumes.enabled must be true or false"), "{e}");
    let e = cfg(serde_json::json!({ "allow_privileged": true })).unwrap_err();
    assert!(e.contains("unknown setting \"allow_privileged\""), "{e}");
}
