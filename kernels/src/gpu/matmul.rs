//! Quantised matrix times activations: `Y[t] = W X[t]` for the tokens of a step, with `W` kept
//! in its GGUF format on the device and dequantised inside the kernel (`wgsl/matmul.wgsl`).
//! Decode (one token) runs a matrix-vector kernel; prefill a tiled matrix-matrix kernel.
//! Also the embedding lookup (a row of a quantised table per token).

use std::sync::OnceLock;

use wgpu::util::DeviceExt;

use super::GpuContext;
use super::affine::{AffineRun, affine_runs, is_affine};
use super::tensor::{self, Dispatch, GpuBuffer, GpuOp, StepBuffer};
use crate::KernelError;
use crate::quant::QuantFormat;

/// Invocations per workgroup of `matvec` and `matmul` (`MV_WG` in the shader).
const WG: u32 = 256;
/// Rows each `matvec` invocation handles (`MV_R`).
const MV_ROWS_PER_INVOCATION: u32 = 2;
/// Most invocations sharing one row in `matvec`.
const MAX_LANES: usize = 64;
/// Rows × tokens of one `matmul` workgroup's tile (`MM_ROWS`, `MM_TOKENS`).
const MM_ROWS: u32 = 64;
const MM_TOKENS: u32 = 32;
/// Invocations per workgroup of `embed`.
const EMBED_WG: u32 = 64;
/// Values per unit: what one invocation reads of a row at a time.
const UNIT: usize = 8;
/// F32 and F16 rows are zero-padded to whole blocks of this many values.
const BLOCK: usize = 32;

/// What the kernels read a format as on the device (`FORMAT` in the shader): the ggml type
/// id for F32, F16, BF16, Q4_0, Q4_1 and Q8_0, read as they are; [`AFFINE`] for Q5_0, Q5_1,
/// Q4_K, Q5_K and Q6_K, repacked at upload as runs of 16 values `d·q + m`
/// ([`super::affine`]): one byte per code and two f32 per run. That costs more memory than
/// the file's packing (1.5 bytes a value against 0.56 to 0.82) for one shader path that holds
/// all five.
fn device_format(format: QuantFormat) -> Option<u32> {
    match format {
        QuantFormat::F32
        | QuantFormat::F16
        | QuantFormat::BF16
        | QuantFormat::Q4_0
        | QuantFormat::Q4_1
        | QuantFormat::Q8_0 => Some(format.ggml_type()),
        f if is_affine(f) => Some(AFFINE),
        _ => None,
    }
}

/// Bytes a `rows` × `cols` matrix of `format` takes on the device once uploaded (quants and
/// scales; see [`repack_row`]), or `None` for a format the kernels do not read. What a memory
/// plan counts before a model is loaded.
pub fn device_matrix_bytes(format: QuantFormat, rows: u64, cols: u64) -> Option<u64> {
    let padded = cols.next_multiple_of(BLOCK as u64);
    let per_row = match device_format(format)? {
        0 => padded * 4,
        1 | 30 => padded * 2,
        AFFINE => cols / 16 * (16 + 8),
        _ => format.bytes_for(cols)?,
    };
    rows.checked_mul(per_row)
}

/// `FORMAT` of formats repacked as affine runs (not a ggml type id).
const AFFINE: u32 = 100;

/// The device formats, in the order of [`MatmulKernels::formats`].
const DEVICE_FORMATS: [u32; 7] = [0, 1, 30, 2, 3, 8, AFFINE];

/// u32 words of repacked quants per 8-value unit (`WPU` in the shader).
fn words_per_unit(device_format: u32) -> usize {
    match device_format {
        0 => 8,
        1 | 30 => 4,
        8 | AFFINE => 2,
        _ => 1,
    }
}

/// The pipelines of `matmul.wgsl` specialised for one weight format.
struct FormatPipelines {
    /// `matvec` and `matmul` dequantise in f16.
    half: bool,
    matvec: wgpu::ComputePipeline,
    matmul: wgpu::ComputePipeline,
    embed: wgpu::ComputePipeline,
}

