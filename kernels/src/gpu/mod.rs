//! GPU kernels through wgpu: WebGPU in the browser, Vulkan (lavapipe in tests) natively.
//!
//! [`GpuContext`] owns the device and every compute pipeline, built once at start-up; each op
//! is a method that uploads, dispatches and reads back asynchronously (never blocking the web's
//! event loop).

mod context;
mod matvec;

pub use context::{AdapterSummary, GpuContext};
