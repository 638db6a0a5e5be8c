// Where the CPU fallback's time goes (not a test): Chromium's sampling profiler over a few
// denoising steps of the shipped MNIST model, run on a page's main thread with the CPU build of
// the wasm module, and the functions with the most self time. With the dev build (its wasm keeps
// function names) it shows which kernels run, e.g. gemm's `simd128` microkernels rather than its
// scalar ones.
//
//   node tests/browser/profile.mjs [SITE_DIR] [STEPS] [N] [TOP]

import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, repo, serve, site } from './harness.mjs';

const [dir = site, steps = '3', n = '16', top = '25'] = process.argv.slice(2);
const pages = mkdtempSync(join(tmpdir(), 'ddpm-profile-'));
writeFileSync(join(pages, 'index.html'), '<!doctype html><html lang="en"><head><meta charset="utf-8"><script type="module" src="run.js"></script></head></html>');
writeFileSync(join(pages, 'run.js'), `
import init, { Backend } from '/cpu/ddpm-web.js';
window.ready = (async () => {
  await init();
  const backend = await Backend.create(false);
  const model = backend.load(new Uint8Array(await (await fetch('/models/mnist.bpk')).arrayBuffer()));
  window.sample = async (steps) => {
    const run = model.run({ sampler: 'ddim', steps, seed: 0, n: ${Number(n)}, guidance: 3 });
    const started = performance.now();
    for (let i = 0; i < steps; i++) await run.step('none');
    await run.values();
    return (performance.now() - started) / steps;
  };
})();
`);
const server = await serve({ '/': dir, '/profile/': pages, '/models/': join(repo, 'www/models') });
const browser = await launch({ webgpu: false });
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/profile/`);
  await page.evaluate(() => window.ready);
  await page.evaluate(() => window.sample(1)); // warm up
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
  await cdp.send('Profiler.start');
  const ms = await page.evaluate((s) => window.sample(s), Number(steps));
  const { profile } = await cdp.send('Profiler.stop');
  const self = new Map();
  const dt = new Map();
  profile.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  for (const node of profile.nodes) {
    const name = node.callFrame.functionName || `(${node.callFrame.url.split('/').pop() || 'program'})`;
    self.set(name, (self.get(name) ?? 0) + (dt.get(node.id) ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  console.log(`${Number(n)} images, guidance 3: ${ms.toFixed(0)} ms per step on the main thread`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) {
    console.log(`${(100 * us / total).toFixed(1).padStart(5)}%  ${name.slice(0, 140)}`);
  }
} finally {
  await browser.close();
  server.close();
}
