//! Task config -> the container to create: reads Nomad's docker task config keys and the
//! agent's `plugin "docker"` config, checks host paths, and builds bollard's create body.
//! Pure: no daemon is asked anything here.

use super::NAME;
use crate::driver::{DriverError, TaskContext};
use crate::ports::AllocatedPort;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, PortBinding,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The docker driver's agent-level configuration (`plugin "docker" { config { ... } }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerPluginConfig {
    /// `volumes { enabled = true }`: tasks may bind any host path. Off by default, as in
    /// Nomad: then only paths inside the allocation directory can be bound.
    pub volumes_enabled: bool,
}

impl DockerPluginConfig {
    /// The configuration from the agent file's `plugin "docker" { config { ... } }`.
    /// Unknown keys and wrong types are errors that name them.
    pub fn from_agent_config(
        plugin: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> Result<DockerPluginConfig, String> {
        let mut c = DockerPluginConfig::default();
        for (k, v) in plugin.into_iter().flatten() {
            match k.as_str() {
                "volumes" => {
                    let blocks: Vec<&serde_json::Value> = match v {
                        serde_json::Value::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for b in blocks {
                        let Some(m) = b.as_object() else {
                            return Err(format!(
                                "plugin \"docker\" config \"volumes\" must be a block \
                                 (volumes {{ enabled = true }}), got {b}"
                            ));
                        };
                        for (k, v) in m {
                            match (k.as_str(), v) {
                                ("enabled", serde_json::Value::Bool(on)) => c.volumes_enabled = *on,
                                ("enabled", other) => {
                                    return Err(format!(
                                        "plugin \"docker\" config volumes.enabled must be \
                                         true or false, got {other}"
                                    ))
                                }
                                _ => {
                                    return Err(format!(
                                        "plugin \"docker\" config volumes has an unknown \
                                         setting {k:?}; it knows enabled"
                                    ))
                                }
                            }
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "plugin \"docker\" config has an unknown setting {k:?}; the docker \
                         driver knows volumes"
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// The task config keys this driver reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct DockerConfig {
    pub(super) image: String,
    command: Option<String>,
    args: Vec<String>,
    entrypoint: Option<Vec<String>>,
    ports: Option<Vec<String>>,
    port_map: BTreeMap<String, u16>,
    volumes: Vec<String>,
    mounts: Vec<Mount>,
    labels: HashMap<String, String>,
    work_dir: Option<String>,
    network_mode: Option<String>,
    hostname: Option<String>,
    pub(super) force_pull: bool,
}

fn cfg_err(msg: String) -> DriverError {
    DriverError::Config(format!("{NAME}: {msg}"))
}

fn as_string(ctx: &TaskContext, key: &str, v: &serde_json::Value) -> Result<String, DriverError> {
    match v {
        serde_json::Value::String(s) => Ok(ctx.env.interpolate(s)),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(cfg_err(format!(
            "config {key:?} must be a string, got {other}"
        ))),
    }
}

fn string_list(ctx: &TaskContext, key: &str) -> Result<Option<Vec<String>>, DriverError> {
    match ctx.task.config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| as_string(ctx, key, v))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(cfg_err(format!(
            "config {key:?} must be a list of strings, got {other}"
        ))),
    }
}

fn opt_string(ctx: &TaskContext, key: &str) -> Result<Option<String>, DriverError> {
    match ctx.task.config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => as_string(ctx, key, v).map(|s| Some(s).filter(|s| !s.is_empty())),
    }
}

/// HCL blocks and maps arrive as an object or as a list of objects: merge them.
fn objects<'a>(
    key: &str,
    v: &'a serde_json::Value,
) -> Result<Vec<&'a serde_json::Map<String, serde_json::Value>>, DriverError> {
    match v {
        serde_json::Value::Object(m) => Ok(vec![m]),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_object()
                    .ok_or_else(|| cfg_err(format!("config {key:?} must hold blocks, got {i}")))
            })
            .collect(),
        serde_json::Value::Null => Ok(vec![]),
        other => Err(cfg_err(format!(
            "config {key:?} must be a block, got {other}"
        ))),
    }
}

/// A host path from a task's config: relative ones are relative to the task directory.
fn host_path(ctx: &TaskContext, p: &str) -> String {
    if Path::new(p).is_absolute() {
        p.to_string()
    } else {
        ctx.dirs.dir.join(p).display().to_string()
    }
}

/// `path` with `.` and `..` resolved lexically (`..` at the root stays at the root).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Where `path` (absolute) really leads: its longest existing ancestor with symlinks
/// resolved, then the rest (which Docker would create) lexically.
fn resolve(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalize(&out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

/// The allocation directory: the parent of the task's and the shared directory.
fn alloc_root(ctx: &TaskContext) -> PathBuf {
    ctx.dirs
        .shared
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ctx.dirs.dir.clone())
}

/// Refuses a host path outside the allocation directory (after resolving `..` and
/// symlinks, which Docker would follow) unless the agent enables volumes.
fn check_host_path(
    ctx: &TaskContext,
    plugin: &DockerPluginConfig,
    what: &str,
    host: &str,
) -> Result<(), DriverError> {
    if plugin.volumes_enabled {
        return Ok(());
    }
    let root = alloc_root(ctx);
    let root = std::fs::canonicalize(&root).unwrap_or_else(|_| normalize(&root));
    let real = resolve(Path::new(&host_path(ctx, host)));
    if real.starts_with(&root) {
        return Ok(());
    }
    Err(cfg_err(format!(
        "{what} {host:?} binds the host path {} into the container, but host volumes are \
         disabled on this agent: only paths inside the allocation directory can be bound; \
         an operator can allow host paths with plugin \"docker\" {{ config {{ volumes {{ \
         enabled = true }} }} }}",
        real.display()
    )))
}

pub(super) fn parse_config(ctx: &TaskContext) -> Result<DockerConfig, DriverError> {
    let cfg = &ctx.task.config;
    let image =
        opt_string(ctx, "image")?.ok_or_else(|| cfg_err("config \"image\" is missing".into()))?;
    let mut port_map = BTreeMap::new();
    if let Some(v) = cfg.get("port_map") {
        for m in objects("port_map", v)? {
            for (label, port) in m {
                let p = port
                    .as_u64()
                    .or_else(|| port.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        cfg_err(format!(
                            "port_map {label:?} must be a port number, got {port}"
                        ))
                    })?;
                port_map.insert(label.clone(), p);
            }
        }
    }
    let mut mounts = Vec::new();
    if let Some(v) = cfg.get("mount") {
        for m in objects("mount", v)? {
            let get = |k: &str| m.get(k).map(|v| as_string(ctx, k, v)).transpose();
            let typ = get("type")?.unwrap_or_else(|| "volume".into());
            if typ != "bind" {
                return Err(cfg_err(format!(
                    "mount type {typ:?} is not supported; use type = \"bind\""
                )));
            }
            let source =
                get("source")?.ok_or_else(|| cfg_err("a bind mount needs a \"source\"".into()))?;
            let target =
                get("target")?.ok_or_else(|| cfg_err("a bind mount needs a \"target\"".into()))?;
            let readonly = m.get("readonly").and_then(|v| v.as_bool()).unwrap_or(false);
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(host_path(ctx, &source)),
                target: Some(target),
                read_only: Some(readonly),
                ..Default::default()
            });
        }
    }
    let mut labels = HashMap::new();
    if let Some(v) = cfg.get("labels") {
        for m in objects("labels", v)? {
            for (k, v) in m {
                labels.insert(k.clone(), as_string(ctx, "labels", v)?);
            }
        }
    }
    let force_pull = cfg
        .get("force_pull")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(DockerConfig {
        image,
        command: opt_string(ctx, "command")?,
        args: string_list(ctx, "args")?.unwrap_or_default(),
        entrypoint: string_list(ctx, "entrypoint")?,
        ports: string_list(ctx, "ports")?,
        port_map,
        volumes: string_list(ctx, "volumes")?.unwrap_or_default(),
        mounts,
        labels,
        work_dir: opt_string(ctx, "work_dir")?,
        network_mode: opt_string(ctx, "network_mode")?,
        hostname: opt_string(ctx, "hostname")?,
        force_pull,
    })
}

