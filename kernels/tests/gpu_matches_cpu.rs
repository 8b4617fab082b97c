//! The WGSL kernels against their CPU twins, natively through wgpu on Vulkan (Mesa's lavapipe
//! where there is no GPU). `web_gpu_matches_cpu.rs` runs the same checks on WebGPU in Chromium.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use hearth_kernels::gpu::GpuContext;

fn gpu() -> GpuContext {
    pollster::block_on(GpuContext::new()).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)")
}

#[test]
fn adapter_reports_its_limits() {
    common::adapter_reports_its_limits(&gpu());
}

#[test]
fn matvec_matches_cpu_reference() {
    pollster::block_on(common::matvec_matches_cpu_reference(&gpu()));
}

#[test]
fn matvec_spills_rows_past_one_dispatch_dimension() {
    pollster::block_on(common::matvec_spills_rows_past_one_dispatch_dimension(&gpu()));
}

#[test]
fn matvec_rejects_bad_shapes_before_touching_the_gpu() {
    pollster::block_on(common::matvec_rejects_bad_shapes(&gpu()));
}
