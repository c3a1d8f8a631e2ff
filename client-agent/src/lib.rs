//! Drover's client agent: fingerprints the node, registers it with the servers and
//! heartbeats, watches the node's allocations with a blocking query, runs each
//! allocation's tasks through a driver, and reports their state back in batches.
//!
//! The agent only talks HTTP to the servers (through [`api::Client`]); it never sees Raft.
//! It keeps local state under its data dir so that a restarted agent reattaches to the
//! tasks that are still running instead of restarting them.

pub mod alloc_runner;
pub mod allocdir;
pub mod artifact;
pub mod cgroups;
pub mod config;
pub mod driver;
pub mod events;
pub mod fingerprint;
pub mod handle;
pub mod http;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod payload;
pub mod ports;
pub mod reporter;
pub mod restart;
pub mod services;
pub mod state;
pub mod stats;
pub mod task_runner;
pub mod taskenv;
pub mod template;

pub use config::AgentConfig;
pub mod agent;

pub use agent::{run, run_with};
pub use handle::ClientHandle;
pub use http::client_router;
