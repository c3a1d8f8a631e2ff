//! Jobs in the API's JSON form, `{"Job": {...}}` or a bare job object, as `nomad job run
//! -output` writes them. Nulls mean "not set", as in Nomad's API.

use crate::diag::{Diagnostic, Diagnostics, SourceMap};
use serde_json::Value;

/// Parses a JSON job and returns it with the offset its messages should point at.
pub fn parse(src: &str, file: &str) -> Result<(api::Job, usize), Diagnostics> {
    let sm = SourceMap::new(file, src);
    let mut value: Value = serde_json::from_str(src).map_err(|e| Diagnostic {
        file: file.to_string(),
        line: e.line().max(1),
        column: e.column().max(1),
        message: format!("invalid JSON: {e}"),
    })?;
    let mut job_offset = 0;
    if let Some(inner) = value.get_mut("Job").filter(|j| j.is_object()) {
        job_offset = src.find("\"Job\"").unwrap_or(0);
        value = inner.take();
    }
    if !value.is_object() {
        return Err(sm
            .at(
                Some(0..0),
                "expected a JSON object with the job, or {\"Job\": {...}}",
            )
            .into());
    }
    api::wire::strip_nulls(&mut value);
    // A group without a count runs one allocation, as in Nomad.
    if let Some(Value::Array(groups)) = value.get_mut("TaskGroups") {
        for g in groups.iter_mut().filter_map(Value::as_object_mut) {
            g.entry("Count").or_insert(Value::from(1));
        }
    }
    let job: api::Job = serde_json::from_value(value)
        .map_err(|e| sm.at(Some(job_offset..job_offset), format!("invalid job: {e}")))?;
    Ok((job, job_offset))
}
