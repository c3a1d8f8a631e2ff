//! Small formatting helpers the pages share: URLs, short ids, times, status words, paging.

use maud::{html, Markup};

/// `s` percent-encoded for one path segment or query value (RFC 3986 unreserved kept).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string (`?a=1&b=2`) of the non-empty pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A job's page: `/ui/jobs/<id>`, or `/ui/jobs/<id>@<namespace>` outside `default`.
pub fn job_href(ns: &str, id: &str) -> String {
    if ns.is_empty() || ns == api::DEFAULT_NAMESPACE {
        format!("/ui/jobs/{}", enc(id))
    } else {
        format!("/ui/jobs/{}@{}", enc(id), enc(ns))
    }
}

pub fn alloc_href(id: &str) -> String {
    format!("/ui/allocations/{}", enc(id))
}

pub fn node_href(id: &str) -> String {
    format!("/ui/clients/{}", enc(id))
}

/// The first 8 characters of an id (Nomad's short form).
pub fn short(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

/// Nanoseconds since the epoch as UTC text, or "never" for 0.
pub fn time(nanos: i64) -> String {
    if nanos <= 0 {
        return "never".into();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "never".into(),
    }
}

/// A duration in nanoseconds as `1h2m3s`.
pub fn duration(nanos: i64) -> String {
    let mut s = nanos.max(0) / 1_000_000_000;
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("h", 3600), ("m", 60), ("s", 1)] {
        if s >= n {
            out.push_str(&format!("{}{unit}", s / n));
            s %= n;
        }
    }
    out
}

/// A status word with a class for colour; the word itself is always shown.
pub fn status(word: &str) -> Markup {
    let class = format!("st st-{}", css_word(word));
    html! { span class=(class) { (word) } }
}

/// A status word reduced to `[a-z-]` for a class name.
fn css_word(word: &str) -> String {
    word.chars()
        .take(24)
        .map(|c| {
            if c.is_ascii_alphabetic() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A 1-based page number from the query (`page=N`), at least 1.
pub fn page_number(raw: &Option<String>) -> usize {
    raw.as_deref()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

/// The slice of `items` on page `page` (1-based) of `per`, and how many pages there are.
pub fn paged<T>(items: &[T], page: usize, per: usize) -> (&[T], usize) {
    let pages = items.len().div_ceil(per).max(1);
    let page = page.min(pages);
    let start = (page - 1) * per;
    let end = (start + per).min(items.len());
    (&items[start.min(end)..end], pages)
}

/// A table's header row: one `th scope="col"` a column. A name written `#Count` is a
/// number column: shown as `Count`, right-aligned (`class="num"`).
pub fn thead(cols: &[&str]) -> Markup {
    html! {
        thead { tr {
            @for c in cols {
                @if let Some(num) = c.strip_prefix('#') {
                    th scope="col" class="num" { (num) }
                } @else {
                    th scope="col" { (c) }
                }
            }
        } }
    }
}

/// Previous/next links for a paged table. `link(n)` is the URL of page `n`.
pub fn pager(label: &str, page: usize, pages: usize, link: impl Fn(usize) -> String) -> Markup {
    let page = page.min(pages).max(1);
    html! {
        @if pages > 1 {
            nav class="pager" aria-label=(format!("{label} pages")) {
                @if page > 1 {
                    a href=(link(page - 1)) rel="prev" { "← Previous" }
                }
                span { "Page " (page) " of " (pages) }
                @if page < pages {
                    a href=(link(page + 1)) rel="next" { "Next →" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_in_links() {
        assert_eq!(job_href("default", "a b/<c>"), "/ui/jobs/a%20b%2F%3Cc%3E");
        assert_eq!(job_href("prod", "web"), "/ui/jobs/web@prod");
        assert_eq!(
            query(&[("q", "a&b"), ("page", ""), ("x", "1")]),
            "?q=a%26b&x=1"
        );
    }

    #[test]
    fn paging_clamps_to_the_last_page() {
        let v: Vec<u32> = (0..55).collect();
        let (p, pages) = paged(&v, 3, 25);
        assert_eq!((p.len(), pages, p[0]), (5, 3, 50));
        let (p, _) = paged(&v, 9, 25);
        assert_eq!(p[0], 50);
        let empty: Vec<u32> = vec![];
        assert_eq!(paged(&empty, 1, 25), (&[][..], 1));
    }

    #[test]
    fn durations_and_short_ids_read_like_nomads() {
        assert_eq!(duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(short("0123456789abcdef"), "01234567");
        assert_eq!(short("abc"), "abc");
    }
}
