// An agent's worker in the threaded build (see workers/src/thread.rs): instantiates the runtime
// on the engine worker's module and shared memory, runs the one job it was given, and closes.
// Errors are thrown from a task of their own so they reach the engine worker's `onerror`.
import './servo-quirks.js';

self.addEventListener('message', async ({ data: [module, memory, job] }) => {
  try {
    const runtime = await import('./runtime/threaded/hearth_workers.js');
    const wasm = await runtime.default({ module_or_path: module, memory });
    runtime.run_thread(job);
    // This thread's stack and thread-locals go back to the shared allocator.
    wasm.__wbindgen_thread_destroy?.();
    self.close();
  } catch (e) {
    setTimeout(() => { throw e; });
  }
}, { once: true });
