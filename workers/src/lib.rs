//! Web Worker entry points. Each is loaded by a few lines of JS in `workers/js/` that pick the
//! threaded or single-threaded build of this crate and call in here; everything else lives in
//! hearth-core. Natively this crate is empty.

#[cfg(target_arch = "wasm32")]
mod blob_source;
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
mod bus_bench;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
mod message_agent;
#[cfg(target_arch = "wasm32")]
mod model_fit;
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
mod thread;
#[cfg(target_arch = "wasm32")]
mod worker_error;
#[cfg(target_arch = "wasm32")]
mod workflow;

#[cfg(target_arch = "wasm32")]
pub use engine::start_engine_worker;

// Counts the runtime's allocations, so a model that cannot fit the page is refused before it
// is read (model_fit.rs).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: model_fit::CountingAlloc = model_fit::CountingAlloc;
#[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
pub use message_agent::MessageAgent;
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use thread::run_thread;

// The threaded build re-exports the pool initialiser; the worker's JS awaits it before starting
// the engine, so every rayon call after that runs on `navigator.hardwareConcurrency` threads.
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;
