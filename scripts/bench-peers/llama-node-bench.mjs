// Times llama.cpp natively through node-llama-cpp's prebuilt binaries (no build from source, no
// download: the binaries are the @node-llama-cpp/<platform> npm packages). On the CPU it loads the
// best of its prebuilt ggml CPU variants for this machine at run time (printed to stderr).
// Each round starts from an empty KV cache: prefill = the N_PROMPT prompt tokens evaluated in one
// batch (batchSize = N_PROMPT), up to the greedy choice of the first new token; decode = N_GEN
// single-token steps, each evaluating the previous greedy token and taking the argmax of its
// logits (temperature 0 is llama.cpp's greedy sampler alone; EOS ignored). The first round is a
// warm-up; the best of the others is reported. Prints one JSON line on stdout; the rest goes to
// stderr. With `vulkan` as 7th argument it offloads all layers to the first Vulkan device
// (GGML_VK_VISIBLE_DEVICES=0, which lets llama.cpp use CPU-type devices such as Mesa's lavapipe).
//
// Usage: node llama-node-bench.mjs NODE_MODULES MODEL.gguf N_PROMPT N_GEN THREADS ROUNDS [cpu|vulkan]
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

function fail(message) {
  console.error(`llama-node-bench: ${message}`);
  process.exit(1);
}

const usage = 'usage: node llama-node-bench.mjs NODE_MODULES MODEL.gguf N_PROMPT N_GEN THREADS ROUNDS [cpu|vulkan]';
const args = process.argv.slice(2);
if (args.length < 6 || args.length > 7) fail(usage);
const [nodeModules, modelPath] = args;
const [nPrompt, nGen, threads, rounds] = args.slice(2, 6).map(Number);
const mode = args[6] ?? 'cpu';
if (![nPrompt, nGen, threads].every((n) => Number.isInteger(n) && n >= 1)) fail(`N_PROMPT, N_GEN and THREADS must be >= 1\n${usage}`);
if (!(Number.isInteger(rounds) && rounds >= 2)) fail('ROUNDS must be >= 2 (the first one is a warm-up)');
if (mode !== 'cpu' && mode !== 'vulkan') fail(`the 7th argument is cpu or vulkan, not ${mode}`);
const vulkan = mode === 'vulkan';
let modelBytes;
try { modelBytes = statSync(modelPath).size; } catch (e) { fail(`cannot read the model: ${e.message}`); }
const promptFile = fileURLToPath(new URL('../../bench/prompt.txt', import.meta.url));

// ggml-vulkan skips CPU-type devices (lavapipe) unless the visible devices are listed; set it
// before the bindings load (node-llama-cpp also tests its binaries in a child process).
if (vulkan) process.env.GGML_VK_VISIBLE_DEVICES ??= '0';

let pkg, entry;
try {
  const require = createRequire(join(nodeModules, '../package.json'));
  entry = require.resolve('node-llama-cpp');
  pkg = JSON.parse(readFileSync(join(nodeModules, 'node-llama-cpp/package.json'), 'utf8'));
} catch (e) {
  fail(`node-llama-cpp is not installed in ${nodeModules}: ${e.message}`);
}
const { getLlama } = await import(pathToFileURL(entry).href);
const peer = `llama.cpp (node-llama-cpp ${pkg.version}, ${vulkan ? 'Vulkan' : 'CPU'})`;

// llama.cpp's log (it arrives asynchronously): keep the lines that say which binaries and
// devices it uses, and the errors.
const logger = (level, message) => {
  const text = message.trimEnd();
  if (/load_backend: loaded/.test(text)) {
    console.error(`llama-node-bench: ${text}`);
  } else if (level === 'error' || level === 'fatal' || level === 'warn' || /ggml_vulkan|using device|offload/i.test(text)) {
    console.error(`[llama.cpp ${level}] ${text}`);
  }
};

