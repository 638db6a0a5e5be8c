// Steering in the widget (issue 28): finishing a drawing (SDEdit), filling a masked part
// (RePaint) and interpolating between seeds give the CLI's images; a digit drawn with the mouse
// on the real page is finished as `ddpm sample --init` finishes it; bad steering input is a
// message in the widget.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PARITY, cli, events, launch, maxAbsDiff, openPage, readSafetensors, repo, serve, site, tinyModel, waitFor, widgetError } from './harness.mjs';
import { grayPng, writePages, writeSteerFixtures } from './fixtures.mjs';

let server;
let model;
let browser;
const cliRuns = {};

before(async () => {
  model = tinyModel();
  writePages(model.models);
  writeSteerFixtures(model.models);
  const p = PARITY;
  const common = ['--device', 'cpu', '--sampler', p.sampler, '--steps', String(p.steps), '-n', String(p.n),
    '--class', String(p.classLabel), '--guidance', String(p.guidance)];
  const bar = join(model.models, 'bar.png');
  const flags = {
    finish: ['--seed', String(p.seed), '--init', bar, '--strength', '0.6'],
    fill: ['--seed', String(p.seed), '--init', bar, '--mask', join(model.models, 'mask.png'), '--resample-jump', '2', '--resample-repeats', '2'],
    interpolate: ['--interpolate', '3,9'],
  };
  for (const [mode, extra] of Object.entries(flags)) {
    const raw = join(model.dir, `${mode}.safetensors`);
    cli('sample', join(model.models, 'bars.bpk'), '-o', join(model.dir, `${mode}.png`), ...common, ...extra, '--raw', raw);
    cliRuns[mode] = readSafetensors(raw, 'images');
  }
  server = await serve({ '/': site, '/fixtures/': model.models });
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  server?.close();
  model?.remove();
});

const values = (page, id) => page.evaluate(async (id) => Array.from(await document.getElementById(id).values()), id);

test('finishing a drawing, filling a masked part and interpolating give the CLI\'s images within 1e-3 (CPU, 2 workers)', async () => {
  const { page, problems } = await openPage(browser, `${server.url}/fixtures/steer.html`);
  // Every widget in view at once (each starts when it scrolls into view).
  await page.setViewportSize({ width: 1280, height: 2400 });
  for (const mode of ['finish', 'fill', 'interpolate']) {
    await waitFor(page, mode, 'ddpm-done');
    const diff = maxAbsDiff(await values(page, mode), cliRuns[mode]);
    assert.ok(diff < 1e-3, `${mode}: max |browser − CLI| = ${diff}`);
  }
  // The pad holds the given PNG exactly, and the mask keeps its white half.
  const pad = await page.evaluate(async () => {
    const { image, mask } = await document.getElementById('fill').padValues();
    return { image: Array.from(image), mask: Array.from(mask) };
  });
  assert.deepEqual(pad.image, Array.from({ length: 64 }, (_, i) => Math.fround((i % 8 === 3 ? 230 : 20) / 127.5 - 1)));
  assert.deepEqual(pad.mask, Array.from({ length: 64 }, (_, i) => (i % 8 < 4 ? 1 : 0)));
  // Finishing runs only the steps from t₀ = 0.6·T down (3 of 5 DDIM steps); RePaint's jumps
  // add steps; an interpolation is one strip of n images.
  const total = async (id) => (await events(page, id)).find((e) => e.type === 'ddpm-ready').detail.total;
  assert.equal(await total('finish'), 3);
  assert.ok((await total('fill')) > PARITY.steps);
  const strip = (await events(page, 'interpolate')).filter((e) => e.type === 'ddpm-step').at(-1);
  assert.equal(strip.pixels.length, (PARITY.n * 10 + 2) * 12 * 4);
  assert.deepEqual(problems, []);
  await page.close();
});

test('filling a masked part on WebGPU gives the CLI\'s images within 1e-3', async () => {
  const gpu = await launch({ webgpu: true });
  try {
    const { page, problems } = await openPage(gpu, `${server.url}/fixtures/steer-gpu.html`);
    await waitFor(page, 'fill', 'ddpm-done');
    const ready = (await events(page, 'fill')).find((e) => e.type === 'ddpm-ready');
    assert.match(ready.detail.backend, /^WebGPU/);
    const diff = maxAbsDiff(await values(page, 'fill'), cliRuns.fill);
    assert.ok(diff < 1e-3, `max |browser − CLI| = ${diff}`);
    assert.deepEqual(problems, []);
  } finally {
    await gpu.close();
  }
});

