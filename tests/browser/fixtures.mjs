// Small pages the tests serve next to the tiny model, built from the same widget as the site.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PARITY } from './harness.mjs';

const page = (body, head = '', origin = '') => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<script type="module" src="${origin}/ddpm-sampler.js"></script>${head}</head><body>${body}</body></html>`;

const p = PARITY;
const parityWidget = (id, origin = '', extra = '') => `<ddpm-sampler id="${id}" model="${origin}/fixtures/bars.json" sampler="${p.sampler}"
  steps="${p.steps}" seed="${p.seed}" n="${p.n}" class-label="${p.classLabel}" guidance="${p.guidance}" ${extra} autoplay></ddpm-sampler>`;

/** Writes the fixture pages into `dir` (served as /fixtures/). */
export function writePages(dir) {
  writeFileSync(join(dir, 'parity.html'), page(parityWidget('w')));
  // The same run on the CPU split across pools of 1, 2 and 3 workers (and 3 workers for 4
  // images gives parts of 1, 1 and 2).
  writeFileSync(join(dir, 'pool.html'), page([1, 2, 3].map((k) => parityWidget(`w${k}`, '', `backend="cpu" workers="${k}"`)).join('\n')));
  // Like the documentation example: a good widget, one with a bad attribute, one whose weights
  // do not match their card, all in one page.
  writeFileSync(join(dir, 'widgets.html'), page(`<p>Prose before.</p>${parityWidget('good')}
    <ddpm-sampler id="bad" model="/fixtures/bars.json" steps="abc" autoplay></ddpm-sampler>
    <ddpm-sampler id="tampered" model="/fixtures/tampered.json" steps="2" autoplay></ddpm-sampler>
    <p>Prose after.</p>`));
  writeFileSync(join(dir, 'api.html'), page('', '<script type="module" src="/fixtures/api.js"></script>'));
  // The wasm crate's JS-facing API, called directly on the main thread (its CPU build; the
  // WebGPU build has no CPU backend to fall back to).
  writeFileSync(join(dir, 'api.js'), `
import init, { Backend } from '/cpu/ddpm-web.js';
import initGpu, { Backend as GpuBackend } from '/ddpm-web.js';
const result = {};
try {
  await initGpu();
  try { await GpuBackend.create(false); result.gpuBuild = 'accepted'; } catch (e) { result.gpuBuild = e.message; }
  await init();
  const backend = await Backend.create(false);
  result.backend = backend.name;
  result.gpu = backend.gpu;
  const bytes = new Uint8Array(await (await fetch('/fixtures/bars.bpk')).arrayBuffer());
  try { backend.load(bytes.slice(0, 100)); } catch (e) { result.truncated = e.message; }
  const model = backend.load(bytes);
  result.info = model.info();
  for (const [name, options] of Object.entries({
    sampler: { sampler: 'euler' }, classRange: { class: 5 }, unknown: { stepz: 3 }, steps: { steps: 0 },
    part: { n: 4, part: [3, 9] },
  })) {
    try { model.run(options); result[name] = 'accepted'; } catch (e) { result[name] = e.message; }
  }
  const run = model.run({ sampler: 'ddim', steps: 3, seed: 1, n: 4, class: 0, guidance: 2 });
  result.total = run.total;
  try { await run.step('y'); } catch (e) { result.view = e.message; }
  const frame = await run.step('x0');
  result.frame = { step: frame.step, t: frame.t, width: frame.width, height: frame.height, bytes: frame.pixels.length };
  result.skipped = await run.step('none');
  await run.step('x');
  result.after = await run.step('x');
  result.done = run.done;
  const values = await run.values();
  result.values = { length: values.length, min: Math.min(...values), max: Math.max(...values) };
} catch (e) {
  result.error = String(e?.message ?? e);
}
window.apiResult = result;
`);
}

/** A page (in `dir`) that loads the widget and the model from `origin`, as from a CDN. */
export function writeCrossOriginPage(dir, origin) {
  writeFileSync(join(dir, 'index.html'), page(`<p>Docs on one host, widget on another.</p>${parityWidget('w', origin)}`, '', origin));
}
