//! The `drover` command line: its commands and flags (clap derive), Nomad's single-dash
//! flag spelling, and dispatch to the command modules.
//!
//! Every command that talks to a cluster takes `-address` (else `NOMAD_ADDR`, else
//! `DROVER_ADDR`, else `http://127.0.0.1:4646`). Exit codes follow Nomad: 0 success, 1 any
//! error (including bad usage), 2 when a job was accepted but could not be fully placed.

pub mod acl;
pub mod agent;
pub mod agent_monitor;
pub mod alloc;
pub mod deployment;
pub mod drain;
pub mod eval;
pub mod fmt;
pub mod format;
pub mod job;
pub mod lookup;
pub mod monitor;
pub mod namespace;
pub mod node;
pub mod operator;
pub mod service;
pub mod system;
pub mod tls;
pub mod ui;
pub mod var;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;

#[derive(Debug, Parser)]
#[command(
    name = "drover",
    about = "A workload orchestrator that speaks Nomad's language",
    disable_version_flag = true,
    after_help = "Flags may be written -flag or --flag, as with Nomad."
)]
pub struct Cli {
    /// Address of the Drover (or Nomad) HTTP API [env: NOMAD_ADDR, DROVER_ADDR]
    /// [default: http://127.0.0.1:4646]
    #[arg(long, global = true, value_name = "URL")]
    pub address: Option<String>,

    /// The ACL token's secret ID sent with every request [env: NOMAD_TOKEN]
    #[arg(long, global = true, value_name = "SECRET")]
    pub token: Option<String>,

    /// The namespace of the jobs, allocations, variables... a command works on (`*`: all,
    /// in lists) [env: NOMAD_NAMESPACE] [default: default]
    #[arg(long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// PEM CA certificate the server's certificate is checked against [env: NOMAD_CACERT]
    #[arg(long = "ca-cert", global = true, value_name = "FILE")]
    pub ca_cert: Option<String>,

    /// PEM client certificate presented to the server [env: NOMAD_CLIENT_CERT]
    #[arg(long = "client-cert", global = true, value_name = "FILE")]
    pub client_cert: Option<String>,

    /// PEM key of the client certificate [env: NOMAD_CLIENT_KEY]
    #[arg(long = "client-key", global = true, value_name = "FILE")]
    pub client_key: Option<String>,

