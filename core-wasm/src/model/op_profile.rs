//! Time per op family of the CPU forward pass, so that `hearth bench` and the Monitor show where
//! a decode step goes (the GPU backend's twin is `GpuTransformer::profile_decode`). Off unless a
//! profile is being taken: then one flag is read per op.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use web_time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
/// Milliseconds per op family, in the order first seen.
static TIMES: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

/// Runs `op`, adding its wall time to `family` while a profile is being taken.
#[inline]
pub(crate) fn time<R>(family: &'static str, op: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return op();
    }
    let start = Instant::now();
    let result = op();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut times = TIMES.lock().unwrap_or_else(|e| e.into_inner());
    match times.iter_mut().find(|(f, _)| *f == family) {
        Some((_, total)) => *total += ms,
        None => times.push((family, ms)),
    }
    result
}

/// Runs `work` with the timers on and returns its result with the milliseconds per op family,
/// slowest first. One profile at a time: the engine that calls this runs one request at once.
pub(crate) fn profile<R>(work: impl FnOnce() -> R) -> (R, Vec<(&'static str, f64)>) {
    TIMES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ON.store(true, Ordering::Relaxed);
    let result = work();
    ON.store(false, Ordering::Relaxed);
    let mut times = std::mem::take(&mut *TIMES.lock().unwrap_or_else(|e| e.into_inner()));
    times.sort_by(|a, b| b.1.total_cmp(&a.1));
    (result, times)
}
