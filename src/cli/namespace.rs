//! `drover namespace apply|list|status|delete`: Nomad's namespace commands, flags and
//! output.

use crate::cli::format::{api_error, kv, or_none, table};
use api::url::encode;
use api::{Client, Namespace, QueryOptions};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum NamespaceCommand {
    /// Create or update a namespace: `apply [-description ..] [-meta k=v] NAME`, or
    /// `apply FILE` with a namespace specification (HCL or JSON; "-" reads standard input).
    Apply(ApplyArgs),
    /// List the namespaces.
    List(ListArgs),
    /// Show a namespace.
    Status(NameArgs),
    /// Delete a namespace (not `default`, nor one that still has live jobs or variables).
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The namespace's description (kept when not given).
    #[arg(long)]
    pub description: Option<String>,
    /// Metadata as key=value (repeatable; replaces the namespace's metadata).
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// The argument is a specification file in JSON (the API's shape) instead of HCL.
    #[arg(long)]
    pub json: bool,
    /// A namespace name, or a specification file.
    pub target: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the namespaces as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// Print the namespace as JSON.
    #[arg(long)]
    pub json: bool,
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    pub name: String,
}

pub async fn run(client: &Client, cmd: NamespaceCommand) -> anyhow::Result<i32> {
    match cmd {
        NamespaceCommand::Apply(a) => apply(client, a).await,
        NamespaceCommand::List(a) => list(client, a).await,
        NamespaceCommand::Status(a) => status(client, a).await,
        NamespaceCommand::Delete(a) => delete(client, a).await,
    }
}

fn path_of(name: &str) -> String {
    format!("/v1/namespace/{}", encode(name))
}

/// A namespace specification file as Nomad writes one in HCL.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Spec {
    name: String,
    description: String,
    quota: String,
    meta: BTreeMap<String, String>,
    capabilities: Option<SpecCapabilities>,
    node_pool_config: Option<SpecNodePools>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SpecCapabilities {
    enabled_task_drivers: Vec<String>,
    disabled_task_drivers: Vec<String>,
    enabled_network_modes: Vec<String>,
    disabled_network_modes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SpecNodePools {
    default: String,
    allowed: Vec<String>,
    denied: Vec<String>,
}

impl From<Spec> for Namespace {
    fn from(s: Spec) -> Namespace {
        Namespace {
            name: s.name,
            description: s.description,
            quota: s.quota,
            meta: s.meta,
            capabilities: s.capabilities.map(|c| api::NamespaceCapabilities {
                enabled_task_drivers: c.enabled_task_drivers,
                disabled_task_drivers: c.disabled_task_drivers,
                enabled_network_modes: c.enabled_network_modes,
                disabled_network_modes: c.disabled_network_modes,
            }),
            node_pool_configuration: s.node_pool_config.map(|p| {
                api::NamespaceNodePoolConfiguration {
                    default: p.default,
                    allowed: p.allowed,
                    denied: p.denied,
                }
            }),
            ..Default::default()
        }
    }
}

/// Read a specification file (HCL, or JSON with `-json` or a `.json` name).
fn read_spec(path: &str, json: bool) -> anyhow::Result<Namespace> {
    use std::io::Read;
    let text = if crate::cli::is_stdin(std::path::Path::new(path)) {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("Error reading {path}: {e}"))?
    };
    if json || path.ends_with(".json") {
        return serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("Error parsing {path} as a namespace (JSON): {e}"));
    }
    let spec: Spec = hcl::from_str(&text)
        .map_err(|e| anyhow::anyhow!("Error parsing {path} as a namespace specification: {e}"))?;
    Ok(spec.into())
}

/// `KEY=VALUE` pairs.
fn parse_meta(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("Invalid -meta {p:?}: expected key=value"),
        })
        .collect()
}

/// Is the argument a specification file rather than a name? A name cannot hold a `.` or
/// a `/`, so a path is told apart by them (or `-`, or an existing file).
fn is_spec_file(target: &str) -> bool {
    target == "-" || target.contains(['.', '/']) || std::path::Path::new(target).is_file()
}