/// `host:container[:mode]` with a host path relative to the task directory.
fn volume_bind(ctx: &TaskContext, v: &str) -> Result<String, DriverError> {
    let mut parts = v.splitn(3, ':');
    let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
        return Err(cfg_err(format!(
            "volume {v:?} must look like \"host_path:container_path\""
        )));
    };
    if host.is_empty() || container.is_empty() {
        return Err(cfg_err(format!(
            "volume {v:?} must look like \"host_path:container_path\""
        )));
    }
    let mut out = format!("{}:{container}", host_path(ctx, host));
    if let Some(mode) = parts.next() {
        out.push(':');
        out.push_str(mode);
    }
    Ok(out)
}

/// The container ports to expose and their host bindings, from `ports` (or, legacy,
/// every label of `port_map`).
fn port_bindings(
    cfg: &DockerConfig,
    ports: &[AllocatedPort],
) -> Result<(Vec<String>, bollard::models::PortMap), DriverError> {
    let labels: Vec<String> = match &cfg.ports {
        Some(l) => l.clone(),
        None => cfg.port_map.keys().cloned().collect(),
    };
    let mut exposed = Vec::new();
    let mut bindings = bollard::models::PortMap::new();
    for label in labels {
        let p = ports.iter().find(|p| p.label == label).ok_or_else(|| {
            cfg_err(format!(
                "port {label:?} is not declared in the group's network block"
            ))
        })?;
        let container_port = if p.to > 0 {
            p.to
        } else {
            cfg.port_map.get(&label).copied().unwrap_or(p.value)
        };
        for proto in ["tcp", "udp"] {
            let key = format!("{container_port}/{proto}");
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(vec![]))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.value.to_string()),
                });
        }
    }
    Ok((exposed, bindings))
}

