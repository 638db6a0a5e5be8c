// What the page downloads before the model runs: the wasm module (compiled once per page and
// handed to every worker), the model card and its weights. Each download reports its bytes, so
// a slow first visit shows progress instead of a frozen widget.

const CACHE = 'ddpm-weights-v1';
// Where a passed check of the GPU kernels is kept (web/engine.js), so that a later visit with
// the same browser, adapter, module and weights does not check again.
const CHECKS = 'ddpm-kernel-checks-v1';

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

/** `{ label }` of the browser's WebGPU adapter, or `{ reason }` why there is none. */
export async function webgpuAdapter() {
  if (!globalThis.navigator?.gpu) return { reason: 'this browser has no WebGPU' };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { reason: 'no WebGPU adapter' };
    // The adapter as the browser describes it (wgpu may not see vendor and architecture).
    const info = adapter.info ?? {};
    return { label: [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'adapter' };
  } catch (e) {
    return { reason: `no WebGPU adapter (${e.message})` };
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
  if (!response.body) return response.arrayBuffer();
  const chunks = [];
  let loaded = 0;
  progress(0, total);
  for (const reader = response.body.getReader(); ;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    progress(loaded, total);
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

/**
 * The weights at `url`, from the Cache API when a previous visit stored them, checked against
 * `expected` (the card's SHA-256). `report({ stage: 'weights', loaded, total })` while
 * downloading.
 */
export async function fetchWeights(url, expected, report) {
  const cache = await openCache();
  // The Cache API ignores fragments, so the expected hash goes into the key's query: weights
  // refused for one card never evict the good copy another card uses.
  const key = `${url}${url.includes('?') ? '&' : '?'}ddpm-sha256=${expected}`;
  const cached = await cache?.match(key);
  if (cached) {
    const bytes = await cached.arrayBuffer();
    if ((await sha256(bytes)) === expected) return bytes;
    await cache.delete(key);
  }
  const bytes = await download(url, 'weights', (loaded, total) => report({ stage: 'weights', loaded, total }));
  const found = await sha256(bytes);
  if (found !== expected) {
    throw new Error(`weights ${url}: SHA-256 ${found.slice(0, 12)}… does not match the model card's ${expected.slice(0, 12)}…; refusing them`);
  }
  await cache?.put(key, new Response(bytes.slice(0), { headers: { 'content-type': 'application/octet-stream' } })).catch(() => {});
  return bytes;
}

/**
 * The key under which a passed check of the GPU kernels on the weights with SHA-256 `weights`
 * is kept: the browser (its version compiles the kernels), the adapter's `label` and the
 * compiled WebGPU module's SHA-256. Null when the module has no digest (no secure context).
 */
export function kernelCheckKey(label, weights) {
  const module = digests.get('gpu');
  if (!module) return null;
  const query = new URLSearchParams({ browser: globalThis.navigator?.userAgent ?? '', adapter: label });
  // Never fetched, only a key (the Cache API's keys are URLs); not beside this script, so that
  // bundlers do not take it for an asset.
  return `${globalThis.location?.origin}/ddpm-kernel-check/${module}/${weights}?${query}`;
}

/** Whether the check under `key` passed on an earlier visit. */
export async function kernelsPassedBefore(key) {
  return Boolean(await (await openCache(CHECKS))?.match(key).catch(() => null));
}

/** Keeps that the check under `key` passed (nothing when storage is unavailable). */
export async function rememberKernelsPassed(key) {
  await (await openCache(CHECKS))?.put(key, new Response('passed')).catch(() => {});
}
