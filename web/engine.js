// The page's side of the model: one engine per backend choice and pool size, shared by every
// widget. On WebGPU it is one worker; on the CPU a pool of workers, each with its own wasm
// instance and copy of the weights, each sampling its share of every run's images (the core's
// `Sampler::new_part`: the same noise and labels those images get in one worker, so the images
// do not depend on the pool's size).

import {
  fetchCard, fetchWeights, kernelCheckKey, kernelsPassedBefore, missingFeature, rememberKernelsPassed, wasmModule,
  webgpuAdapter,
} from './loading.js';
import { DeviceLostError, Thread } from './thread.js';

export { DeviceLostError } from './thread.js';

const engines = new Map(); // `gpu/${gpuKernels}` or `cpu/${workers}/${backend}` -> Engine

// How long a worker may take to answer its start, and each model's load (which on WebGPU
// includes the kernels' check: it compiles burn's kernels and the core's, about one step, which
// is seconds to a minute on a software adapter). Generous: they only turn a worker that hangs
// into a one-line error.
const INIT_TIMEOUT_MS = 120_000;
const LOAD_TIMEOUT_MS = 300_000;
// How long an engine, or a model in it, that no widget holds is kept before its workers end (or
// free the model): a widget moved in the page, or replaced by one of the same settings, finds
// it still there.
const IDLE_MS = 2_000;

/** Workers for the CPU backend when the widget does not say: one per core, at most 8. */
export function defaultWorkers() {
  return Math.max(1, Math.min(8, globalThis.navigator?.hardwareConcurrency ?? 1));
}

// The adapter's name as the widget shows it: `vendor architecture description` (any of them may
// be blank in a browser that hides them).
const adapterName = (a) => [a?.vendor, a?.architecture, a?.description].filter(Boolean).join(' ') || 'adapter';

// Events: 'progress' (detail: { stage: 'code' | 'compiling' | 'weights' | 'starting' |
// 'checking', loaded, total }) while it loads; 'device-lost' (detail: { reason }) once it has
// moved from a lost WebGPU device to the CPU, after which widgets start their runs again.
//
// An engine ends (its workers terminated, and it leaves the page's engines, so that the next
// start makes a new one) when its start fails, when a worker crashes or hangs, and when no
// widget has held it for IDLE_MS.
class Engine extends EventTarget {
  #refs = 0; // widgets holding this engine
  #idle = 0; // the timer that ends it once none does
  #held = new Map(); // card URL -> widgets holding that model
  #latest = new Map(); // runId -> the token of its newest start; a drop deletes it
  #tokens = 0;
  #ready = false; // the backend has started (on its current threads)

  constructor(key, preferGpu, workers, gpuKernels) {
    super();
    this.key = key;
    this.size = workers;
    this.gpuKernels = gpuKernels;
    this.lost = null;
    this.closed = null; // why this engine ended
    this.#start(preferGpu);
    this.#idleCheck();
  }

  #start(preferGpu) {
    const threads = [];
    this.threads = threads;
    this.runs = new Map(); // runId -> { id, parts: [{ thread, part }], shape, columns, broken }
    this.models = new Map(); // card URL -> Promise<{ card, info }>
    this.#ready = false;
    this.backend = this.#spawn(preferGpu);
    this.backend.then(
      () => (this.#ready = this.threads === threads),
      (e) => this.threads === threads && this.#close(e),
    );
  }

