//! SentencePiece-style merging (llama.cpp's `llm_tokenizer_spm_session`), for
//! `tokenizer.ggml.model = "llama"` vocabularies.
//!
//! The text (spaces already escaped to `▁`) starts as one symbol per character. Any adjacent
//! pair whose concatenation is a token is a candidate, scored by that token's score; the highest
//! score merges first, the leftmost among equals. When nothing more merges, each symbol is its
//! token, or, for a character the vocabulary lacks, one `<0xXX>` byte token per UTF-8 byte (the
//! "byte fallback").
//!
//! As in llama.cpp, any token can be the result of a merge, control tokens included: with
//! `parse_special = false`, the characters of `<s>` may well come back as the BOS id.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::hash::FastMap;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    /// Byte range in the escaped text; empty once merged into its left neighbour.
    start: usize,
    end: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the pair when queued; a merge on either side changes it.
    size: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Max-heap order: higher score first, then the smaller left index. Scores compare as
    /// llama.cpp's `<` does (a NaN ties with everything rather than panicking).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.partial_cmp(&other.score).unwrap_or(Ordering::Equal).then_with(|| other.left.cmp(&self.left))
    }
}

/// What the SPM merge needs from the vocabulary.
pub(crate) struct Vocab<'v> {
    pub(crate) token_to_id: &'v FastMap<Box<str>, u32>,
    pub(crate) scores: &'v [f32],
    /// The byte-fallback token of each byte, already resolved.
    pub(crate) byte_token: &'v [Option<u32>; 256],
}

/// Appends the tokens of `text`, whose spaces are already `▁`.
pub(crate) fn encode(vocab: &Vocab<'_>, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let index = symbols.len();
        symbols.push(Symbol {
            start: i,
            end: i + c.len_utf8(),
            prev: index.checked_sub(1),
            next: (i + c.len_utf8() < text.len()).then_some(index + 1),
        });
    }
    let mut heap = BinaryHeap::new();
    let queue = |heap: &mut BinaryHeap<Candidate>, symbols: &[Symbol], left: usize, right: usize| {
        let (start, end) = (symbols[left].start, symbols[right].end);
        let Some(id) = text.get(start..end).and_then(|s| vocab.token_to_id.get(s)) else { return };
        let score = vocab.scores.get(*id as usize).copied().unwrap_or(0.0);
        heap.push(Candidate { score, left, right, size: end - start });
    };
    for i in 1..symbols.len() {
        queue(&mut heap, &symbols, i - 1, i);
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (symbols[c.left], symbols[c.right]);
        let len = |s: Symbol| s.end - s.start;
        if len(l) == 0 || len(r) == 0 || len(l) + len(r) != c.size {
            continue;
        }
        symbols[c.left].end = r.end;
        symbols[c.left].next = r.next;
        symbols[c.right].end = r.start;
        if let Some(next) = r.next {
            symbols[next].prev = Some(c.left);
        }
        if let Some(prev) = l.prev {
            queue(&mut heap, &symbols, prev, c.left);
        }
        if let Some(next) = r.next {
            queue(&mut heap, &symbols, c.left, next);
        }
    }
    let mut at = (!symbols.is_empty()).then_some(0);
    while let Some(i) = at {
        let Symbol { start, end, next, .. } = symbols[i];
        let piece = text.get(start..end).unwrap_or_default();
        match vocab.token_to_id.get(piece) {
            Some(&id) => out.push(id),
            // Only single characters can get here: every merge made a token.
            None => out.extend(piece.bytes().filter_map(|b| vocab.byte_token[usize::from(b)])),
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_with(tokens: &[(&str, f32)], byte_token: &[Option<u32>; 256], text: &str) -> Vec<u32> {
        let token_to_id: FastMap<Box<str>, u32> =
            tokens.iter().enumerate().map(|(i, (t, _))| (Box::from(*t), i as u32)).collect();
        let scores: Vec<f32> = tokens.iter().map(|(_, s)| *s).collect();
        let mut out = Vec::new();
        encode(&Vocab { token_to_id: &token_to_id, scores: &scores, byte_token }, text, &mut out);
        out
    }

    #[test]
    fn highest_score_merges_first() {
        // "bc" scores higher than "ab", and "a" + "bc" is no token.
        let tokens = [("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", -2.0), ("bc", -1.0)];
        assert_eq!(encode_with(&tokens, &[None; 256], "abc"), [0, 4]);
        let tokens = [("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", -1.0), ("bc", -2.0)];
        assert_eq!(encode_with(&tokens, &[None; 256], "abc"), [3, 2]);
        // Merged pieces keep merging while their concatenation is a token.
        let tokens = [("a", 0.0), ("b", 0.0), ("c", 0.0), ("ab", -1.0), ("bc", -2.0), ("abc", -3.0)];
        assert_eq!(encode_with(&tokens, &[None; 256], "abc"), [5]);
        // Equal scores: the leftmost pair first.
        let tokens = [("a", 0.0), ("aa", -1.0)];
        assert_eq!(encode_with(&tokens, &[None; 256], "aaa"), [1, 0]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let tokens = [("▁", 0.0), ("x", 0.0), ("<0xC3>", 0.0), ("<0xA9>", 0.0)];
        let mut byte_token = [None; 256];
        byte_token[0xC3] = Some(2);
        byte_token[0xA9] = Some(3);
        assert_eq!(encode_with(&tokens, &byte_token, "▁é x"), [0, 2, 3, 1]);
    }
}
