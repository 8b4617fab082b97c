use wgpu::util::DeviceExt;

use super::GpuContext;
use crate::KernelError;
use crate::cpu::check_matvec_shape;

/// Uniforms of `matvec.wgsl`, field for field.
#[repr(C, align(16))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatvecParams {
    rows: u32,
    cols: u32,
    groups_x: u32,
    _pad: u32,
}
const _: () = assert!(std::mem::size_of::<MatvecParams>() == 16);

pub(crate) struct MatvecPipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl MatvecPipeline {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("matvec.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../wgsl/matvec.wgsl").into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("matvec"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, true),
                storage(3, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("matvec"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("matvec_f32"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("matvec_f32"),
            compilation_options: Default::default(),
            cache: None,
        });
        Self { pipeline, layout }
    }
}

impl GpuContext {
    /// `y = W x` on the GPU; same contract as [`crate::cpu::matvec`].
    pub async fn matvec(&self, w: &[f32], x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, KernelError> {
        check_matvec_shape(w.len(), x.len(), rows, cols)?;
        self.check_alive()?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let limits = self.adapter();
        let w_bytes = std::mem::size_of_val(w) as u64;
        if w_bytes > limits.max_storage_buffer_binding_size {
            return Err(KernelError::BufferTooLarge { bytes: w_bytes, limit: limits.max_storage_buffer_binding_size });
        }
        let max_groups = limits.max_compute_workgroups_per_dimension;
        let groups_x = (rows as u64).min(u64::from(max_groups)) as u32;
        let groups_y = (rows as u64).div_ceil(u64::from(groups_x));
        if groups_y > u64::from(max_groups) {
            return Err(KernelError::TooManyRows { rows, limit: max_groups });
        }
        let params = MatvecParams { rows: rows as u32, cols: cols as u32, groups_x, _pad: 0 };

        let device = &self.device;
        let init = |label, contents: &[u8], usage| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
        };
        // wgpu rejects zero-sized bindings; a zero-column matrix still needs a valid buffer.
        let nonempty =
            |v: &[f32]| -> Vec<u8> { if v.is_empty() { vec![0; 4] } else { bytemuck::cast_slice(v).to_vec() } };
        let params_buf = init("matvec params", bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM);
        let w_buf = init("matvec w", &nonempty(w), wgpu::BufferUsages::STORAGE);
        let x_buf = init("matvec x", &nonempty(x), wgpu::BufferUsages::STORAGE);
        let y_size = (rows * 4) as u64;
        let y_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("matvec y"),
            size: y_size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("matvec"),
            layout: &self.matvec.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: w_buf.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: x_buf.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: y_buf.as_entire_binding() },
            ],
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.matvec.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups_x, groups_y as u32, 1);
        }
        self.submit(encoder.finish());
        let bytes = self.read_back(&y_buf, y_size).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }
}
