// What the widget does when things break: a worker that crashes, hangs or fails a step, two
// starts in flight at once, a pool that fails to start, a Cache API that throws, bad cards, a
// download that breaks off, a WebGPU that never answers; and what it frees (workers, blob URLs,
// decoded images, its observer). Faults that a sound build cannot show are made by serving the
// worker or the engine with one line replaced, or by stubbing a browser API in the page.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PARITY, events, launch, maxAbsDiff, openPage, serve, site, tinyModel, waitFor, widgetError } from './harness.mjs';
import { writeFaultFixtures, writePages, writeSteerFixtures } from './fixtures.mjs';

let server;
let model;
let gpu;
let cpu;

before(async () => {
  model = tinyModel();
  writePages(model.models);
  writeSteerFixtures(model.models);
  writeFaultFixtures(model.models);
  server = await serve({ '/': site, '/fixtures/': model.models }, { cut: ['/fixtures/cut.bpk'] });
  [gpu, cpu] = await Promise.all([launch({ webgpu: true }), launch({ webgpu: false })]);
});

after(async () => {
  await Promise.all([gpu?.close(), cpu?.close()]);
  server?.close();
  model?.remove();
});

// Counts the page's workers, made and terminated, in `window.ddpmWorkers`.
const countWorkers = () => {
  window.ddpmWorkers = { made: 0, ended: 0 };
  window.Worker = class extends window.Worker {
    constructor(...args) {
      super(...args);
      window.ddpmWorkers.made += 1;
    }

    terminate() {
      if (!this.ended) window.ddpmWorkers.ended += 1;
      this.ended = true;
      super.terminate();
    }
  };
};

const workerScript = () => readFileSync(join(site, 'ddpm-worker.js'), 'utf8');

// `script` with `from` replaced by `to`, checking that `from` is there.
const replaced = (script, from, to) => {
  assert.ok(script.includes(from), `no ${from} to replace`);
  return script.replace(from, to);
};

const serveAs = (page, pattern, body) => page.route(pattern, (route) => route.fulfill({ body, contentType: 'text/javascript' }));
const firstError = (page, id, timeout) => page.waitForFunction(
  (id) => window.ddpmEvents.some((e) => e.id === id && e.type === 'ddpm-error'), id, { timeout, polling: 100 });
const count = async (page, id, type) => (await events(page, id)).filter((e) => e.type === type).length;
const values = (page, id) => page.evaluate(async (id) => Array.from(await document.getElementById(id).values()), id);

// Restarts widget `id` and waits for the run's end (the events before it include an error).
async function restartToTheEnd(page, id) {
  const done = await count(page, id, 'ddpm-done');
  await page.evaluate((id) => document.getElementById(id).restart(), id);
  await page.waitForFunction(([id, done]) => window.ddpmEvents.filter((e) => e.id === id && e.type === 'ddpm-done').length > done,
    [id, done], { timeout: 300000, polling: 100 });
  assert.equal(await widgetError(page, id), '');
}

// A real panic in the wasm module: the core's grid of an empty batch of images 2²⁹ pixels wide
// asks for more than a 32-bit address space ("capacity overflow").
const PANIC = 'glue.grid(0, 0, new Float32Array(0), Uint32Array.of(0, 1, 1, 2 ** 29), 1)';

test('a worker that panics inside a promise (the kernel check) is ended: the widget says why in one line, and Restart runs on a new worker', async () => {
  const { page } = await openPage(gpu, 'about:blank', { before: countWorkers });
  // The check's promise never settles, as a panic inside a Rust future leaves it.
  await serveAs(page, '**/ddpm-worker.js', replaced(workerScript(), 'await model.checkKernels()',
    `await new Promise(() => setTimeout(() => ${PANIC}))`));
  await page.goto(`${server.url}/fixtures/parity.html`);
  await firstError(page, 'w', 120000);
  assert.match(await widgetError(page, 'w'), /^ddpm-sampler: the model worker crashed: capacity overflow at \S+$/);
  assert.deepEqual(await page.evaluate(() => window.ddpmWorkers), { made: 1, ended: 1 });
  await page.unroute('**/ddpm-worker.js');
  await restartToTheEnd(page, 'w');
  assert.deepEqual(await page.evaluate(() => window.ddpmWorkers), { made: 2, ended: 1 });
  const ready = (await events(page, 'w')).findLast((e) => e.type === 'ddpm-ready');
  assert.match(ready.detail.backend, /^WebGPU \(.*\) · fused kernels$/);
  assert.ok(maxAbsDiff(await values(page, 'w'), model.cliValues) < 1e-3);
  await page.close();
});

