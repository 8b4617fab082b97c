//! CPU kernels: a plain scalar reference for every op, and the fast version the CPU backend
//! runs (vectorisable inner loops, rows split across the rayon pool). On wasm the pool is
//! wasm-bindgen-rayon's Web Workers in the threaded build and the calling thread otherwise.

mod attention;
mod interleave;
mod matvec;
pub mod ops;
pub mod pool;
#[cfg(target_arch = "x86_64")]
pub(crate) mod quant_avx2;
#[cfg(target_arch = "x86_64")]
mod quant_avx512;
mod quant_matvec;
#[cfg(target_arch = "aarch64")]
mod quant_neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod quant_simd128;
mod quantize;
mod simd_level;

pub use attention::{KvHead, attend_head};
pub use interleave::{GROUP, RowLayout, dequantize_row, interleave_rows, plain_row};
pub(crate) use matvec::check_matvec_shape;
pub use matvec::{matvec, matvec_reference};
pub use quant_matvec::{
    Activations, QuantWeights, dot_q4_0_q8_0, dot_q4_1_q8_1, dot_q4_k_q8_k, dot_q5_0_q8_0, dot_q5_1_q8_1,
    dot_q5_k_q8_k, dot_q6_k_q8_k, dot_q8_0_q8_0, matmul_quant, matmul_quant_layout, matmul_quant_many, matvec_quant,
};
pub use simd_level::SimdLevel;
