//! The same kernel checks as `gpu_matches_cpu.rs`, on WebGPU in headless Chromium (SwiftShader),
//! inside a dedicated worker as the engine runs them:
//! `cargo test -p hearth-kernels --target wasm32-unknown-unknown` (scripts/test.sh does).
#![cfg(target_arch = "wasm32")]

mod common;

use hearth_kernels::gpu::GpuContext;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

async fn gpu() -> GpuContext {
    GpuContext::new().await.expect("a WebGPU adapter (Chromium with --enable-unsafe-webgpu)")
}

#[wasm_bindgen_test]
async fn adapter_reports_its_limits() {
    common::adapter_reports_its_limits(&gpu().await);
}

#[wasm_bindgen_test]
async fn matvec_matches_cpu_reference() {
    common::matvec_matches_cpu_reference(&gpu().await).await;
}

#[wasm_bindgen_test]
async fn matvec_spills_rows_past_one_dispatch_dimension() {
    common::matvec_spills_rows_past_one_dispatch_dimension(&gpu().await).await;
}

#[wasm_bindgen_test]
async fn matvec_rejects_bad_shapes_before_touching_the_gpu() {
    common::matvec_rejects_bad_shapes(&gpu().await).await;
}

/// The CPU kernels in wasm (SIMD128, single thread here) against the scalar reference.
#[wasm_bindgen_test]
fn cpu_matvec_matches_reference_in_wasm() {
    let (w, x) = common::inputs(257, 129);
    let fast = hearth_kernels::cpu::matvec(&w, &x, 257, 129).unwrap();
    let slow = hearth_kernels::cpu::matvec_reference(&w, &x, 257, 129).unwrap();
    for (a, b) in fast.iter().zip(&slow) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
}

/// The quantised matvec in wasm (the SIMD128 kernels when built with `+simd128`, as
/// scripts/test.sh does) against the portable per-row dot products, bit for bit.
#[wasm_bindgen_test]
fn quantised_matvec_is_bit_identical_to_the_portable_dot_in_wasm() {
    use hearth_kernels::cpu::{Activations, dot_q4_0_q8_0, dot_q4_1_q8_1, dot_q8_0_q8_0, matmul_quant};
    use hearth_kernels::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QuantFormat};

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Arbitrary bytes for the quants; scales of either sign over many magnitudes (f16 bytes).
    let mut bytes = |n: usize| (0..n).map(|_| next() as u8).collect::<Vec<u8>>();
    let (rows, blocks) = (4 * 5 + 3, 7);
    let cols = 32 * blocks;
    for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
        let mut w = bytes(rows * blocks * format.block_bytes());
        let scales = bytes(w.len());
        for (i, block) in w.chunks_exact_mut(format.block_bytes()).enumerate() {
            let fields = if format == QuantFormat::Q4_1 { 2 } else { 1 };
            for f in 0..fields {
                let r = u16::from(scales[i * 4 + f]) << 8 | u16::from(scales[i * 4 + f + 2]);
                let v = (r % 2000) as f32 / 1000.0 * 2f32.powi(i32::from(r >> 12) - 10);
                let v = if r & 1 == 0 { v } else { -v };
                block[2 * f..2 * f + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
        // Six vectors: a whole tile of tokens for the prefill kernels and two left over.
        let xs: Vec<Activations> = (0..6)
            .map(|t| {
                let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 + t * 104_729) % 2003) as f32 / 400.0 - 2.5).collect();
                Activations::for_weights(format, &x).unwrap()
            })
            .collect();
        let got = matmul_quant(format, &w, rows, cols, &xs).unwrap();
        let row_bytes = w.len() / rows;
        for (t, x) in xs.iter().enumerate() {
            for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                let want = match x {
                    Activations::Q8_0(x) if format == QuantFormat::Q4_0 => {
                        dot_q4_0_q8_0(bytemuck::cast_slice::<u8, BlockQ4_0>(row), x)
                    }
                    Activations::Q8_0(x) => dot_q8_0_q8_0(bytemuck::cast_slice::<u8, BlockQ8_0>(row), x),
                    Activations::Q8_1(x) => dot_q4_1_q8_1(bytemuck::cast_slice::<u8, BlockQ4_1>(row), x),
                    _ => unreachable!("Q8 activations for Q4/Q8 weights"),
                };
                let g = got[t * rows + r];
                assert_eq!(g.to_bits(), want.to_bits(), "{format} vector {t} row {r}: {g} vs {want}");
            }
        }
    }
}
