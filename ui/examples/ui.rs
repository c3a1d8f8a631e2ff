//! Serves every page of the web UI rendered over the synthetic state the bench uses
//! (`benches/synthetic.rs`: 1,000 jobs x 10 allocations + one job of 10,000, 5,000
//! nodes), with the real stylesheet and script, so a browser can measure first paint and
//! DOM size (`tests/ui/_measure.py`). Each page is rendered per request, as the handlers
//! do; `/ui/live` answers 404, so the script just says it is reconnecting.
//!
//! Run: `cargo run --release -p ui --example ui -- 7777` then
//!      `/usr/bin/python3 tests/ui/_measure.py http://127.0.0.1:7777`

#[path = "../benches/synthetic.rs"]
mod synthetic;

use axum::extract::{OriginalUri, Path};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        None => 7777,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("usage: ui [PORT]: the port must be a number ({e})");
            std::process::exit(2);
        }
    };
    let state: &'static server::state::StateStore =
        Box::leak(Box::new(synthetic::synthetic_state()));
    let pages = Arc::new(synthetic::pages(state));
    // The index lists each page's URL, one a line, for the measuring script.
    let list: String = pages
        .iter()
        .map(|(name, url, _)| format!("{url}\t{name}\n"))
        .collect();
    let app = Router::new()
        .route("/pages", get(move || async move { list }))
        .route(
            "/ui/assets/{name}",
            get(|p: Path<String>| ui::assets::serve(p)),
        )
        .fallback(move |OriginalUri(uri): OriginalUri| {
            let pages = pages.clone();
            async move {
                let want = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                match pages.iter().find(|(_, url, _)| url == want) {
                    Some((_, _, render)) => ui::html(maud::PreEscaped(render())).into_response(),
                    None => (StatusCode::NOT_FOUND, "no such synthetic page").into_response(),
                }
            }
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        });
    println!("serving the synthetic pages on http://127.0.0.1:{port} (their list: /pages)");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
