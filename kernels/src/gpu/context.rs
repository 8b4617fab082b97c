use std::sync::{Arc, Mutex};

use super::matvec::MatvecPipeline;
use crate::KernelError;

/// What the UI and logs say about the adapter a [`GpuContext`] runs on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
}

/// A wgpu device with Hearth's compute pipelines built on it.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    summary: AdapterSummary,
    /// Set by the device-lost callback; every op checks it first so a lost device is a clear
    /// error rather than a hang on a readback that will never complete.
    lost: Arc<Mutex<Option<String>>>,
    pub(crate) matvec: MatvecPipeline,
}

impl GpuContext {
    /// Opens the default high-performance adapter and a device with the adapter's own limits
    /// (Hearth splits work to fit them, so it asks for everything the adapter offers).
    pub async fn new() -> Result<Self, KernelError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| KernelError::NoAdapter(e.to_string()))?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hearth"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await?;
        let lost = Arc::new(Mutex::new(None));
        let lost_flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost_flag.lock() {
                *slot = Some(format!("{reason:?}: {message}"));
            }
        });
        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name,
            backend: info.backend.to_string(),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver, info.driver_info].join(" ").trim().to_string(),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        };
        let matvec = MatvecPipeline::new(&device);
        Ok(Self { device, queue, summary, lost, matvec })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    pub(crate) fn check_alive(&self) -> Result<(), KernelError> {
        match self.lost.lock().ok().and_then(|slot| slot.clone()) {
            Some(reason) => Err(KernelError::DeviceLost(reason)),
            None => Ok(()),
        }
    }

    /// Copies `size` bytes of `src` into a fresh mappable buffer and awaits the mapping.
    /// Natively the device is polled to drive the callback; on the web the browser does it.
    pub(crate) async fn read_back(&self, src: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, KernelError> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hearth readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);

        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = tx.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| KernelError::Readback(e.to_string()))?;
        rx.await
            .map_err(|_| KernelError::Readback("the map callback was dropped".into()))?
            .map_err(|e| self.check_alive().err().unwrap_or_else(|| KernelError::Readback(e.to_string())))?;
        let bytes = staging.get_mapped_range(..).map_err(|e| KernelError::Readback(e.to_string()))?.to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
