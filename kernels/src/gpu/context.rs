use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::attention::AttentionKernels;
use super::layer::LayerKernels;
use super::matmul::MatmulKernels;
use super::matvec::MatvecPipeline;
use super::sample::SampleKernels;
use crate::KernelError;

/// What the monitor shows of the adapter and its queue; filled in here.
pub use hearth_api::monitor::{AdapterSummary, GpuQueueStats};

/// Counters behind [`GpuQueueStats`], shared with the queue's work-done callbacks.
#[derive(Default)]
struct QueueCounters {
    submitted: AtomicU64,
    done: AtomicU64,
    peak_in_flight: AtomicU64,
}

/// How [`GpuContext::with_options`] opens a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// Use `shader-f16` when the adapter has it (the default); `false` keeps every kernel in
    /// f32, as on an adapter without it (to compare the two, and to test the f32 path on a
    /// device that has f16).
    pub shader_f16: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self { shader_f16: true }
    }
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
    pub(crate) matmul: MatmulKernels,
    pub(crate) layer: LayerKernels,
    pub(crate) attention: AttentionKernels,
    pub(crate) sample: SampleKernels,
    /// Bytes one storage binding may hold: the adapter's limit, or less for tests of splitting.
    binding_limit: u64,
    /// Bytes of live storage buffers (see [`GpuContext::storage_bytes`]).
    pub(crate) live_bytes: Arc<AtomicU64>,
    queue_counters: Arc<QueueCounters>,
    /// Bytes uploaded since the queue last took the uploads (see [`GpuContext::settle_uploads`]).
    unsettled_uploads: AtomicU64,
}

/// Bytes of uploads that may wait in staging buffers before they are submitted and freed.
const UPLOAD_WINDOW: u64 = 64 << 20;

impl GpuContext {
    /// Opens the default high-performance adapter and a device with the adapter's own limits
    /// (Hearth splits work to fit them, so it asks for everything the adapter offers), using
    /// `shader-f16` when the adapter has it.
    pub async fn new() -> Result<Self, KernelError> {
        Self::with_options(GpuOptions::default()).await
    }

    /// [`GpuContext::new`] with `options`.
    pub async fn with_options(options: GpuOptions) -> Result<Self, KernelError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| KernelError::NoAdapter(e.to_string()))?;
        let limits = adapter.limits();
        let shader_f16 = options.shader_f16 && adapter.features().contains(wgpu::Features::SHADER_F16);
        let required_features = if shader_f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hearth"),
                required_features,
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
        // wgpu's default for a validation or out-of-memory error nobody captured is to panic;
        // record it instead, so the next op fails with a clear error.
        let failed = Arc::clone(&lost);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut slot) = failed.lock() {
                slot.get_or_insert_with(|| format!("GPU error: {error}"));
            }
        }));
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
            shader_f16,
        };
        let matvec = MatvecPipeline::new(&device);
        let matmul = MatmulKernels::new(shader_f16);
        let layer = LayerKernels::new(&device);
        let attention = AttentionKernels::new(&device);
        let sample = SampleKernels::new(&device);
        let binding_limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let live_bytes = Arc::default();
        Ok(Self {
            device,
            queue,
            summary,
            lost,
            matvec,
            matmul,
            layer,
            attention,
            sample,
            binding_limit,
            live_bytes,
            queue_counters: Arc::default(),
            unsettled_uploads: AtomicU64::new(0),
        })
    }

    /// Destroys the device, as a driver reset or a browser reclaiming the GPU would: every
    /// later op fails with [`KernelError::DeviceLost`]. For fault tests.
    pub fn destroy(&self) {
        self.device.destroy();
        if let Ok(mut slot) = self.lost.lock() {
            slot.get_or_insert_with(|| "Destroyed: the device was destroyed".into());
        }
    }

    /// Bytes one storage binding may hold on this device.
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// Lowers [`GpuContext::binding_limit`] to `bytes` (never raises it): tensors larger than
    /// that are split as they would be on a device with that limit. For tests.
    pub fn limit_binding_size(&mut self, bytes: u64) {
        self.binding_limit = self.binding_limit.min(bytes);
    }

    /// Waits until the GPU has finished everything submitted (natively; on the web a read
    /// is the only way to wait, so this returns at once there).
    pub fn wait_idle(&self) -> Result<(), KernelError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| KernelError::Readback(e.to_string()))?;
        self.check_alive()
    }

    /// Counts `bytes` just uploaded into a new buffer, and every [`UPLOAD_WINDOW`] hands the
    /// uploads to the queue and waits for them. wgpu stages the contents of each initialised
    /// buffer in a buffer of its own and frees that only once a submission carrying the copy
    /// has completed; without this, loading a model piles up a staging copy of every weight
    /// (twice the weights' memory at the peak, on a device whose memory is the host's).
    pub(crate) fn settle_uploads(&self, bytes: u64) {
        if self.unsettled_uploads.fetch_add(bytes, Ordering::Relaxed) + bytes < UPLOAD_WINDOW {
            return;
        }
        self.unsettled_uploads.store(0, Ordering::Relaxed);
        // An empty submission carries the queued buffer writes.
        self.queue.submit([]);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Submits `commands` to the queue, counting them in and (when the device reports the work
    /// done: natively on a poll, in the browser from its own event loop) out again.
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) {
        let counters = &self.queue_counters;
        let submitted = counters.submitted.fetch_add(1, Ordering::Relaxed) + 1;
        let in_flight = submitted.saturating_sub(counters.done.load(Ordering::Relaxed));
        counters.peak_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        self.queue.submit([commands]);
        let counters = Arc::clone(counters);
        self.queue.on_submitted_work_done(move || {
            counters.done.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// The task queue now, and its peak since the previous call.
    pub fn sample_queue(&self) -> GpuQueueStats {
        let counters = &self.queue_counters;
        let submitted = counters.submitted.load(Ordering::Relaxed);
        let in_flight = submitted.saturating_sub(counters.done.load(Ordering::Relaxed));
        let peak_in_flight = counters.peak_in_flight.swap(in_flight, Ordering::Relaxed).max(in_flight);
        GpuQueueStats { submitted, in_flight, peak_in_flight }
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
        self.read_back_range(src, 0, size).await
    }

    /// [`GpuContext::read_back`] of `size` bytes from byte `offset` (both multiples of 4).
    pub(crate) async fn read_back_range(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>, KernelError> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hearth readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(src, offset, &staging, 0, size);
        self.submit(encoder.finish());

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

#[cfg(not(target_arch = "wasm32"))]
impl GpuContext {
    /// Device memory bandwidth as a buffer copy achieves it, in bytes moved (read + written)
    /// per second: the practical ceiling a memory-bound kernel is measured against.
    pub fn copy_bandwidth(&self) -> Result<f64, KernelError> {
        let bytes = (256u64 << 20).min(self.binding_limit).min(self.summary.max_buffer_size) & !3;
        let buffer = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (a, b) = (buffer("bandwidth a"), buffer("bandwidth b"));
        let copies = 8;
        let run = || -> Result<f64, KernelError> {
            let start = std::time::Instant::now();
            let mut encoder = self.device.create_command_encoder(&Default::default());
            for _ in 0..copies {
                encoder.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
            }
            self.submit(encoder.finish());
            self.wait_idle()?;
            Ok(start.elapsed().as_secs_f64())
        };
        run()?; // warm-up
        let seconds = (0..3).map(|_| run()).collect::<Result<Vec<_>, _>>()?.into_iter().fold(f64::INFINITY, f64::min);
        Ok((2 * bytes * copies) as f64 / seconds)
    }
}
