//! The shared arena: large payloads are written here once and travel through the rings as a
//! handle (first block, length) instead of being copied through the ring.
//!
//! Fixed blocks of [`BLOCK_WORDS`] words. Each block has an owner word: 0 when free, else one
//! more than the agent whose queue pair the payload travels on (whichever end sent it). There
//! is no lock: a block is taken by a compare-and-swap of its owner word from 0, so an agent
//! killed in the middle of an allocation or a free (a worker terminated, a process killed)
//! blocks nobody. What it held is found by its owner words and given back when its queues
//! are reconnected ([`Arena::reclaim`]), once that agent is gone.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) const BLOCK_WORDS: usize = 256;

pub(crate) struct Arena<'a> {
    /// One owner word per block.
    pub owners: &'a [AtomicU32],
    pub data: &'a [AtomicU32],
}

impl Arena<'_> {
    fn blocks(&self) -> usize {
        self.owners.len()
    }

    pub fn blocks_for(words: usize) -> usize {
        words.div_ceil(BLOCK_WORDS).max(1)
    }

    /// Reserves a run of blocks for `words` words of a payload on `agent`'s queues; `None` when
    /// no run is free now.
    pub fn alloc(&self, agent: usize, words: usize) -> Option<usize> {
        let n = Self::blocks_for(words);
        let tag = agent as u32 + 1;
        let mut start = 0;
        'runs: while start + n <= self.blocks() {
            if let Some(used) = (start..start + n).find(|&b| self.owners[b].load(Ordering::Relaxed) != 0) {
                start = used + 1;
                continue;
            }
            let run = start..start + n;
            for b in run.clone() {
                if self.owners[b].compare_exchange(0, tag, Ordering::Acquire, Ordering::Relaxed).is_err() {
                    // Another sender took this block first: give back what this one took.
                    (run.start..b).for_each(|taken| self.owners[taken].store(0, Ordering::Release));
                    start = b + 1;
                    continue 'runs;
                }
            }
            return Some(run.start);
        }
        None
    }

    pub fn free(&self, first: usize, words: usize) {
        (first..first + Self::blocks_for(words)).for_each(|b| self.owners[b].store(0, Ordering::Release));
    }

    /// Frees every block held for `agent`'s queues. Only when neither end can touch them: the
    /// agent is gone and the hub has drained both of its rings.
    pub fn reclaim(&self, agent: usize) {
        let tag = agent as u32 + 1;
        for owner in self.owners {
            // Not a plain store: blocks of other agents' queues may be taken meanwhile.
            let _ = owner.compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
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
        self.owners.iter().filter(|o| o.load(Ordering::Relaxed) == 0).count()
    }
}
