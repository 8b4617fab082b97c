//! Tokenizers built from GGUF metadata, matching llama.cpp token for token.
//!
//! [`Tokenizer::encode`] is `llama_tokenize`, [`Tokenizer::decode`] is `llama_detokenize`, and
//! the reference for every rule below is llama.cpp's `src/llama-vocab.cpp` and `src/unicode.cpp`.
//! Two families are supported, chosen by `tokenizer.ggml.model`:
//!
//! - `"gpt2"`: byte-level BPE. Text is cut into words by the pre-tokenizer named in
//!   `tokenizer.ggml.pre` (the supported names are listed in `pre.rs`), each word's bytes are mapped to GPT-2's
//!   printable byte alphabet, and `tokenizer.ggml.merges` is applied lowest rank first.
//! - `"llama"`: SentencePiece as llama.cpp runs it: spaces become `▁`, a `▁` is prefixed to the
//!   text (`tokenizer.ggml.add_space_prefix`, default on), characters merge by
//!   `tokenizer.ggml.scores`, and characters missing from the vocabulary become `<0xXX>` byte
//!   tokens.
//!
//! Encoding runs in three steps, as in llama.cpp:
//!
//! 1. **Special tokens** (control, user-defined, unknown) are cut out of the text first, longest
//!    first (`special.rs`); control and unknown ones only when `parse_special` is set. This is how
//!    a chat prompt's `<|im_start|>` becomes one id while the same characters typed by a user
//!    (with `parse_special = false`) stay plain text.
//! 2. **The model** tokenizes each remaining stretch of text on its own.
//! 3. **BOS/EOS** are added when `add_special` is set and the model asks for them
//!    (`tokenizer.ggml.add_bos_token` / `add_eos_token`, else llama.cpp's default for the
//!    tokenizer: SentencePiece and Llama-3-style BPE add BOS, other BPE adds nothing).
//!
//! Decoding maps each id back to bytes (byte-level BPE undoes the byte alphabet; SentencePiece
//! turns `▁` back into spaces and byte tokens into their byte) and only then reads the bytes as
//! UTF-8, so text split inside a character by the tokenizer comes back whole.
//!
//! Where llama.cpp itself is not deterministic or not total, this module picks one answer and
//! says so: the EOT token when several candidates exist (it takes a hash map's iteration order;
//! here the first in its own candidate list, so `<|im_end|>` over `<|endoftext|>`), ties in
//! special-token length (by id here), and malformed metadata (llama.cpp asserts, warns and
//! carries on, or reads out of bounds; here every such case is a [`TokenizerError`]).

mod bpe;
mod bytes;
mod error;
mod hash;
mod load;
mod pre;
mod special;
mod spm;
mod stream;

use std::borrow::Cow;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use crate::gguf::Gguf;

pub use error::TokenizerError;
pub use stream::StreamDecoder;

use hash::FastMap;
use special::Fragment;

/// A token's attributes: llama.cpp's `llama_token_attr` bit set. A token loaded from
/// `tokenizer.ggml.token_type` has exactly one of the type bits; llama.cpp's per-model fixes may
/// add `LSTRIP`/`RSTRIP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(u32);

impl TokenAttr {
    pub const UNDEFINED: Self = Self(0);
    pub const UNKNOWN: Self = Self(1 << 0);
    pub const UNUSED: Self = Self(1 << 1);
    pub const NORMAL: Self = Self(1 << 2);
    pub const CONTROL: Self = Self(1 << 3);
    pub const USER_DEFINED: Self = Self(1 << 4);
    pub const BYTE: Self = Self(1 << 5);
    pub const NORMALIZED: Self = Self(1 << 6);
    pub const LSTRIP: Self = Self(1 << 7);
    pub const RSTRIP: Self = Self(1 << 8);
    pub const SINGLE_WORD: Self = Self(1 << 9);

