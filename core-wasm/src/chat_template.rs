//! Chat templates from GGUF metadata (in progress).
