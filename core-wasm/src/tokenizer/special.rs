//! Cutting special tokens out of the text before the model sees it (llama.cpp's
//! `tokenizer_st_partition`).
//!
//! Every control, user-defined and unknown token is a candidate, longest text first. Each one in
//! turn is searched for in every stretch of text not yet claimed, and each occurrence, leftmost
//! first and never overlapping, becomes that token, splitting the stretch in two. Control and
//! unknown tokens take part only when `parse_special` is set; user-defined ones always do (as in
//! Hugging Face tokenizers, where added tokens are matched before pre-tokenization).
//!
//! A token marked `LSTRIP`/`RSTRIP` also swallows the ASCII whitespace before/after it.

use super::TokenAttr;

/// A piece of the input after partitioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Bytes `start..end` of the input, still to be tokenized.
    Text(usize, usize),
    Token(u32),
}

/// C's `isspace` in the "C" locale, which llama.cpp uses for stripping.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Partitions `text`. `specials` is the candidate list in search order, with each token's text
/// and attributes.
pub(crate) fn partition<'a>(
    text: &str,
    specials: impl Iterator<Item = (u32, &'a str, TokenAttr)>,
    parse_special: bool,
) -> Vec<Fragment> {
    let bytes = text.as_bytes();
    let mut fragments = if text.is_empty() { Vec::new() } else { vec![Fragment::Text(0, text.len())] };
    let mut next = Vec::new();
    for (id, needle, attr) in specials {
        if !parse_special && attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
            continue;
        }
        if needle.is_empty() || !fragments.iter().any(|f| matches!(f, Fragment::Text(..))) {
            continue;
        }
        next.clear();
        for &fragment in &fragments {
            let Fragment::Text(mut start, end) = fragment else {
                next.push(fragment);
                continue;
            };
            // Searching `text[start..end]`; offsets found are relative to `start`.
            while let Some(found) = text.get(start..end).and_then(|s| s.find(needle)) {
                let at = start + found;
                let mut left_end = at;
                if attr.contains(TokenAttr::LSTRIP) {
                    while left_end > start && is_c_space(bytes[left_end - 1]) {
                        left_end -= 1;
                    }
                }
                if left_end > start {
                    next.push(Fragment::Text(start, left_end));
                }
                next.push(Fragment::Token(id));
                start = at + needle.len();
                if attr.contains(TokenAttr::RSTRIP) {
                    while start < end && is_c_space(bytes[start]) {
                        start += 1;
                    }
                }
            }
            if start < end {
                next.push(Fragment::Text(start, end));
            }
        }
        std::mem::swap(&mut fragments, &mut next);
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::Fragment::{Text, Token};
    use super::*;

    const CTRL: TokenAttr = TokenAttr::CONTROL;
    const USER: TokenAttr = TokenAttr::USER_DEFINED;

    #[test]
    fn longest_candidates_claim_text_first() {
        let specials = [(1, "<|im_start|>", CTRL), (2, "<|im", USER), (3, "<s>", CTRL)];
        let got = partition("<|im_start|>user<s>x<|im", specials.into_iter(), true);
        assert_eq!(got, [Token(1), Text(12, 16), Token(3), Text(19, 20), Token(2)]);
    }

    #[test]
    fn control_tokens_need_parse_special_but_user_defined_do_not() {
        let specials = [(1, "<|im_start|>", CTRL), (2, "<x>", USER)];
        let got = partition("a<|im_start|>b<x>c", specials.into_iter(), false);
        assert_eq!(got, [Text(0, 14), Token(2), Text(17, 18)]);
    }

    #[test]
    fn strip_flags_eat_neighbouring_whitespace() {
        let specials = [(7, "<e>", CTRL | TokenAttr::RSTRIP | TokenAttr::LSTRIP)];
        let got = partition("a \t<e>\n b", specials.into_iter(), true);
        assert_eq!(got, [Text(0, 1), Token(7), Text(8, 9)]);
        let got = partition("<e>   ", specials.into_iter(), true);
        assert_eq!(got, [Token(7)]);
    }

    #[test]
    fn repeated_and_adjacent_occurrences() {
        let specials = [(5, "ab", USER)];
        assert_eq!(partition("ababxab", specials.into_iter(), false), [Token(5), Token(5), Text(4, 5), Token(5)]);
        assert_eq!(partition("", specials.into_iter(), false), []);
    }
}
