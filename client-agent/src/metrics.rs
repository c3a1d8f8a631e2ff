//! The client's gauges for `GET /v1/metrics`, under Nomad's names: allocation counts by
//! client status and the host's memory and CPU. Read when a scrape asks (the agent's
//! binary hands [`gauges`] to the server's metrics registry), so never stale.

use crate::ClientHandle;

/// A gauge: Nomad's dotted name, its labels and its value.
pub type Reading = (String, Vec<(String, String)>, f64);

/// The client's gauges now. `host`: also the host's memory and CPU
/// (`telemetry { publish_node_metrics }`).
pub fn gauges(handle: &ClientHandle, host: bool) -> Vec<Reading> {
    let Some(node) = handle.node() else {
        return Vec::new();
    };
    let labels = vec![
        ("node_id".to_string(), node.id.clone()),
        ("datacenter".to_string(), node.datacenter.clone()),
        ("node_class".to_string(), node.node_class.clone()),
    ];
    let mut counts = [
        ("running", 0u64),
        ("pending", 0),
        ("blocked", 0),
        ("migrating", 0),
        ("terminal", 0),
    ];
    for id in handle.alloc_ids() {
        let Some(view) = handle.alloc(&id) else {
            continue;
        };
        let status = view.state.borrow().client_status.clone();
        let bucket = match status.as_str() {
            api::ALLOC_CLIENT_RUNNING => 0,
            api::ALLOC_CLIENT_PENDING | "" => 1,
            _ => 4,
        };
        counts[bucket].1 += 1;
    }
    let gauge = |name: String, extra: &[(&str, &str)], v: f64| {
        let mut l = labels.clone();
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        (name, l, v)
    };
    let mut out: Vec<Reading> = counts
        .iter()
        .map(|(what, n)| gauge(format!("nomad.client.allocations.{what}"), &[], *n as f64))
        .collect();
    if host {
        let m = crate::stats::meminfo();
        for (what, v) in [
            ("total", m.total),
            ("available", m.available),
            ("used", m.used),
            ("free", m.free),
        ] {
            out.push(gauge(
                format!("nomad.client.host.memory.{what}"),
                &[],
                v as f64,
            ));
        }
        // Busy share of each CPU since boot (Nomad samples an interval; a scrape has none).
        for (cpu, user, system, idle, total) in crate::stats::cpu_times() {
            let pct = |x: u64| x as f64 / total.max(1) as f64 * 100.0;
            let l = [("cpu", cpu.as_str())];
            out.push(gauge("nomad.client.host.cpu.user".into(), &l, pct(user)));
            out.push(gauge(
                "nomad.client.host.cpu.system".into(),
                &l,
                pct(system),
            ));
            out.push(gauge("nomad.client.host.cpu.idle".into(), &l, pct(idle)));
            out.push(gauge(
                "nomad.client.host.cpu.total".into(),
                &l,
                pct(user + system),
            ));
        }
    }
    out
}
