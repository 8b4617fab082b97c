// Imported first by every worker that runs the wasm runtime.
// Servo 0.7 reports an "uncaught exception: undefined", with no script and no stack, in every
// worker that runs the wasm runtime, soon after it starts; the worker goes on working (it loads
// the model and generates afterwards). Passed on, the page would take it for a crash, so it is
// kept here (Chromium never words an error this way).
self.addEventListener('error', (event) => {
  if (event.message === 'uncaught exception: undefined' && !event.filename) {
    console.warn(`${self.name || 'worker'}: ignored a script-less "uncaught exception: undefined" (Servo)`);
    event.preventDefault();
    event.stopImmediatePropagation();
  }
});
