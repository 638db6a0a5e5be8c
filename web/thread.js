// One model worker and the calls waiting for its replies.

/** A call failed because the WebGPU device was lost; the engine has moved to the CPU. */
export class DeviceLostError extends Error {
  constructor(reason) {
    super(`the WebGPU device was lost (${reason}); continuing on the CPU`);
    this.deviceLost = true;
  }
}

export class Thread {
  /** `onLost(reason)`: the worker reported the WebGPU device lost. */
  constructor(onLost) {
    // Each worker answers into its own map, so a late reply from a terminated worker finds
    // nothing to settle.
    this.pending = new Map();
    this.nextId = 1;
    this.worker = startWorker();
    this.worker.onmessage = ({ data }) => {
      const call = this.pending.get(data.id);
      if (!call) return;
      this.pending.delete(data.id);
      if (data.lost) {
        call.reject(new DeviceLostError(data.lost));
        onLost(data.lost);
      } else if (data.ok) call.resolve(data.value);
      else call.reject(new Error(data.error));
    };
    this.worker.onerror = (event) => {
      // A script that fails to load (e.g. a CSP without `worker-src` for its origin) gives no
      // message; say what to check.
      const why = event.message ?? 'its script did not load (check the CSP allows workers from its origin)';
      this.fail(new Error(`the model worker failed: ${why}`));
    };
  }

  call(op, args, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  /** Rejects every waiting call with `error`. */
  fail(error) {
    for (const call of this.pending.values()) call.reject(error);
    this.pending.clear();
  }

  terminate(error) {
    this.worker.terminate();
    this.fail(error);
  }
}

// The model worker. Browsers refuse a worker script from another origin, so when the widget is
// loaded from one (a CDN) the worker is a same-origin blob that imports it; that needs CORS
// headers on the widget's host and, under a Content-Security-Policy, `worker-src blob:` plus the
// host (a module worker's imports are fetched under worker-src). The same-origin form is the
// literal `new Worker(new URL(…, import.meta.url))` that bundlers recognise and bundle.
function startWorker() {
  if (new URL(import.meta.url).origin === globalThis.location?.origin) {
    return new Worker(new URL('./ddpm-worker.js', import.meta.url), { type: 'module' });
  }
  const url = new URL('./ddpm-worker.js', import.meta.url).href;
  const shim = new Blob([`import ${JSON.stringify(url)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module' });
}
