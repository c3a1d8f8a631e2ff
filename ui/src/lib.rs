//! Drover's web UI: server-rendered pages (maud) mounted at `/ui` by the server.
//!
//! Every page reads the server's state snapshot directly (`Extension<server::http::AppState>`,
//! added by `server::http::router`), is readable without JavaScript, and escapes all user
//! text. Actions are plain form POSTs that run the `/v1` handlers themselves (see
//! [`actions`]), so they get the same validation, forwarding and errors. One CSS and one JS
//! file are embedded (`assets`); `live` is the one server-sent-events stream per tab that
//! tells the script to re-fetch the page when the state moves.

pub mod actions;
pub mod assets;
pub mod fmt;
pub mod layout;
pub mod live;
pub mod pages;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

/// The server handle every page reads from.
pub type Srv = axum::Extension<server::http::AppState>;

/// No inline scripts or styles: only the embedded files under `/ui/assets/` run.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The UI's routes. The host nests them at `/ui` and adds the server handle as an
/// `Extension` (`server::http::router` does both).
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/jobs") }))
        .route("/assets/{name}", get(assets::serve))
        .route("/live", get(live::stream))
        .route("/search", get(pages::search::search))
        .route("/jobs", get(pages::jobs::list))
        .route("/jobs/run", get(pages::run::show).post(pages::run::submit))
        .route("/jobs/{id}", get(pages::job::show))
        .route("/jobs/{id}/edit", get(pages::run::edit))
        .route("/deployments/{id}/{op}", post(actions::deployment))
        .route("/jobs/{id}/stop", post(actions::stop_job))
        .route("/allocations", get(pages::allocs::list))
        .route("/allocations/{id}", get(pages::alloc::show))
        .route("/allocations/{id}/fs", get(pages::files::show))
        .route("/allocations/{id}/exec", post(actions::alloc_exec))
        .route("/allocations/{id}/{op}", post(actions::alloc_action))
        .route("/allocations/{id}/{task}/logs", get(pages::logs::show))
        .route("/clients", get(pages::clients::list))
        .route("/clients/{id}", get(pages::clients::show))
        .route("/clients/{id}/eligibility", post(actions::eligibility))
        .route("/clients/{id}/drain", post(actions::drain))
        .route("/servers", get(pages::servers::list))
        .route("/topology", get(pages::topology::show))
        .route("/evaluations", get(pages::evals::list))
        .route("/evaluations/{id}", get(pages::evals::show))
        .fallback(pages::not_found)
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "this address of the web UI does not take that method: pages answer GET, \
                 actions are POSTs to their own addresses",
            )
        })
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn(carry_token))
}

tokio::task_local! {
    /// The ACL token of the browser request being served (header or `drover-token`
    /// cookie): the `/v1` calls a page or an action makes on the user's behalf carry it,
    /// so the UI can do exactly what its user's token may.
    pub(crate) static REQUEST_TOKEN: Option<String>;
}

async fn carry_token(req: Request, next: Next) -> Response {
    let token = server::http::auth::secret_of(req.headers())
        .or_else(|| server::http::auth::cookie_token(req.headers()));
    REQUEST_TOKEN.scope(token, next.run(req)).await
}

/// Headers on every UI answer: the CSP, no sniffing, no framing, no referrer off-site.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// A rendered page as an HTML response (not cached: it is a snapshot).
pub fn html(markup: maud::Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}
