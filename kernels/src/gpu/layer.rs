//! The row-wise and element-wise ops of a transformer layer: RMSNorm (`wgsl/norm.wgsl`), RoPE
//! (`wgsl/rope.wgsl`), SwiGLU, GeGLU, the residual add, biases and constant factors
//! (`wgsl/elementwise.wgsl`). CPU twins in [`crate::cpu::ops`].

use super::GpuContext;
use super::tensor::{Dispatch, GpuBuffer, GpuOp, Step, StepBuffer, bind, pipeline, shader, uniform};
use crate::KernelError;

/// Invocations per workgroup of every kernel here (`WG` in the WGSL).
const WG: u32 = 256;
/// Workgroups one dispatch dimension may hold (WebGPU's guaranteed minimum).
const MAX_GROUPS: u32 = 65535;

pub(crate) struct LayerKernels {
    rms_norm: wgpu::ComputePipeline,
    rope: wgpu::ComputePipeline,
    silu_mul: wgpu::ComputePipeline,
    gelu_mul: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    add_bias: wgpu::ComputePipeline,
    scale: wgpu::ComputePipeline,
}

impl LayerKernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let norm = shader(device, "norm.wgsl", include_str!("../../wgsl/norm.wgsl"));
        let rope = shader(device, "rope.wgsl", include_str!("../../wgsl/rope.wgsl"));
        let elementwise = shader(device, "elementwise.wgsl", include_str!("../../wgsl/elementwise.wgsl"));
        Self {
            rms_norm: pipeline(device, &norm, "rms_norm"),
            rope: pipeline(device, &rope, "rope"),
            silu_mul: pipeline(device, &elementwise, "silu_mul"),
            gelu_mul: pipeline(device, &elementwise, "gelu_mul"),
            add: pipeline(device, &elementwise, "add"),
            add_bias: pipeline(device, &elementwise, "add_bias"),
            scale: pipeline(device, &elementwise, "scale"),
        }
    }
}

/// `NormParams` of `norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    dim: u32,
    eps: f32,
    last_token: u32,
    rows_per_token: u32,
}

/// `RopeParams` of `rope.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,
    log2_theta_scale: f32,
    _pad: [u32; 3],
}

/// `EltParams` of `elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EltParams {
    width: u32,
    factor: f32,
    _pad: [u32; 2],
}

/// A grid of `groups` workgroups: along x up to the per-dimension limit, the rest in rows of
/// y (the kernels index `x + y · groups_x` and skip what lies past their work).
fn spill_grid(groups: u64) -> [u32; 3] {
    if groups == 0 {
        return [0, 1, 1];
    }
    let x = groups.min(u64::from(MAX_GROUPS));
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// How many tokens of `width` values `buf` holds; at least one, or an error naming `name`.
fn tokens_in(op: &'static str, name: &str, buf: &GpuBuffer, width: u32) -> Result<u32, KernelError> {
    if width == 0 {
        return Err(KernelError::OpShape { op, why: format!("width of {name} is 0") });
    }
    let tokens = buf.len() / width as usize;
    if tokens == 0 {
        return Err(KernelError::OpShape {
            op,
            why: format!("{name} holds {} values, less than one token of {width}", buf.len()),
        });
    }
    Ok(tokens.min(u32::MAX as usize) as u32)
}

/// Fails unless `buf` holds at least `needed` values.
fn holds(op: &'static str, name: &str, buf: &GpuBuffer, needed: usize, what: &str) -> Result<(), KernelError> {
    if buf.len() < needed {
        return Err(KernelError::OpShape {
            op,
            why: format!("{name} holds {} values, {needed} needed for {what}", buf.len()),
        });
    }
    Ok(())
}

/// Fails when `a` and `b` are the same buffer (one is written while the other is read).
fn distinct(op: &'static str, a: (&str, &GpuBuffer), b: (&str, &GpuBuffer)) -> Result<(), KernelError> {
    if a.1.buffer == b.1.buffer {
        return Err(KernelError::OpShape { op, why: format!("{} and {} are the same buffer", a.0, b.0) });
    }
    Ok(())
}

/// Which rows an RMSNorm reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormRows {
    /// Every token of the step: `out[t] = norm(x[t])`.
    AllTokens,
    /// Every head of every token of the step, each token holding `heads` rows of `dim`
    /// values (per-head q/k norms): `out[t][h] = norm(x[t][h])`.
    EachHead { heads: u32 },
    /// Only the step's last token, written to `out[0]` (before the output head).
    LastToken,
}

/// Rotary embedding of one projection (queries or keys).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeSpec {
    /// NeoX layout (dimension i pairs with i + n_rot/2; qwen2, gemma) instead of adjacent pairs
    /// (llama).
    pub neox: bool,
    pub n_heads: u32,
    pub head_dim: u32,
    /// Leading dimensions of each head that rotate.
    pub n_rot: u32,
    pub base: f32,
}

