//! Drover's data model and its typed HTTP client.
//!
//! The types serialise to the same PascalCase JSON as Nomad's `/v1` API, so job files,
//! scripts and client libraries written for Nomad keep working. Durations are integer
//! nanoseconds, as in Nomad's JSON. Every struct accepts partial JSON (`#[serde(default)]`),
//! because clients such as python-nomad send only the fields they care about.

pub mod alloc;
pub mod alloc_resources;
#[cfg(feature = "client")]
pub mod client;
pub mod deployment;
pub mod diff;
pub mod dispatch;
pub mod duration;
pub mod eval;
pub mod job;
pub mod namespace;
pub mod node;
pub mod operator;
pub mod plan;
pub mod service;
#[cfg(feature = "client")]
pub mod url;
pub mod variable;
pub mod wire;

pub use alloc::*;
pub use alloc_resources::*;
#[cfg(feature = "client")]
pub use client::{ApiError, Client, QueryMeta, QueryOptions};
pub use compact_str::CompactString;
pub use deployment::*;
pub use diff::{DesiredUpdates, DiffType, JobDiff, JobPlanRequest, JobPlanResponse};
pub use dispatch::*;
pub use eval::*;
pub use job::*;
pub use namespace::*;
pub use node::*;
pub use operator::*;
pub use plan::*;
pub use service::*;
pub use variable::*;
pub use wire::*;

/// Seconds to nanoseconds, the unit of every duration in Nomad's JSON.
pub const fn secs(s: i64) -> i64 {
    s * 1_000_000_000
}

/// The namespace every object lives in unless it says otherwise.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The region every job lives in unless it says otherwise.
pub const DEFAULT_REGION: &str = "global";

/// A fresh random identifier in Nomad's format (a UUID string).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The first eight characters of an identifier, as Nomad's CLI prints them.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
