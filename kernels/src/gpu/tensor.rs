//! Device memory and prepared dispatches: what a model builds once and then replays each step.
//!
//! A model allocates its activations ([`GpuBuffer`]), uploads its weights
//! ([`super::GpuMatrix`]), and builds one [`GpuOp`] per op of its forward pass, each with its
//! pipeline and bind group made up front. A forward pass then writes the [`Step`] uniforms
//! (how many tokens, at which position) once and encodes every op into one compute pass:
//! nothing is created per token and nothing is read back until the end.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::GpuContext;
use crate::KernelError;

/// A storage buffer of 4-byte values (f32, u32, or f16 pairs packed in u32).
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    len: usize,
    _counted: DeviceBytes,
}

/// Bytes counted in a context's live storage (see [`GpuContext::storage_bytes`]) for as long
/// as this lives.
pub(crate) struct DeviceBytes {
    bytes: u64,
    live: Arc<AtomicU64>,
}

impl Drop for DeviceBytes {
    fn drop(&mut self) {
        self.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl GpuBuffer {
    /// Length in 4-byte values.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }
}

/// What changes from one forward pass to the next, as every kernel sees it (binding 0 of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Tokens in this pass (1 while decoding, up to the prefill chunk while prefilling).
    pub n_tokens: u32,
    /// Position of the first of them; the KV cache holds `pos` earlier positions.
    pub pos: u32,
}

/// [`Step`] as WGSL reads it: `struct Step { n_tokens: u32, pos: u32, _pad: vec2<u32> }`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StepUniforms {
    pub n_tokens: u32,
    pub pos: u32,
    pub _pad: [u32; 2],
}

/// The uniform buffer holding the current [`Step`]; bound to every op of a model.
pub struct StepBuffer {
    pub(crate) buffer: wgpu::Buffer,
}

/// How many workgroups a dispatch needs for a given step (most ops scale with `n_tokens`,
/// attention with the KV length too). Zero in any dimension skips the dispatch.
pub(crate) type Grid = Box<dyn Fn(Step) -> [u32; 3]>;

/// One compute dispatch with everything bound.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub grid: Grid,
}

/// One op of a forward pass, ready to encode: one or more dispatches (a matrix split across
/// bindings, an attention pass and its reduction), run in order.
pub struct GpuOp {
    pub(crate) label: &'static str,
    pub(crate) dispatches: Vec<Dispatch>,
    /// The most tokens one step may hold: the activation buffers were sized for this many.
    pub(crate) max_tokens: u32,
}

impl GpuOp {
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Records this op's dispatches for `step` into `pass`.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, step: Step) -> Result<(), KernelError> {
        if step.n_tokens > self.max_tokens {
            return Err(KernelError::TooManyTokens { op: self.label, tokens: step.n_tokens, max: self.max_tokens });
        }
        for d in &self.dispatches {
            let [x, y, z] = (d.grid)(step);
            if x == 0 || y == 0 || z == 0 {
                continue;
            }
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
        Ok(())
    }
}

