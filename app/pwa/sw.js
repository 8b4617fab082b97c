// Hearth's service worker: keeps the app shell (the page, its wasm, the engine worker and both
// runtime builds) so the installed app starts with no network and no server.
//
// scripts/pwa-shell.sh writes the built sw.js: this file after two constants, VERSION (a hash
// of every file of the build) and SHELL (their paths). A new build is a new sw.js, which the
// browser installs beside the running one; it takes over at the next start (no skipWaiting),
// so a session never mixes two builds. Model files are not the shell: the engine worker keeps
// them in the `hearth-models` cache, which an update leaves alone.

const SHELL_CACHE = `hearth-shell-${VERSION}`;

self.addEventListener('install', (event) => {
  // `reload`: the server asks browsers to revalidate every file; the shell must be this build's.
  const requests = SHELL.map((path) => new Request(path, { cache: 'reload' }));
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(requests)));
});

self.addEventListener('activate', (event) => {
  const stale = (key) => key.startsWith('hearth-shell-') && key !== SHELL_CACHE;
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter(stale).map((key) => caches.delete(key)))));
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // The shell only: the API, model files (the engine reads them through its own cache) and
  // other origins go to the network untouched.
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/models/')
      || url.pathname.startsWith('/v1/')) {
    return;
  }
  event.respondWith(fromShell(request));
});

// The shell's copy (query strings such as ?backend= select behaviour, not files), else the
// network. A navigation to any page of the app gets the app's page.
async function fromShell(request) {
  const cache = await caches.open(SHELL_CACHE);
  const hit = (await cache.match(request, { ignoreSearch: true }))
    ?? (request.mode === 'navigate' ? await cache.match('./') : undefined);
  if (!hit) {
    return fetch(request);
  }
  // A copy without the cached URL: a worker's `location` is its response's URL, and the
  // engine worker reads its query (?build=threaded) from there. Headers (COOP, COEP) stay.
  return new Response(hit.body, { status: hit.status, statusText: hit.statusText, headers: hit.headers });
}
