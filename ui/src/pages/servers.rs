//! `/ui/servers`: the Raft members as this server sees them: leader, voters, addresses,
//! and how long ago this server heard from the leader.

use crate::layout::{self, Nav};
use crate::Srv;
use axum::response::Response;
use maud::html;

pub async fn list(axum::Extension(srv): Srv) -> Response {
    let state = srv.snapshot();
    let m = srv.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let members: Vec<(u64, String, String, String)> = membership
        .nodes()
        .map(|(id, n)| (*id, n.name.clone(), n.http_addr.clone(), n.rpc_addr.clone()))
        .collect();
    let leader = m.current_leader;
    // On the leader: the last log index each member has matched (replication progress).
    let matched: std::collections::BTreeMap<u64, Option<u64>> = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.as_ref().map(|l| l.index)))
                .collect()
        })
        .unwrap_or_default();
    let contact = srv.last_contact_ms();
    let body = html! {
        h1 { "Servers" }
        p {
            @match leader {
                Some(_) => { "This server is " (if srv.is_leader() { "the leader" } else { "a follower" }) "." }
                None => { strong { "There is no leader: writes wait for an election." } }
            }
            @if !srv.is_leader() && contact < u64::MAX / 4 { " Last contact with the leader " (contact) " ms ago." }
            " Raft term " (m.current_term) ", applied index " (state.index()) "."
        }
        table {
            caption { (members.len()) " server" (if members.len() == 1 { "" } else { "s" }) }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Raft ID" } th scope="col" { "HTTP address" }
                th scope="col" { "RPC address" } th scope="col" { "Role" } th scope="col" { "Voter" }
                @if !matched.is_empty() { th scope="col" class="num" { "Matched log index" } }
            } }
            tbody {
                @for (id, name, http, rpc) in &members {
                    tr {
                        th scope="row" { (name) @if *id == srv.node_id { " (this server)" } }
                        td { (id) }
                        td { (http) }
                        td { (rpc) }
                        td { (if leader == Some(*id) { "leader" } else { "follower" }) }
                        td { (if voters.contains(id) { "yes" } else { "no" }) }
                        @if !matched.is_empty() {
                            td class="num" {
                                @match matched.get(id) {
                                    Some(Some(i)) => (i),
                                    Some(None) => "nothing yet",
                                    None => "—",
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    crate::html(layout::page("Servers", Nav::Servers, state.index(), body))
}