async fn apply(client: &Client, a: ApplyArgs) -> anyhow::Result<i32> {
    let ns = if is_spec_file(&a.target) {
        let mut ns = read_spec(&a.target, a.json)?;
        if let Some(d) = a.description {
            ns.description = d;
        }
        if !a.meta.is_empty() {
            ns.meta = parse_meta(&a.meta)?;
        }
        ns
    } else {
        // Flags change what they name and keep the rest of an existing namespace.
        let q = QueryOptions::default();
        let mut ns = match client.get::<Namespace>(&path_of(&a.target), &q).await {
            Ok((ns, _)) => ns,
            Err(e) if e.is_not_found() => Namespace {
                name: a.target.clone(),
                ..Default::default()
            },
            Err(e) => return Err(api_error("looking up namespace", e)),
        };
        if let Some(d) = a.description {
            ns.description = d;
        }
        if !a.meta.is_empty() {
            ns.meta = parse_meta(&a.meta)?;
        }
        ns
    };
    if let Some(p) = ns.problem() {
        anyhow::bail!("Error applying namespace: {p}");
    }
    client
        .put::<_, Option<serde_json::Value>>(&path_of(&ns.name), &ns)
        .await
        .map_err(|e| api_error("applying namespace", e))?;
    println!("Successfully applied namespace {:?}!", ns.name);
    Ok(0)
}

async fn list(client: &Client, a: ListArgs) -> anyhow::Result<i32> {
    let (list, _): (Vec<Namespace>, _) = client
        .get("/v1/namespaces", &QueryOptions::default())
        .await
        .map_err(|e| api_error("retrieving namespaces", e))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    if list.is_empty() {
        println!("No namespaces found");
        return Ok(0);
    }
    let rows = list
        .iter()
        .map(|n| vec![n.name.clone(), n.description.clone()])
        .collect();
    println!("{}", table(&["Name", "Description"], rows));
    Ok(0)
}

/// A namespace as Nomad's `namespace status` prints it.
fn render_status(ns: &Namespace) -> String {
    let mut out = kv(&[
        ("Name", ns.name.clone()),
        ("Description", ns.description.clone()),
        ("Quota", or_none(&ns.quota)),
    ]);
    if !ns.meta.is_empty() {
        let meta: Vec<(&str, &str)> = ns
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.push_str("\n\nMetadata\n");
        out.push_str(&kv(&meta));
    }
    if let Some(c) = &ns.capabilities {
        let join = |v: &[String]| or_none(&v.join(","));
        out.push_str("\n\nTask Drivers\n");
        out.push_str(&kv(&[
            ("Enabled", join(&c.enabled_task_drivers)),
            ("Disabled", join(&c.disabled_task_drivers)),
        ]));
    }
    out
}

async fn status(client: &Client, a: NameArgs) -> anyhow::Result<i32> {
    let ns = match client
        .get::<Namespace>(&path_of(&a.name), &QueryOptions::default())
        .await
    {
        Ok((ns, _)) => ns,
        Err(e) if e.is_not_found() => {
            eprintln!("Namespace {:?} not found", a.name);
            return Ok(1);
        }
        Err(e) => return Err(api_error("retrieving namespace", e)),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ns)?);
    } else {
        println!("{}", render_status(&ns));
    }
    Ok(0)
}

async fn delete(client: &Client, a: DeleteArgs) -> anyhow::Result<i32> {
    let path = path_of(&a.name);
    client
        .delete::<Option<serde_json::Value>>(&path, &[])
        .await
        .map_err(|e| api_error("deleting namespace", e))?;
    println!("Successfully deleted namespace {:?}!", a.name);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_specifications_read_as_nomad_writes_them() {
        let dir = std::env::temp_dir().join(format!("drover-ns-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ns.hcl");
        std::fs::write(
            &f,
            r#"
name        = "api-prod"
description = "Production API servers"
meta {
  owner = "api-team"
}
capabilities {
  disabled_task_drivers = ["raw_exec"]
}
"#,
        )
        .unwrap();
        let ns = read_spec(f.to_str().unwrap(), false).unwrap();
        assert_eq!(ns.name, "api-prod");
        assert_eq!(ns.meta["owner"], "api-team");
        let caps = ns.capabilities.as_ref().unwrap();
        assert_eq!(caps.disabled_task_drivers, ["raw_exec"]);
        std::fs::write(&f, "name = \"x\"\nnope = 1\n").unwrap();
        assert!(read_spec(f.to_str().unwrap(), false).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn names_and_files_are_told_apart() {
        assert!(!is_spec_file("team-a-ns-that-is-no-file"));
        assert!(is_spec_file("ns.hcl"));
        assert!(is_spec_file("./team"));
        assert!(is_spec_file("-"));
    }

    #[test]
    fn status_prints_name_description_quota_and_metadata() {
        let ns = Namespace {
            name: "team-a".into(),
            description: "Team A".into(),
            meta: [("owner".to_string(), "a".to_string())].into(),
            ..Default::default()
        };
        let out = render_status(&ns);
        assert!(out.starts_with("Name        = team-a\nDescription = Team A\nQuota       = <none>"));
        assert!(out.ends_with("Metadata\nowner = a"), "{out}");
        assert!(parse_meta(&["=x".into()]).is_err());
    }
}
