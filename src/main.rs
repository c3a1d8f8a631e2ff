//! `drover`: the command line, the agent, and (through the agent) the HTTP API and UI.

mod agent;
mod agent_config;
mod cli;

fn main() {
    let args = cli::rewrite_args(std::env::args_os());
    std::process::exit(cli::run(args));
}
