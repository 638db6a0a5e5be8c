// Speed in the browser beside native (not a test): ms per denoising step of the shipped MNIST
// model in headless Chromium, on WebGPU (without and with the core's fused GPU kernels) and on
// the CPU fallback with pools of 1, 2, … workers, and `ddpm sample` with the same settings on as
// many threads, in one run.
//
//   node tests/browser/bench.mjs [SITE_DIR] [STEPS] [N] [BACKENDS: both | webgpu | cpu] [WORKERS: 1,2]
//
// SITE_DIR defaults to target/site (build it with `trunk build --release --dist ...` to measure
// what ships). With DDPM_BIN set (a release build of the CLI), each worker count also gets the
// native step: (time of STEPS steps − time of 1 step) / (STEPS − 1), with RAYON_NUM_THREADS set
// to the count. With DDPM_WGPU_ICD set as well (a Vulkan driver's ICD file, e.g. Chromium's own
// SwiftShader, /usr/lib/chromium/vk_swiftshader_icd.json), the WebGPU row gets `ddpm sample
// --device wgpu` on that driver: the same adapter as the browser's. Prints one Markdown table
// row per measurement.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { launch, openPage, repo, serve, site, waitFor, events } from './harness.mjs';

const [dir = site, steps = '10', n = '16', backends = 'both', workers = '1,2'] = process.argv.slice(2);
const settings = `steps=${steps}&n=${n}&seed=0&class=mixed&guidance=3&sampler=ddim`;
const server = await serve({ '/': dir });

// The median ms of steps 2.. (the first also compiles kernels) and the time to the first step.
async function browserRow(webgpu, query) {
  const browser = await launch({ webgpu });
  try {
    const started = Date.now();
    const { page } = await openPage(browser, `${server.url}/?${settings}${query}`);
    await waitFor(page, 'sampler', 'ddpm-step', 900000);
    const firstStep = Date.now() - started;
    await waitFor(page, 'sampler', 'ddpm-done', 900000);
    const all = await events(page, 'sampler');
    const backend = all.find((e) => e.type === 'ddpm-ready').detail.backend;
    const ms = all.filter((e) => e.type === 'ddpm-step').slice(1).map((e) => e.detail.ms).sort((a, b) => a - b);
    return { backend, ms: ms[Math.floor(ms.length / 2)], firstStep };
  } finally {
    await browser.close();
  }
}

// `env` picks the threads (RAYON_NUM_THREADS) or the Vulkan driver (VK_ICD_FILENAMES).
function nativeMs(device, env) {
  const run = (s) => {
    const started = process.hrtime.bigint();
    execFileSync(process.env.DDPM_BIN, ['sample', join(repo, 'www/models/mnist.bpk'), '--device', device,
      '--sampler', 'ddim', '--steps', String(s), '--seed', '0', '-n', n, '--guidance', '3',
      '-o', join(tmpdir(), 'ddpm-bench.png'), '--force'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  return (run(Number(steps)) - run(1)) / (Number(steps) - 1);
}

try {
  console.log('| backend | images | ms per step | first step drawn after | native ms per step (same threads) | browser ÷ native |');
  console.log('|---|---|---|---|---|---|');
  if (backends !== 'cpu') {
    // burn's kernels, then the core's fused ones (gpu-kernels="on"; natively DDPM_GPU_KERNELS=1).
    for (const kernels of ['off', 'on']) {
      const r = await browserRow(true, `&gpu-kernels=${kernels}`);
      const icd = process.env.DDPM_BIN && process.env.DDPM_WGPU_ICD;
      const env = { VK_ICD_FILENAMES: icd, DDPM_GPU_KERNELS: kernels === 'on' ? '1' : '0' };
      const native = icd ? nativeMs('wgpu', env) : null;
      const ratio = native ? (r.ms / native).toFixed(2) : '';
      console.log(`| ${r.backend} | ${n} | ${r.ms.toFixed(0)} | ${(r.firstStep / 1000).toFixed(1)} s | ${native?.toFixed(0) ?? ''} | ${ratio} |`);
    }
  }
  if (backends !== 'webgpu') {
    for (const k of workers.split(',').map(Number)) {
      const r = await browserRow(false, `&backend=cpu&workers=${k}`);
      const native = process.env.DDPM_BIN ? nativeMs('cpu', { RAYON_NUM_THREADS: String(k) }) : null;
      const ratio = native ? (r.ms / native).toFixed(2) : '';
      console.log(`| ${r.backend.replace(/ · \d+ workers$/, "")} (${k} worker${k > 1 ? "s" : ""}) | ${n} | ${r.ms.toFixed(0)} | ${(r.firstStep / 1000).toFixed(1)} s | ${native?.toFixed(0) ?? ''} | ${ratio} |`);
    }
  }
} finally {
  server.close();
}