test('a trap in one worker of a pool (a request that panics) ends the whole pool, and the widget starts again on a new one', async () => {
  const { page } = await openPage(cpu, `${server.url}/fixtures/pool2.html`, { before: countWorkers });
  await waitFor(page, 'w', 'ddpm-done');
  const crash = await page.evaluate(async () => {
    const { engine } = await import('/engine.js');
    const old = await engine('cpu', 2);
    const message = await old.threads[1].call('grid', { step: 0, t: 0, values: new Float32Array(0), shape: [0, 1, 1, 2 ** 29], columns: 1 })
      .then(() => 'answered', (e) => e.message);
    const ended = window.ddpmWorkers.ended;
    const values = await document.getElementById('w').values().then(() => 'answered', (e) => e.message);
    return { message, ended, values, replaced: (await engine('cpu', 2)) !== old };
  });
  assert.match(crash.message, /^the model worker crashed: capacity overflow at \S+$/);
  assert.equal(crash.ended, 2);
  assert.equal(crash.values, crash.message);
  assert.ok(crash.replaced);
  await restartToTheEnd(page, 'w');
  assert.ok(maxAbsDiff(await values(page, 'w'), model.cliValues) < 1e-3);
  await page.close();
});

test('a worker that never answers its load is ended after the timeout with a one-line message, and Restart loads again', async () => {
  const { page } = await openPage(cpu, 'about:blank', { before: countWorkers });
  const engineScript = readFileSync(join(site, 'engine.js'), 'utf8');
  await serveAs(page, '**/engine.js', replaced(engineScript, 'const LOAD_TIMEOUT_MS = 300_000;', 'const LOAD_TIMEOUT_MS = 2_000;'));
  await serveAs(page, '**/ddpm-worker.js', replaced(workerScript(), 'const model = backend.load(',
    'await new Promise(() => {});\n      const model = backend.load('));
  await page.goto(`${server.url}/fixtures/pool2.html`);
  await firstError(page, 'w', 120000);
  assert.equal(await widgetError(page, 'w'), 'ddpm-sampler: the model worker did not answer "load" in 2 s');
  assert.deepEqual(await page.evaluate(() => window.ddpmWorkers), { made: 2, ended: 2 });
  await page.unroute('**/ddpm-worker.js');
  await restartToTheEnd(page, 'w');
  assert.ok(maxAbsDiff(await values(page, 'w'), model.cliValues) < 1e-3);
  await page.close();
});

test('a step that fails on one worker of a pool stops the run: the next step is refused until a restart', async () => {
  const { page } = await openPage(cpu, 'about:blank');
  // The worker with the batch's first images fails its second step, once.
  let script = replaced(workerScript(), 'const run = model.run(options);', 'const run = model.run(options); self.first = options.part?.[0] === 0;');
  script = replaced(script, 'const result = await run.stepValues(view);',
    "if (self.first && run.done === 1 && !self.failed) { self.failed = true; throw new Error('a test fault on one worker'); }\n    const result = await run.stepValues(view);");
  await serveAs(page, '**/ddpm-worker.js', script);
  await page.goto(`${server.url}/fixtures/pool2.html`);
  await firstError(page, 'w', 120000);
  assert.equal(await widgetError(page, 'w'), 'ddpm-sampler: a test fault on one worker');
  assert.equal(await count(page, 'w', 'ddpm-step'), 1);
  await page.evaluate(() => document.getElementById('w').step());
  assert.equal(await widgetError(page, 'w'), 'ddpm-sampler: this run stopped at an error (a test fault on one worker); restart it');
  assert.equal(await count(page, 'w', 'ddpm-step'), 1);
  await restartToTheEnd(page, 'w');
  assert.ok(maxAbsDiff(await values(page, 'w'), model.cliValues) < 1e-3);
  await page.close();
});

test('two starts of one run in flight at once (a restart storm changing n): the newer gets every worker, the older is dropped', async () => {
  const { page } = await openPage(cpu, `${server.url}/fixtures/empty.html`);
  const result = await page.evaluate(async (p) => {
    const { engine } = await import('/engine.js');
    const runner = await engine('cpu', 2);
    runner.retain?.(); // an engine no widget holds would end
    const key = new URL('/fixtures/bars.json', location.href).href;
    await runner.model(key);
    const start = (n) => runner.call('start', {
      key, runId: 'r', options: { sampler: p.sampler, steps: p.steps, seed: p.seed, n, class: p.classLabel, guidance: p.guidance },
    });
    await start(p.n);
    // The older start waits for the first run to be dropped; the newer finds nothing to drop
    // and reaches the workers first.
    const [older, newer] = await Promise.allSettled([start(1), start(p.n)]);
    for (let i = 0; i < p.steps; i++) await runner.call('step', { runId: 'r', view: 'none' });
    return { older: older.status, newer: newer.status, values: Array.from(await runner.call('values', { runId: 'r' })) };
  }, PARITY);
  assert.equal(result.values.length, PARITY.n * 64);
  assert.ok(maxAbsDiff(result.values, model.cliValues) < 1e-3);
  assert.deepEqual([result.older, result.newer], ['rejected', 'fulfilled']);
  await page.close();
});