    /// Print the version and exit.
    #[arg(long = "version", short = 'v', id = "show_version")]
    pub show_version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Drover agent: a server, a client, or both (-dev).
    Agent(agent::AgentArgs),
    /// Work with jobs.
    Job {
        #[command(subcommand)]
        cmd: JobCommand,
    },
    /// Work with allocations.
    Alloc {
        #[command(subcommand)]
        cmd: AllocCommand,
    },
    /// Work with client nodes.
    Node {
        #[command(subcommand)]
        cmd: NodeCommand,
    },
    /// Work with evaluations.
    Eval {
        #[command(subcommand)]
        cmd: EvalCommand,
    },
    /// Work with deployments: list, status, promote, fail, pause, resume.
    Deployment {
        #[command(subcommand)]
        cmd: deployment::DeploymentCommand,
    },
    /// Work with services registered with `provider = "nomad"`.
    Service {
        #[command(subcommand)]
        cmd: service::ServiceCommand,
    },
    /// Work with Nomad Variables: get, put, list, purge.
    Var {
        #[command(subcommand)]
        cmd: var::VarCommand,
    },
    /// ACL bootstrap, tokens, policies and roles.
    Acl {
        #[command(subcommand)]
        cmd: acl::AclCommand,
    },
    /// Work with namespaces: apply, list, status, delete.
    Namespace {
        #[command(subcommand)]
        cmd: namespace::NamespaceCommand,
    },
    /// Work with the cluster's servers.
    Server {
        #[command(subcommand)]
        cmd: operator::ServerCommand,
    },
    /// Cluster-wide maintenance: garbage collection, summary reconciliation.
    System {
        #[command(subcommand)]
        cmd: system::SystemCommand,
    },
    /// Raft peers, snapshots and the scheduler configuration.
    Operator {
        #[command(subcommand)]
        cmd: operator::OperatorCommand,
    },
    /// List jobs, or show the job, allocation, evaluation or node an ID (prefix) names.
    Status(StatusArgs),
    /// Rewrite job, agent and policy files (.nomad, .hcl) in canonical layout.
    Fmt(fmt::FmtArgs),
    /// Stream the agent's log lines (at any level, whatever the agent logs at).
    Monitor(agent_monitor::MonitorArgs),
    /// Open the web UI, at the job, allocation or node an ID (prefix) names.
    Ui(ui::UiArgs),
    /// Create a CA and agent certificates for TLS: `tls ca create`, `tls cert create`.
    Tls {
        #[command(subcommand)]
        cmd: tls::TlsCommand,
    },
    /// Print the version.
    Version,
    /// Alias of `job run`.
    #[command(hide = true)]
    Run(job::RunArgs),
    /// Alias of `job stop`.
    #[command(hide = true)]
    Stop(job::StopArgs),
    /// Alias of `job validate`.
    #[command(hide = true)]
    Validate(job::ValidateArgs),
    /// Alias of `job plan`.
    #[command(hide = true)]
    Plan(job::PlanArgs),
    /// Alias of `job inspect`.
    #[command(hide = true)]
    Inspect(job::InspectArgs),
    /// Alias of `job init`.
    #[command(hide = true)]
    Init(job::InitArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Write an example job file (example.nomad.hcl) to start from.
    Init(job::InitArgs),
    /// Submit a job file and follow its scheduling.
    Run(job::RunArgs),
    /// List jobs, or show one job's status.
    Status(job::StatusArgs),
    /// Stop a job and cancel its allocations.
    Stop(job::StopArgs),
    /// Print a registered job as JSON.
    Inspect(job::InspectArgs),
    /// Check a job file for errors without submitting it.
    Validate(job::ValidateArgs),
    /// Dry-run a job file: what would be placed, updated or stopped (exit 0 no
    /// changes, 1 changes, 255 error).
    Plan(job::PlanArgs),
    /// List a job's allocations.
    Allocs(job::AllocsArgs),
    /// List a job's versions (-p: with their changes).
    History(job::HistoryArgs),
    /// Run an earlier version of a job again.
    Revert(job::RevertArgs),
    /// Set the count of a job's task group.
    Scale(job::ScaleArgs),
    /// Promote the canaries of a job's latest deployment.
    Promote(job::PromoteArgs),
    /// Launch a child of a parameterized job with metadata and a payload.
    Dispatch(job::DispatchArgs),
    /// Create a new evaluation of a job (-force-reschedule: failed allocations now).
    Eval(system::JobEvalArgs),
    /// Periodic jobs: `force` launches a child now.
    Periodic {
        #[command(subcommand)]
        cmd: PeriodicCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeriodicCommand {
    /// Launch a periodic job's child now, whatever its schedule.
    Force(job::PeriodicForceArgs),
}

#[derive(Debug, Subcommand)]
pub enum AllocCommand {
    /// Show an allocation and its tasks' recent events.
    Status(alloc::StatusArgs),
    /// Print a task's output (-f follows it, -stderr for standard error).
    Logs(alloc::LogsArgs),
    /// Run a command in a running task (non-interactive).
    Exec(alloc::ExecArgs),
    /// Restart an allocation's tasks in place.
    Restart(alloc::RestartArgs),
    /// Send a signal to an allocation's tasks.
    Signal(alloc::SignalArgs),
    /// Stop an allocation (it is replaced if its job still wants it).
    Stop(alloc::StopArgs),
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List client nodes, or show one.
    Status(node::StatusArgs),
    /// Move every allocation off a node for maintenance (or stop doing so).
    Drain(drain::DrainArgs),
    /// Allow or forbid new placements on a node.
    Eligibility(drain::EligibilityArgs),
    /// Create evaluations for every job with allocations on a node.
    Eval(system::NodeEvalArgs),
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Show an evaluation and why its placements failed, if they did.
    Status(eval::StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// A job, allocation, evaluation or node ID, or a prefix of one.
    pub id: Option<String>,
}

/// Nomad's flag package takes `-flag`, `-flag=value` and `--flag`; clap wants long flags
/// with two dashes. Rewrite every `-word...` to `--word...`, leaving alone `--flag`, a
/// lone `-` (stdin), negative numbers, one-letter short flags (`-h`, `-v`) and everything
/// after a bare `--`.
pub fn rewrite_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some("--") => {
                passthrough = true;
                out.push(arg);
            }
            Some(s) if is_single_dash_long_flag(s) => out.push(format!("-{s}").into()),
            _ => out.push(arg),
        }
    }
    out
}

fn is_single_dash_long_flag(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('-') else {
        return false;
    };
    let name = rest.split('=').next().unwrap_or("");
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    // `-h` stays a short flag; `-h=x` is not something anybody types.
    first.is_ascii_alphabetic()
        && (name.len() > 1 || rest.contains('='))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `KEY=VALUE`, for `-meta` and `-var`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Parse the (already rewritten) arguments, run the command, and return the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    if cli.show_version {
        print_version();
        return 0;
    }
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return 1;
    };
    let address = resolve_address(cli.address);
    let token = cli
        .token
        .or_else(|| std::env::var("NOMAD_TOKEN").ok())
        .filter(|t| !t.trim().is_empty());
    let namespace = resolve_namespace(cli.namespace);
    tls::export_flags(&cli.ca_cert, &cli.client_cert, &cli.client_key);
    match command {
        Command::Version => {
            print_version();
            0
        }
        Command::Agent(args) => agent::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Tls { cmd } => tls::run(cmd),
        other => block_on(dispatch(other, address, token, namespace)),
    }
}

