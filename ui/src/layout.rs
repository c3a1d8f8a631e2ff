//! The page shell: landmarks (banner, navigation, search, main, contentinfo), the header
//! search box, the live indicator, and the embedded stylesheet and script.

use crate::assets;
use maud::{html, Markup, DOCTYPE};

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Jobs,
    Clients,
    Servers,
    Evaluations,
    Topology,
    Allocations,
    None,
}

const SECTIONS: [(Nav, &str, &str); 6] = [
    (Nav::Jobs, "/ui/jobs", "Jobs"),
    (Nav::Allocations, "/ui/allocations", "Allocations"),
    (Nav::Clients, "/ui/clients", "Clients"),
    (Nav::Servers, "/ui/servers", "Servers"),
    (Nav::Evaluations, "/ui/evaluations", "Evaluations"),
    (Nav::Topology, "/ui/topology", "Topology"),
];

/// A whole page around `body`, rendered from the snapshot at `index`. The script swaps
/// `<main>`'s contents when the state moves past `data-index`.
pub fn page(title: &str, nav: Nav, index: u64, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Drover" }
                link rel="stylesheet" href=(assets::css_path());
                script src=(assets::js_path()) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    a class="brand" href="/ui/jobs" { "Drover" }
                    nav aria-label="Sections" {
                        ul {
                            @for (n, href, label) in SECTIONS {
                                li {
                                    @if n == nav {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form class="search" role="search" method="get" action="/ui/search" {
                        label for="q" { "Go to ID or name" }
                        input id="q" name="q" type="search" placeholder="job, node, alloc or eval ID prefix";
                        button type="submit" { "Go" }
                    }
                    p id="live" class="live" role="status" data-state="static" {
                        "Snapshot at index " (index) " (reload to refresh)"
                    }
                }
                main id="main" tabindex="-1" data-index=(index) data-title=(format!("{title} · Drover")) {
                    (body)
                }
                footer {
                    "Drover " (env!("CARGO_PKG_VERSION")) " · "
                    a href="/v1/agent/self" { "API" }
                }
            }
        }
    }
}

/// A notice or error box at the top of `<main>`.
pub fn notice(kind: &str, text: &str) -> Markup {
    let class = if kind == "error" {
        "notice error"
    } else {
        "notice"
    };
    html! { p class=(class) role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}
