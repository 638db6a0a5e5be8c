// The page's side of the model thread: one worker per backend choice, shared by every widget,
// and the weights, fetched once per URL, checked against the model card's SHA-256 and cached.

const CACHE = 'ddpm-weights-v1';
const engines = new Map(); // 'auto' | 'cpu' -> Engine

/** A call failed because the WebGPU device was lost; the engine has moved to the CPU. */
export class DeviceLostError extends Error {
  constructor(reason) {
    super(`the WebGPU device was lost (${reason}); continuing on the CPU`);
    this.deviceLost = true;
  }
}

// Fires 'device-lost' (detail: { reason }) once it has moved to a CPU worker; widgets then
// start their runs again there.
class Engine extends EventTarget {
  constructor(preferGpu) {
    super();
    this.lost = null;
    this.#start(preferGpu);
  }

  #start(preferGpu) {
    // Each worker answers into its own map, so a late reply from a replaced worker finds
    // nothing to settle.
    const pending = new Map();
    this.worker = startWorker();
    this.pending = pending;
    this.nextId = 1;
    this.models = new Map(); // card URL -> Promise<{ card, info }>
    this.worker.onmessage = ({ data }) => {
      const call = pending.get(data.id);
      if (!call) return;
      pending.delete(data.id);
      if (data.lost) {
        call.reject(new DeviceLostError(data.lost));
        this.#fallBack(data.lost);
      } else if (data.ok) call.resolve(data.value);
      else call.reject(new Error(data.error));
    };
    this.worker.onerror = (event) => {
      // A script that fails to load (e.g. a CSP without `worker-src` for its origin) gives no
      // message; say what to check.
      const why = event.message ?? 'its script did not load (check the CSP allows workers from its origin)';
      const error = new Error(`the model worker failed: ${why}`);
      for (const call of pending.values()) call.reject(error);
      pending.clear();
    };
    this.backend = this.call('init', { preferGpu, lost: this.lost });
  }

  // The WebGPU device is gone: every model moves to a new worker on the CPU backend (its
  // weights come from the Cache API again, not the network).
  #fallBack(reason) {
    if (this.lost) return;
    this.lost = reason;
    this.worker.terminate();
    const error = new DeviceLostError(reason);
    for (const call of this.pending.values()) call.reject(error);
    this.pending.clear();
    this.#start(false);
    this.dispatchEvent(new CustomEvent('device-lost', { detail: { reason } }));
  }

  call(op, args, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  // The model card at `cardUrl` and its weights, loaded once for every widget that asks.
  model(cardUrl) {
    if (!this.models.has(cardUrl)) {
      const loading = (async () => {
        const card = await fetchCard(cardUrl);
        const weightsUrl = new URL(card.weights, cardUrl).href;
        const bytes = await fetchWeights(weightsUrl, card.sha256);
        await this.backend;
        const info = await this.call('load', { key: cardUrl, bytes }, [bytes]);
        return { card, info };
      })();
      // A later attempt may succeed (the map is replaced when the device is lost).
      const models = this.models;
      loading.catch(() => models.get(cardUrl) === loading && models.delete(cardUrl));
      this.models.set(cardUrl, loading);
    }
    return this.models.get(cardUrl);
  }
}

// The model worker. Browsers refuse a worker script from another origin, so when the widget is
// loaded from one (a CDN) the worker is a same-origin blob that imports it; that needs CORS
// headers on the widget's host and, under a Content-Security-Policy, `worker-src blob:` plus the
// host (a module worker's imports are fetched under worker-src).
function startWorker() {
  const url = new URL('./ddpm-worker.js', import.meta.url);
  if (url.origin === globalThis.location?.origin) return new Worker(url, { type: 'module' });
  const shim = new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module' });
}

/** The shared engine for `backend` ('auto': WebGPU when the browser has it, else CPU). */
export function engine(backend = 'auto') {
  if (!engines.has(backend)) engines.set(backend, new Engine(backend !== 'cpu'));
  return engines.get(backend);
}

async function fetchCard(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`model card ${url}: cannot fetch (${e.message})`);
  }
  if (!response.ok) throw new Error(`model card ${url}: HTTP ${response.status}`);
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

async function openCache() {
  try {
    return globalThis.caches ? await caches.open(CACHE) : null;
  } catch {
    return null; // e.g. storage disabled: fetch every time
  }
}

/** The weights at `url`, from the Cache API when a previous visit stored them. */
async function fetchWeights(url, expected) {
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
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`weights ${url}: cannot fetch (${e.message})`);
  }
  if (!response.ok) throw new Error(`weights ${url}: HTTP ${response.status}`);
  const bytes = await response.arrayBuffer();
  const found = await sha256(bytes);
  if (found !== expected) {
    throw new Error(`weights ${url}: SHA-256 ${found.slice(0, 12)}… does not match the model card's ${expected.slice(0, 12)}…; refusing them`);
  }
  await cache?.put(key, new Response(bytes.slice(0), { headers: { 'content-type': 'application/octet-stream' } })).catch(() => {});
  return bytes;
}