impl GpuContext {
    /// One dispatch of `pipeline` bound to `resources` (bindings 0, 1, ...).
    fn layer_op(
        &self,
        label: &'static str,
        pipeline: &wgpu::ComputePipeline,
        resources: &[wgpu::BindingResource<'_>],
        max_tokens: u32,
        grid: impl Fn(Step) -> [u32; 3] + 'static,
    ) -> GpuOp {
        let bind_group = bind(&self.device, label, pipeline, resources);
        GpuOp {
            label,
            dispatches: vec![Dispatch { pipeline: pipeline.clone(), bind_group, grid: Box::new(grid) }],
            max_tokens,
        }
    }

    /// `out[t] = x[t] / sqrt(mean(x[t]²) + eps) * weight` for rows of `dim` values
    /// (twin: [`crate::cpu::ops::rms_norm`]). `out` may not alias `x`.
    // The buffers, the row shape and which rows: the op's public API, fixed by its callers.
    #[allow(clippy::too_many_arguments)]
    pub fn op_rms_norm(
        &self,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        out: &GpuBuffer,
        dim: u32,
        eps: f32,
        rows: NormRows,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "rms_norm";
        let rows_per_token = match rows {
            NormRows::EachHead { heads: 0 } => {
                return Err(KernelError::OpShape { op: OP, why: "0 heads per token".into() });
            }
            NormRows::EachHead { heads } => heads,
            NormRows::AllTokens | NormRows::LastToken => 1,
        };
        let width = dim.checked_mul(rows_per_token).ok_or_else(|| KernelError::OpShape {
            op: OP,
            why: format!("{rows_per_token} heads of {dim} overflow u32"),
        })?;
        let max_tokens = tokens_in(OP, "x", x, width)?;
        holds(OP, "weight", weight, dim as usize, &format!("dim {dim}"))?;
        let (out_values, out_rows) = match rows {
            NormRows::AllTokens | NormRows::EachHead { .. } => {
                (max_tokens as usize * width as usize, format!("{max_tokens} tokens of {width}, as x holds"))
            }
            NormRows::LastToken => (dim as usize, format!("the last token, of {dim}")),
        };
        holds(OP, "out", out, out_values, &out_rows)?;
        distinct(OP, ("x", x), ("out", out))?;
        distinct(OP, ("weight", weight), ("out", out))?;
        let last_token = u32::from(rows == NormRows::LastToken);
        let params = uniform(&self.device, "rms_norm params", &NormParams { dim, eps, last_token, rows_per_token });
        let resources =
            [step.buffer.as_entire_binding(), params.as_entire_binding(), x.binding(), weight.binding(), out.binding()];
        // One workgroup per row normalised.
        Ok(self.layer_op(OP, &self.layer.rms_norm, &resources, max_tokens, move |s: Step| match rows {
            NormRows::AllTokens | NormRows::EachHead { .. } => {
                spill_grid(u64::from(s.n_tokens) * u64::from(rows_per_token))
            }
            NormRows::LastToken => spill_grid(u64::from(s.n_tokens.min(1))),
        }))
    }

    /// RoPE in place on `x` (tokens of `n_heads * head_dim` values), token t at position
    /// `step.pos + t` (twins: [`crate::cpu::ops::rope_norm`], [`crate::cpu::ops::rope_neox`]).
    pub fn op_rope(&self, x: &GpuBuffer, spec: RopeSpec, step: &StepBuffer) -> Result<GpuOp, KernelError> {
        const OP: &str = "rope";
        let RopeSpec { neox, n_heads, head_dim, n_rot, base } = spec;
        if n_heads == 0 || head_dim == 0 || n_rot == 0 || n_rot % 2 != 0 || n_rot > head_dim {
            return Err(KernelError::OpShape {
                op: OP,
                why: format!(
                    "n_heads {n_heads}, head_dim {head_dim}, n_rot {n_rot}: need heads, and an even n_rot in 2..=head_dim"
                ),
            });
        }
        if !(base.is_finite() && base > 0.0) {
            return Err(KernelError::OpShape { op: OP, why: format!("base {base} is not a positive number") });
        }
        let width = n_heads.checked_mul(head_dim).ok_or_else(|| KernelError::OpShape {
            op: OP,
            why: format!("{n_heads} heads of {head_dim} overflow u32"),
        })?;
        let max_tokens = tokens_in(OP, "x", x, width)?;
        // theta_scale rounded to f32 exactly as the CPU twin rounds it; its log2 taken in f64
        // here so the kernel's only approximation is its exp2.
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let params = RopeParams {
            n_heads,
            head_dim,
            n_rot,
            neox: u32::from(neox),
            log2_theta_scale: f64::from(theta_scale).log2() as f32,
            _pad: [0; 3],
        };
        let params = uniform(&self.device, "rope params", &params);
        let resources = [step.buffer.as_entire_binding(), params.as_entire_binding(), x.binding()];
        let pairs_per_token = u64::from(n_heads) * u64::from(n_rot / 2);
        Ok(self.layer_op(OP, &self.layer.rope, &resources, max_tokens, move |s: Step| {
            spill_grid((u64::from(s.n_tokens) * pairs_per_token).div_ceil(u64::from(WG)))
        }))
    }

    /// `gate[i] = silu(gate[i]) * up[i]` for tokens of `width` values
    /// (twin: [`crate::cpu::ops::silu_mul`]).
    pub fn op_silu_mul(
        &self,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        width: u32,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        self.layer_elementwise("silu_mul", &self.layer.silu_mul, ("gate", gate), ("up", up), width, step)
    }

    /// `gate[i] = gelu(gate[i]) * up[i]` for tokens of `width` values, GELU rounded through
    /// f16 as ggml's table (twin: [`crate::cpu::ops::gelu_mul`]).
    pub fn op_gelu_mul(
        &self,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        width: u32,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        self.layer_elementwise("gelu_mul", &self.layer.gelu_mul, ("gate", gate), ("up", up), width, step)
    }

    /// `x[i] += y[i]` for tokens of `width` values (twin: [`crate::cpu::ops::add`]).
    pub fn op_add(&self, x: &GpuBuffer, y: &GpuBuffer, width: u32, step: &StepBuffer) -> Result<GpuOp, KernelError> {
        self.layer_elementwise("add", &self.layer.add, ("x", x), ("y", y), width, step)
    }

    /// `x[t] += bias` for every token `t` of `width` values (a projection's bias; twin:
    /// [`crate::cpu::ops::add`] per token).
    pub fn op_add_bias(
        &self,
        x: &GpuBuffer,
        bias: &GpuBuffer,
        width: u32,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "add_bias";
        let max_tokens = tokens_in(OP, "x", x, width)?;
        holds(OP, "bias", bias, width as usize, &format!("width {width}"))?;
        distinct(OP, ("x", x), ("bias", bias))?;
        let params = uniform(&self.device, "add_bias params", &EltParams { width, factor: 0.0, _pad: [0; 2] });
        let resources = [step.buffer.as_entire_binding(), params.as_entire_binding(), x.binding(), bias.binding()];
        Ok(self.layer_op(OP, &self.layer.add_bias, &resources, max_tokens, move |s: Step| {
            spill_grid((u64::from(s.n_tokens) * u64::from(width)).div_ceil(u64::from(WG)))
        }))
    }

    /// `x[i] *= factor` for tokens of `width` values (gemma's embedding scale and query scale).
    pub fn op_scale(&self, x: &GpuBuffer, width: u32, factor: f32, step: &StepBuffer) -> Result<GpuOp, KernelError> {
        const OP: &str = "scale";
        let max_tokens = tokens_in(OP, "x", x, width)?;
        if !factor.is_finite() {
            return Err(KernelError::OpShape { op: OP, why: format!("factor {factor} is not finite") });
        }
        let params = uniform(&self.device, "scale params", &EltParams { width, factor, _pad: [0; 2] });
        let resources = [step.buffer.as_entire_binding(), params.as_entire_binding(), x.binding()];
        Ok(self.layer_op(OP, &self.layer.scale, &resources, max_tokens, move |s: Step| {
            spill_grid((u64::from(s.n_tokens) * u64::from(width)).div_ceil(u64::from(WG)))
        }))
    }

    /// An `elementwise.wgsl` op writing `x` from `x` and `y`, one invocation per value.
    fn layer_elementwise(
        &self,
        op: &'static str,
        pipeline: &wgpu::ComputePipeline,
        x: (&str, &GpuBuffer),
        y: (&str, &GpuBuffer),
        width: u32,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        let max_tokens = tokens_in(op, x.0, x.1, width)?;
        let what = format!("{max_tokens} tokens of {width}, as {} holds", x.0);
        holds(op, y.0, y.1, max_tokens as usize * width as usize, &what)?;
        distinct(op, x, y)?;
        let params = uniform(&self.device, "elementwise params", &EltParams { width, factor: 0.0, _pad: [0; 2] });
        let resources = [step.buffer.as_entire_binding(), params.as_entire_binding(), x.1.binding(), y.1.binding()];
        Ok(self.layer_op(op, pipeline, &resources, max_tokens, move |s: Step| {
            spill_grid((u64::from(s.n_tokens) * u64::from(width)).div_ceil(u64::from(WG)))
        }))
    }
}
