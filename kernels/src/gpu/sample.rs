//! Choosing the greedy token on the device (`wgsl/sample.wgsl`), so that a decode step reads
//! back 4 bytes (the index), not the logits.
//!
//! Argmax runs in two dispatches: `groups` workgroups each reduce a contiguous chunk of the
//! logits to their best candidate in a scratch buffer the op owns, then one workgroup reduces
//! those. Logits compare as integer keys: NaN below everything, -0 equal to +0, the lower
//! index first among equals.

use super::GpuContext;
use super::tensor::{Dispatch, GpuBuffer, GpuOp, StepBuffer, bind, pipeline, shader, uniform};
use crate::KernelError;

/// Invocations per workgroup (`WG` in the WGSL).
const WG: u32 = 256;
/// Logits per workgroup of the argmax's first phase (16 per invocation).
const ARGMAX_CHUNK: u32 = 16 * WG;
/// At most this many workgroups in a first phase (the second reduces their candidates alone).
const MAX_PARTIAL_GROUPS: u32 = 1024;

pub(crate) struct SampleKernels {
    argmax_partial: wgpu::ComputePipeline,
    argmax_final: wgpu::ComputePipeline,
}

impl SampleKernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = shader(device, "sample.wgsl", include_str!("../../wgsl/sample.wgsl"));
        Self {
            argmax_partial: pipeline(device, &module, "argmax_partial"),
            argmax_final: pipeline(device, &module, "argmax_final"),
        }
    }
}

/// `SampleParams` of `sample.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SampleParams {
    n: u32,
    chunk: u32,
    groups: u32,
    _pad: u32,
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
        check_sample_buffers(OP, logits, n, out)?;
        let groups = n.div_ceil(ARGMAX_CHUNK).min(MAX_PARTIAL_GROUPS);
        let chunk = n.div_ceil(groups);
        let params = SampleParams { n, chunk, groups, _pad: 0 };
        self.sample_op(OP, [&self.sample.argmax_partial, &self.sample.argmax_final], logits, out, step, params)
    }

    /// The two dispatches of a `sample.wgsl` op, with a scratch buffer of `groups` pairs.
    fn sample_op(
        &self,
        label: &'static str,
        [partial, last]: [&wgpu::ComputePipeline; 2],
        logits: &GpuBuffer,
        out: &GpuBuffer,
        step: &StepBuffer,
        params: SampleParams,
    ) -> Result<GpuOp, KernelError> {
        let scratch = self.buffer("sample scratch", 2 * params.groups as usize)?;
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

/// `logits` holds `n` ≥ 1 values and `out` room for one pair, in another buffer.
fn check_sample_buffers(op: &'static str, logits: &GpuBuffer, n: u32, out: &GpuBuffer) -> Result<(), KernelError> {
    if n == 0 {
        return Err(KernelError::OpShape { op, why: "n 0 logits, need at least 1".into() });
    }
    if logits.len() < n as usize {
        return Err(KernelError::OpShape {
            op,
            why: format!("logits holds {} values, fewer than n {n}", logits.len()),
        });
    }
    if out.len() < 2 {
        return Err(KernelError::OpShape {
            op,
            why: format!("out holds {} values, an (index, value) pair needs 2", out.len()),
        });
    }
    if logits.buffer == out.buffer {
        return Err(KernelError::OpShape { op, why: "logits and out are the same buffer".into() });
    }
    Ok(())
}
