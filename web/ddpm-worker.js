// A model thread: on WebGPU the only one of its engine (web/engine.js), on the CPU one of a pool
// that splits every run's images. It owns a wasm instance (of the module the page compiled
// once: the WebGPU build or the CPU build), its backend and its copies of the models; the engine
// sends it small messages and gets back each step's values of its images (transferred, not
// copied), and the first worker lays the joined values out as the grid.

let glue = null; // the wasm-bindgen module of the build this worker runs
let backend = null;
const models = new Map(); // key -> Model
const runs = new Map(); // runId -> Run

// Literal dynamic imports, so that bundlers ship both builds' glue.
const GLUE = { gpu: () => import('./ddpm-web.js'), cpu: () => import('./cpu/ddpm-web.js') };

// How long this worker's own request for the adapter may take (see `browserAdapter`).
const ADAPTER_TIMEOUT_MS = 10_000;

// What the browser says of the adapter that wgpu asks it for (cubecl requests it with the
// high-performance preference, as here): its vendor, architecture and device, which wgpu does
// not report in a browser. Empty when the browser does not say.
async function browserAdapter() {
  let timer = 0;
  try {
    const timeout = new Promise((resolve) => (timer = setTimeout(resolve, ADAPTER_TIMEOUT_MS, null)));
    const adapter = await Promise.race([navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }), timeout]);
    const { vendor = '', architecture = '', device = '' } = adapter?.info ?? {};
    return { vendor, architecture, device };
  } catch {
    return {};
  } finally {
    clearTimeout(timer);
  }
}

const ops = {
  // The backend; on WebGPU with `adapter`: the adapter wgpu got (its description; the key of
  // the page's cache of passed kernel checks, and the name the widget shows).
  async init({ kind, module, gpuKernels }) {
    glue = await GLUE[kind]();
    await glue.default({ module_or_path: module });
    const seen = kind === 'gpu' ? await browserAdapter() : {};
    backend = await glue.Backend.create(kind === 'gpu', gpuKernels);
    const adapter = backend.gpu ? { ...seen, ...backend.adapter } : null;
    return { name: backend.name, gpu: backend.gpu, gpuKernels: backend.gpuKernels, adapter };
  },
  // The model's info; if `check`, the core's GPU kernels are checked on it first (before its
  // first run): `passed`, or why they were turned off (`kernelsOff`; they stay off for every
  // model of this worker).
  async load({ key, bytes, check = true }) {
    let [passed, kernelsOff] = [false, null];
    if (!models.has(key)) {
      const model = backend.load(new Uint8Array(bytes));
      models.set(key, model);
      if (check && backend.gpuKernels) {
        const why = await model.checkKernels();
        passed = why === undefined;
        if (!passed) {
          console.warn(`ddpm: the core's GPU kernels ${why}; using burn's kernels instead`);
          kernelsOff = why.split('\n')[0];
        }
      }
    }
    return { info: models.get(key).info(), passed, kernelsOff };
  },
  // A model no widget uses any more (the engine counts them).
  unload({ key }) {
    models.get(key)?.free();
    models.delete(key);
    return null;
  },
  // `runId` names this start alone (the engine drops the widget's earlier run first).
  start({ key, runId, options }) {
    const model = models.get(key);
    if (!model) throw new Error(`model ${key} is not loaded`);
    const run = model.run(options);
    runs.set(runId, run);
    return { total: run.total, shape: Array.from(run.shape), columns: run.columns };
  },
  // This worker's images after one more step: `{ step, t, values }` (`{ step }` for view
  // "none"), or null when the run is over.
  async step({ runId, view }) {
    const run = runs.get(runId);
    if (!run) throw new Error(`no run ${runId}`);
    const result = await run.stepValues(view);
    if (result === undefined) return { value: null };
    if (typeof result === 'number') return { value: { step: result } };
    return { value: result, transfer: [result.values.buffer] };
  },
  // The RGBA grid of the whole batch from every worker's values, joined in order.
  grid({ step, t, values, shape, columns }) {
    const frame = glue.grid(step, t, values, Uint32Array.from(shape), columns);
    const value = { step: frame.step, t: frame.t, width: frame.width, height: frame.height, pixels: frame.pixels };
    frame.free();
    return { value, transfer: [value.pixels.buffer] };
  },
  async values({ runId }) {
    const run = runs.get(runId);
    if (!run) throw new Error(`no run ${runId}`);
    const values = await run.values();
    return { value: values, transfer: [values.buffer] };
  },
  // Destroys the WebGPU device (a test of the fallback; see Backend.loseDevice).
  loseDevice() {
    backend.loseDevice();
    return null;
  },
  drop({ runId }) {
    runs.get(runId)?.free();
    runs.delete(runId);
    return null;
  },
};

// Why the WebGPU device is gone, if it is: the browser's report, or burn's error once it
// finds the device poisoned (whichever comes first).
function lostReason(error) {
  if (!backend?.gpu) return null;
  try {
    if (backend.lost) return backend.lost;
  } catch {
    return 'the model thread stopped';
  }
  return error && /device (was )?lost|poisoned/i.test(error) ? error : null;
}

// A Rust panic aborts the wasm instance (a `WebAssembly.RuntimeError`): it cannot be used
// again, and a promise it was computing never settles, which would stop the queue below for
// good. So any uncaught error, and a trap, is `fatal`: the page ends this worker and starts a
// new one at the next start. The message is the panic's (kept by the crate's panic hook in
// `ddpmPanic`) where there was one.
const crashed = (error) => String(self.ddpmPanic ?? error?.message ?? error ?? 'an uncaught error').split('\n')[0];
const trapped = (error) => error instanceof WebAssembly.RuntimeError || self.ddpmPanic !== undefined;

self.addEventListener('error', (event) => {
  event.preventDefault();
  self.postMessage({ fatal: crashed(event.error ?? event.message) });
});
self.addEventListener('unhandledrejection', (event) => {
  if (!trapped(event.reason)) return;
  event.preventDefault();
  self.postMessage({ fatal: crashed(event.reason) });
});
// A request that cannot be read is lost: the page would wait for its reply for ever.
self.onmessageerror = () => self.postMessage({ fatal: 'a request from the page could not be read' });

// Requests are handled one after another, so a step never overlaps another on the device.
// Every reply says whether the device has been lost; the page then moves to a CPU pool.
let queue = Promise.resolve();
self.onmessage = (event) => {
  const { id, op, args } = event.data;
  queue = queue.then(async () => {
    try {
      if (!ops[op]) throw new Error(`unknown operation ${op}`);
      const result = await ops[op](args);
      const lost = lostReason(null);
      if (lost) {
        self.postMessage({ id, ok: false, lost, error: `the WebGPU device was lost (${lost})` });
        return;
      }
      const { value, transfer } = result && 'value' in result ? result : { value: result, transfer: [] };
      self.postMessage({ id, ok: true, value }, transfer ?? []);
    } catch (e) {
      if (trapped(e)) {
        self.postMessage({ id, fatal: crashed(e) });
        return;
      }
      const error = String(e?.message ?? e);
      self.postMessage({ id, ok: false, error, lost: lostReason(error) });
    }
  });
};