/// `-address`, else `NOMAD_ADDR`, else `DROVER_ADDR`, else the local agent. An empty
/// value counts as unset, as `NOMAD_ADDR= drover ...` means "not set" to people.
pub fn resolve_address(flag: Option<String>) -> String {
    let set = |v: Option<String>| v.filter(|a| !a.trim().is_empty());
    set(flag)
        .or_else(|| set(std::env::var("NOMAD_ADDR").ok()))
        .or_else(|| set(std::env::var("DROVER_ADDR").ok()))
        .unwrap_or_else(|| "http://127.0.0.1:4646".to_string())
}

/// `-namespace`, else `NOMAD_NAMESPACE`, else none (the server's `default`).
pub fn resolve_namespace(flag: Option<String>) -> Option<String> {
    pick_namespace(flag, std::env::var("NOMAD_NAMESPACE").ok())
}

/// [`resolve_namespace`] over given values; an empty or blank value counts as unset.
fn pick_namespace(flag: Option<String>, env: Option<String>) -> Option<String> {
    let set = |v: Option<String>| v.filter(|n| !n.trim().is_empty());
    set(flag).or_else(|| set(env))
}

fn print_version() {
    println!("Drover v{}", env!("CARGO_PKG_VERSION"));
}

/// Client commands are a handful of sequential requests: one thread is plenty.
fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(fut: F) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(fut) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

async fn dispatch(
    command: Command,
    address: String,
    token: Option<String>,
    namespace: Option<String>,
) -> anyhow::Result<i32> {
    let client = tls::api_client(&address)?
        .with_token(token.as_deref())
        .with_namespace(namespace);
    match command {
        Command::Job { cmd } => match cmd {
            JobCommand::Init(a) => job::init(a),
            JobCommand::Run(a) => job::run(&client, a).await,
            JobCommand::Status(a) => job::status(&client, a).await,
            JobCommand::Stop(a) => job::stop(&client, a).await,
            JobCommand::Inspect(a) => job::inspect(&client, a).await,
            JobCommand::Validate(a) => job::validate(a),
            JobCommand::Plan(a) => job::plan(&client, a).await,
            JobCommand::Allocs(a) => job::allocs(&client, a).await,
            JobCommand::History(a) => job::history(&client, a).await,
            JobCommand::Revert(a) => job::revert(&client, a).await,
            JobCommand::Scale(a) => job::scale(&client, a).await,
            JobCommand::Promote(a) => job::promote(&client, a).await,
            JobCommand::Dispatch(a) => job::dispatch(&client, a).await,
            JobCommand::Periodic {
                cmd: PeriodicCommand::Force(a),
            } => job::periodic_force(&client, a).await,
            JobCommand::Eval(a) => system::job_eval(&client, a).await,
        },
        Command::Run(a) => job::run(&client, a).await,
        Command::Init(a) => job::init(a),
        Command::Stop(a) => job::stop(&client, a).await,
        Command::Validate(a) => job::validate(a),
        Command::Plan(a) => job::plan(&client, a).await,
        Command::Inspect(a) => job::inspect(&client, a).await,
        Command::Alloc {
            cmd: AllocCommand::Status(a),
        } => alloc::status(&client, a).await,
        Command::Alloc {
            cmd: AllocCommand::Logs(a),
        } => alloc::logs(&client, a).await,
        Command::Alloc {
            cmd: AllocCommand::Exec(a),
        } => alloc::exec(&client, a).await,
        Command::Alloc {
            cmd: AllocCommand::Restart(a),
        } => alloc::restart(&client, a).await,
        Command::Alloc {
            cmd: AllocCommand::Signal(a),
        } => alloc::signal(&client, a).await,
        Command::Alloc {
            cmd: AllocCommand::Stop(a),
        } => alloc::stop(&client, a).await,
        Command::Node {
            cmd: NodeCommand::Status(a),
        } => node::status(&client, a).await,
        Command::Node {
            cmd: NodeCommand::Drain(a),
        } => drain::drain(&client, a).await,
        Command::Node {
            cmd: NodeCommand::Eligibility(a),
        } => drain::eligibility(&client, a).await,
        Command::Node {
            cmd: NodeCommand::Eval(a),
        } => system::node_eval(&client, a).await,
        Command::System { cmd } => system::run(&client, cmd).await,
        Command::Eval {
            cmd: EvalCommand::Status(a),
        } => eval::status(&client, a).await,
        Command::Status(a) => status(&client, a).await,
        Command::Service { cmd } => service::run(&client, cmd).await,
        Command::Var { cmd } => var::run(&client, cmd).await,
        Command::Acl { cmd } => acl::run(&client, cmd).await,
        Command::Namespace { cmd } => namespace::run(&client, cmd).await,
        Command::Deployment { cmd } => deployment::run(&client, cmd).await,
        Command::Server {
            cmd: operator::ServerCommand::Members,
        } => operator::members(&client).await,
        Command::Operator { cmd } => operator::operator(&client, cmd).await,
        Command::Monitor(a) => agent_monitor::run(&client, a).await,
        Command::Ui(a) => ui::run(&client, a).await,
        Command::Agent(_) | Command::Version | Command::Fmt(_) | Command::Tls { .. } => Ok(0),
    }
}

