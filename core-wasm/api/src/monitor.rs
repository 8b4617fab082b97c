//! What the monitor shows about the hardware: the GPU adapter, its queue, and the CPU pool's
//! busy time (filled in by the kernels crate, shown by the app).

use serde::{Deserialize, Serialize};

/// What the UI and logs say about the adapter a `GpuContext` runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterSummary {
    /// Adapter name; browsers may hide it, then wgpu reports what they expose (vendor, architecture).
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    /// Whether the kernels use `shader-f16`: the device has it and `GpuOptions` allowed it.
    /// The weight matrices of f16-scaled formats are then dequantised in f16 (see
    /// `MatmulKernels`).
    #[serde(default)]
    pub shader_f16: bool,
}

/// The GPU's task queue as the monitor shows it: command buffers Hearth has submitted, and
/// those the device has not finished yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuQueueStats {
    /// Command buffers submitted since the device was opened.
    pub submitted: u64,
    /// Submitted and not yet done, now.
    pub in_flight: u64,
    /// The most in flight at once since the previous `GpuContext::sample_queue`.
    pub peak_in_flight: u64,
}

/// Busy time so far, in milliseconds since the process (or the wasm runtime) started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolBusy {
    /// One entry per thread of the current rayon pool, by its index.
    pub threads: Vec<f64>,
    /// Work that ran outside the pool: on the thread that called into it.
    pub outside: f64,
}
