//! Drover's web UI: an axum `Router` mounted at `/ui` by the server.
//!
//! This is the placeholder of the walking skeleton: one server-rendered page that says
//! what is running and links to the API. The full UI is its own piece of work; it will
//! grow here as server-rendered pages with embedded assets (no npm build step).

use axum::response::Html;
use axum::routing::get;
use axum::Router;

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drover</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1d2430; }
h1 { font-size: 1.6rem; } code { background: #f0f2f5; padding: 0 .3rem; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #e3e6ea; }
</style>
</head>
<body>
<h1>Drover</h1>
<p>A workload orchestrator that speaks Nomad's language. Version <code>VERSION</code>.</p>
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>ID</th><th>Type</th><th>Status</th></tr></thead><tbody></tbody></table>
<p>API: <a href="/v1/jobs">/v1/jobs</a> · <a href="/v1/nodes">/v1/nodes</a> · <a href="/v1/allocations">/v1/allocations</a> · <a href="/v1/agent/self">/v1/agent/self</a></p>
<script>
fetch('/v1/jobs').then(r => r.json()).then(jobs => {
  const body = document.querySelector('#jobs tbody');
  for (const j of jobs) {
    const tr = document.createElement('tr');
    for (const v of [j.ID, j.Type, j.Status]) { const td = document.createElement('td'); td.textContent = v; tr.appendChild(td); }
    body.appendChild(tr);
  }
}).catch(() => {});
</script>
</body>
</html>
"#;

async fn index() -> Html<String> {
    Html(INDEX.replace("VERSION", env!("CARGO_PKG_VERSION")))
}

/// The UI's routes, generic over the host's state so it can be nested anywhere.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "the web UI only answers GET",
            )
        })
}
