// Engine worker bootstrap: load the runtime build the page chose (?build=threaded|single),
// start the rayon pool in the threaded build, then hand over to Rust (hearth-workers).
const build = new URL(self.location.href).searchParams.get('build') === 'threaded' ? 'threaded' : 'single';
try {
  const runtime = await import(`./runtime/${build}/hearth_workers.js`);
  await runtime.default();
  if (build === 'threaded') {
    await runtime.initThreadPool(navigator.hardwareConcurrency || 1);
  }
  await runtime.start_engine_worker();
} catch (e) {
  self.postMessage({ type: 'error', message: `engine worker (${build} build) failed to start: ${e}` });
}
