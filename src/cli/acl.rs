//! `drover acl bootstrap|token|policy|role`: Nomad's ACL commands, flags and output.

use crate::cli::format::{api_error, kv, table};
use acl::{
    AclPolicy, AclPolicyListStub, AclRole, AclRolePolicyLink, AclToken, AclTokenListStub,
    AclTokenRoleLink, TokenType,
};
use api::{Client, QueryOptions};
use serde::Serialize;

#[derive(Debug, clap::Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once; again after writing the reset index to
    /// <data dir>/server/acl-bootstrap-reset). An optional file holds the secret to use.
    Bootstrap(BootstrapArgs),
    /// Work with ACL tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCommand,
    },
    /// Work with ACL policies.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCommand,
    },
    /// Work with ACL roles.
    Role {
        #[command(subcommand)]
        cmd: RoleCommand,
    },
}

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Print the token as JSON.
    #[arg(long)]
    pub json: bool,
    /// A file holding the bootstrap secret (a UUID); "-" reads standard input.
    pub path: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token.
    Create(TokenWriteArgs),
    /// Change a token's name, type, policies or roles.
    Update(TokenUpdateArgs),
    /// List tokens (management token required).
    List(JsonArgs),
    /// Show a token by accessor ID.
    Info(AccessorArgs),
    /// Show the token in use (-token or NOMAD_TOKEN).
    #[command(name = "self")]
    Self_(JsonArgs),
    /// Delete a token by accessor ID.
    Delete(AccessorArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenWriteArgs {
    /// The token's name.
    #[arg(long)]
    pub name: Option<String>,
    /// client or management.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// A policy to attach (repeatable).
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// A role to attach by ID (repeatable).
    #[arg(long = "role-id")]
    pub role_ids: Vec<String>,
    /// A role to attach by name (repeatable).
    #[arg(long = "role-name")]
    pub role_names: Vec<String>,
    /// Replicate the token to every region.
    #[arg(long)]
    pub global: bool,
    /// How long the token lives ("1h", "30m"); it never expires without one.
    #[arg(long)]
    pub ttl: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TokenUpdateArgs {
    #[command(flatten)]
    pub write: TokenWriteArgs,
    pub accessor: String,
}

#[derive(Debug, clap::Args)]
pub struct JsonArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AccessorArgs {
    #[arg(long)]
    pub json: bool,
    pub accessor: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Create or replace a policy from a rules file ("-" reads standard input).
    Apply(PolicyApplyArgs),
    /// List policies.
    List(JsonArgs),
    /// Show a policy and its rules.
    Info(NameArgs),
    /// Delete a policy.
    Delete(NameArgs),
}

#[derive(Debug, clap::Args)]
pub struct PolicyApplyArgs {
    #[arg(long)]
    pub description: Option<String>,
    pub name: String,
    pub path: String,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    #[arg(long)]
    pub json: bool,
    pub name: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    Create(RoleWriteArgs),
    /// Change a role (its flags replace what they name).
    Update(RoleUpdateArgs),
    /// List roles.
    List(JsonArgs),
    /// Show a role by ID (or by name with -by-name).
    Info(RoleInfoArgs),
    /// Delete a role by ID.
    Delete(RoleIdArgs),
}

#[derive(Debug, clap::Args)]
pub struct RoleWriteArgs {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// A policy the role grants (repeatable).
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RoleUpdateArgs {
    #[command(flatten)]
    pub write: RoleWriteArgs,
    /// Replace the role instead of merging the flags into it.
    #[arg(long = "no-merge")]
    pub no_merge: bool,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct RoleInfoArgs {
    #[arg(long)]
    pub json: bool,
    /// The argument is the role's name.
    #[arg(long = "by-name")]
    pub by_name: bool,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct RoleIdArgs {
    pub id: String,
}

pub async fn run(client: &Client, cmd: AclCommand) -> anyhow::Result<i32> {
    match cmd {
        AclCommand::Bootstrap(a) => bootstrap(client, a).await,
        AclCommand::Token { cmd } => token(client, cmd).await,
        AclCommand::Policy { cmd } => policy(client, cmd).await,
        AclCommand::Role { cmd } => role(client, cmd).await,
    }
}

fn read_source(path: &str) -> anyhow::Result<String> {
    use std::io::Read;
    if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("Error reading {path}: {e}"))
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}

fn or_na(v: Vec<String>) -> String {
    if v.is_empty() {
        "n/a".into()
    } else {
        v.join(", ")
    }
}

/// A token as Nomad's `acl token info` prints it.
fn token_block(t: &AclToken) -> String {
    let kind = match t.kind {
        TokenType::Management => "management",
        TokenType::Client => "client",
    };
    kv(&[
        ("Accessor ID", t.accessor_id.clone()),
        ("Secret ID", t.secret_id.clone()),
        ("Name", t.name.clone()),
        ("Type", kind.to_string()),
        ("Global", t.global.to_string()),
        ("Create Time", t.create_time.clone()),
        (
            "Expiry Time",
            t.expiration_time.clone().unwrap_or_else(|| "<none>".into()),
        ),
        ("Create Index", t.create_index.to_string()),
        ("Modify Index", t.modify_index.to_string()),
        ("Policies", or_na(t.policies.clone())),
        (
            "Roles",
            or_na(
                t.roles
                    .iter()
                    .map(|r| format!("{}({})", r.name, r.id))
                    .collect(),
            ),
        ),
    ])
}

fn show_token(t: &AclToken, json: bool) -> anyhow::Result<i32> {
    if json {
        return print_json(t);
    }
    println!("{}", token_block(t));
    Ok(0)
}

async fn bootstrap(client: &Client, a: BootstrapArgs) -> anyhow::Result<i32> {
    let body = match &a.path {
        Some(p) => serde_json::json!({ "BootstrapSecret": read_source(p)?.trim() }),
        None => serde_json::json!({}),
    };
    let t: AclToken = client
        .put("/v1/acl/bootstrap", &body)
        .await
        .map_err(|e| api_error("bootstrapping", e))?;
    show_token(&t, a.json)
}

fn token_from_flags(mut t: AclToken, w: &TokenWriteArgs) -> anyhow::Result<AclToken> {
    if let Some(n) = &w.name {
        t.name = n.clone();
    }
    if let Some(k) = &w.kind {
        t.kind = match k.as_str() {
            "client" => TokenType::Client,
            "management" => TokenType::Management,
            other => anyhow::bail!("Invalid token type {other:?}: use client or management"),
        };
    }
    if !w.policies.is_empty() {
        t.policies = w.policies.clone();
    }
    if !w.role_ids.is_empty() || !w.role_names.is_empty() {
        t.roles = w
            .role_ids
            .iter()
            .map(|id| AclTokenRoleLink {
                id: id.clone(),
                name: String::new(),
            })
            .chain(w.role_names.iter().map(|n| AclTokenRoleLink {
                id: String::new(),
                name: n.clone(),
            }))
            .collect();
    }
    t.global |= w.global;
    if let Some(ttl) = &w.ttl {
        t.expiration_ttl =
            acl::types::parse_go_duration(ttl).map_err(|e| anyhow::anyhow!("Invalid -ttl: {e}"))?;
    }
    Ok(t)
}

async fn token(client: &Client, cmd: TokenCommand) -> anyhow::Result<i32> {
    let q = QueryOptions::default();
    match cmd {
        TokenCommand::Create(w) => {
            let t = token_from_flags(AclToken::default(), &w)?;
            let t: AclToken = client
                .put("/v1/acl/token", &t)
                .await
                .map_err(|e| api_error("creating token", e))?;
            show_token(&t, w.json)
        }
        TokenCommand::Update(u) => {
            let path = format!("/v1/acl/token/{}", api::url::encode(&u.accessor));
            let (old, _): (AclToken, _) = client
                .get(&path, &q)
                .await
                .map_err(|e| api_error("looking up token", e))?;
            let t = token_from_flags(old, &u.write)?;
            let t: AclToken = client
                .put(&path, &t)
                .await
                .map_err(|e| api_error("updating token", e))?;
            show_token(&t, u.write.json)
        }
        TokenCommand::List(a) => {
            let (list, _): (Vec<AclTokenListStub>, _) = client
                .get("/v1/acl/tokens", &q)
                .await
                .map_err(|e| api_error("listing tokens", e))?;
            if a.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No tokens found");
                return Ok(0);
            }
            let now = chrono::Utc::now();
            let rows = list
                .iter()
                .map(|t| {
                    let expired = t
                        .expiration_time
                        .as_deref()
                        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                        .is_some_and(|e| e <= now);
                    vec![
                        t.name.clone(),
                        match t.kind {
                            TokenType::Management => "management".into(),
                            TokenType::Client => "client".into(),
                        },
                        t.global.to_string(),
                        t.accessor_id.clone(),
                        expired.to_string(),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["Name", "Type", "Global", "Accessor ID", "Expired"], rows)
            );
            Ok(0)
        }
        TokenCommand::Info(a) => {
            let path = format!("/v1/acl/token/{}", api::url::encode(&a.accessor));
            let (t, _): (AclToken, _) = client
                .get(&path, &q)
                .await
                .map_err(|e| api_error("fetching token", e))?;
            show_token(&t, a.json)
        }
        TokenCommand::Self_(a) => {
            let (t, _): (AclToken, _) = client
                .get("/v1/acl/token/self", &q)
                .await
                .map_err(|e| api_error("fetching self token", e))?;
            show_token(&t, a.json)
        }
        TokenCommand::Delete(a) => {
            let path = format!("/v1/acl/token/{}", api::url::encode(&a.accessor));
            let _: serde_json::Value = client
                .delete(&path, &[])
                .await
                .map_err(|e| api_error("deleting token", e))?;
            println!("Token {} successfully deleted", a.accessor);
            Ok(0)
        }
    }
}

async fn policy(client: &Client, cmd: PolicyCommand) -> anyhow::Result<i32> {
    let q = QueryOptions::default();
    match cmd {
        PolicyCommand::Apply(a) => {
            let p = AclPolicy {
                name: a.name.clone(),
                description: a.description.clone().unwrap_or_default(),
                rules: read_source(&a.path)?,
                ..Default::default()
            };
            let path = format!("/v1/acl/policy/{}", api::url::encode(&a.name));
            let _: serde_json::Value = client
                .put(&path, &p)
                .await
                .map_err(|e| api_error("writing policy", e))?;
            println!("Successfully wrote {:?} ACL policy!", a.name);
            Ok(0)
        }
        PolicyCommand::List(a) => {
            let (list, _): (Vec<AclPolicyListStub>, _) =
                client
                    .get("/v1/acl/policies", &q)
                    .await
                    .map_err(|e| api_error("listing policies", e))?;
            if a.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No policies found");
                return Ok(0);
            }
            let rows = list
                .iter()
                .map(|p| vec![p.name.clone(), p.description.clone()])
                .collect();
            println!("{}", table(&["Name", "Description"], rows));
            Ok(0)
        }
        PolicyCommand::Info(a) => {
            let path = format!("/v1/acl/policy/{}", api::url::encode(&a.name));
            let (p, _): (AclPolicy, _) = client
                .get(&path, &q)
                .await
                .map_err(|e| api_error("fetching policy", e))?;
            if a.json {
                return print_json(&p);
            }
            println!(
                "{}\n\nRules\n\n{}",
                kv(&[
                    ("Name", p.name.clone()),
                    ("Description", p.description.clone()),
                    ("CreateIndex", p.create_index.to_string()),
                    ("ModifyIndex", p.modify_index.to_string()),
                ]),
                p.rules.trim_end()
            );
            Ok(0)
        }
        PolicyCommand::Delete(a) => {
            let path = format!("/v1/acl/policy/{}", api::url::encode(&a.name));
            let _: serde_json::Value = client
                .delete(&path, &[])
                .await
                .map_err(|e| api_error("deleting policy", e))?;
            println!("Successfully deleted {:?} policy!", a.name);
            Ok(0)
        }
    }
}

fn role_block(r: &AclRole) -> String {
    kv(&[
        ("ID", r.id.clone()),
        ("Name", r.name.clone()),
        ("Description", r.description.clone()),
        (
            "Policies",
            or_na(r.policies.iter().map(|p| p.name.clone()).collect()),
        ),
        ("Create Index", r.create_index.to_string()),
        ("Modify Index", r.modify_index.to_string()),
    ])
}

fn show_role(r: &AclRole, json: bool) -> anyhow::Result<i32> {
    if json {
        return print_json(r);
    }
    println!("{}", role_block(r));
    Ok(0)
}

fn role_from_flags(mut r: AclRole, w: &RoleWriteArgs) -> AclRole {
    if let Some(n) = &w.name {
        r.name = n.clone();
    }
    if let Some(d) = &w.description {
        r.description = d.clone();
    }
    if !w.policies.is_empty() {
        r.policies = w
            .policies
            .iter()
            .map(|name| AclRolePolicyLink { name: name.clone() })
            .collect();
    }
    r
}

async fn role(client: &Client, cmd: RoleCommand) -> anyhow::Result<i32> {
    let q = QueryOptions::default();
    match cmd {
        RoleCommand::Create(w) => {
            let r = role_from_flags(AclRole::default(), &w);
            let r: AclRole = client
                .put("/v1/acl/role", &r)
                .await
                .map_err(|e| api_error("creating ACL role", e))?;
            show_role(&r, w.json)
        }
        RoleCommand::Update(u) => {
            let path = format!("/v1/acl/role/{}", api::url::encode(&u.id));
            let base = if u.no_merge {
                AclRole {
                    id: u.id.clone(),
                    ..Default::default()
                }
            } else {
                client
                    .get::<AclRole>(&path, &q)
                    .await
                    .map_err(|e| api_error("reading ACL role", e))?
                    .0
            };
            let r = role_from_flags(base, &u.write);
            let r: AclRole = client
                .put(&path, &r)
                .await
                .map_err(|e| api_error("updating ACL role", e))?;
            show_role(&r, u.write.json)
        }
        RoleCommand::List(a) => {
            let (list, _): (Vec<AclRole>, _) = client
                .get("/v1/acl/roles", &q)
                .await
                .map_err(|e| api_error("listing ACL roles", e))?;
            if a.json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No ACL roles found");
                return Ok(0);
            }
            let rows = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        r.description.clone(),
                        r.policies
                            .iter()
                            .map(|p| p.name.clone())
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["ID", "Name", "Description", "Policies"], rows)
            );
            Ok(0)
        }
        RoleCommand::Info(a) => {
            let path = if a.by_name {
                format!("/v1/acl/role/name/{}", api::url::encode(&a.id))
            } else {
                format!("/v1/acl/role/{}", api::url::encode(&a.id))
            };
            let (r, _): (AclRole, _) = client
                .get(&path, &q)
                .await
                .map_err(|e| api_error("reading ACL role", e))?;
            show_role(&r, a.json)
        }
        RoleCommand::Delete(a) => {
            let path = format!("/v1/acl/role/{}", api::url::encode(&a.id));
            let _: serde_json::Value = client
                .delete(&path, &[])
                .await
                .map_err(|e| api_error("deleting ACL role", e))?;
            println!("ACL role {} successfully deleted", a.id);
            Ok(0)
        }
    }
}
