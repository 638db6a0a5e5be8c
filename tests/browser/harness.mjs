// What the browser tests share: a static server for the built site (with a strict
// Content-Security-Policy header on every page), a tiny model made with the real CLI, and a
// headless Chromium with or without WebGPU (SwiftShader on the CPU).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '..', '..');
// The built site under test: tests/run.sh builds and tests target/site-release (the release
// site that ships); without DDPM_SITE, a plain `trunk build`'s.
export const site = process.env.DDPM_SITE ?? join(repo, 'target', 'site');
const ddpm = process.env.DDPM_BIN ?? join(repo, 'target', 'debug', 'ddpm');

export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'self'";

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png',
  '.md': 'text/markdown', '.bpk': 'application/octet-stream',
};

/**
 * Serves `mounts` (URL prefix -> folder) on 127.0.0.1; every response carries `csp`, and with
 * `cors` a header that lets pages of any origin use it (as a CDN would). The paths in `cut`
 * send half their body and close the connection (a download that breaks off).
 * `requests(path)` counts the requests for a path so far.
 */
export async function serve(mounts, { csp = CSP, cors = false, cut = [] } = {}) {
  const counts = new Map();
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://x').pathname);
    counts.set(path, (counts.get(path) ?? 0) + 1);
    if (path === '/favicon.ico') {
      response.writeHead(204).end();
      return;
    }
    const prefix = Object.keys(mounts).filter((p) => path.startsWith(p)).sort((a, b) => b.length - a.length)[0];
    let file = prefix === undefined ? null : normalize(join(mounts[prefix], path.slice(prefix.length)));
    if (file && existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if (!file || !file.startsWith(mounts[prefix]) || !existsSync(file)) {
      response.writeHead(404).end('not found');
      return;
    }
    const body = readFileSync(file);
    response.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-security-policy': csp,
      'cache-control': 'no-store',
      ...(cors ? { 'access-control-allow-origin': '*' } : {}),
      // A body that breaks off must be shorter than it says.
      ...(cut.includes(path) ? { 'content-length': body.length } : {}),
    });
    if (cut.includes(path)) response.write(body.subarray(0, body.length >> 1), () => response.destroy());
    else response.end(body);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests: (path) => counts.get(path) ?? 0,
    close: () => server.close(),
  };
}

/** Runs the CLI, failing with its stderr. */
export function cli(...args) {
  return execFileSync(ddpm, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The sampling the parity checks use, as CLI flags and as widget attributes. */
export const PARITY = { sampler: 'ddim', steps: 5, seed: 7, n: 4, classLabel: 1, guidance: 2 };

/**
 * A tiny class-conditional model (8×8 bars, two classes) trained and exported by the CLI, the
 * CLI's raw samples for `PARITY`, and a copy of its card with a wrong SHA-256, in a temporary
 * folder that `remove()` deletes (call it in the test file's `after` hook).
 */
export function tinyModel() {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-browser-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    return makeTinyModel(dir, remove);
  } catch (e) {
    remove();
    throw e;
  }
}

function makeTinyModel(dir, remove) {
  writeBars(join(dir, 'bars'));
  const run = join(dir, 'run');
  cli('train', run, '--device', 'cpu', '--data', join(dir, 'bars'), '--image-size', '8',
    '--steps', '30', '--batch-size', '16', '--lr', '2e-3', '--sample-every', '0',
    '--set', 'model.dim=8', '--set', 'model.dim_mults=[1, 2]', '--set', 'model.attn_dim_head=8',
    '--set', 'model.attn_heads=2', '--set', 'diffusion.timesteps=100', '--set', 'optim.warmup_steps=5');
  const models = join(dir, 'models');
  mkdirSync(models);
  cli('export', run, '-o', join(models, 'bars.bpk'));
  const p = PARITY;
  cli('sample', join(models, 'bars.bpk'), '-o', join(dir, 'cli.png'), '--device', 'cpu',
    '--sampler', p.sampler, '--steps', String(p.steps), '--seed', String(p.seed), '-n', String(p.n),
    '--class', String(p.classLabel), '--guidance', String(p.guidance), '--raw', join(dir, 'cli.safetensors'));
  const card = JSON.parse(readFileSync(join(models, 'bars.json'), 'utf8'));
  writeFileSync(join(models, 'tampered.json'), JSON.stringify({ ...card, sha256: '0'.repeat(64) }));
  return { dir, models, remove, cliValues: readSafetensors(join(dir, 'cli.safetensors'), 'images') };
}

/** An IDX dataset of 32 8×8 bars, horizontal (class 0) or vertical (class 1). */
function writeBars(folder) {
  const n = 32;
  const header = (magic, dims) => {
    const b = Buffer.alloc(4 + 4 * dims.length);
    b.writeUInt32BE(magic, 0);
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    return b;
  };
  const pixels = Buffer.alloc(n * 64);
  const labels = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    const pos = 1 + ((i * 5) % 6);
    labels[i] = i % 2;
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
      pixels[i * 64 + y * 8 + x] = (labels[i] === 0 ? y : x) === pos ? 255 : 0;
    }
  }
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'train-images-idx3-ubyte'), Buffer.concat([header(0x803, [n, 8, 8]), pixels]));
  writeFileSync(join(folder, 'train-labels-idx1-ubyte'), Buffer.concat([header(0x801, [n]), labels]));
}