/// The pipelines of `matmul.wgsl`, one set per weight format, each built on first use.
///
/// Every format has its own specialised pipelines (`FORMAT` and `WPU` are prepended as
/// constants, so the format branches of the shader fold away). They are compiled at the first
/// upload of a matrix of that format, not up front: a model holds two or three of the five
/// formats, and on SwiftShader (the browser tests) the 15 pipelines took some 16 s per device.
/// Nothing is compiled per op or per step.
///
/// With `shader-f16`, the formats whose values are f16 or f16-scaled small integers (F16,
/// Q4_0, Q4_1, Q8_0) are dequantised in f16 by `matvec` and `matmul` (`WF = f16`), and
/// `matmul` stages them in workgroup memory as f16: half the workgroup memory its inner loop
/// reads, and f16 arithmetic for the dequantisation, which GPUs run at twice the f32 rate. A
/// dequantised weight is then rounded to f16 (a relative error of at most 2⁻¹¹, none for F16);
/// activations and every sum stay f32, so activation outliers (Gemma's reach the hundreds)
/// cannot overflow. `embed` always dequantises in f32: the embedding equals the CPU's bit for
/// bit. F32, BF16 (a wider range than f16) and the affine runs (f32 scales) stay in f32.
pub(crate) struct MatmulKernels {
    shader_f16: bool,
    formats: [OnceLock<FormatPipelines>; DEVICE_FORMATS.len()],
}

impl MatmulKernels {
    pub(crate) fn new(shader_f16: bool) -> Self {
        Self { shader_f16, formats: Default::default() }
    }

    /// The pipelines for `format`, built now if this is the first use of its device format.
    fn get(&self, device: &wgpu::Device, format: QuantFormat) -> &FormatPipelines {
        let device_format = device_format(format).expect("GpuMatrix formats are checked at upload");
        let i = DEVICE_FORMATS.iter().position(|&f| f == device_format).expect("every device format is listed");
        let half = self.shader_f16 && matches!(device_format, 1 | 2 | 3 | 8);
        self.formats[i].get_or_init(|| FormatPipelines::new(device, device_format, half))
    }
}

impl FormatPipelines {
    /// The pipelines of `device_format`; with `half`, `matvec` and `matmul` dequantise in f16.
    fn new(device: &wgpu::Device, device_format: u32, half: bool) -> Self {
        let label = match device_format {
            0 => "matmul.wgsl F32",
            1 => "matmul.wgsl F16",
            30 => "matmul.wgsl BF16",
            2 => "matmul.wgsl Q4_0",
            3 => "matmul.wgsl Q4_1",
            8 => "matmul.wgsl Q8_0",
            _ => "matmul.wgsl affine runs",
        };
        let module = |wf: &str| {
            let directives = if wf == "f16" { "enable f16;" } else { "" };
            let source = format!(
                "const FORMAT: u32 = {device_format}u;\nconst WPU: u32 = {}u;\nalias WF = {wf};\n{}",
                words_per_unit(device_format),
                include_str!("../../wgsl/matmul.wgsl")
            );
            tensor::shader_with(device, label, directives, &source)
        };
        let full = module("f32");
        let dequantising = if half { module("f16") } else { full.clone() };
        Self {
            half,
            matvec: tensor::pipeline(device, &dequantising, "matvec"),
            matmul: tensor::pipeline(device, &dequantising, "matmul"),
            embed: tensor::pipeline(device, &full, "embed"),
        }
    }
}

/// `Params` of `matmul.wgsl`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    units: u32,
    y_stride: u32,
    row0: u32,
    lanes: u32,
    mv_groups_x: u32,
    mm_groups_x: u32,
}
const _: () = assert!(size_of::<Params>() == 32);

/// A block of consecutive rows stored in buffers that each fit one storage binding.
struct MatrixPart {
    quants: wgpu::Buffer,
    scales: wgpu::Buffer,
    params: wgpu::Buffer,
    /// Workgroups (x, y) of the matvec and matmul dispatches of this part.
    mv_grid: [u32; 2],
    mm_grid: [u32; 2],
}