test('a pool whose workers fail to start ends them all; the workers of removed widgets end too', async () => {
  const failing = await openPage(cpu, 'about:blank', { before: countWorkers });
  await serveAs(failing.page, '**/ddpm-worker.js', replaced(workerScript(), 'glue = await GLUE[kind]();', "throw new Error('a test fault at start');"));
  await failing.page.goto(`${server.url}/fixtures/pool2.html`);
  await firstError(failing.page, 'w', 120000);
  assert.equal(await widgetError(failing.page, 'w'), 'ddpm-sampler: a test fault at start');
  await failing.page.waitForFunction(() => window.ddpmWorkers.made === 2 && window.ddpmWorkers.ended === 2, null, { timeout: 30000 });
  await failing.page.close();

  const { page } = await openPage(cpu, `${server.url}/fixtures/pool.html`, { before: countWorkers });
  for (const id of ['w1', 'w2', 'w3']) await waitFor(page, id, 'ddpm-done');
  assert.deepEqual(await page.evaluate(() => window.ddpmWorkers), { made: 6, ended: 0 });
  await page.evaluate(() => document.querySelectorAll('ddpm-sampler').forEach((w) => w.remove()));
  await page.waitForFunction(() => window.ddpmWorkers.ended === 6, null, { timeout: 30000 });
  await page.close();
});

for (const [what, stub] of [
  ['a cache whose every call rejects', () => {
    const fail = () => Promise.reject(new Error('the cache is broken'));
    const cache = { match: fail, put: fail, delete: fail, keys: fail };
    Object.defineProperty(window, 'caches', { configurable: true, value: { open: async () => cache, delete: fail } });
  }],
  ['a cached response that cannot be read', () => {
    const fail = () => Promise.reject(new Error('the cache is broken'));
    const cache = { match: async () => ({ arrayBuffer: fail }), put: fail, delete: fail, keys: fail };
    Object.defineProperty(window, 'caches', { configurable: true, value: { open: async () => cache, delete: fail } });
  }],
]) {
  test(`the weights load from the network past ${what}`, async () => {
    const requests = server.requests('/fixtures/bars.bpk');
    const { page } = await openPage(cpu, `${server.url}/fixtures/parity.html`, { before: stub });
    await waitFor(page, 'w', 'ddpm-done');
    assert.equal(server.requests('/fixtures/bars.bpk'), requests + 1);
    assert.ok(maxAbsDiff(await values(page, 'w'), model.cliValues) < 1e-3);
    await page.close();
  });
}

test('weights kept in the cache replace the copies kept under an older hash', async () => {
  const context = await cpu.newContext();
  const card = JSON.parse(readFileSync(join(model.models, 'bars.json'), 'utf8'));
  const weights = `${server.url}/fixtures/bars.bpk`;
  const setup = await context.newPage();
  await setup.goto(`${server.url}/fixtures/empty.html`);
  await setup.evaluate(async (stale) => (await caches.open('ddpm-weights-v1')).put(stale, new Response('old weights')), `${weights}?ddpm-sha256=${'0'.repeat(64)}`);
  const { page } = await openPage(context, `${server.url}/fixtures/parity.html`);
  await waitFor(page, 'w', 'ddpm-done');
  const kept = await page.evaluate(async () => (await (await caches.open('ddpm-weights-v1')).keys()).map((r) => r.url));
  assert.deepEqual(kept.filter((url) => url.startsWith(weights)), [`${weights}?ddpm-sha256=${card.sha256}`]);
  await context.close();
});

test('a card that is JSON but no object, and weights whose download breaks off, are one-line messages naming the file', async () => {
  const { page, problems } = await openPage(cpu, `${server.url}/fixtures/cards.html`);
  const expected = {
    null: /^ddpm-sampler: model card http:\S+\/fixtures\/null\.json: not a JSON object$/,
    array: /^ddpm-sampler: model card http:\S+\/fixtures\/array\.json: not a JSON object$/,
    cut: /^ddpm-sampler: weights http:\S+\/fixtures\/cut\.bpk: the download broke off after \d+ bytes \(.+\)$/,
  };
  for (const [id, message] of Object.entries(expected)) {
    await page.evaluate((id) => document.getElementById(id).scrollIntoView(), id);
    await firstError(page, id, 120000);
    assert.match(await widgetError(page, id), message);
  }
  assert.deepEqual(problems.filter((p) => !p.includes('ddpm-sampler') && !p.includes('Failed to load resource')), []);
  await page.close();
});

