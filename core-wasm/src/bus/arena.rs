//! The shared arena: large payloads are written here once and travel through the rings as a
//! handle (first block, length) instead of being copied through the ring.
//!
//! Fixed blocks of [`BLOCK_WORDS`] words; a bitmap marks blocks in use. Allocation takes a short
//! lock (a word in the region, the way a wasm malloc over shared memory does) and finds the
//! first run of free blocks; the receiver frees the run after reading it.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) const BLOCK_WORDS: usize = 256;

pub(crate) struct Arena<'a> {
    pub lock: &'a AtomicU32,
    pub bitmap: &'a [AtomicU32],
    pub blocks: usize,
    pub data: &'a [AtomicU32],
}

impl Arena<'_> {
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        while self.lock.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        let r = f();
        self.lock.store(0, Ordering::Release);
        r
    }

    fn used(&self, b: usize) -> bool {
        self.bitmap[b / 32].load(Ordering::Relaxed) & (1 << (b % 32)) != 0
    }

    fn set(&self, b: usize, used: bool) {
        let bit = 1 << (b % 32);
        if used {
            self.bitmap[b / 32].fetch_or(bit, Ordering::Relaxed);
        } else {
            self.bitmap[b / 32].fetch_and(!bit, Ordering::Relaxed);
        }
    }

    pub fn blocks_for(words: usize) -> usize {
        words.div_ceil(BLOCK_WORDS).max(1)
    }

    /// Reserves a run of blocks for `words` words; `None` when no run is free now.
    pub fn alloc(&self, words: usize) -> Option<usize> {
        let n = Self::blocks_for(words);
        self.locked(|| {
            let mut start = 0;
            while start + n <= self.blocks {
                match (start..start + n).find(|&b| self.used(b)) {
                    Some(used) => start = used + 1,
                    None => {
                        (start..start + n).for_each(|b| self.set(b, true));
                        return Some(start);
                    }
                }
            }
            None
        })
    }

    pub fn free(&self, first: usize, words: usize) {
        self.locked(|| (first..first + Self::blocks_for(words)).for_each(|b| self.set(b, false)));
    }

    pub fn write(&self, first: usize, body: &[u32]) {
        for (i, &w) in body.iter().enumerate() {
            self.data[first * BLOCK_WORDS + i].store(w, Ordering::Relaxed);
        }
    }

    pub fn read(&self, first: usize, words: usize) -> Vec<u32> {
        (0..words).map(|i| self.data[first * BLOCK_WORDS + i].load(Ordering::Relaxed)).collect()
    }

    pub fn free_blocks(&self) -> usize {
        self.locked(|| (0..self.blocks).filter(|&b| !self.used(b)).count())
    }
}
