//! Rendering every page over a synthetic state (`synthetic.rs`: 1,000 jobs of 10
//! allocations plus one job of 10,000 allocations, on 5,000 nodes). Each page is rendered
//! whole (layout included), as its handler does. Before criterion's own runs, each page is
//! rendered `SAMPLES` times and a table of mean, p99 and HTML size is printed, since
//! criterion reports means only: wall-clock time, and the thread's CPU time, which other
//! builds on a shared machine do not inflate.
//!
//! Run: `cargo bench -p ui --bench pages -- --quick`

mod synthetic;

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Instant;

/// Renders per page for the p99 (after 5 warm-up renders).
const SAMPLES: usize = 200;

/// This thread's CPU time, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// The mean and the 99th percentile of `v` (sorted in place).
fn mean_p99(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v[(v.len() * 99).div_ceil(100) - 1])
}

fn percentiles(c: &mut Criterion) {
    let state = synthetic::synthetic_state();
    let pages = synthetic::pages(&state);
    println!(
        "| Page                 | Mean     | p99      | CPU mean | CPU p99  | HTML      |\n\
         |----------------------|----------|----------|----------|----------|-----------|"
    );
    for (name, _, render) in &pages {
        for _ in 0..5 {
            std::hint::black_box(render());
        }
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..SAMPLES {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            std::hint::black_box(render());
            cpu.push(thread_cpu_ms() - c);
            wall.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (mean, p99) = mean_p99(&mut wall);
        let (cpu_mean, cpu_p99) = mean_p99(&mut cpu);
        let kb = render().len() as f64 / 1000.0;
        println!(
            "| {name:<20} | {mean:>5.2} ms | {p99:>5.2} ms | {cpu_mean:>5.2} ms | {cpu_p99:>5.2} ms | {kb:>6.1} KB |"
        );
    }
    for (name, _, render) in &pages {
        c.bench_function(name, |b| b.iter(|| std::hint::black_box(render())));
    }
}

criterion_group!(benches, percentiles);
criterion_main!(benches);
