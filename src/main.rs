//! `drover`: the command line, the agent, and (through the agent) the HTTP API and UI.

mod agent;
mod agent_config;
mod cli;
mod monitor_layer;

/// mimalloc instead of glibc's malloc: at C100K glibc's allocator (consolidation and
/// free-list walks) was a fifth of a follower's CPU, and its per-thread arenas kept
/// freed memory as RSS (README, "Scale").
/// `--features system-alloc` keeps glibc's, for heap profilers that hook malloc.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The client agent fetches artifacts in an unprivileged child of this binary.
    if let Some(code) = client_agent::artifact::run_if_sandbox_child() {
        std::process::exit(code);
    }
    let args = cli::rewrite_args(std::env::args_os());
    std::process::exit(cli::run(args));
}
