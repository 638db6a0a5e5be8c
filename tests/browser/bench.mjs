// Speed in the browser (not a test): ms per denoising step of a shipped model in headless
// Chromium on WebGPU and on the CPU fallback, and the page's time to its first drawn step.
//
//   node tests/browser/bench.mjs [SITE_DIR] [STEPS] [N] [BACKENDS: both | webgpu | cpu]
//
// SITE_DIR defaults to target/site (build it with `trunk build --release --dist ...` to measure
// what ships). Prints one Markdown table row per backend.

import { launch, openPage, serve, site, waitFor, events } from './harness.mjs';

const [dir = site, steps = '10', n = '16', backends = 'both'] = process.argv.slice(2);
const server = await serve({ '/': dir });
try {
  for (const webgpu of [true, false].filter((gpu) => backends === 'both' || (backends === 'webgpu') === gpu)) {
    const browser = await launch({ webgpu });
    const started = Date.now();
    const { page } = await openPage(browser, `${server.url}/?steps=${steps}&n=${n}&seed=0`);
    await waitFor(page, 'sampler', 'ddpm-step', 900000);
    const firstStep = Date.now() - started;
    await waitFor(page, 'sampler', 'ddpm-done', 900000);
    const all = await events(page, 'sampler');
    const backend = all.find((e) => e.type === 'ddpm-ready').detail.backend;
    // The first step also compiles the kernels; the rest are the steady state.
    const ms = all.filter((e) => e.type === 'ddpm-step').slice(1).map((e) => e.detail.ms).sort((a, b) => a - b);
    const median = ms[Math.floor(ms.length / 2)];
    console.log(`| ${backend} | ${n} | ${median.toFixed(0)} ms | ${(firstStep / 1000).toFixed(1)} s |`);
    await browser.close();
  }
} finally {
  server.close();
}
