// The page and the widget in a real headless Chromium: WebGPU (SwiftShader), the CPU fallback,
// parity with the native CLI, the documentation-style page, and the wasm crate's JS API.
// Needs the site built (`trunk build`, see tests/run.sh) and the `ddpm` binary.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CSP, PARITY, events, launch, maxAbsDiff, openPage, serve, site, tinyModel, waitFor, widgetError } from './harness.mjs';
import { writeCrossOriginPage, writePages } from './fixtures.mjs';

let server;
let model;
let gpu;
let cpu;

before(async () => {
  model = tinyModel();
  writePages(model.models);
  server = await serve({ '/': site, '/fixtures/': model.models });
  [gpu, cpu] = await Promise.all([launch({ webgpu: true }), launch({ webgpu: false })]);
});

after(async () => {
  await Promise.all([gpu?.close(), cpu?.close()]);
  server?.close();
  model?.remove();
});

// Mean absolute difference of horizontally adjacent pixels (red channel, 0–255): high for
// noise, low for images made of strokes and background.
const roughness = (rgba, width) => {
  let sum = 0;
  let count = 0;
  for (let i = 4; i < rgba.length; i += 4) {
    if ((i / 4) % width === 0) continue;
    sum += Math.abs(rgba[i] - rgba[i - 4]);
    count += 1;
  }
  return sum / count;
};

test('the demo page picks WebGPU, redraws the canvas after every step and ends with digits, not noise', async () => {
  const { page, problems } = await openPage(gpu, `${server.url}/?steps=6&seed=3&n=4`);
  await waitFor(page, 'sampler', 'ddpm-done');
  const ready = (await events(page, 'sampler')).find((e) => e.type === 'ddpm-ready');
  assert.match(ready.detail.backend, /^WebGPU/);
  const steps = (await events(page, 'sampler')).filter((e) => e.type === 'ddpm-step');
  assert.equal(steps.length, 6);
  for (let i = 1; i < 4; i++) {
    assert.ok(maxAbsDiff(steps[i].pixels, steps[i - 1].pixels) > 0, `canvas unchanged after step ${i + 1}`);
  }
  const width = await page.evaluate(() => document.getElementById('sampler').shadowRoot.querySelector('canvas').width);
  const [first, last] = [roughness(steps[0].pixels, width), roughness(steps.at(-1).pixels, width)];
  assert.ok(last < 0.5 * first, `roughness: ${first.toFixed(1)} at step 1, ${last.toFixed(1)} at the end`);
  const status = await page.evaluate(() => document.getElementById('sampler').shadowRoot.querySelector('.status').textContent);
  assert.match(status, /step 6\/6 · \d+ ms\/step · WebGPU/);
  // After the last step there is nothing to play or step; a restart is still offered, and the
  // canvas says what it shows.
  const controls = await page.evaluate(() => {
    const root = document.getElementById('sampler').shadowRoot;
    const disabled = (a) => root.querySelector(`[data-action=${a}]`).disabled;
    return { play: disabled('play'), step: disabled('step'), restart: disabled('restart'), label: root.querySelector('canvas').getAttribute('aria-label') };
  });
  assert.deepEqual(controls, { play: true, step: true, restart: false, label: '4 generated images, denoising step 6 of 6' });
  // The scrubber goes back to a drawn step and says which one is shown.
  const scrubbed = await page.evaluate(() => {
    const root = document.getElementById('sampler').shadowRoot;
    const scrub = root.querySelector('[name=scrub]');
    scrub.value = '3';
    scrub.dispatchEvent(new Event('input'));
    return { status: root.querySelector('.status').textContent, label: root.querySelector('canvas').getAttribute('aria-label') };
  });
  assert.match(scrubbed.status, /^showing step 3 of 6 · WebGPU/);
  assert.equal(scrubbed.label, '4 generated images, denoising step 3 of 6');
  // Where the model came from, and what `ddpm eval` measured, from its card.
  const card = JSON.parse(await (await fetch(`${server.url}/models/mnist.json`)).text());
  const best = Math.max(...card.evaluation.samples.filter((r) => r.weights === card.averaging).map((r) => r.accuracy));
  const provenance = await page.evaluate(() => document.getElementById('provenance').textContent);
  assert.ok(provenance.includes(`${card.steps_trained.toLocaleString('en')} training steps`), provenance);
  assert.ok(provenance.includes(`${(100 * best).toFixed(1)}% drawn as the digit asked`), provenance);
  // The settings are in the address bar.
  assert.match(page.url(), /seed=3/);
  assert.match(page.url(), /steps=6/);
  assert.deepEqual(problems, []);
  await page.close();
});

