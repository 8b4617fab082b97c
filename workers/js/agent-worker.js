// An agent's worker without shared memory (see workers/src/message_agent.rs): a runtime of its
// own, the agent's program from the first message ([program JSON, module bytes or null]), then
// the hub's messages one by one, each answered with the agent's own. When the agent ends it
// says so (null) and the worker closes. Errors are thrown from a task of their own so they
// reach the engine worker's `onerror`.
import './servo-quirks.js';

let agent;
const early = [];

function post(messages) {
  for (const message of messages) self.postMessage(message);
  if (agent.ended()) {
    self.postMessage(null);
    self.close();
  }
}

self.onmessage = async ({ data }) => {
  if (agent) return post(agent.handle(data));
  // The hub's first turn may come while the runtime still loads.
  if (!Array.isArray(data)) return early.push(data);
  try {
    const runtime = await import('./runtime/single/hearth_workers.js');
    await runtime.default();
    const [program, wasm] = data;
    agent = new runtime.MessageAgent(program, wasm ?? undefined);
  } catch (e) {
    setTimeout(() => { throw e; });
    return;
  }
  post(agent.start());
  for (const message of early.splice(0)) {
    if (agent.ended()) break;
    post(agent.handle(message));
  }
};
