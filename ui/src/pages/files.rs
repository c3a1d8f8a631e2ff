//! `/ui/allocations/<id>/fs?path=...`: a read-only browser of the allocation directory.
//! Directories are listed through `/v1/client/fs/ls`, small files shown through
//! `/v1/client/fs/cat` (the first 64 KiB of a larger one through `fs/readat`), all run
//! through the server's router, so the agent's checks (no `..`, no secrets, no links out)
//! decide; its refusals are shown as sentences.

use crate::actions::call_v1;
use crate::fmt;
use crate::layout::{self, Nav};
use crate::Srv;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

/// Files up to this size are shown whole; larger ones are cut here.
pub const SHOW_BYTES: u64 = 64 * 1024;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct FsQuery {
    pub path: Option<String>,
}

/// What the agent said about a path.
#[derive(Debug)]
pub enum FsView {
    Dir(Vec<serde_json::Value>),
    File { size: u64, text: String },
    Error { status: StatusCode, message: String },
}

/// `/a/b/` -> `/a/b`; empty -> `/`.
pub fn clean(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

pub fn fs_href(alloc: &str, path: &str) -> String {
    format!(
        "{}/fs{}",
        fmt::alloc_href(alloc),
        fmt::query(&[("path", path)])
    )
}

/// An agent refusal in a sentence.
pub fn error_sentence(status: StatusCode, message: &str, path: &str) -> String {
    let message = message.trim();
    match status {
        StatusCode::FORBIDDEN => {
            format!("The agent refuses to show {path}: {message}. Secrets directories and links that leave the allocation directory are never shown.")
        }
        StatusCode::NOT_FOUND => format!("{path} does not exist here: {message}."),
        StatusCode::BAD_REQUEST => format!("{path} is not a path the agent accepts: {message}."),
        _ => format!("The agent could not read {path} ({status}): {message}."),
    }
}

async fn view(srv: &server::http::AppState, alloc: &str, path: &str) -> FsView {
    let q = fmt::query(&[("path", path)]);
    let a = fmt::enc(alloc);
    let get = |p: String| async move { call_v1(srv, Method::GET, &p, None).await };
    let fail = |(status, message): (StatusCode, String)| FsView::Error { status, message };
    let (status, body) = get(format!("/v1/client/fs/stat/{a}{q}")).await;
    if !status.is_success() {
        return fail((status, body));
    }
    let info: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if info["IsDir"].as_bool().unwrap_or(false) {
        let (status, body) = get(format!("/v1/client/fs/ls/{a}{q}")).await;
        if !status.is_success() {
            return fail((status, body));
        }
        let mut entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
        entries.sort_by_key(|e| {
            (
                !e["IsDir"].as_bool().unwrap_or(false),
                e["Name"].as_str().unwrap_or("").to_string(),
            )
        });
        return FsView::Dir(entries);
    }
    let size = info["Size"].as_u64().unwrap_or(0);
    let url = if size <= SHOW_BYTES {
        format!("/v1/client/fs/cat/{a}{q}")
    } else {
        let q = fmt::query(&[
            ("path", path),
            ("offset", "0"),
            ("limit", &SHOW_BYTES.to_string()),
        ]);
        format!("/v1/client/fs/readat/{a}{q}")
    };
    let (status, text) = get(url).await;
    if !status.is_success() {
        return fail((status, text));
    }
    FsView::File { size, text }
}

pub async fn show(
    axum::Extension(srv): Srv,
    Path(id): Path<String>,
    Query(q): Query<FsQuery>,
) -> Response {
    let state = srv.snapshot();
    let Some(a) = super::alloc::find_alloc(&state, &id) else {
        return super::problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Allocation not found",
            &format!("There is no allocation {id:?} (or the prefix matches more than one)."),
        );
    };
    let path = clean(q.path.as_deref().unwrap_or("/"));
    let v = view(&srv, &a.id, &path).await;
    crate::html(layout::page(
        &format!("Files of {}", fmt::short(&a.id)),
        Nav::Jobs,
        state.index(),
        render(&a.id, &path, &v),
    ))
}

