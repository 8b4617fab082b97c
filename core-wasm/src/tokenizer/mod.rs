//! Tokenizers from GGUF metadata (in progress).
