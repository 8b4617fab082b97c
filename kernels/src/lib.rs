//! Hearth's numeric kernels.
//!
//! Every op exists twice: a WGSL compute shader run through wgpu (`gpu`), and a CPU twin
//! (`cpu`) that is both the fallback backend and the reference the GPU kernel is tested
//! against. This crate knows nothing about models.

pub mod cpu;
mod error;
pub mod gpu;
pub mod quant;

pub use error::KernelError;