/// `drover status [ID]`: the job list, or whatever kind of object the ID names.
async fn status(client: &api::Client, args: StatusArgs) -> anyhow::Result<i32> {
    let verbose = args.verbose;
    let Some(id) = args.id else {
        return job::list(client, verbose).await;
    };
    if job::resolve(client, &id).await?.is_some() {
        return job::status(client, job::StatusArgs::for_id(id, verbose)).await;
    }
    if !alloc::matching(client, &id).await?.is_empty() {
        return alloc::status(
            client,
            alloc::StatusArgs {
                verbose,
                stats: false,
                alloc: id,
            },
        )
        .await;
    }
    if !eval::matching(client, &id).await?.is_empty() {
        return eval::status(client, eval::StatusArgs { verbose, eval: id }).await;
    }
    if !node::matching(client, &id).await?.is_empty() {
        return node::status(
            client,
            node::StatusArgs {
                verbose,
                stats: false,
                node: Some(id),
            },
        )
        .await;
    }
    eprintln!("No matches returned for query {id:?}");
    Ok(1)
}

/// A path argument that may be `-` for standard input.
pub fn is_stdin(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            rw(&[
                "drover",
                "job",
                "run",
                "-detach",
                "-address=http://x:1",
                "-var",
                "a=b",
                "f.hcl"
            ]),
            vec![
                "drover",
                "job",
                "run",
                "--detach",
                "--address=http://x:1",
                "--var",
                "a=b",
                "f.hcl"
            ]
        );
    }

    #[test]
    fn double_dash_flags_and_short_flags_are_kept() {
        assert_eq!(
            rw(&["drover", "--verbose", "-h", "-v", "--address", "u"]),
            vec!["drover", "--verbose", "-h", "-v", "--address", "u"]
        );
    }

    #[test]
    fn negative_numbers_lone_dash_and_plain_words_are_kept() {
        assert_eq!(
            rw(&["drover", "job", "run", "-check-index", "-1", "-", "x-y"]),
            vec!["drover", "job", "run", "--check-index", "-1", "-", "x-y"]
        );
    }

    #[test]
    fn nothing_after_double_dash_is_rewritten() {
        assert_eq!(
            rw(&["drover", "-verbose", "--", "-detach"]),
            vec!["drover", "--verbose", "--", "-detach"]
        );
    }

    #[test]
    fn the_program_name_is_never_rewritten() {
        assert_eq!(rw(&["-weird"]), vec!["-weird"]);
    }

    #[test]
    fn help_in_every_spelling_parses() {
        for h in ["-help", "--help", "-h"] {
            let err = Cli::try_parse_from(rewrite_args(
                ["drover", "job", "run", h].iter().map(OsString::from),
            ))
            .unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{h}");
        }
    }

    #[test]
    fn global_address_is_accepted_after_subcommands() {
        let cli = Cli::try_parse_from(rewrite_args(
            ["drover", "job", "status", "-address", "http://h:1", "web"]
                .iter()
                .map(OsString::from),
        ))
        .unwrap();
        assert_eq!(cli.address.as_deref(), Some("http://h:1"));
    }

    #[test]
    fn agent_flags_parse_in_nomad_spelling() {
        let cli = Cli::try_parse_from(rewrite_args(
            [
                "drover",
                "agent",
                "-dev",
                "-bind=0.0.0.0",
                "-http-port",
                "5656",
                "-servers",
                "a:4646",
                "-servers",
                "b:4646",
                "-dc",
                "east",
                "-meta",
                "rack=r1",
                "-meta",
                "zone=z",
                "-node-name",
                "n1",
                "-log-level",
                "DEBUG",
            ]
            .iter()
            .map(OsString::from),
        ))
        .unwrap();
        let Some(Command::Agent(a)) = cli.command else {
            panic!("not an agent command")
        };
        let o = a.into_options();
        assert!(o.dev);
        assert_eq!(o.bind.as_deref(), Some("0.0.0.0"));
        assert_eq!(o.http_port, Some(5656));
        assert_eq!(o.servers, vec!["a:4646", "b:4646"]);
        assert_eq!(o.datacenter.as_deref(), Some("east"));
        assert_eq!(
            o.meta,
            vec![
                ("rack".to_string(), "r1".to_string()),
                ("zone".to_string(), "z".to_string())
            ]
        );
        assert_eq!(o.node_name.as_deref(), Some("n1"));
        assert_eq!(o.log_level.as_deref(), Some("debug"));
    }

    #[test]
    fn agent_leaves_bind_and_port_to_the_config_file_or_defaults() {
        let cli = Cli::try_parse_from(["drover", "agent", "--datacenter", "dc9"]).unwrap();
        let Some(Command::Agent(a)) = cli.command else {
            panic!("not an agent command")
        };
        let o = a.into_options();
        assert_eq!((o.bind, o.http_port), (None, None));
        assert_eq!(o.datacenter.as_deref(), Some("dc9"));
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(rewrite_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn global_namespace_is_accepted_in_both_spellings_anywhere() {
        for args in [
            &["drover", "job", "status", "-namespace", "team-a", "web"][..],
            &["drover", "job", "status", "--namespace=team-a", "web"],
            &["drover", "-namespace=team-a", "alloc", "status", "abc"],
            &["drover", "stop", "-purge", "-namespace=team-a", "web"],
            &["drover", "deployment", "list", "-namespace", "team-a"],
            &["drover", "eval", "status", "-namespace", "team-a", "abc"],
        ] {
            assert_eq!(parse(args).namespace.as_deref(), Some("team-a"), "{args:?}");
        }
    }

    #[test]
    fn var_and_service_keep_their_own_namespace_flag() {
        let cli = parse(&["drover", "var", "get", "-namespace", "team-a", "a/b"]);
        let Some(Command::Var {
            cmd: var::VarCommand::Get(a),
        }) = cli.command
        else {
            panic!("not var get")
        };
        assert_eq!(a.namespace.as_deref(), Some("team-a"));
        // Before the subcommand, the flag is the global one.
        let cli = parse(&["drover", "-namespace", "team-b", "service", "list"]);
        assert_eq!(cli.namespace.as_deref(), Some("team-b"));
    }

    #[test]
    fn the_namespace_flag_wins_over_the_environment() {
        assert_eq!(
            pick_namespace(Some("a".into()), Some("b".into())).as_deref(),
            Some("a")
        );
        assert_eq!(pick_namespace(None, Some("b".into())).as_deref(), Some("b"));
        assert_eq!(pick_namespace(None, None), None);
    }

    #[test]
    fn an_empty_namespace_counts_as_unset() {
        assert_eq!(
            pick_namespace(Some(String::new()), Some("b".into())).as_deref(),
            Some("b")
        );
        assert_eq!(pick_namespace(Some(" ".into()), Some(String::new())), None);
        assert_eq!(pick_namespace(Some("*".into()), None).as_deref(), Some("*"));
    }

    #[test]
    fn an_explicit_address_wins() {
        assert_eq!(resolve_address(Some("http://h:1".into())), "http://h:1");
    }

    #[test]
    fn bad_key_values_are_rejected_with_a_sentence() {
        assert!(parse_key_value("novalue")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parse_key_value("=v").is_err());
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
    }
}