/// A weight matrix on the device: `rows` outputs of `cols` inputs, in `format` (any the CPU
/// computes with), split by rows into parts that each fit one storage binding.
pub struct GpuMatrix {
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
    /// 8-value units per stored row.
    units: usize,
    /// Dequantised in f16 by the matvec and matmul kernels (see `MatmulKernels`).
    half: bool,
    parts: Vec<MatrixPart>,
    _counted: tensor::DeviceBytes,
}

impl std::fmt::Debug for GpuMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMatrix")
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("parts", &self.parts.len())
            .field("half", &self.half)
            .finish()
    }
}

impl GpuMatrix {
    /// Bytes this matrix takes on the device.
    pub fn device_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.quants.size() + p.scales.size() + p.params.size()).sum()
    }

    /// How many parts the rows were split into to fit the device's storage binding limit.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Whether [`GpuContext::op_matmul`] dequantises this matrix in f16 (`shader-f16`, and an
    /// f16-scaled format): each weight is then rounded to f16 before its f32 product.
    pub fn dequantised_in_f16(&self) -> bool {
        self.half
    }
}

/// `(x, y)` workgroups covering `n` linear workgroups with at most `max` per dimension: the
/// shader's linear index is `x + y * grid[0]` and it skips indices past `n`.
fn spill_grid(n: u64, max: u32) -> Result<[u32; 2], u64> {
    let x = n.clamp(1, u64::from(max));
    let y = n.div_ceil(x).max(1);
    if y > u64::from(max) {
        return Err(y);
    }
    Ok([x as u32, y as u32])
}

/// Lanes per row group of `matvec`: a power of two around half the units of a row (each lane
/// then has about two units to read), between 4 and [`MAX_LANES`].
fn matvec_lanes(units: usize) -> u32 {
    let half = (units / 2).max(1);
    let pow2 = 1usize << (usize::BITS - 1 - half.leading_zeros());
    pow2.clamp(4, MAX_LANES) as u32
}

/// Appends one GGUF row of `format` (`src`, `cols` values) to the repacked `quants` and
/// scales: f16 bits in `half_scales` for Q4_0 / Q8_0, `d | m << 16` for Q4_1; f32 bits of
/// `d, m` per run in `wide_scales` for the affine formats; see `matmul.wgsl`.
fn repack_row(
    format: QuantFormat,
    src: &[u8],
    cols: usize,
    quants: &mut Vec<u32>,
    half_scales: &mut Vec<u16>,
    wide_scales: &mut Vec<u32>,
) -> Result<(), KernelError> {
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let padded = cols.next_multiple_of(BLOCK);
    match format {
        QuantFormat::F32 => {
            quants.extend(src.chunks_exact(4).map(word));
            quants.extend(std::iter::repeat_n(0, padded - cols));
        }
        QuantFormat::F16 | QuantFormat::BF16 => {
            let mut halves: Vec<u8> = src.to_vec();
            halves.resize(padded * 2, 0);
            quants.extend(halves.chunks_exact(4).map(word));
        }
        QuantFormat::Q4_0 | QuantFormat::Q8_0 => {
            for block in src.chunks_exact(format.block_bytes()) {
                half_scales.push(u16::from_le_bytes([block[0], block[1]]));
                quants.extend(block[2..].chunks_exact(4).map(word));
            }
        }
        QuantFormat::Q4_1 => {
            for block in src.chunks_exact(format.block_bytes()) {
                // d in the low half, m in the high half: unpack2x16float gives (d, m).
                half_scales
                    .extend([u16::from_le_bytes([block[0], block[1]]), u16::from_le_bytes([block[2], block[3]])]);
                quants.extend(block[4..].chunks_exact(4).map(word));
            }
        }
        affine => {
            let mut runs: Vec<AffineRun> = Vec::with_capacity(cols / 16);
            affine_runs(affine, src, &mut runs)?;
            for run in runs {
                let codes: [u8; 16] = run.q.map(|v| v as u8);
                quants.extend(codes.chunks_exact(4).map(word));
                wide_scales.extend([run.d.to_bits(), run.m.to_bits()]);
            }
        }
    }
    Ok(())
}

