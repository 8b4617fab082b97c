//! CPU kernels: a plain scalar reference for every op, and the fast version the CPU backend
//! runs (vectorisable inner loops, rows split across the rayon pool). On wasm the pool is
//! wasm-bindgen-rayon's Web Workers in the threaded build and the calling thread otherwise.

mod matvec;
pub mod ops;
mod quant_matvec;

pub(crate) use matvec::check_matvec_shape;
pub use matvec::{matvec, matvec_reference};
pub use quant_matvec::{Activations, dot_q4_0_q8_0, dot_q4_1_q8_1, dot_q8_0_q8_0, matmul_quant, matvec_quant};