/// The container's name: `<task>-<alloc_id>`, as Nomad names them.
pub fn container_name(ctx: &TaskContext) -> String {
    format!("{}-{}", ctx.task.name, ctx.alloc_id)
}

fn labels(ctx: &TaskContext, cfg: &DockerConfig) -> HashMap<String, String> {
    let mut l = cfg.labels.clone();
    let var = |k: &str| ctx.env.vars.get(k).cloned().unwrap_or_default();
    let nomad = |k: &str| format!("com.hashicorp.nomad.{k}");
    l.insert(nomad("alloc_id"), ctx.alloc_id.clone());
    l.insert(nomad("job_id"), var("NOMAD_JOB_ID"));
    l.insert(nomad("job_name"), var("NOMAD_JOB_NAME"));
    l.insert(nomad("namespace"), var("NOMAD_NAMESPACE"));
    l.insert(nomad("task_group_name"), var("NOMAD_GROUP_NAME"));
    l.insert(nomad("task_name"), ctx.task.name.clone());
    l.insert(nomad("node_id"), ctx.env.interpolate("${node.unique.id}"));
    l.insert(
        nomad("node_name"),
        ctx.env.interpolate("${node.unique.name}"),
    );
    l
}

/// The container's bind mounts: the alloc dir, the task's `local/` and `secrets/`, and
/// the task's `volumes`; every host path (`mount` sources too) checked first.
fn binds(
    ctx: &TaskContext,
    cfg: &DockerConfig,
    plugin: &DockerPluginConfig,
) -> Result<Vec<String>, DriverError> {
    let mut binds = vec![
        format!("{}:/alloc", ctx.dirs.shared.display()),
        format!("{}:/local", ctx.dirs.local.display()),
        format!("{}:/secrets", ctx.dirs.secrets.display()),
    ];
    for v in &cfg.volumes {
        let bind = volume_bind(ctx, v)?;
        let host = v.split(':').next().unwrap_or_default();
        check_host_path(ctx, plugin, "volume", host)?;
        binds.push(bind);
    }
    for m in &cfg.mounts {
        check_host_path(
            ctx,
            plugin,
            "bind mount source",
            m.source.as_deref().unwrap_or_default(),
        )?;
    }
    Ok(binds)
}

/// The container bollard creates for the task: image, command, environment, labels,
/// binds and mounts, ports, CPU and memory limits, and a bounded json-file log.
pub(super) fn create_body(
    ctx: &TaskContext,
    cfg: &DockerConfig,
    plugin: &DockerPluginConfig,
) -> Result<ContainerCreateBody, DriverError> {
    let res = ctx.task.resources.clone().unwrap_or_default();
    let mib = |m: i64| m.max(0) * 1024 * 1024;
    let (memory, reservation) = if res.memory_max_mb > 0 {
        (
            mib(res.memory_max_mb),
            Some(mib(res.memory_mb)).filter(|b| *b > 0),
        )
    } else {
        (mib(res.memory_mb), None)
    };
    let binds = binds(ctx, cfg, plugin)?;
    let (exposed, bindings) = port_bindings(cfg, &ctx.ports)?;
    let log_mb = ctx
        .task
        .log_config
        .as_ref()
        .map(|l| l.max_file_size_mb)
        .filter(|m| *m > 0)
        .unwrap_or(10);
    let cmd = match &cfg.command {
        Some(c) => Some(std::iter::once(c.clone()).chain(cfg.args.clone()).collect()),
        None if !cfg.args.is_empty() => Some(cfg.args.clone()),
        None => None,
    };
    let host_config = HostConfig {
        binds: Some(binds),
        mounts: (!cfg.mounts.is_empty()).then(|| cfg.mounts.clone()),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        // Docker wants at least 2 shares; Nomad passes the task's MHz.
        cpu_shares: Some(res.cpu.max(2)),
        memory: (memory > 0).then_some(memory),
        // No swap on top of the limit.
        memory_swap: (memory > 0).then_some(memory),
        memory_reservation: reservation,
        network_mode: cfg.network_mode.clone(),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), format!("{log_mb}m")),
                ("max-file".to_string(), "2".to_string()),
            ])),
        }),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(cfg.image.clone()),
        cmd,
        entrypoint: cfg.entrypoint.clone(),
        env: Some(
            ctx.env
                .vars
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels(ctx, cfg)),
        working_dir: cfg.work_dir.clone(),
        hostname: cfg.hostname.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
