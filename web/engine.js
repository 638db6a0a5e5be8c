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

/** Workers for the CPU backend when the widget does not say: one per core, at most 8. */
export function defaultWorkers() {
  return Math.max(1, Math.min(8, globalThis.navigator?.hardwareConcurrency ?? 1));
}

// Events: 'progress' (detail: { stage: 'code' | 'compiling' | 'weights' | 'starting' |
// 'checking', loaded, total }) while it loads; 'device-lost' (detail: { reason }) once it has
// moved from a lost WebGPU device to the CPU, after which widgets start their runs again.
class Engine extends EventTarget {
  constructor(preferGpu, workers, gpuKernels) {
    super();
    this.size = workers;
    this.gpuKernels = gpuKernels;
    this.lost = null;
    this.#start(preferGpu);
  }

  #start(preferGpu) {
    this.threads = [];
    this.runs = new Map(); // runId -> { parts: [{ thread, part }], shape, columns }
    this.models = new Map(); // card URL -> Promise<{ card, info }>
    this.backend = this.#spawn(preferGpu);
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
      if (adapter.label) {
        const module = await wasmModule('gpu', report);
        this.#report({ stage: 'starting' });
        const thread = this.#thread();
        try {
          const { gpuKernels } = await thread.call('init', { kind: 'gpu', module, gpuKernels: this.gpuKernels });
          const kernels = gpuKernels ? ' · fused kernels' : '';
          return { name: `WebGPU (${adapter.label})${kernels}`, gpu: true, workers: 1, adapter: adapter.label, gpuKernels };
        } catch (e) {
          // The worker found no usable device after all: the CPU, saying why.
          thread.terminate(e);
          this.threads = [];
          reason = `no WebGPU: ${e.message}`;
        }
      }
    }
    const module = await wasmModule('cpu', report);
    this.#report({ stage: 'starting' });
    const threads = Array.from({ length: this.size }, () => this.#thread());
    await Promise.all(threads.map((t) => t.call('init', { kind: 'cpu', module })));
    return { name: reason ? `CPU (${reason})` : 'CPU', gpu: false, workers: threads.length };
  }

  #thread() {
    const thread = new Thread((reason) => this.#fallBack(reason));
    this.threads.push(thread);
    return thread;
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
    if (this.lost) return;
    this.lost = reason;
    const error = new DeviceLostError(reason);
    for (const thread of this.threads) thread.terminate(error);
    this.#start(false);
    this.dispatchEvent(new CustomEvent('device-lost', { detail: { reason } }));
  }

  /** The model card at `cardUrl` and its weights, loaded into every worker once. */
  model(cardUrl) {
    if (!this.models.has(cardUrl)) {
      const loading = (async () => {
        const card = await fetchCard(cardUrl);
        const weightsUrl = new URL(card.weights, cardUrl).href;
        const bytes = await fetchWeights(weightsUrl, card.sha256, (p) => this.#report({ ...p, model: cardUrl }));
        const backend = await this.backend;
        this.#report({ stage: 'starting', model: cardUrl });
        // The GPU kernels are checked on each model before its first run, unless they passed
        // on an earlier visit with the same browser, adapter, module and weights.
        const checkKey = backend.gpuKernels ? kernelCheckKey(backend.adapter, card.sha256) : null;
        const check = Boolean(backend.gpuKernels) && !(checkKey && await kernelsPassedBefore(checkKey));
        if (check) this.#report({ stage: 'checking', model: cardUrl });
        const threads = this.threads;
        const loaded = await Promise.all(threads.map((thread, i) => {
          const own = i === threads.length - 1 ? bytes : bytes.slice(0);
          return thread.call('load', { key: cardUrl, bytes: own, check }, [own]);
        }));
        const { info, kernelsOff, passed } = loaded[0];
        if (kernelsOff) this.#kernelsOff(kernelsOff);
        else if (passed && checkKey) await rememberKernelsPassed(checkKey);
        return { card, info };
      })();
      // A later attempt may succeed (the map is replaced when the device is lost).
      const models = this.models;
      loading.catch(() => models.get(cardUrl) === loading && models.delete(cardUrl));
      this.models.set(cardUrl, loading);
    }
    return this.models.get(cardUrl);
  }

  /** One operation of the widget's run: 'start', 'step', 'values', 'frame', 'drop' or 'loseDevice'. */
  call(op, args) {
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
  // images than workers).
  async #startRun({ key, runId, options }) {
    await this.backend;
    await this.#drop({ runId });
    const n = options.n ?? 16;
    const k = Math.max(1, Math.min(this.threads.length, n));
    const parts = this.threads.slice(0, k).map((thread, i) => ({
      thread,
      part: [Math.floor((i * n) / k), Math.floor(((i + 1) * n) / k)],
    }));
    const started = await Promise.all(parts.map(({ thread, part }) =>
      thread.call('start', { key, runId, options: { ...options, part } })));
    const { total, shape, columns } = started[0];
    this.runs.set(runId, { parts, shape, columns });
    return { total, columns };
  }

  #run(runId) {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`no run ${runId}`);
    return run;
  }

  // Every worker takes the step on its images; the viewed values are joined and laid out as
  // one grid by the first worker (the core's grid, as the CLI's PNGs).
  async #step({ runId, view }) {
    const run = this.#run(runId);
    const started = performance.now();
    const replies = await Promise.all(run.parts.map(({ thread }) => thread.call('step', { runId, view })));
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
    return join(await Promise.all(run.parts.map(({ thread }) => thread.call('values', { runId }))));
  }

  // The images as they are, as a grid: what a run of no steps (SDEdit at strength 0) shows.
  async #frame({ runId }) {
    const run = this.#run(runId);
    const values = await this.#values({ runId });
    return run.parts[0].thread.call('grid', { step: 0, t: 0, values, shape: run.shape, columns: run.columns }, [values.buffer]);
  }

  async #drop({ runId }) {
    const run = this.runs.get(runId);
    this.runs.delete(runId);
    if (run) await Promise.all(run.parts.map(({ thread }) => thread.call('drop', { runId })));
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
 * `workers` share a pool ('auto' names why it is on the CPU, 'cpu' does not).
 */
export async function engine(backend = 'auto', workers = defaultWorkers(), gpuKernels = true) {
  const preferGpu = backend !== 'cpu';
  const gpu = preferGpu && Boolean((await pageAdapter()).label);
  const key = gpu ? `gpu/${gpuKernels}` : `cpu/${workers}/${backend}`;
  if (!engines.has(key)) {
    const made = new Engine(preferGpu, workers, gpu && gpuKernels);
    engines.set(key, made);
    // A start that failed (a download cut short) is not kept: the next widget tries again.
    made.backend.catch(() => engines.get(key) === made && engines.delete(key));
  }
  return engines.get(key);
}

// The browser's adapter, asked for once per page (by `engine` and by the engines it starts).
let probe = null;
const pageAdapter = () => (probe ??= webgpuAdapter());