impl GpuContext {
    /// A zeroed buffer of `len` 4-byte values (at least one: WebGPU has no empty bindings).
    pub fn buffer(&self, label: &str, len: usize) -> Result<GpuBuffer, KernelError> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_binding(bytes)?;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(self.track(buffer, len))
    }

    /// A buffer holding `data` (4-byte values).
    pub fn buffer_from<T: Pod>(&self, label: &str, data: &[T]) -> Result<GpuBuffer, KernelError> {
        debug_assert_eq!(size_of::<T>(), 4, "GpuBuffer holds 4-byte values");
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding(bytes.len() as u64)?;
        let contents = if bytes.is_empty() { &[0u8; 4][..] } else { bytes };
        let buffer = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        });
        Ok(self.track(buffer, data.len()))
    }

    fn track(&self, buffer: wgpu::Buffer, len: usize) -> GpuBuffer {
        let counted = self.count_bytes(buffer.size());
        GpuBuffer { buffer, len, _counted: counted }
    }

    pub(crate) fn count_bytes(&self, bytes: u64) -> DeviceBytes {
        self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
        DeviceBytes { bytes, live: self.live_bytes.clone() }
    }

    /// Bytes of storage buffers (weights, activations, KV caches) alive on this device.
    pub fn storage_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Queues a write of `data` at value `offset` of `buf` (done before the next submit).
    pub fn write<T: Pod>(&self, buf: &GpuBuffer, offset: usize, data: &[T]) -> Result<(), KernelError> {
        if offset + data.len() > buf.len {
            return Err(KernelError::OutOfBounds { offset, len: data.len(), buffer: buf.len });
        }
        self.queue.write_buffer(&buf.buffer, (offset * 4) as u64, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Reads values `range` of `buf` back, after everything submitted so far has run.
    pub async fn read<T: Pod>(&self, buf: &GpuBuffer, range: Range<usize>) -> Result<Vec<T>, KernelError> {
        if range.end > buf.len || range.start > range.end {
            return Err(KernelError::OutOfBounds { offset: range.start, len: range.len(), buffer: buf.len });
        }
        self.check_alive()?;
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = self.read_back_range(&buf.buffer, (range.start * 4) as u64, (range.len() * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// A [`Step`] uniform buffer for one model's ops.
    pub fn step_buffer(&self) -> StepBuffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hearth step"),
            size: size_of::<StepUniforms>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        StepBuffer { buffer }
    }

    /// Writes `step` into `step_buffer`, then runs `ops` in order in one compute pass of one
    /// command encoder, and submits it. Results are read with [`GpuContext::read`].
    pub fn run(&self, step_buffer: &StepBuffer, step: Step, ops: &[&GpuOp]) -> Result<(), KernelError> {
        self.run_segments(&[(step_buffer, step, ops)])
    }

    /// [`GpuContext::run`] for several groups of ops, each bound to its own step buffer (a
    /// forward pass over a chunk of tokens, then the output head over its last token), still
    /// one compute pass and one submit.
    pub fn run_segments(&self, segments: &[(&StepBuffer, Step, &[&GpuOp])]) -> Result<(), KernelError> {
        self.check_alive()?;
        for (step_buffer, step, _) in segments {
            let uniforms = StepUniforms { n_tokens: step.n_tokens, pos: step.pos, _pad: [0; 2] };
            self.queue.write_buffer(&step_buffer.buffer, 0, bytemuck::bytes_of(&uniforms));
        }
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hearth step") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("hearth step"),
                timestamp_writes: None,
            });
            for (_, step, ops) in segments {
                for op in *ops {
                    op.encode(&mut pass, *step)?;
                }
            }
        }
        self.submit(encoder.finish());
        Ok(())
    }

    /// Fails with [`KernelError::BufferTooLarge`] when `bytes` cannot be bound as one storage
    /// buffer on this device.
    pub(crate) fn check_binding(&self, bytes: u64) -> Result<(), KernelError> {
        let limit = self.binding_limit();
        if bytes > limit {
            return Err(KernelError::BufferTooLarge { bytes, limit });
        }
        Ok(())
    }
}

/// Builds a compute pipeline for `entry` of `module` with an automatic layout.
/// Every Hearth kernel declares its bindings in group 0: binding 0 is the [`Step`] uniform,
/// binding 1 the op's own parameters (a uniform), then its storage buffers.
///
/// Workgroup memory is not zeroed first: every Hearth kernel writes its workgroup arrays before
/// reading them, and the zeroing naga emits (a store per element) is slow to compile on
/// software drivers (SwiftShader took ~2 s per pipeline with it, 40–70 ms without). Browsers
/// zero workgroup memory whatever this says.
pub(crate) fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &'static str,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            zero_initialize_workgroup_memory: false,
            ..Default::default()
        },
        cache: None,
    })
}

/// A shader module from WGSL source, with the shared [`Step`] declaration prepended.
pub(crate) fn shader(device: &wgpu::Device, label: &'static str, source: &str) -> wgpu::ShaderModule {
    shader_with(device, label, "", source)
}

/// [`shader`] with WGSL `directives` (such as `enable f16;`) first, where WGSL requires them.
pub(crate) fn shader_with(
    device: &wgpu::Device,
    label: &'static str,
    directives: &str,
    source: &str,
) -> wgpu::ShaderModule {
    let source = format!("{directives}\n{}\n{}", include_str!("../../wgsl/common.wgsl"), source);
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    })
}

/// A uniform buffer holding an op's fixed parameters.
pub(crate) fn uniform<T: Pod>(device: &wgpu::Device, label: &'static str, params: &T) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(params),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// A bind group for `pipeline`'s group 0 with `resources` at bindings 0, 1, 2, ...
pub(crate) fn bind(
    device: &wgpu::Device,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    resources: &[wgpu::BindingResource<'_>],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}
