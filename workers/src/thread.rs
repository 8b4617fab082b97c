//! Agent workers in the threaded build: each is a Web Worker (`thread-worker.js`) that
//! instantiates this runtime on the engine worker's shared memory and runs one Rust closure
//! there, so agents reach the shared-memory bus exactly as native threads do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hearth_agents::AgentWorker;
use hearth_agents::host::DoneOnDrop;
use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, Worker, WorkerOptions, WorkerType};

use crate::worker_error::{self, Died};

type Job = Box<dyn FnOnce() + Send>;

/// A running agent worker. Dropping the handle leaves the worker to end by itself (a worker
/// that shares the runtime's memory cannot be terminated safely: it may hold a lock).
struct WebWorker {
    /// Set when the closure returns.
    done: Arc<AtomicBool>,
    /// Set, with the error, when the worker failed to start or trapped.
    died: Died,
    _worker: Worker,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

impl AgentWorker for WebWorker {
    fn is_finished(&self) -> bool {
        self.done.load(Ordering::Acquire) || self.died.borrow().is_some()
    }

    fn failure(&self) -> Option<String> {
        self.died.borrow().clone()
    }
}

/// Starts `job` on a new Web Worker sharing this runtime's module and memory.
pub fn spawn(job: Job) -> Result<Box<dyn AgentWorker>, String> {
    let done = Arc::new(AtomicBool::new(false));
    let guard = DoneOnDrop(done.clone());
    let job: Job = Box::new(move || {
        let _guard = guard;
        job()
    });
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Module);
    options.set_name("hearth-agent");
    // Relative to this worker's script, engine-worker.js.
    let worker = Worker::new_with_options("thread-worker.js", &options)
        .map_err(|e| format!("cannot start a Web Worker: {e:?}"))?;
    let (died, on_error) = worker_error::watch(&worker);
    // The worker takes the closure over: `run_thread` turns the address back into the box.
    let ptr = Box::into_raw(Box::new(job));
    let init = js_sys::Array::of3(&wasm_bindgen::module(), &wasm_bindgen::memory(), &JsValue::from(ptr as u32));
    if let Err(e) = worker.post_message(&init) {
        // SAFETY: the message did not go, so nothing else owns the box.
        drop(unsafe { Box::from_raw(ptr) });
        worker.terminate();
        return Err(format!("cannot start a Web Worker: {e:?}"));
    }
    Ok(Box::new(WebWorker { done, died, _worker: worker, _on_error: on_error }))
}

/// Runs the closure [`spawn`] handed to this worker.
#[wasm_bindgen]
pub fn run_thread(job: u32) {
    // SAFETY: `job` is the address `spawn` leaked for exactly this worker, taken back once.
    let job = unsafe { Box::from_raw(job as usize as *mut Job) };
    job();
}