  /** A widget uses this engine until it calls `release()`. */
  retain() {
    this.#refs += 1;
    clearTimeout(this.#idle);
  }

  release() {
    this.#refs = Math.max(0, this.#refs - 1);
    this.#idleCheck();
  }

  #idleCheck() {
    clearTimeout(this.#idle);
    if (this.#refs > 0 || this.closed) return;
    this.#idle = setTimeout(() => this.#refs === 0 && this.#close(new Error('the model engine was closed: no widget uses it')), IDLE_MS);
  }

  // Its workers end, every call waiting for them rejects with `error`, and the next start of a
  // widget makes a new engine.
  #close(error) {
    if (this.closed) return;
    this.closed = error;
    clearTimeout(this.#idle);
    if (engines.get(this.key) === this) engines.delete(this.key);
    for (const thread of this.threads) thread.terminate(error);
  }

  // WebGPU runs the whole batch on one device, in one worker of the WebGPU module; the CPU
  // backend gets the pool, of the CPU module. Each module is downloaded only when needed.
  async #spawn(preferGpu) {
    const missing = missingFeature();
    if (missing) throw new Error(missing);
    const report = (p) => this.#report(p);
    let reason = this.lost ? `WebGPU device lost: ${this.lost}` : null;
    if (preferGpu && !reason) {
      const adapter = await pageAdapter();
      reason = adapter.reason ?? null;
      if (adapter.found) {
        const module = await wasmModule('gpu', report);
        this.#report({ stage: 'starting' });
        const thread = this.#thread();
        try {
          const got = await thread.call('init', { kind: 'gpu', module, gpuKernels: this.gpuKernels }, [], INIT_TIMEOUT_MS);
          const kernels = got.gpuKernels ? ' · fused kernels' : '';
          return { name: `WebGPU (${adapterName(got.adapter)})${kernels}`, gpu: true, workers: 1, adapter: got.adapter, gpuKernels: got.gpuKernels };
        } catch (e) {
          // The worker found no usable device after all (or crashed, or hung): the CPU, saying
          // why.
          thread.terminate(e);
          this.threads.splice(this.threads.indexOf(thread), 1);
          if (this.closed) throw this.closed;
          reason = `no WebGPU: ${e.message}`;
        }
      }
    }
    const module = await wasmModule('cpu', report);
    this.#report({ stage: 'starting' });
    const threads = Array.from({ length: this.size }, () => this.#thread());
    // One that fails ends them all (the engine closes).
    await Promise.all(threads.map((t) => t.call('init', { kind: 'cpu', module }, [], INIT_TIMEOUT_MS)));
    return { name: reason ? `CPU (${reason})` : 'CPU', gpu: false, workers: threads.length };
  }

  #thread() {
    if (this.closed) throw this.closed;
    const thread = new Thread((reason) => this.#fallBack(reason), (error) => this.#failed(thread, error));
    this.threads.push(thread);
    return thread;
  }

  // A worker crashed or hung. While the backend starts, the start sees its call fail (WebGPU
  // then tries the CPU); after that the engine closes: the other workers' runs may be out of
  // step with it, and its models are gone.
  #failed(thread, error) {
    if (this.#ready && this.threads.includes(thread)) this.#close(error);
  }

  #report(detail) {
    this.dispatchEvent(new CustomEvent('progress', { detail }));
  }

  // The core's GPU kernels failed their check on a model (web/ddpm-worker.js) and are off in
  // the worker from now on: the backend's name says so, and why, to every widget that starts.
  #kernelsOff(why) {
    this.backend = this.backend.then((b) => ({
      ...b,
      gpuKernels: false,
      name: `${b.name.replace(/ · fused kernels$/, '')} · burn's kernels: the fused ones ${why}`,
    }));
  }

