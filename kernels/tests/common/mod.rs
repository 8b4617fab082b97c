//! Kernel checks shared by the native (lavapipe) and browser (WebGPU) test binaries: one body,
//! every backend.
// Each test binary uses only some of these.
#![allow(dead_code)]

use hearth_kernels::{KernelError, cpu, gpu::GpuContext};

pub fn inputs(rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let w = (0..rows * cols).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 500.0).collect();
    let x = (0..cols).map(|i| ((i * 104729 % 997) as f32 - 498.0) / 300.0).collect();
    (w, x)
}

pub fn adapter_reports_its_limits(ctx: &GpuContext) {
    let a = ctx.adapter();
    assert!(a.max_storage_buffer_binding_size >= 128 << 20, "{a:?}");
    assert!(a.max_compute_workgroups_per_dimension >= 65535, "{a:?}");
}

/// GPU matvec against the CPU reference on ragged shapes (columns not a multiple of the
/// 64-wide workgroup, one row, a tall matrix).
pub async fn matvec_matches_cpu_reference(ctx: &GpuContext) {
    for (rows, cols) in [(1, 1), (5, 63), (64, 65), (300, 1000), (2048, 576)] {
        let (w, x) = inputs(rows, cols);
        let want = cpu::matvec_reference(&w, &x, rows, cols).unwrap();
        let got = ctx.matvec(&w, &x, rows, cols).await.unwrap();
        assert_eq!(got.len(), rows);
        for (r, (g, c)) in got.iter().zip(&want).enumerate() {
            // Different summation order: allow f32 rounding growing with sqrt(cols).
            let tol = 1e-5 * (cols as f32).sqrt() * c.abs().max(1.0);
            assert!((g - c).abs() <= tol, "{rows}x{cols} row {r}: gpu {g} cpu {c}");
        }
    }
}

/// More rows than the 65535 workgroups one dispatch dimension allows.
pub async fn matvec_spills_rows_past_one_dispatch_dimension(ctx: &GpuContext) {
    let (rows, cols) = (70_000, 3);
    let (w, x) = inputs(rows, cols);
    let want = cpu::matvec_reference(&w, &x, rows, cols).unwrap();
    let got = ctx.matvec(&w, &x, rows, cols).await.unwrap();
    let worst = got.iter().zip(&want).map(|(g, c)| (g - c).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "worst error {worst}");
}

pub async fn matvec_rejects_bad_shapes(ctx: &GpuContext) {
    let err = ctx.matvec(&[1.0; 6], &[1.0; 2], 2, 3).await.unwrap_err();
    assert!(matches!(err, KernelError::MatvecShape { .. }), "{err}");
}

/// Declares each `name => check` (an `async fn(&GpuContext)`) as a test twice over: natively on
/// Vulkan (lavapipe where there is no GPU) and, in the wasm build, on WebGPU in a dedicated
/// worker of headless Chromium. A test file holds its checks and one `gpu_tests!` call.
#[macro_export]
macro_rules! gpu_tests {
    ($($name:ident => $check:path),* $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);

        $(
            #[cfg(not(target_arch = "wasm32"))]
            #[test]
            fn $name() {
                let ctx = pollster::block_on(hearth_kernels::gpu::GpuContext::new())
                    .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
                pollster::block_on($check(&ctx));
            }

            #[cfg(target_arch = "wasm32")]
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $name() {
                let ctx = hearth_kernels::gpu::GpuContext::new()
                    .await
                    .expect("a WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
                $check(&ctx).await;
            }
        )*
    };
}

/// Deterministic pseudo-random values in `[-scale, scale]` (xorshift), for kernel inputs.
pub fn random_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
