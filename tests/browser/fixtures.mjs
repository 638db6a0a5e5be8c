// Small pages the tests serve next to the tiny model, built from the same widget as the site.

import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { join } from 'node:path';
import { PARITY, repo } from './harness.mjs';

const page = (body, head = '', origin = '') => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<script type="module" src="${origin}/ddpm-sampler.js"></script>${head}</head><body>${body}</body></html>`;

const p = PARITY;
const parityWidget = (id, origin = '', extra = '') => `<ddpm-sampler id="${id}" model="${origin}/fixtures/bars.json" sampler="${p.sampler}"
  steps="${p.steps}" seed="${p.seed}" n="${p.n}" class-label="${p.classLabel}" guidance="${p.guidance}" ${extra} autoplay></ddpm-sampler>`;

/** Writes the fixture pages into `dir` (served as /fixtures/). */
export function writePages(dir) {
  writeFileSync(join(dir, 'parity.html'), page(parityWidget('w')));
  writeFileSync(join(dir, 'parity-burn.html'), page(parityWidget('w', '', 'gpu-kernels="off"')));
  // The same run on the CPU split across pools of 1, 2 and 3 workers (and 3 workers for 4
  // images gives parts of 1, 1 and 2).
  writeFileSync(join(dir, 'pool.html'), page([1, 2, 3].map((k) => parityWidget(`w${k}`, '', `backend="cpu" workers="${k}"`)).join('\n')));
  // Like the documentation example: a good widget, one with a bad attribute, one whose weights
  // do not match their card, all in one page.
  writeFileSync(join(dir, 'widgets.html'), page(`<p>Prose before.</p>${parityWidget('good')}
    <ddpm-sampler id="bad" model="/fixtures/bars.json" steps="abc" autoplay></ddpm-sampler>
    <ddpm-sampler id="badkernels" model="/fixtures/bars.json" gpu-kernels="yes" autoplay></ddpm-sampler>
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
  result.checked = String(await model.checkKernels());
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

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** An 8-bit grayscale PNG of `gray` (row after row, `width`×`height` bytes). */
export function grayPng(width, height, gray) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // grayscale
  const rows = Buffer.concat(Array.from({ length: height }, (_, y) =>
    Buffer.concat([Buffer.from([0]), Buffer.from(gray.subarray(y * width, (y + 1) * width))])));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

/**
 * The steering fixtures next to the tiny model in `dir`: an 8×8 vertical bar (the model's
 * class 1), a mask keeping its left half, one keeping nothing; the pages of the steering tests.
 */
