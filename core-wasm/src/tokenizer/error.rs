//! Why a GGUF's tokenizer metadata could not be turned into a [`Tokenizer`](super::Tokenizer).

use thiserror::Error;

/// Everything that can be wrong with a model's tokenizer metadata. Each variant names the key
/// and the offending value, so the message alone says which file is broken and how.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum TokenizerError {
    #[error("metadata {0:?} is missing")]
    MissingKey(&'static str),
    #[error("metadata {key:?} is {found}, expected {expected}")]
    WrongType { key: &'static str, expected: &'static str, found: &'static str },
    #[error("element #{index} of metadata {key:?} is {found}, expected {expected}")]
    WrongElementType { key: &'static str, index: usize, expected: &'static str, found: &'static str },
    #[error("tokenizer.ggml.model {0:?} is not supported (\"gpt2\" and \"llama\" are)")]
    UnsupportedModel(String),
    #[error("tokenizer.ggml.pre {0:?} is not a supported pre-tokenizer")]
    UnsupportedPre(String),
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    #[error("metadata {key:?} has {len} entries, but tokenizer.ggml.tokens has {n_tokens}")]
    LengthMismatch { key: &'static str, len: usize, n_tokens: usize },
    #[error("token {id} has the same text {text:?} as token {first}")]
    DuplicateToken { id: u32, first: u32, text: String },
    #[error("merge #{index} {merge:?} is not two tokens separated by a space")]
    MalformedMerge { index: usize, merge: String },
    #[error("merge #{index} {merge:?} names {token:?}, which is not in the vocabulary")]
    MergeUnknownToken { index: usize, merge: String, token: String },
    #[error("metadata {key:?} is token id {id}, but the vocabulary has only {n_tokens} tokens")]
    TokenIdOutOfRange { key: &'static str, id: u64, n_tokens: usize },
    #[error("pre-tokenizer regex {pattern:?} does not compile: {message}")]
    Regex { pattern: String, message: String },
}
