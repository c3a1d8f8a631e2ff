//! Launching children of template jobs: `job dispatch` (parameterized) and
//! `job periodic force` (periodic).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest dispatch payload Nomad accepts (16 KiB, before base64).
pub const DISPATCH_PAYLOAD_SIZE_LIMIT: usize = 16 * 1024;

/// `PUT /v1/job/:id/dispatch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDispatchRequest {
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    pub meta: BTreeMap<String, String>,
    pub id_prefix_template: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDispatchResponse {
    #[serde(rename = "DispatchedJobID")]
    pub dispatched_job_id: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_create_index: u64,
    pub index: u64,
}

/// `PUT /v1/job/:id/periodic/force`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeriodicForceResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub index: u64,
}

/// Everything wrong with dispatching `parameterized` with these meta keys and a payload
/// of `payload_len` bytes, in Nomad's sentences.
pub fn dispatch_problems(
    p: &crate::ParameterizedJobConfig,
    meta: &BTreeMap<String, String>,
    payload_len: usize,
) -> Vec<String> {
    let mut errs = Vec::new();
    match p.payload.as_str() {
        "forbidden" if payload_len > 0 => {
            errs.push("Payload is not allowed for this job".to_string())
        }
        "required" if payload_len == 0 => errs.push("Payload is required for this job".to_string()),
        _ => {}
    }
    if payload_len > DISPATCH_PAYLOAD_SIZE_LIMIT {
        errs.push(format!(
            "Payload exceeds maximum size; {payload_len} > {DISPATCH_PAYLOAD_SIZE_LIMIT}"
        ));
    }
    let unpermitted: Vec<&str> = meta
        .keys()
        .filter(|k| !p.meta_required.contains(k) && !p.meta_optional.contains(k))
        .map(|k| k.as_str())
        .collect();
    if !unpermitted.is_empty() {
        errs.push(format!(
            "Dispatch request included unpermitted metadata keys: {unpermitted:?}"
        ));
    }
    let missing: Vec<&str> = p
        .meta_required
        .iter()
        .filter(|k| !meta.contains_key(*k))
        .map(|k| k.as_str())
        .collect();
    if !missing.is_empty() {
        errs.push(format!(
            "Dispatch did not provide required meta keys: {missing:?}"
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParameterizedJobConfig;

    fn cfg(payload: &str) -> ParameterizedJobConfig {
        ParameterizedJobConfig {
            payload: payload.into(),
            meta_required: vec!["user".into()],
            meta_optional: vec!["note".into()],
        }
    }

    #[test]
    fn dispatch_validation() {
        let mut meta = BTreeMap::new();
        meta.insert("user".to_string(), "ada".to_string());
        assert!(dispatch_problems(&cfg("optional"), &meta, 3).is_empty());
        assert!(dispatch_problems(&cfg("optional"), &meta, 0).is_empty());
        assert_eq!(
            dispatch_problems(&cfg("forbidden"), &meta, 3),
            ["Payload is not allowed for this job"]
        );
        assert_eq!(
            dispatch_problems(&cfg("required"), &meta, 0),
            ["Payload is required for this job"]
        );
        assert_eq!(
            dispatch_problems(&cfg("optional"), &meta, DISPATCH_PAYLOAD_SIZE_LIMIT + 1).len(),
            1
        );
        let empty = BTreeMap::new();
        let e = dispatch_problems(&cfg("optional"), &empty, 0);
        assert_eq!(
            e,
            ["Dispatch did not provide required meta keys: [\"user\"]"]
        );
        meta.insert("color".into(), "red".into());
        let e = dispatch_problems(&cfg("optional"), &meta, 0);
        assert!(
            e[0].contains("unpermitted metadata keys: [\"color\"]"),
            "{e:?}"
        );
    }
}