test('"Fill a masked part" picks a generated image with a click, masks it with the brush and keeps the rest', async () => {
  const { page, problems } = await openPage(browser, `${server.url}/fixtures/pick.html`);
  await waitFor(page, 'w', 'ddpm-done');
  const generated = await values(page, 'w');
  const widget = page.locator('#w');
  await widget.getByLabel('Start from').selectOption('fill');
  await waitFor(page, 'w', 'ddpm-draw');
  const byte = (v) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5);
  const pad = async () => page.evaluate(async () => {
    const { image, mask } = await document.getElementById('w').padValues();
    return { image: Array.from(image), mask: Array.from(mask) };
  });
  // The keyboard picks by number: image 2 of 4.
  await widget.getByLabel('Image (1–4)').fill('2');
  await widget.getByRole('button', { name: 'Use this image' }).click();
  assert.deepEqual((await pad()).image.map(byte), generated.slice(64, 128).map(byte));
  await widget.getByRole('button', { name: 'Pick a generated image' }).click();
  // The grid is 2×2 images of 8×8 with 2-pixel gaps (22×22): click the middle of image 3.
  let box = await widget.locator('canvas').boundingBox();
  const grid = (x, y) => [box.x + (x / 22) * box.width, box.y + (y / 22) * box.height];
  await page.mouse.click(...grid(16, 16));
  const picked = generated.slice(3 * 64, 4 * 64).map(byte);
  assert.deepEqual((await pad()).image.map(byte), picked);
  // A stroke across the top rows of the pad masks them.
  box = await widget.locator('canvas').boundingBox();
  const at = (x, y) => [box.x + (x / 8) * box.width, box.y + (y / 8) * box.height];
  await page.mouse.move(...at(0.5, 1));
  await page.mouse.down();
  await page.mouse.move(...at(7.5, 1), { steps: 8 });
  await page.mouse.up();
  const { mask } = await pad();
  const masked = mask.filter((v) => v === 0).length;
  assert.ok(masked >= 8 && masked <= 32, `${masked} pixels masked`);
  await widget.getByRole('button', { name: 'Fill the masked part' }).click();
  await page.waitForFunction(() => window.ddpmEvents.filter((e) => e.id === 'w' && e.type === 'ddpm-done').length === 2, null, { timeout: 120000 });
  const filled = await values(page, 'w');
  for (let i = 0; i < PARITY.n; i++) {
    const image = filled.slice(i * 64, (i + 1) * 64).map(byte);
    assert.deepEqual(image.filter((_, p) => mask[p] === 1), picked.filter((_, p) => mask[p] === 1), `image ${i}: the kept part changed`);
  }
  assert.deepEqual(problems, []);
  await page.close();
});

// Where the mouse draws a rough 3, in the pad's 28×28 pixels.
const THREE = [[9, 7], [14, 5], [19, 8], [15, 13], [19, 17], [15, 22], [9, 21]];

