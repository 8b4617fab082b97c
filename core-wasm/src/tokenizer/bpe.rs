//! Byte-level BPE merging (llama.cpp's `llm_tokenizer_bpe_session`).
//!
//! A word starts as one symbol per byte (each the token of that byte's [byte-level
//! character](super::bytes)). Then, over and over, the adjacent pair with the lowest merge rank
//! is replaced by the token the merge makes; among equal ranks the leftmost pair goes first.
//! That order is what makes BPE deterministic, so it is kept exactly.
//!
//! Symbols form a doubly linked list over a vector, and candidate pairs wait in a binary heap
//! keyed by (rank, left index). A merge changes only its two neighbours' pairs, so those are
//! pushed afresh and stale entries are recognised, when popped, by their symbols no longer
//! holding the tokens they were queued with. Each word costs O(n log n) for n bytes.
//!
//! Working on token ids instead of strings is equivalent to llama.cpp's string keys because
//! token texts are unique and every merge's parts and result are checked, at load time, to be
//! tokens.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::hash::FastMap;

/// The merge table: `(left, right)` → `(rank, merged)`.
pub(crate) type Merges = FastMap<u64, (u32, u32)>;

pub(crate) fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// One symbol of a word being merged. `token` is `None` for a byte whose character is missing
/// from the vocabulary; such a symbol never merges and is finally dropped, as in llama.cpp.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    token: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
    alive: bool,
}

/// A queued merge candidate; ordering by `(rank, left)` puts the leftmost lowest rank first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    left_token: u32,
    right_token: u32,
    merged: u32,
}

/// Scratch space reused across the words of one `encode` call.
#[derive(Default)]
pub(crate) struct Session {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<Candidate>>,
}

impl Session {
    /// Appends the tokens of `word` (raw bytes; the byte-level mapping is `byte_token`).
    pub(crate) fn encode_word(
        &mut self,
        word: &[u8],
        byte_token: &[Option<u32>; 256],
        merges: &Merges,
        out: &mut Vec<u32>,
    ) {
        match word {
            [] => return,
            [b] => {
                out.extend(byte_token[usize::from(*b)]);
                return;
            }
            _ => {}
        }
        self.symbols.clear();
        self.heap.clear();
        let n = word.len();
        self.symbols.extend(word.iter().enumerate().map(|(i, &b)| Symbol {
            token: byte_token[usize::from(b)],
            prev: i.checked_sub(1),
            next: (i + 1 < n).then_some(i + 1),
            alive: true,
        }));
        for i in 1..n {
            self.queue(i - 1, i, merges);
        }
        while let Some(Reverse(c)) = self.heap.pop() {
            let (l, r) = (self.symbols[c.left], self.symbols[c.right]);
            // Stale: one side was merged away, or grew into a different token, since queueing.
            if !l.alive
                || !r.alive
                || l.next != Some(c.right)
                || l.token != Some(c.left_token)
                || r.token != Some(c.right_token)
            {
                continue;
            }
            self.symbols[c.left].token = Some(c.merged);
            self.symbols[c.left].next = r.next;
            self.symbols[c.right].alive = false;
            if let Some(next) = r.next {
                self.symbols[next].prev = Some(c.left);
            }
            if let Some(prev) = l.prev {
                self.queue(prev, c.left, merges);
            }
            if let Some(next) = r.next {
                self.queue(c.left, next, merges);
            }
        }
        // The list starts at 0 (the first symbol is never merged away) and runs in text order.
        let mut at = Some(0);
        while let Some(i) = at {
            out.extend(self.symbols[i].token);
            at = self.symbols[i].next;
        }
    }

    fn queue(&mut self, left: usize, right: usize, merges: &Merges) {
        let (Some(left_token), Some(right_token)) = (self.symbols[left].token, self.symbols[right].token) else {
            return;
        };
        if let Some(&(rank, merged)) = merges.get(&pair_key(left_token, right_token)) {
            self.heap.push(Reverse(Candidate { rank, left, right, left_token, right_token, merged }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary of single letters plus merges, by rank: "a b" → ab, "b c" → bc, "ab c" → abc.
    fn tiny() -> ([Option<u32>; 256], Merges, Vec<&'static str>) {
        let texts = vec!["a", "b", "c", "ab", "bc", "abc", "cc"];
        let mut byte_token = [None; 256];
        byte_token[usize::from(b'a')] = Some(0);
        byte_token[usize::from(b'b')] = Some(1);
        byte_token[usize::from(b'c')] = Some(2);
        let mut merges = Merges::default();
        merges.insert(pair_key(1, 2), (0, 4)); // b c -> bc (rank 0)
        merges.insert(pair_key(0, 1), (1, 3)); // a b -> ab (rank 1)
        merges.insert(pair_key(3, 2), (2, 5)); // ab c -> abc (rank 2)
        merges.insert(pair_key(2, 2), (3, 6)); // c c -> cc (rank 3)
        (byte_token, merges, texts)
    }

    fn encode(word: &str) -> Vec<&'static str> {
        let (byte_token, merges, texts) = tiny();
        let mut out = Vec::new();
        Session::default().encode_word(word.as_bytes(), &byte_token, &merges, &mut out);
        out.into_iter().map(|id| texts[id as usize]).collect()
    }

    #[test]
    fn lowest_rank_merges_first() {
        // "b c" (rank 0) beats "a b" (rank 1), so "abc" is never reached.
        assert_eq!(encode("abc"), ["a", "bc"]);
        assert_eq!(encode("ab"), ["ab"]);
        // After "a b", "ab c" (rank 2) applies.
        assert_eq!(encode("abac"), ["ab", "a", "c"]);
        assert_eq!(encode("abbc"), ["ab", "bc"]);
    }

    #[test]
    fn equal_ranks_merge_leftmost_first() {
        // Three c's: both pairs have rank 3; the left one merges, leaving the third alone.
        assert_eq!(encode("ccc"), ["cc", "c"]);
        assert_eq!(encode("cccc"), ["cc", "cc"]);
    }

    #[test]
    fn bytes_without_a_token_are_dropped() {
        assert_eq!(encode("axb"), ["a", "b"]);
        assert_eq!(encode("x"), Vec::<&str>::new());
        assert_eq!(encode(""), Vec::<&str>::new());
    }

    #[test]
    fn long_words_are_not_quadratic() {
        let word = "ab".repeat(100_000);
        let out = encode(&word);
        assert_eq!(out.len(), 100_000);
        assert!(out.iter().all(|t| *t == "ab"));
    }
}