    /// The raw bits, numbered as in llama.h.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
    const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl BitOr for TokenAttr {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOrAssign for TokenAttr {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// Which tokenization algorithm a model uses (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `"gpt2"`: byte-level BPE with a regex pre-tokenizer.
    Bpe,
    /// `"llama"`: SentencePiece-style merging by score, with byte fallback.
    Spm,
}

#[derive(Clone, Debug)]
struct Token {
    text: Box<str>,
    attr: TokenAttr,
}

#[derive(Clone, Debug)]
enum Model {
    Bpe {
        pre: pre::PreTokenizer,
        /// Try each whole word as a token before merging (Llama 3).
        ignore_merges: bool,
        merges: bpe::Merges,
        /// The token of each byte's byte-level character.
        byte_token: Box<[Option<u32>; 256]>,
    },
    Spm {
        scores: Vec<f32>,
        /// The byte-fallback token of each byte: `<0xXX>`, else the one-byte text, else UNK.
        byte_token: Box<[Option<u32>; 256]>,
    },
}

/// A model's tokenizer: text to token ids and back.
#[derive(Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    pre_name: String,
    tokens: Vec<Token>,
    token_to_id: FastMap<Box<str>, u32>,
    model: Model,
    /// Candidates for `special::partition`: control, user-defined and unknown tokens, longest
    /// text first, ties by id.
    specials: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    /// End-of-generation tokens, sorted.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("pre", &self.pre_name)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self, TokenizerError> {
        load::load(g)
    }

