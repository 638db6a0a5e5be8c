// What the page downloads before the model runs: the wasm module (compiled once per page and
// handed to every worker), the model card and its weights. Each download reports its bytes, so
// a slow first visit shows progress instead of a frozen widget.

const CACHE = 'ddpm-weights-v1';
// Where a passed check of the GPU kernels is kept (web/engine.js), so that a later visit with
// the same browser, adapter, module and weights does not check again; for at most CHECK_DAYS
// (a driver update changes what runs under the same names). v1 keyed on the page's adapter.
const CHECKS = 'ddpm-kernel-checks-v2';
const OLD_CHECKS = 'ddpm-kernel-checks-v1';
const CHECK_DAYS = 30;
// A driver whose requestAdapter() never returns would leave the widget blank: after this the
// page takes the CPU.
const ADAPTER_TIMEOUT_MS = 10_000;

// The smallest module that uses a SIMD128 instruction (an i8x16.splat): browsers without
// WebAssembly SIMD refuse to validate it.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

/** Why this browser cannot run the model (one line), or null when it can. */
export function missingFeature() {
  if (typeof Worker === 'undefined') return 'this browser cannot run Web Workers, which the model runs in';
  if (typeof WebAssembly !== 'object') return 'this browser has no WebAssembly';
  if (!WebAssembly.validate(SIMD_PROBE)) {
    return 'this browser has no WebAssembly SIMD, which the model needs (Chrome 91, Firefox 89, Safari 16.4 and later have it)';
  }
  return null;
}

// The two builds of the wasm crate: WebGPU only, and the CPU backend only (what a browser
// without WebGPU downloads). `new URL(…, import.meta.url)` with literal paths, so that bundlers
// (Vite, webpack) ship the files.
const MODULES = {
  gpu: () => new URL('./ddpm-web_bg.wasm', import.meta.url),
  cpu: () => new URL('./cpu/ddpm-web_bg.wasm', import.meta.url),
};
const compiled = new Map(); // 'gpu' | 'cpu' -> Promise<WebAssembly.Module>
const digests = new Map(); // 'gpu' -> the module's SHA-256 (for kernelCheckKey), or null

/**
 * The wasm module for `kind` ('gpu' or 'cpu'), fetched from beside this script and compiled
 * once per page (every worker instantiates the same compiled module). `report({ stage, loaded,
 * total })`: stage 'code' while downloading, then 'compiling'.
 */
export function wasmModule(kind, report) {
  if (!compiled.has(kind)) {
    const compiling = (async () => {
      const url = MODULES[kind]().href;
      const bytes = await download(url, 'model code', (loaded, total) => report({ stage: 'code', loaded, total }));
      report({ stage: 'compiling' });
      // Hashed while it compiles: both take their copy of the bytes when called.
      const [module, digest] = await Promise.all([
        WebAssembly.compile(bytes),
        kind === 'gpu' ? sha256(bytes).catch(() => null) : null,
      ]);
      if (kind === 'gpu') digests.set(kind, digest);
      return module;
    })();
    compiling.catch(() => compiled.delete(kind)); // a later widget may try again
    compiled.set(kind, compiling);
  }
  return compiled.get(kind);
}

/**
 * `{ found: true }` when the browser has a WebGPU adapter (asked as cubecl asks in the worker,
 * for high performance), or `{ reason }` why there is none.
 */
export async function webgpuAdapter() {
  if (!globalThis.navigator?.gpu) return { reason: 'this browser has no WebGPU' };
  let timer = 0;
  try {
    const timeout = new Promise((resolve) => (timer = setTimeout(resolve, ADAPTER_TIMEOUT_MS, 'timeout')));
    const adapter = await Promise.race([navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }), timeout]);
    if (adapter === 'timeout') return { reason: `WebGPU gave no adapter in ${ADAPTER_TIMEOUT_MS / 1000} s` };
    return adapter ? { found: true } : { reason: 'no WebGPU adapter' };
  } catch (e) {
    return { reason: `no WebGPU adapter (${e.message})` };
  } finally {
    clearTimeout(timer);
  }
}

