//! `GET /ui/live?index=N`: the one server-sent-events stream a tab holds. It sends a
//! `change` event (data: the new state index) as soon as the applied state moves past the
//! last index it told, waking on the server's state watch (the same one blocking queries
//! use); the script then re-fetches its page. Bursts are coalesced (at most one event per
//! `COALESCE`), and the stream ends when the server shuts down.

use crate::Srv;
use axum::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// Changes closer together than this become one event.
const COALESCE: Duration = Duration::from_millis(250);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LiveQuery {
    pub index: u64,
}

struct Watch {
    state: tokio::sync::watch::Receiver<std::sync::Arc<server::state::StateStore>>,
    closed: server::events::Subscription,
    told: u64,
    first: bool,
}

pub async fn stream(
    axum::Extension(srv): Srv,
    Query(q): Query<LiveQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let closed = srv.events.subscribe(
        u64::MAX,
        server::events::Filter::parse([], None).expect("the default filter parses"),
    );
    let w = Watch {
        state: srv.state.clone(),
        closed,
        told: q.index,
        first: true,
    };
    let s = futures_util::stream::unfold(w, |mut w| async move {
        if w.first {
            w.first = false;
            // Tell the script the stream is up (and how often to retry when it is not).
            let hello = Event::default()
                .event("hello")
                .retry(Duration::from_secs(2))
                .data(w.told.to_string());
            return Some((Ok(hello), w));
        }
        loop {
            if w.closed.closed() {
                return None;
            }
            let now = w.state.borrow_and_update().index();
            if now > w.told {
                w.told = now;
                let ev = Event::default().event("change").data(now.to_string());
                return Some((Ok(ev), w));
            }
            tokio::select! {
                r = w.state.changed() => {
                    if r.is_err() {
                        return None;
                    }
                    tokio::time::sleep(COALESCE).await;
                }
                _ = w.closed.changed() => {}
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
