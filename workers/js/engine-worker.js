// Engine worker bootstrap: load the runtime build the page chose (?build=threaded|single),
// start the rayon pool in the threaded build, then hand over to Rust (hearth-workers).
// ?threads=N sizes the rayon pool (benchmarks); by default, one thread per core.
import './servo-quirks.js';

const params = new URL(self.location.href).searchParams;
// An error nothing caught says where it happened, so the page can show it.
self.addEventListener('error', (event) => {
  self.postMessage({ type: 'error', message: `engine worker: ${event.message} (${event.filename}:${event.lineno}:${event.colno})` });
});
const build = params.get('build') === 'threaded' ? 'threaded' : 'single';
const threads = Math.max(1, Number.parseInt(params.get('threads'), 10) || navigator.hardwareConcurrency || 1);

// The threaded build's workers (the rayon pool, the agents) are started with the runtime's
// compiled module and its shared memory. Servo can post the memory but not a WebAssembly.Module
// (DataCloneError): where that is so, the runtime's bytes go in the module's place and each
// worker compiles them itself — the same code on the same memory, only a slower start.
async function postModulesAsBytesWhereNeeded(url) {
  const empty = await WebAssembly.compile(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  try {
    new MessageChannel().port1.postMessage(empty);
    return;
  } catch (e) {
    console.warn(`engine worker: this engine cannot post a WebAssembly.Module (${e}); its workers compile the runtime's bytes`);
  }
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const swap = (value) => {
    if (value instanceof WebAssembly.Module) return bytes;
    if (Array.isArray(value)) return value.map(swap);
    if (value?.constructor === Object) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, swap(v)]));
    return value;
  };
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (message, transfer) {
    return post.call(this, swap(message), transfer);
  };
}

try {
  const runtime = await import(`./runtime/${build}/hearth_workers.js`);
  await runtime.default();
  if (build === 'threaded') {
    await postModulesAsBytesWhereNeeded(new URL(`./runtime/${build}/hearth_workers_bg.wasm`, self.location.href));
    await runtime.initThreadPool(threads);
  }
  await runtime.start_engine_worker();
} catch (e) {
  self.postMessage({ type: 'error', message: `engine worker (${build} build) failed to start: ${e}` });
}