  // The WebGPU device is gone: every model moves to new workers on the CPU backend (their
  // weights come from the Cache API again, not the network).
  #fallBack(reason) {
    if (this.lost || this.closed) return;
    this.lost = reason;
    const error = new DeviceLostError(reason);
    for (const thread of this.threads) thread.terminate(error);
    this.#start(false);
    this.dispatchEvent(new CustomEvent('device-lost', { detail: { reason } }));
  }

  /** The model card at `cardUrl` and its weights, loaded into every worker once. */
  model(cardUrl) {
    if (this.closed) return Promise.reject(this.closed);
    if (!this.models.has(cardUrl)) {
      const loading = (async () => {
        const card = await fetchCard(cardUrl);
        const weightsUrl = new URL(card.weights, cardUrl).href;
        const bytes = await fetchWeights(weightsUrl, card.sha256, (p) => this.#report({ ...p, model: cardUrl }));
        const backend = await this.backend;
        this.#report({ stage: 'starting', model: cardUrl });
        // The GPU kernels are checked on each model before its first run, unless they passed
        // on an earlier visit with the same browser, adapter, module and weights.
        const checkKey = backend.gpuKernels ? await kernelCheckKey(backend.adapter, card.sha256) : null;
        const check = Boolean(backend.gpuKernels) && !(checkKey && await kernelsPassedBefore(checkKey));
        if (check) this.#report({ stage: 'checking', model: cardUrl });
        const threads = this.threads;
        const loaded = await Promise.all(threads.map((thread, i) => {
          const own = i === threads.length - 1 ? bytes : bytes.slice(0);
          return thread.call('load', { key: cardUrl, bytes: own, check }, [own], LOAD_TIMEOUT_MS);
        }));
        const { info, kernelsOff, passed } = loaded[0];
        if (kernelsOff) this.#kernelsOff(kernelsOff);
        else if (passed && checkKey) await rememberKernelsPassed(checkKey);
        return { card, info };
      })();
      // A later attempt may succeed (the map is replaced when the device is lost).
      const models = this.models;
      loading.then(
        () => this.#unloadIdle(cardUrl), // loaded for a widget that was overtaken: not kept
        () => models.get(cardUrl) === loading && models.delete(cardUrl),
      );
      this.models.set(cardUrl, loading);
    }
    return this.models.get(cardUrl);
  }

  /** A widget runs the model at `cardUrl`; the function returned lets go of it. */
  holdModel(cardUrl) {
    this.#held.set(cardUrl, (this.#held.get(cardUrl) ?? 0) + 1);
    let holding = true;
    return () => {
      if (!holding) return;
      holding = false;
      this.#held.set(cardUrl, this.#held.get(cardUrl) - 1);
      this.#unloadIdle(cardUrl);
    };
  }

  // A model no widget has held for IDLE_MS is freed in every worker (a run of it keeps its own
  // reference to the network until it is dropped).
  #unloadIdle(cardUrl) {
    if ((this.#held.get(cardUrl) ?? 0) > 0) return;
    setTimeout(() => {
      if (this.closed || (this.#held.get(cardUrl) ?? 0) > 0 || !this.models.has(cardUrl)) return;
      this.#held.delete(cardUrl);
      this.models.delete(cardUrl);
      // Each worker answers in order: the load has finished before this.
      for (const thread of this.threads) thread.call('unload', { key: cardUrl }).catch(() => {});
    }, IDLE_MS);
  }

  /** One operation of the widget's run: 'start', 'step', 'values', 'frame', 'drop' or 'loseDevice'. */
  call(op, args) {
    if (this.closed) return Promise.reject(this.closed);
    switch (op) {
      case 'start': return this.#startRun(args);
      case 'step': return this.#step(args);
      case 'values': return this.#values(args);
      case 'frame': return this.#frame(args);
      case 'drop': return this.#drop(args);
      case 'loseDevice': return this.threads[0].call('loseDevice', {});
      default: return Promise.reject(new Error(`unknown operation ${op}`));
    }
  }

  // Splits the run's images into contiguous parts, one per worker (fewer when there are fewer
  // images than workers). Each start has its own id on the workers: of two starts of a widget in
  // flight at once only the newer is kept, and the older's parts are dropped, so that a run
  // never pairs one start's workers with another's.
  async #startRun({ key, runId, options }) {
    const token = ++this.#tokens;
    this.#latest.set(runId, token);
    await this.backend;
    await this.#free(runId);
    const n = options.n ?? 16;
    const k = Math.max(1, Math.min(this.threads.length, n));
    const id = `${runId}#${token}`;
    const parts = this.threads.slice(0, k).map((thread, i) => ({
      thread,
      part: [Math.floor((i * n) / k), Math.floor(((i + 1) * n) / k)],
    }));
    const started = await Promise.allSettled(parts.map(({ thread, part }) =>
      thread.call('start', { key, runId: id, options: { ...options, part } })));
    const refused = started.find((s) => s.status === 'rejected');
    if (refused || this.#latest.get(runId) !== token) {
      parts.forEach(({ thread }, i) => started[i].status === 'fulfilled' && thread.call('drop', { runId: id }).catch(() => {}));
      throw refused ? refused.reason : new Error('a newer start of this run replaced it');
    }
    const { total, shape, columns } = started[0].value;
    this.runs.set(runId, { id, parts, shape, columns, broken: null });
    return { total, columns };
  }

  #run(runId) {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`no run ${runId}`);
    if (run.broken) throw new Error(`this run stopped at an error (${run.broken}); restart it`);
    return run;
  }

  // Every worker takes the step on its images; the viewed values are joined and laid out as
  // one grid by the first worker (the core's grid, as the CLI's PNGs).
  async #step({ runId, view }) {
    const run = this.#run(runId);
    const started = performance.now();
    const replies = await Promise.all(run.parts.map(({ thread }) => thread.call('step', { runId: run.id, view }))).catch((e) => {
      // Some workers may have taken the step and others not: its parts are out of step, so only
      // a new start goes on.
      run.broken = String(e?.message ?? e).split('\n')[0];
      throw e;
    });
    const ms = performance.now() - started;
    const [first] = replies;
    if (first === null) return null;
    if (view === 'none') return { step: first.step, ms };
    const values = join(replies.map((r) => r.values));
    const frame = await run.parts[0].thread.call('grid', { step: first.step, t: first.t, values, shape: run.shape, columns: run.columns }, [values.buffer]);
    return { ...frame, ms };
  }

  async #values({ runId }) {
    const run = this.#run(runId);
    return join(await Promise.all(run.parts.map(({ thread }) => thread.call('values', { runId: run.id }))));
  }

  // The images as they are, as a grid: what a run of no steps (SDEdit at strength 0) shows.
  async #frame({ runId }) {
    const run = this.#run(runId);
    const values = await this.#values({ runId });
    return run.parts[0].thread.call('grid', { step: 0, t: 0, values, shape: run.shape, columns: run.columns }, [values.buffer]);
  }

  // The widget's run is not wanted any more; a start of it still in flight drops its own parts.
  async #drop({ runId }) {
    this.#latest.delete(runId);
    await this.#free(runId);
  }

  async #free(runId) {
    const run = this.runs.get(runId);
    this.runs.delete(runId);
    if (run) await Promise.all(run.parts.map(({ thread }) => thread.call('drop', { runId: run.id })));
  }
}