pub fn render(alloc: &str, path: &str, v: &FsView) -> Markup {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    html! {
        h1 { "Files of allocation " a href=(fmt::alloc_href(alloc)) { code { (fmt::short(alloc)) } } }
        nav aria-label="Path" class="crumbs" {
            a href=(fs_href(alloc, "/")) { "alloc dir" }
            @for (i, p) in parts.iter().enumerate() {
                " / "
                @if i + 1 == parts.len() { strong { (p) } }
                @else { a href=(fs_href(alloc, &format!("/{}", parts[..=i].join("/")))) { (p) } }
            }
        }
        @match v {
            FsView::Error { status, message } => (layout::notice("error", &error_sentence(*status, message, path))),
            FsView::Dir(entries) => {
                table {
                    caption { "Contents of " (path) }
                    (fmt::thead(&["Name", "Size", "Mode", "Modified"]))
                    tbody {
                        @if !parts.is_empty() {
                            tr { th scope="row" { a href=(fs_href(alloc, &format!("/{}", parts[..parts.len() - 1].join("/")))) { ".. (up)" } } td {} td {} td {} }
                        }
                        @for e in entries {
                            @let name = e["Name"].as_str().unwrap_or("?");
                            @let dir = e["IsDir"].as_bool().unwrap_or(false);
                            tr {
                                th scope="row" {
                                    a href=(fs_href(alloc, &format!("{}/{name}", path.trim_end_matches('/')))) {
                                        (name) @if dir { "/" }
                                    }
                                }
                                td { @if dir { "directory" } @else { (e["Size"].as_u64().unwrap_or(0)) " B" } }
                                td { code { (e["FileMode"].as_str().unwrap_or("")) } }
                                td { (e["ModTime"].as_str().unwrap_or("")) }
                            }
                        }
                        @if entries.is_empty() { tr { td colspan="4" { "The directory is empty." } } }
                    }
                }
            }
            FsView::File { size, text } => {
                p {
                    (size) " bytes"
                    @if *size > SHOW_BYTES { " — only the first " (SHOW_BYTES / 1024) " KiB are shown" }
                    "."
                }
                pre class="file" tabindex="0" aria-label=(format!("Contents of {path}")) { (text) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_link_escaped_paths_and_refusals_are_sentences() {
        assert_eq!(clean("//a//b/"), "/a/b");
        assert_eq!(clean(""), "/");
        let entries = vec![
            serde_json::json!({"Name": "web", "IsDir": true, "Size": 4096, "FileMode": "drwxr-xr-x"}),
            serde_json::json!({"Name": "<x>&y", "IsDir": false, "Size": 12, "FileMode": "-rw-r--r--"}),
        ];
        let html = render("a1", "/alloc", &FsView::Dir(entries)).into_string();
        assert!(
            html.contains("href=\"/ui/allocations/a1/fs?path=%2Falloc%2Fweb\""),
            "{html}"
        );
        assert!(html.contains("path=%2Falloc%2F%3Cx%3E%26y"), "{html}");
        assert!(html.contains("&lt;x&gt;&amp;y"), "{html}");
        assert!(!html.contains("<x>"), "{html}");
        let e = FsView::Error {
            status: StatusCode::FORBIDDEN,
            message: "Reading secret file prohibited: web/secrets".into(),
        };
        let html = render("a1", "/web/secrets", &e).into_string();
        assert!(
            html.contains("The agent refuses to show /web/secrets"),
            "{html}"
        );
        let f = FsView::File {
            size: 100_000,
            text: "<script>".into(),
        };
        let html = render("a1", "/alloc/logs/x", &f).into_string();
        assert!(
            html.contains("&lt;script&gt;") && html.contains("first 64 KiB"),
            "{html}"
        );
    }
}
