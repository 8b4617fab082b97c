// Engine worker bootstrap: load the runtime build the page chose (?build=threaded|single),
// start the rayon pool in the threaded build, then hand over to Rust (hearth-workers).
// ?threads=N sizes the rayon pool (benchmarks); by default, one thread per core.
const params = new URL(self.location.href).searchParams;
// Servo 0.7 reports an "uncaught exception: undefined", with no script and no stack, in every
// worker that runs the wasm runtime, soon after it starts; the worker goes on working (it loads
// the model and generates afterwards). Passed on, the page would take it for a crash, so it is
// kept here (Chromium never words an error this way).
self.addEventListener('error', (event) => {
  if (event.message === 'uncaught exception: undefined' && !event.filename) {
    console.warn('engine worker: ignored a script-less "uncaught exception: undefined" (Servo)');
    event.preventDefault();
    event.stopImmediatePropagation();
  }
});
// An error nothing caught says where it happened, so the page can show it.
self.addEventListener('error', (event) => {
  self.postMessage({ type: 'error', message: `engine worker: ${event.message} (${event.filename}:${event.lineno}:${event.colno})` });
});
const build = params.get('build') === 'threaded' ? 'threaded' : 'single';
const threads = Math.max(1, Number.parseInt(params.get('threads'), 10) || navigator.hardwareConcurrency || 1);
try {
  const runtime = await import(`./runtime/${build}/hearth_workers.js`);
  await runtime.default();
  if (build === 'threaded') {
    await runtime.initThreadPool(threads);
  }
  await runtime.start_engine_worker();
} catch (e) {
  self.postMessage({ type: 'error', message: `engine worker (${build} build) failed to start: ${e}` });
}
