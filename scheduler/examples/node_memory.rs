//! Memory per node in a snapshot, measured with a counting global allocator: the heap
//! bytes `MemState` holds for N nodes like the simulator's (attributes, meta, drivers,
//! resources), divided by N. `Arc<Node>` is what the server's state store shares too, so
//! this is the per-node cost of any snapshot (the map's own overhead differs a little).
//!
//! ```text
//! cargo run --release -p scheduler --example node_memory -- 10000
//! ```

use rand::SeedableRng;
use scheduler::mock::MemState;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let before = LIVE.load(Ordering::Relaxed);
    let state =
        MemState::new().with_nodes((0..n).map(|i| scheduler::sim::world::node(i, &mut rng)));
    let after = LIVE.load(Ordering::Relaxed);
    let per_node = (after - before) as f64 / n as f64;
    println!(
        "{n} nodes: {:.0} bytes per node in the snapshot (heap, counted by the allocator; \
         size_of::<Node>() = {} of it)",
        per_node,
        std::mem::size_of::<api::Node>()
    );
    drop(state);
}