test('a 3 drawn with the mouse on the page is finished as `ddpm sample --init` finishes it', async () => {
  const settings = { backend: 'cpu', workers: '1', mode: 'finish', class: '3', n: '2', steps: '10', seed: '5', strength: '0.6' };
  const { page, problems } = await openPage(browser, `${server.url}/?${new URLSearchParams(settings)}`);
  await waitFor(page, 'sampler', 'ddpm-draw');
  // The page names the model's provenance before any run, from the pad's event.
  const provenance = await page.evaluate(() => document.getElementById('provenance').textContent);
  assert.match(provenance, /\d training steps/);
  const widget = page.locator('#sampler');
  const box = await widget.locator('canvas').boundingBox();
  const at = ([x, y]) => [box.x + (x / 28) * box.width, box.y + (y / 28) * box.height];
  await page.mouse.move(...at(THREE[0]));
  await page.mouse.down();
  for (const point of THREE.slice(1)) await page.mouse.move(...at(point), { steps: 6 });
  await page.mouse.up();
  const drawing = await page.evaluate(async () => Array.from((await document.getElementById('sampler').padValues()).image));
  const inked = drawing.filter((v) => v > 0).length;
  assert.ok(inked > 60 && inked < 400, `${inked} of 784 pixels inked`);
  // The strokes stay on the canvas until the first step replaces them.
  await page.evaluate(() => {
    const widget = document.getElementById('sampler');
    widget.addEventListener('ddpm-ready', () => {
      const canvas = widget.shadowRoot.querySelector('canvas');
      const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      window.strokesAtStart = rgba.filter((v, i) => i % 4 === 0 && v > 128).length;
    }, { once: true });
  });
  await widget.getByRole('button', { name: 'Finish it' }).click();
  await waitFor(page, 'sampler', 'ddpm-done');
  assert.ok(await page.evaluate(() => window.strokesAtStart > 1000), 'the drawing was not on the canvas when the run started');
  const finished = await values(page, 'sampler');
  // The same drawing through the CLI: same seed, class, strength and steps.
  const png = join(model.dir, 'drawn-3.png');
  writeFileSync(png, grayPng(28, 28, Uint8Array.from(drawing, (v) => Math.round((v + 1) * 127.5))));
  const raw = join(model.dir, 'drawn-3.safetensors');
  cli('sample', join(repo, 'www', 'models', 'mnist.bpk'), '-o', join(model.dir, 'drawn-3-out.png'), '--device', 'cpu',
    '--init', png, '--strength', '0.6', '--class', '3', '--guidance', '3', '-n', '2', '--steps', '10', '--seed', '5', '--raw', raw);
  const diff = maxAbsDiff(finished, readSafetensors(raw, 'images'));
  assert.ok(diff < 1e-3, `max |browser − CLI| = ${diff}`);
  // The model redrew it: both images differ from the drawing, and are strokes, not noise.
  for (const image of [finished.slice(0, 784), finished.slice(784)]) {
    const change = image.reduce((sum, v, i) => sum + Math.abs(v - drawing[i]), 0) / 784;
    assert.ok(change > 0.02, `mean change ${change}`);
    const background = image.filter((v) => v < -0.8).length;
    assert.ok(background > 450, `${background} background pixels`);
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('without controls the pad keeps its tools, strength 0 gives the drawing back, and a mask is fitted like its image', async () => {
  const { page, problems } = await openPage(browser, `${server.url}/fixtures/bare.html`);
  await page.setViewportSize({ width: 1280, height: 2400 });
  // No step at strength 0: the run ends at once with the drawing itself, shown and done.
  await waitFor(page, 'zero', 'ddpm-done');
  const bar = Array.from({ length: PARITY.n * 64 }, (_, i) => Math.fround((i % 8 === 3 ? 230 : 20) / 127.5 - 1));
  assert.deepEqual((await values(page, 'zero')).map(Math.fround), bar);
  assert.equal((await events(page, 'zero')).find((e) => e.type === 'ddpm-ready').detail.total, 0);
  const lit = await page.evaluate(() => {
    const canvas = document.getElementById('zero').shadowRoot.querySelector('canvas');
    return canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.filter((v, i) => i % 4 === 0 && v > 200).length;
  });
  assert.equal(lit, PARITY.n * 8, 'the bar of each image on the canvas');
  // The pad's own tools and its run button, with no `controls` attribute.
  await waitFor(page, 'bare', 'ddpm-draw');
  const bare = page.locator('#bare');
  for (const name of ['Brush', 'Eraser', 'Clear', 'Finish it']) assert.equal(await bare.getByRole('button', { name, exact: true }).count(), 1, name);
  assert.equal(await bare.getByRole('button', { name: 'Play' }).count(), 0);
  // The image's and the mask's middle 8 columns of 16: the image gray as PIL makes it (its
  // `convert('L')`, decoded by the browser), the mask keeping columns 0 and 1.
  await waitFor(page, 'wide', 'ddpm-done');
  const pad = await page.evaluate(async () => {
    const { image, mask } = await document.getElementById('wide').padValues();
    const pil = await createImageBitmap(await (await fetch('/fixtures/colours-L.png')).blob(), { colorSpaceConversion: 'none' });
    const canvas = new OffscreenCanvas(16, 8);
    canvas.getContext('2d').drawImage(pil, 0, 0);
    const gray = canvas.getContext('2d').getImageData(4, 0, 8, 8).data.filter((_, i) => i % 4 === 0);
    return { image: Array.from(image), mask: Array.from(mask), pil: Array.from(gray) };
  });
  assert.deepEqual(pad.image, pad.pil.map((v) => Math.fround(v / 127.5 - 1)));
  assert.deepEqual(pad.mask, Array.from({ length: 64 }, (_, i) => (i % 8 < 2 ? 1 : 0)));
  assert.deepEqual(problems, []);
  await page.close();
});

test('bad steering input is a one-line message in the widget', async () => {
  const { page } = await openPage(browser, `${server.url}/fixtures/badsteer.html`);
  await page.setViewportSize({ width: 1280, height: 4000 });
  const expected = {
    mode: 'mode="paint": must be one of sample, finish, fill',
    strength: 'strength="1.5": must be between 0 and 1',
    seeds: 'interpolate="3": must be two seeds',
    ddpm: 'interpolation needs DDIM with eta = 0',
    nothing: 'the mask keeps nothing of the image',
    unreadable: 'image="/fixtures/missing.png": not a readable image (HTTP 404)',
    noimage: 'nothing to fill in',
  };
  for (const [id, message] of Object.entries(expected)) {
    await page.waitForFunction((id) => !document.getElementById(id).shadowRoot.querySelector('.error').hidden, id, { timeout: 120000 });
    const text = await widgetError(page, id);
    assert.ok(text.includes(message), `${id}: ${text}`);
    assert.ok(!text.includes('\n'), `${id}: more than one line: ${text}`);
  }
  await page.close();
});