test('on the CPU fallback the page stays responsive: the model runs off the main thread', async (t) => {
  const { page, problems } = await openPage(cpu, `${server.url}/?steps=3&seed=1&n=16`);
  await waitFor(page, 'sampler', 'ddpm-done');
  const mine = await events(page, 'sampler');
  const ready = mine.find((e) => e.type === 'ddpm-ready');
  assert.match(ready.detail.backend, /^CPU \(no WebGPU/);
  assert.ok(ready.detail.workers >= 1, JSON.stringify(ready.detail));
  // The page compiles the module once, but every instance that runs it lives in a worker: no
  // step can block the main thread. (Times are not asserted; they are reported.)
  assert.equal(await page.evaluate(() => window.ddpmMainInstances), 0);
  const stepMs = Math.min(...mine.filter((e) => e.type === 'ddpm-step').map((e) => e.detail.ms));
  const longest = await page.evaluate((t) => Math.max(0, ...window.ddpmLongTasks.filter((l) => l.start >= t).map((l) => l.duration)), ready.time);
  t.diagnostic(`a step: ${stepMs.toFixed(0)} ms; the longest main-thread task while sampling: ${longest.toFixed(0)} ms`);
  assert.deepEqual(problems, []);
  await page.close();
});

// WebGPU runs the core's fused kernels unless the widget says gpu-kernels="off" (burn's own).
const BACKEND_NAME = { webgpu: /^WebGPU \(.*\) · fused kernels$/, 'webgpu, burn\'s kernels': /^WebGPU \([^)]*\)$/, cpu: /^CPU \(no WebGPU/ };
for (const backend of Object.keys(BACKEND_NAME)) {
  test(`the widget's final images equal the CLI's within 1e-3 (${backend})`, async () => {
    const url = `${server.url}/fixtures/${backend === 'webgpu' || backend === 'cpu' ? 'parity' : 'parity-burn'}.html`;
    const { page, problems } = await openPage(backend === 'cpu' ? cpu : gpu, url);
    await waitFor(page, 'w', 'ddpm-done');
    const ready = (await events(page, 'w')).find((e) => e.type === 'ddpm-ready');
    assert.match(ready.detail.backend, BACKEND_NAME[backend]);
    const values = await page.evaluate(async () => Array.from(await document.getElementById('w').values()));
    assert.equal(values.length, PARITY.n * 64);
    const diff = maxAbsDiff(values, model.cliValues);
    assert.ok(diff < 1e-3, `max |browser − CLI| = ${diff}`);
    if (backend === 'cpu') {
      const status = await page.evaluate(() => document.getElementById('w').shadowRoot.querySelector('.status').textContent);
      assert.match(status, /CPU \(no WebGPU/);
    }
    assert.deepEqual(problems, []);
    await page.close();
  });
}

test('a pool of 1, 2 or 3 CPU workers gives the same images, bit for bit, and the CLI\'s within 1e-3', async () => {
  const { page, problems } = await openPage(cpu, `${server.url}/fixtures/pool.html`);
  const images = {};
  for (const k of [1, 2, 3]) {
    await waitFor(page, `w${k}`, 'ddpm-done');
    const ready = (await events(page, `w${k}`)).find((e) => e.type === 'ddpm-ready');
    assert.equal(ready.detail.workers, k);
    images[k] = await page.evaluate(async (id) => Array.from(await document.getElementById(id).values()), `w${k}`);
  }
  assert.ok(maxAbsDiff(images[1], model.cliValues) < 1e-3, `max |browser − CLI| = ${maxAbsDiff(images[1], model.cliValues)}`);
  assert.deepEqual(images[2], images[1]);
  assert.deepEqual(images[3], images[1]);
  // The grids drawn from the joined parts are the same pixels too.
  const last = async (id) => (await events(page, id)).filter((e) => e.type === 'ddpm-step').at(-1).pixels;
  assert.deepEqual(await last('w3'), await last('w1'));
  assert.deepEqual(problems, []);
  await page.close();
});

test('loading shows its progress: the model code, compiling, the weights, starting, checking the kernels (not again after a reload); the first WebGPU step says it prepares kernels', async () => {
  const { page, problems } = await openPage(gpu, `${server.url}/fixtures/parity.html`);
  await waitFor(page, 'w', 'ddpm-done');
  const mine = await events(page, 'w');
  const stages = mine.filter((e) => e.type === 'ddpm-progress').map((e) => e.detail.stage);
  // The code and the weights download at the same time, so their events interleave.
  assert.deepEqual([...new Set(stages)].sort(), ['checking', 'code', 'compiling', 'starting', 'tuning', 'weights']);
  assert.ok(stages.indexOf('checking') > stages.lastIndexOf('starting'));
  assert.ok(stages.indexOf('compiling') > stages.lastIndexOf('code'));
  const bytes = (stage) => Math.max(...mine.filter((e) => e.detail?.stage === stage).map((e) => e.detail.loaded));
  assert.equal(bytes('code'), statSync(join(site, 'ddpm-web_bg.wasm')).size);
  assert.equal(bytes('weights'), statSync(join(model.models, 'bars.bpk')).size);
  // Every loading stage comes before the run is ready; the kernels' after it, before a step.
  const at = (type, stage) => mine.findLastIndex((e) => e.type === type && (!stage || e.detail.stage === stage));
  assert.ok(at('ddpm-progress', 'starting') < at('ddpm-ready') && at('ddpm-progress', 'weights') < at('ddpm-ready'));
  assert.ok(at('ddpm-ready') < at('ddpm-progress', 'tuning') && at('ddpm-progress', 'tuning') < at('ddpm-step'));
  // The check passed and is kept: the same page again (same browser profile) skips it, and the
  // kernels still run.
  await page.reload();
  await waitFor(page, 'w', 'ddpm-done');
  const again = await events(page, 'w');
  const stagesAgain = new Set(again.filter((e) => e.type === 'ddpm-progress').map((e) => e.detail.stage));
  assert.ok(stagesAgain.has('starting') && !stagesAgain.has('checking'), [...stagesAgain].join(', '));
  assert.match(again.find((e) => e.type === 'ddpm-ready').detail.backend, / · fused kernels$/);
  assert.deepEqual(problems, []);
  await page.close();
});

for (const [what, before, message] of [
  ['WebAssembly SIMD', () => {
    const validate = WebAssembly.validate;
    // As a browser without SIMD: modules using v128 do not validate.
    WebAssembly.validate = (bytes) => !new Uint8Array(bytes).includes(123) && validate(bytes);
  }, /this browser has no WebAssembly SIMD/],
  ['Web Workers', () => {
    delete window.Worker;
  }, /this browser cannot run Web Workers/],
]) {
  test(`a browser without ${what} gets a one-line message in the widget, not an exception`, async () => {
    const { page, problems } = await openPage(cpu, `${server.url}/fixtures/parity.html`, { before });
    await page.waitForFunction(() => window.ddpmEvents.some((e) => e.type === 'ddpm-error'), null, { timeout: 60000 });
    assert.match(await widgetError(page, 'w'), message);
    assert.equal((await widgetError(page, 'w')).split('\n').length, 1);
    assert.deepEqual(problems, []);
    await page.close();
  });
}

test('when the WebGPU device is lost mid-run, the widget starts again on the CPU, says so and matches the CLI', async () => {
  const { page, problems } = await openPage(gpu, `${server.url}/fixtures/parity.html`);
  await page.waitForFunction(() => window.ddpmEvents.some((e) => e.id === 'w' && e.type === 'ddpm-step'), null, { timeout: 300000 });
  // Destroy the device under the running widget (WebGPU's GPUDevice.destroy(), which the
  // browser reports as lost just as it would a driver reset).
  await page.evaluate(async () => (await (await import('/engine.js')).engine('auto')).call('loseDevice'));
  await page.waitForFunction(() => {
    const mine = window.ddpmEvents.filter((e) => e.id === 'w');
    const ready = mine.findLastIndex((e) => e.type === 'ddpm-ready');
    return mine.some((e) => e.type === 'ddpm-error') || (mine[ready].detail.backend.startsWith('CPU') && mine.slice(ready).some((e) => e.type === 'ddpm-done'));
  }, null, { timeout: 300000, polling: 100 });
  const mine = await events(page, 'w');
  assert.deepEqual(mine.filter((e) => e.type === 'ddpm-error'), []);
  const backends = mine.filter((e) => e.type === 'ddpm-ready').map((e) => e.detail.backend);
  assert.equal(backends.length, 2, backends.join(' | '));
  assert.match(backends[0], /^WebGPU/);
  assert.match(backends[1], /^CPU \(WebGPU device lost: Destroyed/);
  const status = await page.evaluate(() => document.getElementById('w').shadowRoot.querySelector('.status').textContent);
  assert.match(status, /step 5\/5 .*CPU \(WebGPU device lost/);
  const values = await page.evaluate(async () => Array.from(await document.getElementById('w').values()));
  const diff = maxAbsDiff(values, model.cliValues);
  assert.ok(diff < 1e-3, `max |browser − CLI| = ${diff}`);
  assert.equal(await widgetError(page, 'w'), '');
  assert.deepEqual(problems, []);
  await page.close();
});

test('a widget loaded from another origin (a CDN with CORS) runs on a page whose CSP allows it', async () => {
  const cdn = await serve({ '/': site, '/fixtures/': model.models }, { cors: true });
  const host = join(model.dir, 'host');
  mkdirSync(host, { recursive: true });
  writeCrossOriginPage(host, cdn.url);
  const csp = CSP.replace("script-src 'self'", `script-src 'self' ${cdn.url}`)
    .replace("connect-src 'self'", `connect-src 'self' ${cdn.url}`)
    // The worker's whole module graph is fetched as a worker: the CDN goes in worker-src too.
    .replace("worker-src 'self'", `worker-src blob: ${cdn.url}`);
  const docs = await serve({ '/': host }, { csp });
  try {
    // The blob URLs the page makes (the workers' shims), and which are revoked.
    const before = () => {
      window.ddpmBlobUrls = new Set();
      const [create, revoke] = [URL.createObjectURL, URL.revokeObjectURL];
      URL.createObjectURL = (blob) => {
        const url = create(blob);
        window.ddpmBlobUrls.add(url);
        return url;
      };
      URL.revokeObjectURL = (url) => {
        window.ddpmBlobUrls.delete(url);
        revoke(url);
      };
    };
    const { page, problems } = await openPage(cpu, `${docs.url}/`, { before });
    await waitFor(page, 'w', 'ddpm-done');
    const values = await page.evaluate(async () => Array.from(await document.getElementById('w').values()));
    const diff = maxAbsDiff(values, model.cliValues);
    assert.ok(diff < 1e-3, `max |browser − CLI| = ${diff}`);
    // Each worker's shim is revoked once its script has loaded.
    assert.equal(await page.evaluate(() => window.ddpmBlobUrls.size), 0);
    // Each file once; a browser without WebGPU never downloads the WebGPU build.
    assert.deepEqual(['/cpu/ddpm-web_bg.wasm', '/ddpm-web_bg.wasm', '/fixtures/bars.bpk'].map(cdn.requests), [1, 0, 1]);
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    cdn.close();
    docs.close();
  }
});

test('with prefers-reduced-motion the widget draws only the finished grid', async () => {
  const context = await cpu.newContext({ reducedMotion: 'reduce' });
  const { page } = await openPage(context, `${server.url}/fixtures/parity.html`);
  await waitFor(page, 'w', 'ddpm-done');
  const steps = (await events(page, 'w')).filter((e) => e.type === 'ddpm-step');
  assert.equal(steps.length, PARITY.steps);
  for (const step of steps.slice(1, -1)) assert.deepEqual(step.pixels, steps[0].pixels);
  assert.notDeepEqual(steps.at(-1).pixels, steps[0].pixels, 'the final grid is drawn');
  await context.close();
});

test('widgets on one page: a bad attribute or tampered weights show a message, the others work, the weights are cached', async () => {
  const context = await gpu.newContext();
  const { page, problems } = await openPage(context, `${server.url}/fixtures/widgets.html`);
  await waitFor(page, 'good', 'ddpm-done');
  assert.match(await widgetError(page, 'bad'), /steps="abc": must be a whole number/);
  await page.evaluate(() => document.getElementById('badkernels').scrollIntoView());
  await page.waitForFunction(() => !document.getElementById('badkernels').shadowRoot.querySelector('.error').hidden);
  assert.match(await widgetError(page, 'badkernels'), /^[^\n]*gpu-kernels="yes": must be one of on, off[^\n]*$/);
  await page.evaluate(() => document.getElementById('tampered').scrollIntoView());
  await page.waitForFunction(() => !document.getElementById('tampered').shadowRoot.querySelector('.error').hidden);
  assert.match(await widgetError(page, 'tampered'), /SHA-256 .* does not match the model card's .*refusing them/);
  assert.equal(await widgetError(page, 'good'), '');
  // The host page is untouched: its prose is still there and no error escaped the widgets.
  assert.equal(await page.evaluate(() => document.querySelectorAll('p').length), 2);
  assert.deepEqual(problems.filter((p) => !p.includes('ddpm-sampler')), []);
  // A start the model refuses (more DDIM steps than its T) leaves no run to play or step.
  const good = (js) => page.evaluate(js);
  await good(() => document.getElementById('good').setAttribute('steps', '100000'));
  await page.waitForFunction(() => !document.getElementById('good').shadowRoot.querySelector('.error').hidden);
  const refused = await widgetError(page, 'good');
  assert.match(refused, /100000/);
  await good(() => document.getElementById('good').step());
  assert.equal(await widgetError(page, 'good'), refused);
  assert.deepEqual(await good(() => document.getElementById('good').progress), { done: 0, total: 0 });
  // Two images side by side: the canvas keeps the grid's 2:1 shape instead of a square.
  await good(() => {
    const w = document.getElementById('good');
    w.setAttribute('n', '2');
    w.setAttribute('steps', '2');
  });
  await page.waitForFunction(() => window.ddpmEvents.filter((e) => e.id === 'good' && e.type === 'ddpm-done').length === 2);
  const shape = await good(() => {
    const canvas = document.getElementById('good').shadowRoot.querySelector('canvas');
    const box = canvas.getBoundingClientRect();
    return { grid: canvas.width / canvas.height, shown: box.width / box.height };
  });
  assert.ok(shape.grid > 1.5, JSON.stringify(shape));
  assert.ok(Math.abs(shape.shown - shape.grid) < 0.05, JSON.stringify(shape));
  // Controls and draw-every apply to the finished run in place: no new start, same progress.
  const starts = () => good(() => window.ddpmEvents.filter((e) => e.id === 'good' && e.type === 'ddpm-ready').length);
  const started = await starts();
  await good(() => {
    const w = document.getElementById('good');
    w.setAttribute('controls', '');
    w.setAttribute('draw-every', '2');
  });
  await page.waitForFunction(() => document.getElementById('good').shadowRoot.querySelector('[data-action=restart]'));
  assert.equal(await starts(), started);
  assert.deepEqual(await good(() => document.getElementById('good').progress), { done: 2, total: 2 });
  // A bad value there is a message; mending it takes the message away, still without a start.
  const errorShown = (shown) => page.waitForFunction((shown) => document.getElementById('good').shadowRoot.querySelector('.error').hidden !== shown, shown);
  await good(() => document.getElementById('good').setAttribute('draw-every', 'often'));
  await errorShown(true);
  assert.match(await widgetError(page, 'good'), /draw-every="often"/);
  await good(() => document.getElementById('good').setAttribute('draw-every', '3'));
  await errorShown(false);
  assert.equal(await starts(), started);
  // A second visit takes the weights from the cache: the server sees no new request for them.
  const before = server.requests('/fixtures/bars.bpk');
  const second = await openPage(context, `${server.url}/fixtures/parity.html`);
  await waitFor(second.page, 'w', 'ddpm-done');
  assert.equal(server.requests('/fixtures/bars.bpk'), before);
  await context.close();
});

// Pixels whose channels differ by more than 40 (0–255): none in a gray image.
const colourful = (rgba) => {
  let count = 0;
  for (let i = 0; i < rgba.length; i += 4) {
    const [r, g, b] = [rgba[i], rgba[i + 1], rgba[i + 2]];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 40) count += 1;
  }
  return count;
};

// A check that fails cannot be made on a sound module, so the worker is served with the check's
// verdict replaced by a disagreement (as a browser without SIMD is made by replacing
// WebAssembly.validate above): what the page does with it is real.
test('GPU kernels that fail their check: the backend name says why in one line, the console has it, and the run ends', async () => {
  const { page, problems } = await openPage(gpu, 'about:blank');
  const verdict = '"predict 9 where burn\'s kernels predict 1 (a fault)\\nsecond line"';
  const worker = readFileSync(join(site, 'ddpm-worker.js'), 'utf8');
  assert.ok(worker.includes('await model.checkKernels()'));
  const faulty = worker.replace('await model.checkKernels()', verdict);
  await page.route('**/ddpm-worker.js', (route) => route.fulfill({ body: faulty, contentType: 'text/javascript' }));
  const warnings = [];
  page.on('console', (m) => m.type() === 'warning' && warnings.push(m.text()));
  await page.goto(`${server.url}/fixtures/parity.html`);
  await waitFor(page, 'w', 'ddpm-done');
  const ready = (await events(page, 'w')).find((e) => e.type === 'ddpm-ready');
  assert.match(ready.detail.backend, /^WebGPU \([^)]*\) · burn's kernels: the fused ones predict 9 where burn's kernels predict 1 \(a fault\)$/);
  assert.ok(warnings.some((w) => w.startsWith("ddpm: the core's GPU kernels predict 9") && w.includes('second line')), warnings.join('\n'));
  assert.deepEqual(problems, []);
  await page.close();
});

test('the shipped colour model draws emoji in colour from the picker, on the CPU', async () => {
  const { page, problems } = await openPage(cpu, `${server.url}/?model=models/emoji.json&steps=8&seed=5&n=4&class=7`);
  await waitFor(page, 'sampler', 'ddpm-done');
  const list = await events(page, 'sampler');
  const ready = list.find((e) => e.type === 'ddpm-ready');
  assert.deepEqual(ready.detail.card.config.image_size, [32, 32]);
  assert.equal(ready.detail.card.config.unet.channels, 3);
  assert.equal(ready.detail.card.class_names[7], 'smileys-emotion');
  const picked = await page.evaluate(() => document.getElementById('model').value);
  assert.equal(picked, 'models/emoji.json');
  const steps = list.filter((e) => e.type === 'ddpm-step');
  assert.equal(steps.length, 8);
  const width = await page.evaluate(() => document.getElementById('sampler').shadowRoot.querySelector('canvas').width);
  // Four 32×32 images in a 2×2 grid with 2-pixel gaps, in colour, and smooth at the end where
  // the first step was noise.
  assert.equal(width, 2 * (32 + 2) + 2);
  const last = steps.at(-1).pixels;
  assert.ok(colourful(last) > 500, `${colourful(last)} coloured pixels`);
  const [first, end] = [roughness(steps[0].pixels, width), roughness(last, width)];
  assert.ok(end < 0.5 * first, `roughness: ${first.toFixed(1)} at step 1, ${end.toFixed(1)} at the end`);
  // Its run was warm-started (`train --init`) from earlier weights: the page counts the steps of
  // the whole chain, not only the last run's.
  const card = ready.detail.card;
  let [total, runs] = [0, 0];
  for (let link = card; link; link = link.initialised_from) [total, runs] = [total + link.steps_trained, runs + 1];
  assert.ok(runs > 1, `${runs} run(s) in the card`);
  const provenance = await page.evaluate(() => document.getElementById('provenance').textContent);
  assert.ok(provenance.includes(`${total.toLocaleString('en')} training steps`), provenance);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the documentation example renders all three of its widgets', async () => {
  const { page, problems } = await openPage(gpu, `${server.url}/docs/`);
  const ids = await page.evaluate(() => [...document.querySelectorAll('ddpm-sampler')].map((e) => e.id));
  assert.equal(ids.length, 3);
  for (const id of ids) {
    await page.evaluate((id) => document.getElementById(id).scrollIntoView(), id);
    await waitFor(page, id, 'ddpm-step');
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test("the wasm crate's JS API: backend, model info, option errors, frames and values", async () => {
  const { page } = await openPage(cpu, `${server.url}/fixtures/api.html`);
  await page.waitForFunction(() => window.apiResult, null, { timeout: 120000 });
  const r = await page.evaluate(() => window.apiResult);
  assert.equal(r.error, undefined, r.error);
  assert.equal(r.backend, 'CPU');
  assert.match(r.gpuBuild, /built without the CPU backend/);
  assert.equal(r.gpu, false);
  // The core's typed error for a file cut short, not a wasm trap.
  assert.match(r.truncated, /^not a readable weights file: Invalid header: insufficient bytes/);
  assert.deepEqual(r.info.imageSize, [8, 8]);
  assert.equal(r.info.channels, 1);
  assert.equal(r.info.numClasses, 2);
  assert.equal(r.info.timesteps, 100);
  // No GPU kernels run on the CPU, so their check passes without running (on WebGPU it runs
  // when a widget loads a model; the parity tests' backend names say it passed).
  assert.equal(r.checked, 'undefined');
  assert.match(r.sampler, /sampler must be "ddpm" or "ddim", got "euler"/);
  assert.match(r.classRange, /class 5 is out of range: this model has 2 classes, 0 to 1/);
  assert.match(r.unknown, /stepz/);
  assert.match(r.steps, /DDIM steps must be between 1 and 100, got 0/);
  assert.match(r.part, /part 3\.\.9 is not a non-empty range of the batch's 4 images/);
  assert.equal(r.total, 3);
  assert.match(r.view, /view must be/);
  // Four 8×8 images in a 2×2 grid with 2-pixel gaps: 2·(8+2)+2 = 22 pixels a side.
  assert.deepEqual(r.frame, { step: 1, t: r.frame.t, width: 22, height: 22, bytes: 22 * 22 * 4 });
  assert.ok(r.frame.t > 60, `first DDIM step at t = ${r.frame.t}`);
  assert.equal(r.skipped, 2);
  assert.equal(r.after, undefined);
  assert.equal(r.done, 3);
  assert.equal(r.values.length, 4 * 64);
  assert.ok(r.values.min >= -1 && r.values.max <= 1 && r.values.max > r.values.min);
  await page.close();
});

test("the documentation example's inpainting keeps the smiley where the mask is white (CPU)", async () => {
  const { page, problems } = await openPage(cpu, `${server.url}/docs/`);
  await page.evaluate(() => document.getElementById('inpaint').scrollIntoView());
  await waitFor(page, 'inpaint', 'ddpm-done');
  const { kept, same, generated, changed } = await page.evaluate(async () => {
    const pixels = async (url) => {
      const bitmap = await createImageBitmap(await (await fetch(url)).blob(), { colorSpaceConversion: 'none' });
      const canvas = new OffscreenCanvas(32, 32);
      canvas.getContext('2d').drawImage(bitmap, 0, 0);
      return canvas.getContext('2d').getImageData(0, 0, 32, 32).data;
    };
    const [smiley, mask] = [await pixels('smiley.png'), await pixels('smiley-mask.png')];
    const canvas = document.getElementById('inpaint').shadowRoot.querySelector('canvas');
    // The first image of the 2×2 grid, 2 pixels in from the corner.
    const grid = canvas.getContext('2d').getImageData(2, 2, 32, 32).data;
    const out = { kept: 0, same: 0, generated: 0, changed: 0 };
    for (let p = 0; p < 32 * 32; p++) {
      const equal = [0, 1, 2].every((c) => grid[4 * p + c] === smiley[4 * p + c]);
      if (mask[4 * p] > 127) [out.kept, out.same] = [out.kept + 1, out.same + equal];
      else [out.generated, out.changed] = [out.generated + 1, out.changed + !equal];
    }
    return out;
  });
  assert.equal(generated, 10 * 19);
  assert.equal(same, kept);
  assert.ok(changed > generated / 4, `${changed} of ${generated} masked pixels changed`);
  assert.deepEqual(problems, []);
  await page.close();
});