// The response for `url`, or an error naming `what` and why there is none.
async function get(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${what} ${url}: cannot fetch (${e.message})`);
  }
  if (!response.ok) throw new Error(`${what} ${url}: HTTP ${response.status}`);
  return response;
}

// The body of `url` as an ArrayBuffer, reporting the bytes received (and the total when the
// server says it and sends the body unencoded).
async function download(url, what, progress) {
  const response = await get(url, what);
  const length = Number(response.headers.get('content-length'));
  const total = length > 0 && !response.headers.get('content-encoding') ? length : null;
  const chunks = [];
  let loaded = 0;
  try {
    if (!response.body) return await response.arrayBuffer();
    progress(0, total);
    for (const reader = response.body.getReader(); ;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      progress(loaded, total);
    }
  } catch (e) {
    throw new Error(`${what} ${url}: the download broke off after ${loaded} bytes (${e.message})`);
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes.buffer;
}

/** The model card at `url`: JSON with the weights' URL and SHA-256. */
export async function fetchCard(url) {
  const response = await get(url, 'model card');
  let card;
  try {
    card = await response.json();
  } catch {
    throw new Error(`model card ${url}: not JSON`);
  }
  if (card === null || typeof card !== 'object' || Array.isArray(card)) {
    throw new Error(`model card ${url}: not a JSON object`);
  }
  if (typeof card.weights !== 'string' || !/^[0-9a-f]{64}$/.test(card.sha256 ?? '')) {
    throw new Error(`model card ${url}: needs "weights" and a hex "sha256"`);
  }
  return card;
}

async function sha256(bytes) {
  if (!globalThis.crypto?.subtle) throw new Error('cannot check the weights: this page is not a secure context (https or localhost)');
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function openCache(name = CACHE) {
  try {
    return globalThis.caches ? await caches.open(name) : null;
  } catch {
    return null; // e.g. storage disabled: fetch every time
  }
}

// `use(cache)`'s result, or `missing` when there is no cache or it fails: a cache that cannot
// be read or written is only a slower visit.
async function withCache(cache, use, missing = null) {
  try {
    return cache ? await use(cache) : missing;
  } catch {
    return missing;
  }
}

/**
 * The weights at `url`, from the Cache API when a previous visit stored them, checked against
 * `expected` (the card's SHA-256). `report({ stage: 'weights', loaded, total })` while
 * downloading.
 */
export async function fetchWeights(url, expected, report) {
  const cache = await openCache();
  // The Cache API ignores fragments, so the expected hash goes into the key's query: weights
  // refused for one card never evict the good copy another card uses.
  const prefix = `${url}${url.includes('?') ? '&' : '?'}ddpm-sha256=`;
  const key = `${prefix}${expected}`;
  const cached = await withCache(cache, async (c) => (await c.match(key))?.arrayBuffer() ?? null);
  if (cached) {
    if ((await sha256(cached)) === expected) return cached;
    await withCache(cache, (c) => c.delete(key));
  }
  const bytes = await download(url, 'weights', (loaded, total) => report({ stage: 'weights', loaded, total }));
  const found = await sha256(bytes);
  if (found !== expected) {
    throw new Error(`weights ${url}: SHA-256 ${found.slice(0, 12)}… does not match the model card's ${expected.slice(0, 12)}…; refusing them`);
  }
  await withCache(cache, async (c) => {
    await c.put(key, new Response(bytes.slice(0), { headers: { 'content-type': 'application/octet-stream' } }));
    // Older copies of these weights (a card that changed its hash) are never asked for again.
    for (const old of await c.keys()) {
      if (old.url.startsWith(prefix) && old.url !== key) await c.delete(old);
    }
  });
  return bytes;
}

// The browser's version, which compiles the kernels: the user agent string (which Chromium
// reduces to the major version) and, where the browser has them, its brands' full versions.
let browser = null;
function browserVersion() {
  browser ??= (async () => {
    const agent = globalThis.navigator?.userAgent ?? '';
    try {
      const { fullVersionList = [] } = await navigator.userAgentData.getHighEntropyValues(['fullVersionList']);
      return [agent, ...fullVersionList.map((b) => `${b.brand}/${b.version}`)].join(' ');
    } catch {
      return agent;
    }
  })();
  return browser;
}

/**
 * The key under which a passed check of the GPU kernels on the weights with SHA-256 `weights`
 * is kept: the browser's full version, the adapter the model worker's wgpu got (`adapter`:
 * its description, whether it is a fallback adapter and its subgroup sizes, with the vendor,
 * architecture and device the browser gives the worker for the same request) and the compiled
 * WebGPU module's SHA-256. Null when the module has no digest (no secure context).
 */
export async function kernelCheckKey(adapter, weights) {
  const module = digests.get('gpu');
  if (!module || !adapter) return null;
  const fields = Object.fromEntries(Object.entries(adapter).map(([k, v]) => [k, String(v)]).sort());
  const query = new URLSearchParams({ browser: await browserVersion(), ...fields });
  // Never fetched, only a key (the Cache API's keys are URLs); not beside this script, so that
  // bundlers do not take it for an asset.
  return `${globalThis.location?.origin}/ddpm-kernel-check/${module}/${weights}?${query}`;
}

/** Whether the check under `key` passed on an earlier visit, at most CHECK_DAYS ago. */
export async function kernelsPassedBefore(key) {
  return withCache(await openCache(CHECKS), async (cache) => {
    const kept = await cache.match(key);
    if (!kept) return false;
    const age = Date.now() - Number(kept.headers.get('x-ddpm-checked'));
    if (age >= 0 && age < CHECK_DAYS * 86_400_000) return true;
    await cache.delete(key);
    return false;
  }, false);
}

/** Keeps that the check under `key` passed, and when (nothing when storage is unavailable). */
export async function rememberKernelsPassed(key) {
  await withCache(await openCache(CHECKS), (cache) => cache.put(key, new Response('passed', { headers: { 'x-ddpm-checked': String(Date.now()) } })));
  await withCache(globalThis.caches, (caches) => caches.delete(OLD_CHECKS));
}
