//! How busy each thread of the CPU pool is: the time it spends inside the engine's work, kept
//! per thread for the monitor's utilisation figures. Only the outermost timed region on a
//! thread counts, so work a thread picks up while waiting inside its own region (rayon lets a
//! thread that joins run other tasks) is not counted twice.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use web_time::Instant;

/// What the monitor shows of the pool; filled in here.
pub use hearth_api::monitor::PoolBusy;

/// Pool threads tracked one by one; work elsewhere (the calling thread, or a pool past this
/// size) counts in one more slot.
const THREADS: usize = 64;

static BUSY_NS: [AtomicU64; THREADS + 1] = [const { AtomicU64::new(0) }; THREADS + 1];

thread_local! {
    /// Timed regions open on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `work`, counting its wall time as busy time of the current thread, unless the thread
/// is already inside a timed region.
pub fn timed<R>(work: impl FnOnce() -> R) -> R {
    struct Region(Option<Instant>);
    impl Drop for Region {
        fn drop(&mut self) {
            DEPTH.with(|depth| depth.set(depth.get() - 1));
            if let Some(start) = self.0 {
                let slot = rayon::current_thread_index().filter(|&i| i < THREADS).unwrap_or(THREADS);
                BUSY_NS[slot].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }
    }
    let outermost = DEPTH.with(|depth| {
        depth.set(depth.get() + 1);
        depth.get() == 1
    });
    let _region = Region(outermost.then(Instant::now));
    work()
}

/// Each pool thread's busy time so far, and the time spent outside the pool.
pub fn busy() -> PoolBusy {
    let ms = |slot: &AtomicU64| slot.load(Ordering::Relaxed) as f64 / 1e6;
    let n = rayon::current_num_threads().min(THREADS);
    PoolBusy { threads: BUSY_NS[..n].iter().map(ms).collect(), outside: ms(&BUSY_NS[THREADS]) }
}