test('a WebGPU whose requestAdapter() never answers: the widget runs on the CPU and says why', async () => {
  const { page } = await openPage(gpu, `${server.url}/fixtures/parity.html`, {
    before: () => {
      if (navigator.gpu) navigator.gpu.requestAdapter = () => new Promise(() => {});
    },
  });
  await waitFor(page, 'w', 'ddpm-done', 120000);
  const ready = (await events(page, 'w')).find((e) => e.type === 'ddpm-ready');
  assert.match(ready.detail.backend, /^CPU \(WebGPU gave no adapter in 10 s\)/);
  assert.ok(maxAbsDiff(await values(page, 'w'), model.cliValues) < 1e-3);
  await page.close();
});

test('a passed kernel check is kept under the adapter the worker got and the browser\'s full version, for 30 days', async () => {
  const context = await gpu.newContext();
  const { page } = await openPage(context, `${server.url}/fixtures/parity.html`);
  // The check, and keeping its pass, come before the run is ready.
  const checked = async () => {
    await waitFor(page, 'w', 'ddpm-ready');
    return (await events(page, 'w')).some((e) => e.type === 'ddpm-progress' && e.detail.stage === 'checking');
  };
  assert.equal(await checked(), true);
  const seen = await page.evaluate(async () => {
    const keys = await (await caches.open('ddpm-kernel-checks-v2')).keys();
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    const brands = await navigator.userAgentData?.getHighEntropyValues(['fullVersionList']);
    return { keys: keys.map((r) => r.url), vendor: adapter.info.vendor, version: brands?.fullVersionList?.at(-1)?.version ?? null };
  });
  assert.equal(seen.keys.length, 1);
  const query = new URL(seen.keys[0]).searchParams;
  assert.equal(query.get('vendor'), seen.vendor);
  assert.ok(query.has('description') && query.has('fallback') && query.has('subgroupMaxSize'), seen.keys[0]);
  if (seen.version) assert.ok(query.get('browser').includes(seen.version), query.get('browser'));
  // Kept 31 days ago: checked again, and kept anew.
  await page.evaluate(async (key) => {
    const cache = await caches.open('ddpm-kernel-checks-v2');
    await cache.put(key, new Response('passed', { headers: { 'x-ddpm-checked': String(Date.now() - 31 * 86_400_000) } }));
  }, seen.keys[0]);
  await page.reload();
  assert.equal(await checked(), true);
  await page.reload();
  assert.equal(await checked(), false);
  await context.close();
});

test('decoded images are closed once the pad has them', async () => {
  const { page } = await openPage(cpu, `${server.url}/fixtures/steer.html`, {
    before: () => {
      window.ddpmBitmaps = [];
      const decode = window.createImageBitmap;
      window.createImageBitmap = async (...args) => {
        const bitmap = await decode(...args);
        window.ddpmBitmaps.push(bitmap);
        return bitmap;
      };
    },
  });
  await page.setViewportSize({ width: 1280, height: 2400 });
  for (const id of ['finish', 'fill']) await waitFor(page, id, 'ddpm-ready');
  const widths = await page.evaluate(() => window.ddpmBitmaps.map((b) => b.width));
  assert.ok(widths.length >= 3, `${widths.length} images decoded`);
  // A closed ImageBitmap has no pixels left: its width reads 0.
  assert.deepEqual(widths, widths.map(() => 0));
  await page.close();
});

test('a widget removed before it was seen stops being watched; put back and scrolled to, it starts', async () => {
  const { page } = await openPage(cpu, `${server.url}/fixtures/empty.html`, {
    before: () => {
      const observers = [];
      window.ddpmObserved = () => observers.reduce((sum, o) => sum + o.targets.size, 0);
      window.IntersectionObserver = class extends window.IntersectionObserver {
        targets = new Set();

        observe(target) {
          observers.push(this);
          this.targets.add(target);
          super.observe(target);
        }

        unobserve(target) {
          this.targets.delete(target);
          super.unobserve(target);
        }

        disconnect() {
          this.targets.clear();
          super.disconnect();
        }
      };
    },
  });
  const observed = () => page.evaluate(() => window.ddpmObserved());
  await page.evaluate(() => {
    const spacer = document.createElement('div');
    spacer.style.height = '4000px';
    const widget = document.createElement('ddpm-sampler');
    Object.entries({ id: 'w', model: '/fixtures/bars.json', backend: 'cpu', workers: '1', steps: '2', n: '1', autoplay: '' })
      .forEach(([name, value]) => widget.setAttribute(name, value));
    document.body.append(spacer, widget);
    window.ddpmWidget = widget;
  });
  assert.equal(await observed(), 1);
  await page.evaluate(() => window.ddpmWidget.remove());
  assert.equal(await observed(), 0);
  await page.evaluate(() => {
    document.body.append(window.ddpmWidget);
    window.ddpmWidget.scrollIntoView();
  });
  await waitFor(page, 'w', 'ddpm-done');
  assert.equal(await observed(), 0);
  await page.close();
});
