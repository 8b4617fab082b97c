//! Choosing tokens on the device so a decode step reads back a few bytes, not the logits
//! (`wgsl/sample.wgsl`): argmax, and the top k logits for sampling on the CPU.
//!
//! Both run in two dispatches: `groups` workgroups each reduce a contiguous chunk of the
//! logits to their best candidates in a scratch buffer the op owns, then one workgroup reduces
//! those. Logits compare as integer keys: NaN below everything, -0 equal to +0, the lower
//! index first among equals.

use super::GpuContext;
use super::tensor::{Dispatch, GpuBuffer, GpuOp, StepBuffer, bind, pipeline, shader, uniform};
use crate::KernelError;

/// Invocations per workgroup (`WG` in the WGSL).
const WG: u32 = 256;
/// Slots of the top-k sort in workgroup memory (`SLOTS` in the WGSL).
const SLOTS: u32 = 1024;
/// The most logits `op_top_k` returns.
const MAX_TOP_K: u32 = 256;
/// Logits per workgroup of the argmax's first phase (16 per invocation).
const ARGMAX_CHUNK: u32 = 16 * WG;
/// At most this many workgroups in a first phase (the second reduces their candidates alone).
const MAX_PARTIAL_GROUPS: u32 = 1024;

pub(crate) struct SampleKernels {
    argmax_partial: wgpu::ComputePipeline,
    argmax_final: wgpu::ComputePipeline,
    top_k_partial: wgpu::ComputePipeline,
    top_k_final: wgpu::ComputePipeline,
}

impl SampleKernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = shader(device, "sample.wgsl", include_str!("../../wgsl/sample.wgsl"));
        Self {
            argmax_partial: pipeline(device, &module, "argmax_partial"),
            argmax_final: pipeline(device, &module, "argmax_final"),
            top_k_partial: pipeline(device, &module, "top_k_partial"),
            top_k_final: pipeline(device, &module, "top_k_final"),
        }
    }
}

/// `SampleParams` of `sample.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SampleParams {
    n: u32,
    k: u32,
    chunk: u32,
    groups: u32,
}

impl GpuContext {
    /// `out[0]` = index of the largest of `logits[..n]` (the lowest index among equals),
    /// `out[1]` = its value's f32 bits.
    pub fn op_argmax(
        &self,
        logits: &GpuBuffer,
        n: u32,
        out: &GpuBuffer,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "argmax";
        check_sample_buffers(OP, logits, n, 1, out)?;
        let groups = n.div_ceil(ARGMAX_CHUNK).min(MAX_PARTIAL_GROUPS);
        let chunk = n.div_ceil(groups);
        let params = SampleParams { n, k: 1, chunk, groups };
        self.sample_op(OP, [&self.sample.argmax_partial, &self.sample.argmax_final], logits, out, step, params)
    }

    /// The `k` largest of `logits[..n]`, largest first (lower index first among equals), as
    /// `k` pairs `out[2i] = index`, `out[2i + 1] = f32 bits of the value`. `k` ≤ 256.
    pub fn op_top_k(
        &self,
        logits: &GpuBuffer,
        n: u32,
        k: u32,
        out: &GpuBuffer,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "top_k";
        if k == 0 || k > MAX_TOP_K {
            return Err(KernelError::OpShape { op: OP, why: format!("k {k} is outside 1..={MAX_TOP_K}") });
        }
        check_sample_buffers(OP, logits, n, k, out)?;
        // Each workgroup sorts rounds of SLOTS - k new candidates, the first phase over n / groups
        // logits, the second over groups · k candidates: about sqrt(n / k) workgroups balance
        // the two, and none gets less than one round.
        let balanced = (f64::from(n) / f64::from(k)).sqrt().round() as u32;
        let groups = balanced.clamp(1, MAX_PARTIAL_GROUPS).min(n.div_ceil(SLOTS - k));
        let chunk = n.div_ceil(groups);
        let params = SampleParams { n, k, chunk, groups };
        self.sample_op(OP, [&self.sample.top_k_partial, &self.sample.top_k_final], logits, out, step, params)
    }

    /// The two dispatches of a `sample.wgsl` op, with a scratch buffer of `groups · k` pairs.
    fn sample_op(
        &self,
        label: &'static str,
        [partial, last]: [&wgpu::ComputePipeline; 2],
        logits: &GpuBuffer,
        out: &GpuBuffer,
        step: &StepBuffer,
        params: SampleParams,
    ) -> Result<GpuOp, KernelError> {
        let scratch = self.buffer("sample scratch", 2 * params.groups as usize * params.k as usize)?;
        let uniforms = uniform(&self.device, "sample params", &params);
        let partial_group = bind(
            &self.device,
            label,
            partial,
            &[step.buffer.as_entire_binding(), uniforms.as_entire_binding(), logits.binding(), scratch.binding()],
        );
        let final_group = bind(
            &self.device,
            label,
            last,
            &[
                step.buffer.as_entire_binding(),
                uniforms.as_entire_binding(),
                logits.binding(),
                scratch.binding(),
                out.binding(),
            ],
        );
        let groups = params.groups;
        Ok(GpuOp {
            label,
            dispatches: vec![
                Dispatch {
                    pipeline: partial.clone(),
                    bind_group: partial_group,
                    grid: Box::new(move |_| [groups, 1, 1]),
                },
                Dispatch { pipeline: last.clone(), bind_group: final_group, grid: Box::new(|_| [1, 1, 1]) },
            ],
            // One row of logits, whatever the step: no buffer here is sized in tokens.
            max_tokens: u32::MAX,
        })
    }
}

/// `logits` holds `n` ≥ `k` values and `out` room for `k` pairs, in another buffer.
fn check_sample_buffers(
    op: &'static str,
    logits: &GpuBuffer,
    n: u32,
    k: u32,
    out: &GpuBuffer,
) -> Result<(), KernelError> {
    if n == 0 || n < k {
        return Err(KernelError::OpShape { op, why: format!("n {n} logits, need at least {} (k {k})", k.max(1)) });
    }
    if logits.len() < n as usize {
        return Err(KernelError::OpShape {
            op,
            why: format!("logits holds {} values, fewer than n {n}", logits.len()),
        });
    }
    if out.len() < 2 * k as usize {
        return Err(KernelError::OpShape {
            op,
            why: format!("out holds {} values, {k} (index, value) pairs need {}", out.len(), 2 * k),
        });
    }
    if logits.buffer == out.buffer {
        return Err(KernelError::OpShape { op, why: "logits and out are the same buffer".into() });
    }
    Ok(())
}
