// One model worker and the calls waiting for its replies.

/** A call failed because the WebGPU device was lost; the engine has moved to the CPU. */
export class DeviceLostError extends Error {
  constructor(reason) {
    super(`the WebGPU device was lost (${reason}); continuing on the CPU`);
    this.deviceLost = true;
  }
}

export class Thread {
  /**
   * `onLost(reason)`: the worker reported the WebGPU device lost. `onFailed(error)`: the worker
   * crashed, sent what could not be read or did not answer in time; it has been ended and
   * every call waiting for it rejected.
   */
  constructor(onLost, onFailed) {
    // Each worker answers into its own map, so a late reply from a terminated worker finds
    // nothing to settle.
    this.pending = new Map();
    this.nextId = 1;
    this.ended = null; // the error that ended this worker
    this.onFailed = onFailed;
    const { worker, shim } = startWorker();
    this.worker = worker;
    this.shim = shim;
    worker.onmessage = ({ data }) => {
      this.#loaded();
      if (data.fatal !== undefined) {
        this.#failed(new Error(`the model worker crashed: ${data.fatal}`));
        return;
      }
      const call = this.pending.get(data.id);
      if (!call) return;
      this.pending.delete(data.id);
      clearTimeout(call.timer);
      if (data.lost) {
        call.reject(new DeviceLostError(data.lost));
        onLost(data.lost);
      } else if (data.ok) call.resolve(data.value);
      else call.reject(new Error(data.error));
    };
    worker.onerror = (event) => {
      event.preventDefault();
      // A script that fails to load (e.g. a CSP without `worker-src` for its origin) gives no
      // message; say what to check.
      const why = event.message || 'its script did not load (check the CSP allows workers from its origin)';
      this.#failed(new Error(`the model worker failed: ${why}`));
    };
    // A reply that cannot be read is lost, and its call would wait for ever.
    worker.onmessageerror = () => this.#failed(new Error('the model worker sent a reply the page cannot read'));
  }

  /**
   * Sends `op` and resolves to the worker's reply. With `timeoutMs`, no reply by then ends the
   * worker as failed: the one-line error is better than a widget that waits for ever.
   */
  call(op, args, transfer = [], timeoutMs = 0) {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const call = { resolve, reject, timer: 0 };
      if (timeoutMs) {
        const seconds = Math.round(timeoutMs / 1000);
        call.timer = setTimeout(() => this.#failed(new Error(`the model worker did not answer "${op}" in ${seconds} s`)), timeoutMs);
      }
      this.pending.set(id, call);
      try {
        this.worker.postMessage({ id, op, args }, transfer);
      } catch (e) {
        this.pending.delete(id);
        clearTimeout(call.timer);
        reject(e);
      }
    });
  }

  /** Ends the worker; every waiting call, and every later one, rejects with `error`. */
  terminate(error) {
    if (this.ended) return;
    this.ended = error;
    this.worker.terminate();
    this.#loaded();
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(error);
    }
    this.pending.clear();
  }

  #failed(error) {
    if (this.ended) return;
    this.terminate(error);
    this.onFailed?.(error);
  }

  // The worker's script has loaded (or never will): its blob shim's URL is not needed any more.
  #loaded() {
    if (this.shim) URL.revokeObjectURL(this.shim);
    this.shim = null;
  }
}

// The model worker. Browsers refuse a worker script from another origin, so when the widget is
// loaded from one (a CDN) the worker is a same-origin blob that imports it; that needs CORS
// headers on the widget's host and, under a Content-Security-Policy, `worker-src blob:` plus the
// host (a module worker's imports are fetched under worker-src). The same-origin form is the
// literal `new Worker(new URL(…, import.meta.url))` that bundlers recognise and bundle.
function startWorker() {
  if (new URL(import.meta.url).origin === globalThis.location?.origin) {
    return { worker: new Worker(new URL('./ddpm-worker.js', import.meta.url), { type: 'module' }), shim: null };
  }
  const url = new URL('./ddpm-worker.js', import.meta.url).href;
  const shim = URL.createObjectURL(new Blob([`import ${JSON.stringify(url)};`], { type: 'text/javascript' }));
  return { worker: new Worker(shim, { type: 'module' }), shim };
}