/** One f32 tensor of a safetensors file, as a Float32Array. */
export function readSafetensors(path, name) {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const [start, end] = header[name].data_offsets;
  const data = bytes.subarray(8 + headerLength + start, 8 + headerLength + end);
  return new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

/** Headless Chromium; `webgpu: false` leaves it without an adapter (the CPU fallback). */
export async function launch({ webgpu = true } = {}) {
  const args = [
    '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--disable-dev-shm-usage',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args });
}

/**
 * A page that records console errors, CSP violations and every widget event (with the canvas
 * pixels after each step) in `window.ddpmEvents`, from before any script of the page runs;
 * `before` is a function run in the page before that.
 */
export async function openPage(browser, url, { before = null } = {}) {
  const page = await browser.newPage();
  // What a test changes about the browser before the page's scripts run.
  if (before) await page.addInitScript(before);
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.addInitScript(() => {
    window.ddpmEvents = [];
    // Main-thread tasks over 50 ms (the Long Tasks API), to check that the page stays responsive.
    window.ddpmLongTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.ddpmLongTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
    // WebAssembly instances made on the main thread: the model's must all be in workers.
    window.ddpmMainInstances = 0;
    const count = (f) => function (...args) {
      window.ddpmMainInstances += 1;
      return f.apply(this, args);
    };
    WebAssembly.instantiate = count(WebAssembly.instantiate);
    WebAssembly.instantiateStreaming = count(WebAssembly.instantiateStreaming);
    WebAssembly.Instance = new Proxy(WebAssembly.Instance, {
      construct(target, args) {
        window.ddpmMainInstances += 1;
        return Reflect.construct(target, args);
      },
    });
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    for (const type of ['ddpm-progress', 'ddpm-ready', 'ddpm-step', 'ddpm-done', 'ddpm-error', 'ddpm-draw']) {
      document.addEventListener(type, (e) => {
        const entry = { type, id: e.target.id, detail: e.detail, time: performance.now() };
        if (type === 'ddpm-step') {
          const canvas = e.target.shadowRoot.querySelector('canvas');
          entry.pixels = Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data);
        }
        window.ddpmEvents.push(entry);
      });
    }
  });
  await page.goto(url);
  return { page, problems };
}

/** The widget events of element `id` so far. */
export function events(page, id) {
  return page.evaluate((id) => window.ddpmEvents.filter((e) => e.id === id), id);
}

/** Waits until widget `id` has sent `type` (or an error, which throws); returns its detail. */
export async function waitFor(page, id, type, timeout = 300000) {
  await page.waitForFunction(
    ([id, type]) => window.ddpmEvents.some((e) => e.id === id && (e.type === type || e.type === 'ddpm-error')),
    [id, type],
    { timeout, polling: 100 },
  );
  const found = (await events(page, id)).find((e) => e.type === type || e.type === 'ddpm-error');
  if (found.type === 'ddpm-error') throw new Error(`${id}: ${found.detail.message}`);
  return found.detail;
}

/** The text of the widget's error box ('' when hidden). */
export function widgetError(page, id) {
  return page.evaluate((id) => {
    const box = document.getElementById(id).shadowRoot.querySelector('.error');
    return box.hidden ? '' : box.textContent;
  }, id);
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}