let llama, model, context;
try {
  llama = await getLlama({
    gpu: vulkan ? 'vulkan' : false,
    build: 'never', // a missing or broken prebuilt binary is an error, never a build from source
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: 'stderr',
    maxThreads: 0, // no cap: the context's `threads` is the thread count used
    logLevel: 'log', // the level of llama.cpp's "load_backend: loaded CPU backend from ..." line
    logger,
  });
  // ggml loads the best of the prebuilt CPU variants (libggml-cpu-<variant>.so) for this CPU.
  let cpuLibrary;
  try {
    cpuLibrary = readFileSync('/proc/self/maps', 'utf8').match(/\S*\/libggml-cpu[^\s/]*\.so\b/)?.[0];
  } catch { /* not Linux */ }
  const cpuVariant = cpuLibrary?.replace(/^.*\/libggml-cpu-?|\.so$/g, '');
  console.error(`llama-node-bench: node-llama-cpp ${pkg.version}, ${llama.buildType} binary, llama.cpp ` +
    `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}, gpu=${llama.gpu}, ` +
    `CPU variant ${cpuVariant || 'unknown'}${cpuLibrary ? ` (${cpuLibrary})` : ''}`);
  console.error(`llama-node-bench: system info: ${llama.systemInfo.trim()}`);
  let device;
  if (vulkan) {
    if (llama.gpu !== 'vulkan') throw new Error(`asked for Vulkan, got gpu=${llama.gpu}`);
    const names = await llama.getGpuDeviceNames();
    if (names.length === 0) throw new Error('no Vulkan device found');
    device = names.join(', ');
    console.error(`llama-node-bench: Vulkan devices: ${device}`);
  }

  model = await llama.loadModel({ modelPath, gpuLayers: vulkan ? 'max' : 0 });
  const bos = model.tokens.shouldPrependBosToken && model.tokens.bos != null ? [model.tokens.bos] : [];
  const text = readFileSync(promptFile, 'utf8');
  let prompt;
  for (let copies = 1; ; copies++) { // repeat the text when it is shorter than N_PROMPT tokens
    prompt = [...bos, ...model.tokenize(text.repeat(copies), false)];
    if (prompt.length >= nPrompt) break;
    if (copies === 64) throw new Error(`${promptFile} gives too few tokens`);
  }
  prompt = prompt.slice(0, nPrompt);

  context = await model.createContext({
    sequences: 1,
    contextSize: nPrompt + nGen + 16,
    batchSize: nPrompt, // the whole prompt in one llama_decode (n_batch = n_ubatch = N_PROMPT)
    threads,
  });
  console.error(`llama-node-bench: model ${modelPath} (${model.typeDescription}, ${model.gpuLayers} layers offloaded); ` +
    `context ${context.contextSize} tokens, batch ${context.batchSize}, threads ${context.idealThreads}, ` +
    `flash attention ${context.flashAttention}`);
  const sequence = context.getSequence();

  let bestPrefill = 0, bestDecode = 0;
  for (let r = 0; r < rounds; r++) {
    await sequence.clearHistory(); // empty KV cache
    const generated = [];
    const steps = sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true });
    try {
      const t0 = performance.now();
      let step = await steps.next(); // prefill, then the first greedy token
      const t1 = performance.now();
      if (step.done) throw new Error('no token after the prompt');
      generated.push(step.value);
      for (let i = 0; i < nGen; i++) { // evaluates the last token, picks the next greedily
        step = await steps.next();
        if (step.done) throw new Error(`generation stopped after ${i} decode steps`);
        generated.push(step.value);
      }
      const t2 = performance.now();
      const prefill = nPrompt / ((t1 - t0) / 1e3), decode = nGen / ((t2 - t1) / 1e3);
      if (r === 0) {
        console.error(`llama-node-bench: prompt starts [${prompt.slice(0, 8)}] generates [${generated.slice(0, 8)}] ` +
          `${JSON.stringify(model.detokenize(generated.slice(0, 16)))}`);
      }
      console.error(`llama-node-bench round ${r}${r ? '' : ' (warm-up)'}: prefill ${prefill.toFixed(1)} tok/s, ` +
        `decode ${decode.toFixed(1)} tok/s`);
      if (r > 0) { bestPrefill = Math.max(bestPrefill, prefill); bestDecode = Math.max(bestDecode, decode); }
    } finally {
      await steps.return();
    }
    if (sequence.nextTokenIndex !== nPrompt + nGen) {
      throw new Error(`the sequence holds ${sequence.nextTokenIndex} tokens, expected ${nPrompt + nGen}`);
    }
  }

  console.log(JSON.stringify({
    peer, place: 'native', ...(vulkan ? { device } : {}), threads, prompt_tokens: nPrompt, gen_tokens: nGen,
    prefill_tok_s: +bestPrefill.toFixed(1), decode_tok_s: +bestDecode.toFixed(1),
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024, model_bytes: modelBytes,
  }));
} catch (e) {
  fail(e?.message ?? String(e));
}
try {
  await context?.dispose();
  await model?.dispose();
  await llama?.dispose();
} catch { /* the result is out; the process ends anyway */ }
process.exit(0);
