//! GPU kernels through wgpu: WebGPU in the browser, Vulkan (lavapipe in tests) natively.
//!
//! [`GpuContext`] owns the device and every compute pipeline, built once at start-up. A model
//! uploads its weights ([`GpuMatrix`]), allocates its activations ([`GpuBuffer`]) and prepares
//! one [`GpuOp`] per op of its forward pass (`op_*` methods); a step is then one compute pass
//! ([`GpuContext::run`]) and one asynchronous read of a few bytes ([`GpuContext::read`]).
//! Each op has a CPU twin in [`crate::cpu`] that it is tested against.

mod affine;
mod attention;
mod context;
mod layer;
mod matmul;
mod matvec;
mod sample;
mod tensor;

pub use attention::AttentionSpec;
pub use context::{AdapterSummary, GpuContext, GpuOptions, GpuQueueStats};
pub use layer::{NormRows, RopeSpec};
pub use matmul::{GpuMatrix, device_matrix_bytes};
pub use tensor::{GpuBuffer, GpuOp, Step, StepBuffer};
