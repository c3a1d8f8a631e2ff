//! The UI's one stylesheet and one script, embedded in the binary and served at
//! `/ui/assets/app-<hash>.css|js`. The hash of the content is in the name, so they can be
//! cached for a year: a new build changes the name.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

pub const CSS: &str = include_str!("../assets/app.css");
pub const JS: &str = include_str!("../assets/app.js");

/// FNV-1a over the bytes, computed at compile time.
const fn fnv(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut h: u64 = 0xcbf29ce484222325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x100000001b3);
        i += 1;
    }
    h
}

const CSS_HASH: u64 = fnv(CSS);
const JS_HASH: u64 = fnv(JS);

fn names() -> &'static (String, String) {
    static N: OnceLock<(String, String)> = OnceLock::new();
    N.get_or_init(|| {
        (
            format!("app-{:012x}.css", CSS_HASH & 0xffff_ffff_ffff),
            format!("app-{:012x}.js", JS_HASH & 0xffff_ffff_ffff),
        )
    })
}

/// Where the stylesheet is served (its name carries the content hash).
pub fn css_path() -> String {
    format!("/ui/assets/{}", names().0)
}

/// Where the script is served.
pub fn js_path() -> String {
    format!("/ui/assets/{}", names().1)
}

pub async fn serve(Path(name): Path<String>) -> Response {
    let (css, js) = names();
    let (body, kind) = if name == *css {
        (CSS, "text/css; charset=utf-8")
    } else if name == *js {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_carry_their_content_hash() {
        assert!(css_path().starts_with("/ui/assets/app-") && css_path().ends_with(".css"));
        assert!(js_path().ends_with(".js"));
        assert_ne!(CSS_HASH, JS_HASH);
    }
}
