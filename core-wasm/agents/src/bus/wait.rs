//! Blocking wait on a shared word, and waking its waiters: `Atomics.wait`/`notify` in wasm
//! with shared memory, a condition variable natively.
//!
//! Natively one condition variable per region is enough: a waker stores the word, then
//! notifies under the lock, so a waiter that checked the word under the same lock cannot miss
//! it; a wake for another word is only a spurious wake-up, after which the waiter checks again.

use std::sync::atomic::AtomicU32;
#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
use std::sync::atomic::Ordering;
use std::time::Duration;

#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
#[derive(Debug, Default)]
pub struct Waiters {
    lock: std::sync::Mutex<()>,
    cond: std::sync::Condvar,
    /// Threads blocked (or about to block): a waker with none to wake skips the lock.
    sleepers: std::sync::atomic::AtomicUsize,
}

/// Checks of the word before a waiter blocks: a reply that comes within a few microseconds
/// costs no sleep and no wake-up. (`Atomics.wait` is cheap enough to call at once.)
#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
const SPINS: u32 = 2_000;

#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
impl Waiters {
    /// Blocks while `word` holds `expected`, at most `timeout`; returns false on timeout.
    pub fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        for _ in 0..SPINS {
            if word.load(Ordering::Acquire) != expected {
                return true;
            }
            std::hint::spin_loop();
        }
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Announce the sleeper before the last look at the word; `wake` stores the word before
        // it looks for sleepers. With both orders sequentially consistent, one of them sees
        // the other (Dekker), so no wake-up is lost.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let woke = loop {
            if word.load(Ordering::SeqCst) != expected {
                break true;
            }
            match deadline {
                None => guard = self.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break false;
                    }
                    guard = self.cond.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        woke
    }

    /// Wakes every waiter (call after storing the word).
    pub fn wake(&self, _word: &AtomicU32) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.cond.notify_all();
        }
    }
}

/// `Atomics.wait` needs no state of its own (braced, so both variants are built alike).
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
#[derive(Debug, Default)]
pub struct Waiters {}

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
impl Waiters {
    /// `memory.atomic.wait32`: only allowed off the browser's main thread (workers, the hub).
    pub fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        let ns = timeout.map_or(-1, |t| i64::try_from(t.as_nanos()).unwrap_or(i64::MAX));
        let ptr = word.as_ptr().cast::<i32>();
        // SAFETY: `ptr` points at a live, aligned word of the shared linear memory.
        let woke = unsafe { core::arch::wasm32::memory_atomic_wait32(ptr, expected as i32, ns) };
        woke != 2
    }

    pub fn wake(&self, word: &AtomicU32) {
        // SAFETY: as above.
        unsafe { core::arch::wasm32::memory_atomic_notify(word.as_ptr().cast::<i32>(), u32::MAX) };
    }
}