export function writeSteerFixtures(dir) {
  const bar = new Uint8Array(64).map((_, i) => (i % 8 === 3 ? 230 : 20));
  writeFileSync(join(dir, 'bar.png'), grayPng(8, 8, bar));
  writeFileSync(join(dir, 'mask.png'), grayPng(8, 8, new Uint8Array(64).map((_, i) => (i % 8 < 4 ? 255 : 0))));
  writeFileSync(join(dir, 'black.png'), grayPng(8, 8, new Uint8Array(64)));
  const cpu = 'backend="cpu" workers="2"';
  writeFileSync(join(dir, 'steer.html'), page([
    parityWidget('finish', '', `${cpu} mode="finish" strength="0.6" image="/fixtures/bar.png"`),
    parityWidget('fill', '', `${cpu} mode="fill" resample-jump="2" resample-repeats="2"`),
    parityWidget('interpolate', '', `${cpu} interpolate="3,9"`),
  ].join('\n'), '<script type="module" src="/fixtures/steer.js"></script>'));
  // Inpainting (the most steering work on the device: noising, masking, jumps) on WebGPU.
  writeFileSync(join(dir, 'steer-gpu.html'), page(parityWidget('fill', '',
    'mode="fill" image="/fixtures/bar.png" mask="/fixtures/mask.png" resample-jump="2" resample-repeats="2"')));
  // Without `controls`: the draw tools are there all the same; strength 0 gives the drawing
  // back; a 16×8 colour image (made gray as PIL makes it: `colours-L.png`, both from
  // tests/fixtures/pil) and a mask (keeping x < 6) are both cropped to their middle 8×8 (and,
  // with `autoplay`, run at once).
  for (const name of ['colours.png', 'colours-L.png']) copyFileSync(join(repo, 'tests', 'fixtures', 'pil', name), join(dir, name));
  writeFileSync(join(dir, 'widemask.png'), grayPng(16, 8, new Uint8Array(128).map((_, i) => (i % 16 < 6 ? 255 : 0))));
  writeFileSync(join(dir, 'bare.html'), page([
    parityWidget('zero', '', `${cpu} mode="finish" strength="0" image="/fixtures/bar.png"`),
    parityWidget('bare', '', `${cpu} mode="finish"`),
    parityWidget('wide', '', `${cpu} mode="fill" image="/fixtures/colours.png" mask="/fixtures/widemask.png"`),
  ].join('\n')));
  // A run, then 'fill' on one of its images, through the controls.
  writeFileSync(join(dir, 'pick.html'), page(parityWidget('w', '', `${cpu} controls`)));
  // The fill widget gets its image and mask through the JS API.
  writeFileSync(join(dir, 'steer.js'), `
const fill = document.getElementById('fill');
await fill.setImage('/fixtures/bar.png');
await fill.setMask('/fixtures/mask.png');
fill.restart();
`);
  const bad = (id, extra) => `<ddpm-sampler id="${id}" model="/fixtures/bars.json" steps="2" n="2" backend="cpu" workers="1" ${extra}></ddpm-sampler>`;
  writeFileSync(join(dir, 'badsteer.html'), page([
    bad('mode', 'mode="paint"'),
    bad('strength', 'mode="finish" strength="1.5"'),
    bad('seeds', 'interpolate="3"'),
    bad('ddpm', 'sampler="ddpm" interpolate="3,4" autoplay'),
    bad('nothing', 'mode="fill" image="/fixtures/bar.png" mask="/fixtures/black.png" autoplay'),
    bad('unreadable', 'mode="finish" image="/fixtures/missing.png" autoplay'),
    bad('noimage', 'mode="fill"'),
  ].join('\n'), '<script type="module" src="/fixtures/badsteer.js"></script>'));
  // Asked to fill in before it has an image to fill.
  writeFileSync(join(dir, 'badsteer.js'), `
const widget = document.getElementById('noimage');
widget.addEventListener('ddpm-draw', () => widget.restart(), { once: true });
`);
}

/**
 * The fault tests' pages next to the tiny model in `dir`: a CPU pool of two workers, a page
 * with only the widget's module, cards that are JSON but not objects, and a card whose weights
 * the server cuts short (`cut.bpk`, see `serve`'s `cut`).
 */
export function writeFaultFixtures(dir) {
  writeFileSync(join(dir, 'pool2.html'), page(parityWidget('w', '', 'backend="cpu" workers="2"')));
  writeFileSync(join(dir, 'empty.html'), page(''));
  writeFileSync(join(dir, 'null.json'), 'null');
  writeFileSync(join(dir, 'array.json'), '[]');
  copyFileSync(join(dir, 'bars.bpk'), join(dir, 'cut.bpk'));
  const card = JSON.parse(readFileSync(join(dir, 'bars.json'), 'utf8'));
  writeFileSync(join(dir, 'cut.json'), JSON.stringify({ ...card, weights: 'cut.bpk' }));
  const cpu = 'backend="cpu" workers="1" steps="2" n="1" autoplay';
  writeFileSync(join(dir, 'cards.html'), page(['null', 'array', 'cut']
    .map((name) => `<ddpm-sampler id="${name}" model="/fixtures/${name}.json" ${cpu}></ddpm-sampler>`).join('\n')));
}
