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