    /// Tokenizes `text` exactly as llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// `add_special` adds BOS/EOS where the model wants them; `parse_special` lets control tokens
    /// written in the text (`<|im_start|>`) become their ids. Pass `parse_special = false` for
    /// text a user typed, so it cannot forge turn markers.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let specials = self.specials.iter().filter_map(|&id| {
            let token = self.tokens.get(id as usize)?;
            Some((id, &*token.text, token.attr))
        });
        let fragments = special::partition(text, specials, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Bpe { pre, ignore_merges, merges, byte_token } => {
                let mut session = bpe::Session::default();
                let mut mapped = String::new();
                for fragment in fragments {
                    let (start, end) = match fragment {
                        Fragment::Token(id) => {
                            out.push(id);
                            continue;
                        }
                        Fragment::Text(start, end) => (start, end),
                    };
                    for word in pre.split(text.get(start..end).unwrap_or_default()) {
                        if *ignore_merges {
                            mapped.clear();
                            mapped.extend(word.bytes().map(bytes::byte_to_char));
                            if let Some(&id) = self.token_to_id.get(mapped.as_str()) {
                                out.push(id);
                                continue;
                            }
                        }
                        session.encode_word(word.as_bytes(), byte_token, merges, &mut out);
                    }
                }
            }
            Model::Spm { scores, byte_token } => {
                let vocab = spm::Vocab { token_to_id: &self.token_to_id, scores, byte_token };
                // A fragment right after a special token (or at the start) gets the space
                // prefix, as if it began a new text.
                let mut after_special = true;
                let mut escaped = String::new();
                for fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                        Fragment::Text(start, end) => {
                            escaped.clear();
                            if self.add_space_prefix && after_special {
                                escaped.push('▁');
                            }
                            let piece = text.get(start..end).unwrap_or_default();
                            escaped.extend(piece.chars().map(|c| if c == ' ' { '▁' } else { c }));
                            spm::encode(&vocab, &escaped, &mut out);
                            after_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// The text of `ids` as a user should see it: control and unknown tokens are left out, every
    /// other token contributes its bytes, and the bytes are read as UTF-8 (invalid sequences
    /// become U+FFFD). This is `llama_detokenize(remove_special = false, unparse_special = false)`
    /// except that llama.cpp's `clean_spaces` heuristics (dropping the space in " ," or " 's" for
    /// some BPE models) are not applied, because they lose information; SmolLM2 has them off.
    /// For SentencePiece models the first token's leading space (from the space prefix) is
    /// dropped, as llama.cpp does.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_impl(ids, false)
    }

    /// Like [`decode`](Self::decode), but control tokens appear as their text (`<|im_end|>`):
    /// llama.cpp's `unparse_special = true`. For logs and debugging.
    pub fn decode_special(&self, ids: &[u32]) -> String {
        self.decode_impl(ids, true)
    }

    fn decode_impl(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            bytes.extend_from_slice(&self.piece_at(id, special, i == 0));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes one token stands for: llama.cpp's `llama_token_to_piece(id, lstrip = 0,
    /// special)`. Empty for an id outside the vocabulary, for control and unknown tokens unless
    /// `special`, and for token types the model never emits as text (unused, undefined, and byte
    /// tokens of a BPE model).
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        self.piece_at(id, special, false).into_owned()
    }

    /// [`token_to_piece`](Self::token_to_piece), dropping one leading space if `first` and the
    /// model prefixes a space when encoding (llama_detokenize's `remove_space`).
    fn piece_at(&self, id: u32, special: bool, first: bool) -> Cow<'_, [u8]> {
        let Some(token) = self.tokens.get(id as usize) else { return Cow::Borrowed(&[]) };
        let attr = token.attr;
        let hidden = TokenAttr::UNKNOWN | TokenAttr::CONTROL;
        if !special && attr.intersects(hidden) {
            return Cow::Borrowed(&[]);
        }
        let text = &*token.text;
        let piece: Cow<'_, [u8]> = if attr.intersects(hidden | TokenAttr::USER_DEFINED) {
            Cow::Borrowed(text.as_bytes())
        } else if attr.contains(TokenAttr::NORMAL) {
            match self.kind {
                TokenizerKind::Bpe => Cow::Owned(byte_level_decode(text)),
                TokenizerKind::Spm if text.contains('▁') => Cow::Owned(text.replace('▁', " ").into_bytes()),
                TokenizerKind::Spm => Cow::Borrowed(text.as_bytes()),
            }
        } else if attr.contains(TokenAttr::BYTE) && self.kind == TokenizerKind::Spm {
            Cow::Owned(vec![spm_byte_value(text)])
        } else {
            Cow::Borrowed(&[])
        };
        match piece {
            Cow::Borrowed([b' ', rest @ ..]) if first && self.add_space_prefix => Cow::Borrowed(rest),
            Cow::Owned(mut v) if first && self.add_space_prefix && v.first() == Some(&b' ') => {
                v.remove(0);
                Cow::Owned(v)
            }
            other => other,
        }
    }

    /// Which algorithm this tokenizer runs.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The pre-tokenizer name (`tokenizer.ggml.pre`, `"default"` when absent).
    pub fn pre(&self) -> &str {
        &self.pre_name
    }

    /// Number of tokens; every valid id is below it.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token: `tokenizer.ggml.eot_token_id`, else the first of llama.cpp's
    /// candidates present (`<|eot_id|>`, `<|im_end|>`, `<|end|>`, `<end_of_turn>`,
    /// `<|endoftext|>`, …). For ChatML models this is `<|im_end|>`.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// End-of-message token (`<|eom_id|>`, Llama 3.1 tool calls).
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether `encode(_, add_special = true, _)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether `encode(_, add_special = true, _)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }

    /// Whether generating `id` should end generation: EOS, EOT, EOM and the other tokens
    /// llama.cpp treats as end-of-generation (`llama_vocab_is_eog`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens, ascending.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` is a control token (BOS, EOS, `<|im_start|>`, …), hidden by [`decode`](Self::decode).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id).is_some_and(|a| a.contains(TokenAttr::CONTROL))
    }

    /// The attributes of `id`, or `None` outside the vocabulary.
    pub fn token_attr(&self, id: u32) -> Option<TokenAttr> {
        self.tokens.get(id as usize).map(|t| t.attr)
    }

    /// The vocabulary's text for `id`, as stored (byte-level BPE texts are in GPT-2's byte
    /// alphabet, e.g. `Ġthe`; SentencePiece texts use `▁`). Use [`decode`](Self::decode) for
    /// readable text.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| &*t.text)
    }

    /// The id of the token whose stored text is exactly `text` (e.g. `"<|im_end|>"`).
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
}

/// A byte-level BPE token's bytes. A character outside the byte alphabet cannot come from a
/// correct vocabulary; llama.cpp renders it as `[UNK_BYTE_0x…]`, and so does this.
fn byte_level_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match bytes::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The byte of a SentencePiece byte token `<0xXX>`: the hex digits at offsets 3..5, read like
/// llama.cpp's `strtol` (stopping at the first non-digit; none gives 0).
fn spm_byte_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..5).unwrap_or_default();
    digits
        .iter()
        .map_while(|&d| char::from(d).to_digit(16))
        .fold(0u8, |acc, d| acc.wrapping_mul(16).wrapping_add(d as u8))
}

impl TokenAttr {
    /// The attribute llama.cpp gives a `tokenizer.ggml.token_type` value.
    fn from_token_type(t: i64) -> Self {
        match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        }
    }
}

#[cfg(test)]
mod tests;