function join(arrays) {
  if (arrays.length === 1) return arrays[0];
  const joined = new Float32Array(arrays.reduce((sum, a) => sum + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    joined.set(a, at);
    at += a.length;
  }
  return joined;
}

/**
 * The shared engine for `backend` ('auto': WebGPU when the browser has it, else the CPU) with
 * `workers` workers on the CPU (default: one per core, at most 8), and on WebGPU the core's
 * fused kernels if `gpuKernels`. On WebGPU every widget shares one engine whatever its
 * `workers` (one worker owns the device); on the CPU, widgets with the same `backend` and
 * `workers` share a pool ('auto' names why it is on the CPU, 'cpu' does not). A widget holds
 * it with `retain()` and lets go with `release()`; one nobody holds ends after IDLE_MS.
 */
export async function engine(backend = 'auto', workers = defaultWorkers(), gpuKernels = true) {
  const preferGpu = backend !== 'cpu';
  const gpu = preferGpu && Boolean((await pageAdapter()).found);
  const key = gpu ? `gpu/${gpuKernels}` : `cpu/${workers}/${backend}`;
  if (!engines.has(key)) engines.set(key, new Engine(key, preferGpu, workers, gpu && gpuKernels));
  return engines.get(key);
}

// The browser's adapter, asked for once per page (by `engine` and by the engines it starts).
let probe = null;
const pageAdapter = () => (probe ??= webgpuAdapter());
