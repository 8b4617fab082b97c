//! Incremental detokenization for streaming generated text.
//!
//! One token is often only part of a character: byte-level BPE splits emoji and most CJK text
//! into several tokens, and SentencePiece's byte fallback emits one token per byte. Decoding each
//! token on its own would show replacement characters mid-stream. [`StreamDecoder`] keeps the
//! bytes of an unfinished UTF-8 sequence until the rest arrives, so what it returns is always
//! complete text, and everything it returns, joined, equals [`Tokenizer::decode`] of the same ids.

use super::Tokenizer;

/// Turns generated token ids into text one id at a time.
///
/// ```no_run
/// # fn demo(tokenizer: &hearth_core::tokenizer::Tokenizer, ids: &[u32]) {
/// use hearth_core::tokenizer::StreamDecoder;
/// let mut stream = StreamDecoder::new();
/// for &id in ids {
///     print!("{}", stream.push(tokenizer, id));
/// }
/// print!("{}", stream.finish());
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes of a UTF-8 sequence that is not complete yet (at most three).
    pending: Vec<u8>,
    /// Ids seen so far; only whether it is zero matters (see [`Tokenizer::decode`]).
    pushed: usize,
    render_special: bool,
}

impl StreamDecoder {
    /// A decoder that hides control tokens, like [`Tokenizer::decode`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that shows control tokens as their text, like [`Tokenizer::decode_special`].
    pub fn with_special() -> Self {
        Self { render_special: true, ..Self::default() }
    }

    /// Adds one id and returns the text it completes, which may be empty.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        let piece = tokenizer.piece_at(id, self.render_special, self.pushed == 0);
        self.pushed += 1;
        self.pending.extend_from_slice(&piece);
        self.drain(false)
    }

    /// Returns whatever is still held back (an unfinished sequence becomes U+FFFD) and resets
    /// the decoder for a new stream.
    pub fn finish(&mut self) -> String {
        let rest = self.drain(true);
        self.pushed = 0;
        rest
    }

    /// Emits every complete character of `pending`; invalid bytes become U+FFFD exactly where
    /// `String::from_utf8_lossy` would put them. Unless `all`, a valid but unfinished sequence at
    /// the end is kept for the next push.
    fn drain(&mut self, all: bool) -> String {
        let mut out = String::new();
        let mut consumed = 0;
        for chunk in self.pending.utf8_chunks() {
            out.push_str(chunk.valid());
            consumed += chunk.valid().len();
            let invalid = chunk.invalid();
            if invalid.is_empty() {
                continue;
            }
            let at_end = consumed + invalid.len() == self.pending.len();
            // At the very end, the chunk may be an incomplete (not a wrong) sequence: the next
            // token can still finish it.
            if at_end && !all && std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none()) {
                break;
            }
            out.push(char::REPLACEMENT_CHARACTER);
            consumed += invalid.len();
        }
        self.pending.drain(..consumed);
        out
    }
}
