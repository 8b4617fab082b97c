//! The CPU pool's busy time per thread (the monitor's utilisation): a binary of its own, as
//! the counters are per thread index and other tests' pools would add to them.
#![cfg(not(target_arch = "wasm32"))]

use std::time::{Duration, Instant};

use hearth_kernels::cpu::pool::{busy, timed};
use rayon::prelude::*;

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn pool_threads_count_their_own_work_once() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let (before, wall) = pool.install(|| {
        let before = busy();
        let start = Instant::now();
        // A region that forks: the tasks its own thread runs while joining are nested in it.
        timed(|| (0..8).into_par_iter().for_each(|_| timed(|| spin(Duration::from_millis(10)))));
        (before, start.elapsed().as_secs_f64() * 1e3)
    });
    let after = pool.install(busy);
    assert_eq!(after.threads.len(), 2, "{after:?}");
    let spent: Vec<f64> = after.threads.iter().zip(&before.threads).map(|(a, b)| a - b).collect();
    // Eight 10 ms tasks on two threads: at least 80 ms of work in all, and no thread busier
    // than the wall time.
    assert!(spent.iter().sum::<f64>() >= 80.0, "{spent:?} ms busy in {wall} ms");
    for ms in &spent {
        assert!(*ms <= wall + 0.5, "a thread busy {ms} ms in {wall} ms: counted twice ({spent:?})");
    }
    assert!(spent.iter().all(|&ms| ms > 0.0), "both threads worked: {spent:?}");
    // Work on a thread outside the pool counts apart.
    let outside = busy().outside;
    timed(|| spin(Duration::from_millis(5)));
    assert!(busy().outside - outside >= 5.0);
}
