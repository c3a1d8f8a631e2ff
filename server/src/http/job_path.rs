//! Job IDs may contain `/` (periodic and dispatched children are `<parent>/periodic-<t>`
//! and `<parent>/dispatch-<t>-<hex>`), and clients such as python-nomad put them in the
//! URL unencoded: `GET /v1/job/batch/periodic-1700000000`. Nomad's router takes what
//! follows `/v1/job/` as the ID unless it ends with a known sub-resource; this does the
//! same by percent-encoding the ID's slashes before routing, so `{id}` captures it whole.

/// The sub-resources of `/v1/job/{id}/...`, longest first where one ends another.
const SUFFIXES: &[&str] = &[
    "periodic/force",
    "allocations",
    "evaluations",
    "deployments",
    "deployment",
    "dispatch",
    "evaluate",
    "services",
    "versions",
    "summary",
    "revert",
    "stable",
    "scale",
    "plan",
];

/// The path to route instead of `path`, when `path` names a job whose ID holds a `/`.
pub fn normalize(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/job/")?;
    if !rest.contains('/') {
        return None;
    }
    let (id, suffix) = SUFFIXES
        .iter()
        .find_map(|s| {
            let id = rest.strip_suffix(s)?.strip_suffix('/')?;
            (!id.is_empty()).then_some((id, Some(*s)))
        })
        .unwrap_or((rest, None));
    if !id.contains('/') {
        return None;
    }
    let id = id.replace('/', "%2F");
    Some(match suffix {
        Some(s) => format!("/v1/job/{id}/{s}"),
        None => format!("/v1/job/{id}"),
    })
}

/// Rewrites the request's URI in place (query kept) when [`normalize`] says so.
pub fn rewrite<B>(req: &mut axum::http::Request<B>) {
    let Some(path) = normalize(req.uri().path()) else {
        return;
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = pq.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn a_child_job_id_with_a_slash_is_kept_whole() {
        assert_eq!(
            normalize("/v1/job/batch/periodic-1700000000").as_deref(),
            Some("/v1/job/batch%2Fperiodic-1700000000")
        );
        assert_eq!(
            normalize("/v1/job/batch/dispatch-1-abcd/allocations").as_deref(),
            Some("/v1/job/batch%2Fdispatch-1-abcd/allocations")
        );
        assert_eq!(
            normalize("/v1/job/a/b/periodic/force").as_deref(),
            Some("/v1/job/a%2Fb/periodic/force")
        );
    }

    #[test]
    fn plain_job_routes_are_left_alone() {
        for p in [
            "/v1/job/web",
            "/v1/job/web/allocations",
            "/v1/job/web/periodic/force",
            "/v1/jobs",
            "/v1/job/batch%2Fperiodic-1",
            "/v1/allocation/x/y",
        ] {
            assert_eq!(normalize(p), None, "{p}");
        }
    }
}
