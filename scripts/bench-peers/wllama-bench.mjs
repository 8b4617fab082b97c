// Times wllama in headless Chromium: serves the wllama package, bench/wllama.html, the prompt
// and the model on 127.0.0.1 (random port) with COOP/COEP headers (cross-origin isolation is
// what lets wllama use its multi-thread build), then runs the page's runBench once per thread
// count. Prints one JSON line per thread count on stdout; everything else goes to stderr.
//
// Usage: node wllama-bench.mjs NODE_MODULES MODEL PROMPT_FILE N_PROMPT N_GEN ROUNDS THREADS...
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const [nodeModules, model, promptFile, nPrompt, nGen, rounds, ...threadList] = process.argv.slice(2);
const puppeteer = createRequire(join(nodeModules, '../package.json'))('puppeteer-core');
const wllamaDir = join(nodeModules, '@wllama/wllama');
const version = JSON.parse(readFileSync(join(wllamaDir, 'package.json'))).version;
const page = fileURLToPath(new URL('../../bench/wllama.html', import.meta.url));

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x').pathname;
  let file;
  if (url === '/') file = page;
  else if (url === '/model.gguf') file = model;
  else if (url === '/prompt.txt') file = promptFile;
  else if (url.startsWith('/wllama/')) file = join(wllamaDir, normalize(url.slice(8)).replace(/^(\.\.\/)+/, ''));
  let size;
  try { size = statSync(file).size; } catch { res.writeHead(404).end(); return; }
  res.writeHead(200, {
    'Content-Type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream',
    'Content-Length': size,
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
  });
  createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const origin = `http://127.0.0.1:${server.address().port}/`;

const browser = await puppeteer.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless=new', '--no-sandbox'],
  protocolTimeout: 30 * 60e3, // runBench is one long call: minutes at 2 threads on a busy machine
});
let failed = 0;
try {
  console.error(`wllama ${version} in ${await browser.version()}`);
  for (const threads of threadList.map(Number)) {
    const base = { peer: 'wllama', version, where: 'chromium', threads };
    const tab = await browser.newPage();
    tab.on('console', (m) => console.error(`[page] ${m.text()}`));
    tab.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
    try {
      await tab.goto(origin);
      await tab.waitForFunction('window.benchReady === true', { timeout: 30000 });
      const out = await tab.evaluate((a) => window.runBench(a), {
        threads, promptTokens: Number(nPrompt), genTokens: Number(nGen), rounds: Number(rounds),
      });
      console.error(`wllama prompt starts [${out.prompt}] generates [${out.generated}]`);
      out.rounds.forEach((r, i) => console.error(`wllama ${threads}T round ${i}${i ? '' : ' (warm-up)'}: ` +
        `prefill ${r.prefill_tok_s.toFixed(1)} tok/s, decode ${r.decode_tok_s.toFixed(1)} tok/s`));
      // wllama falls back to its single-thread build without cross-origin isolation: say so.
      if (threads > 1 && !(out.multithread && out.threads === threads)) {
        throw new Error(`wllama did not run ${threads} threads (multithread=${out.multithread}, threads=${out.threads})`);
      }
      const measured = out.rounds.slice(1); // round 0 is the warm-up
      console.log(JSON.stringify({
        ...base, prompt_tokens: Number(nPrompt), gen_tokens: Number(nGen),
        prefill_tok_s: +Math.max(...measured.map((r) => r.prefill_tok_s)).toFixed(1),
        decode_tok_s: +Math.max(...measured.map((r) => r.decode_tok_s)).toFixed(1),
      }));
    } catch (e) {
      failed++;
      console.log(JSON.stringify({ ...base, error: `wllama ${threads}T: ${e.message ?? e}` }));
    } finally {
      await tab.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(failed === threadList.length ? 1 : 0);