/// A bind group for `pipeline` with `resources` at the given bindings.
fn bind_at(
    device: &wgpu::Device,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    resources: &[(u32, wgpu::BindingResource<'_>)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> =
        resources.iter().map(|(binding, r)| wgpu::BindGroupEntry { binding: *binding, resource: r.clone() }).collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

impl GpuContext {
    /// Uploads a matrix given as GGUF bytes (`rows` rows of `cols` values, plain row-major
    /// blocks as in the file), rearranged as the kernels read it.
    pub fn upload_matrix(
        &self,
        label: &str,
        format: QuantFormat,
        bytes: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<GpuMatrix, KernelError> {
        self.upload_matrix_with_grid_limit(
            label,
            format,
            bytes,
            rows,
            cols,
            self.adapter().max_compute_workgroups_per_dimension,
        )
    }

    /// [`GpuContext::upload_matrix`] with dispatches of at most `max_groups` workgroups per
    /// dimension (the device's limit, or less to test the spilling).
    fn upload_matrix_with_grid_limit(
        &self,
        label: &str,
        format: QuantFormat,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        max_groups: u32,
    ) -> Result<GpuMatrix, KernelError> {
        const OP: &str = "upload_matrix";
        let Some(dev_format) = device_format(format) else {
            return Err(KernelError::UnsupportedFormat(format));
        };
        if rows == 0 || cols == 0 {
            return Err(KernelError::OpShape { op: OP, why: format!("{label}: a {rows} x {cols} matrix is empty") });
        }
        let block = format.block_size();
        if !cols.is_multiple_of(block) {
            return Err(KernelError::OpShape {
                op: OP,
                why: format!("{label}: {cols} columns are not a whole number of {format} blocks of {block} values"),
            });
        }
        let values = rows
            .checked_mul(cols)
            .ok_or_else(|| KernelError::OpShape { op: OP, why: format!("{label}: {rows} x {cols} values overflow") })?;
        if format.bytes_for(values as u64) != Some(bytes.len() as u64) {
            return Err(KernelError::QuantLength { format, values, bytes: bytes.len() });
        }
        // Compile this format's kernels now, at load time, rather than in the first step.
        let half = self.matmul.get(&self.device, format).half;
        let row_bytes = bytes.len() / rows;
        let units = cols.next_multiple_of(BLOCK) / UNIT;
        let row_words = units * words_per_unit(dev_format);
        // The quants of a row outweigh its scales in every format, so they set the split.
        let limit = self.binding_limit();
        let row_quant_bytes = (row_words * 4) as u64;
        let fit = (limit / row_quant_bytes) as usize;
        if fit == 0 {
            return Err(KernelError::BufferTooLarge { bytes: row_quant_bytes, limit });
        }
        let n_parts = rows.div_ceil(fit);
        let part_rows = rows.div_ceil(n_parts);
        let lanes = matvec_lanes(units);
        let mv_rows_per_group = u64::from(WG / lanes * MV_ROWS_PER_INVOCATION);

        let mut parts = Vec::with_capacity(n_parts);
        for row0 in (0..rows).step_by(part_rows) {
            let n = part_rows.min(rows - row0);
            let too_many = |_| KernelError::TooManyRows { rows: n, limit: max_groups };
            let mv_grid = spill_grid((n as u64).div_ceil(mv_rows_per_group), max_groups).map_err(too_many)?;
            let mm_grid = spill_grid((n as u64).div_ceil(u64::from(MM_ROWS)), max_groups).map_err(too_many)?;

            let mut quants = Vec::with_capacity(n * row_words);
            let (mut half_scales, mut scales) = (Vec::new(), Vec::new());
            for src in bytes[row0 * row_bytes..(row0 + n) * row_bytes].chunks_exact(row_bytes) {
                repack_row(format, src, cols, &mut quants, &mut half_scales, &mut scales)?;
            }
            if half_scales.len() % 2 == 1 {
                half_scales.push(0);
            }
            scales.extend(half_scales.chunks_exact(2).map(|p| u32::from(p[0]) | (u32::from(p[1]) << 16)));
            if scales.is_empty() {
                // F32 / F16: nothing to scale, but the binding must exist.
                scales.push(0);
            }
            let storage = |what: &str, words: &[u32]| {
                self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(&format!("{label} {what} {row0}..{}", row0 + n)),
                    contents: bytemuck::cast_slice(words),
                    usage: wgpu::BufferUsages::STORAGE,
                })
            };
            let params = Params {
                rows: n as u32,
                cols: cols as u32,
                units: units as u32,
                y_stride: rows as u32,
                row0: row0 as u32,
                lanes,
                mv_groups_x: mv_grid[0],
                mm_groups_x: mm_grid[0],
            };
            parts.push(MatrixPart {
                quants: storage("quants", &quants),
                scales: storage("scales", &scales),
                params: tensor::uniform(&self.device, "matmul params", &params),
                mv_grid,
                mm_grid,
            });
        }
        let bytes = parts.iter().map(|p| p.quants.size() + p.scales.size()).sum();
        self.settle_uploads(bytes);
        Ok(GpuMatrix { format, rows, cols, units, half, parts, _counted: self.count_bytes(bytes) })
    }

    /// `y[t][r] = Σ_c w[r][c] · x[t][c]` for `t < step.n_tokens`: `x` holds tokens of `w.cols`
    /// values, `y` tokens of `w.rows`.
    pub fn op_matmul(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        y: &GpuBuffer,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "matmul";
        if x.buffer == y.buffer {
            return Err(KernelError::OpShape { op: OP, why: "y may not be the buffer x is read from".into() });
        }
        let max_tokens = x.len() / w.cols;
        if max_tokens == 0 {
            return Err(KernelError::OpShape {
                op: OP,
                why: format!("x holds {} values, less than one token of {} columns", x.len(), w.cols),
            });
        }
        if y.len() < max_tokens * w.rows {
            return Err(KernelError::OpShape {
                op: OP,
                why: format!(
                    "y holds {} values, less than the {max_tokens} tokens of {} rows that x holds ({} values of {} columns)",
                    y.len(),
                    w.rows,
                    x.len(),
                    w.cols
                ),
            });
        }
        let max_groups = self.adapter().max_compute_workgroups_per_dimension;
        let max_tokens =
            u32::try_from(max_tokens).ok().filter(|t| t.div_ceil(MM_TOKENS) <= max_groups).ok_or_else(|| {
                KernelError::OpShape { op: OP, why: format!("{max_tokens} tokens are too many to dispatch") }
            })?;
        let pipelines = self.matmul.get(&self.device, w.format);
        let mut dispatches = Vec::with_capacity(2 * w.parts.len());
        for part in &w.parts {
            let resources = |pipeline| {
                bind_at(
                    &self.device,
                    "matmul",
                    pipeline,
                    &[
                        (0, step.buffer.as_entire_binding()),
                        (1, part.params.as_entire_binding()),
                        (2, part.scales.as_entire_binding()),
                        (3, part.quants.as_entire_binding()),
                        (4, x.binding()),
                        (5, y.binding()),
                    ],
                )
            };
            let [mx, my] = part.mv_grid;
            dispatches.push(Dispatch {
                pipeline: pipelines.matvec.clone(),
                bind_group: resources(&pipelines.matvec),
                grid: Box::new(move |s| if s.n_tokens == 1 { [mx, my, 1] } else { [0; 3] }),
            });
            let [tx, ty] = part.mm_grid;
            dispatches.push(Dispatch {
                pipeline: pipelines.matmul.clone(),
                bind_group: resources(&pipelines.matmul),
                grid: Box::new(
                    move |s| if s.n_tokens >= 2 { [tx, ty, s.n_tokens.div_ceil(MM_TOKENS)] } else { [0; 3] },
                ),
            });
        }
        Ok(GpuOp { label: OP, dispatches, max_tokens })
    }

    /// `out[t] = table[tokens[t]]` dequantised, for `t < step.n_tokens`: `tokens` holds u32
    /// ids (checked against `table.rows` by the caller), `out` tokens of `table.cols` values.
    pub fn op_embed(
        &self,
        table: &GpuMatrix,
        tokens: &GpuBuffer,
        out: &GpuBuffer,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "embed";
        let max_tokens = tokens.len();
        let max_groups = self.adapter().max_compute_workgroups_per_dimension;
        if max_tokens == 0 || max_tokens > max_groups as usize {
            return Err(KernelError::OpShape {
                op: OP,
                why: format!("a token buffer of {max_tokens} ids (1 to {max_groups} allowed)"),
            });
        }
        if out.len() < max_tokens * table.cols {
            return Err(KernelError::OpShape {
                op: OP,
                why: format!("out holds {} values, less than {max_tokens} tokens of {} columns", out.len(), table.cols),
            });
        }
        let pipeline = &self.matmul.get(&self.device, table.format).embed;
        let groups_x = (table.units as u32).div_ceil(EMBED_WG);
        let dispatches = table
            .parts
            .iter()
            .map(|part| Dispatch {
                pipeline: pipeline.clone(),
                bind_group: bind_at(
                    &self.device,
                    "embed",
                    pipeline,
                    &[
                        (0, step.buffer.as_entire_binding()),
                        (1, part.params.as_entire_binding()),
                        (2, part.scales.as_entire_binding()),
                        (3, part.quants.as_entire_binding()),
                        (6, tokens.binding()),
                        (7, out.binding()),
                    ],
                ),
                grid: Box::new(move |s| [groups_x, s.n_tokens, 1]),
            })
            .collect();
        Ok(GpuOp { label: OP, dispatches, max_tokens: max_tokens as u32 })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gpu::Step;

    /// More workgroups than one dispatch dimension allows spill into y. Real limits (65535)
    /// need millions of rows to reach, so this lowers the limit to 6 per dimension: 2000 rows
    /// are then 16 matvec workgroups on a 6 × 3 grid and 32 matmul tiles on 6 × 6.
    #[test]
    fn grids_spill_into_the_y_dimension() {
        // f32 kernels, for the reference's tolerance (tests/gpu_matmul.rs checks f16 weights).
        let f32_only = crate::gpu::GpuOptions { shader_f16: false };
        let ctx = pollster::block_on(GpuContext::with_options(f32_only)).expect("a Vulkan adapter (lavapipe)");
        let (rows, cols, tokens) = (2000, 64, 2);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 500.0).collect();
        let bytes = bytemuck::cast_slice(&crate::quant::quantize_q8_0(&w).unwrap()).to_vec();
        let matrix = ctx.upload_matrix_with_grid_limit("w", QuantFormat::Q8_0, &bytes, rows, cols, 6).unwrap();
        assert_eq!((matrix.parts[0].mv_grid, matrix.parts[0].mm_grid), ([6, 3], [6, 6]));

        let mut deq = vec![0.0; rows * cols];
        crate::quant::dequantize(QuantFormat::Q8_0, &bytes, &mut deq).unwrap();
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 104729 % 997) as f32 - 498.0) / 300.0).collect();
        let xb = ctx.buffer_from("x", &x).unwrap();
        let yb = ctx.buffer("y", tokens * rows).unwrap();
        let step = ctx.step_buffer();
        let op = ctx.op_matmul(&matrix, &xb, &yb, &step).unwrap();
        for n_tokens in [1, 2] {
            ctx.run(&step, Step { n_tokens: n_tokens as u32, pos: 0 }, &[&op]).unwrap();
            let y = pollster::block_on(ctx.read::<f32>(&yb, 0..n_tokens * rows)).unwrap();
            for (i, &got) in y.iter().enumerate() {
                let (t, r) = (i / rows, i % rows);
                let want: f64 = (0..cols).map(|c| f64::from(deq[r * cols + c]) * f64::from(x[t * cols + c])).sum();
                assert!((f64::from(got) - want).abs() < 1e-3, "{n_tokens} tokens, y[{t}][{r}]: gpu {got} cpu {want}");
            }
        }
    }

    #[test]
    fn matvec_lanes_follow_row_length() {
        assert_eq!([4, 8, 72, 256, 4096].map(matvec_lanes), [4, 4, 32, 64, 64]);
        assert_eq!(spill_grid(70_000, 65_535), Ok([65_535, 2]));
        assert_eq!(spill_grid(10, 3), Err(4));
    }
}
