// The npm package the way documentation sites consume it: packed (web/pack.sh), installed from
// the tarball into a throwaway project, bundled by Vite and run in Chromium.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { build } from 'vite';
import { PARITY, events, launch, maxAbsDiff, openPage, repo, serve, site, tinyModel, waitFor } from './harness.mjs';

let model;
let server;
let browser;
let dist;
let installed;
// The throwaway project (about 80 MB with its node_modules), removed after the tests.
let dir;

before(async () => {
  model = tinyModel();
  dir = mkdtempSync(join(tmpdir(), 'ddpm-bundle-'));
  const tarball = execFileSync('bash', [join(repo, 'web/pack.sh'), site, join(dir, 'packed')], { encoding: 'utf8' }).trim();
  const project = join(dir, 'docs');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'docs', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent', tarball], { cwd: project });
  installed = join(project, 'node_modules', 'ddpm-sampler');
  writeFileSync(join(project, 'main.js'), "import 'ddpm-sampler';\n");
  const p = PARITY;
  writeFileSync(join(project, 'index.html'), `<!doctype html><html lang="en"><head><meta charset="utf-8">
<script type="module" src="/main.js"></script></head><body><h1>Docs</h1>
<ddpm-sampler id="w" model="/fixtures/bars.json" sampler="${p.sampler}" steps="${p.steps}" seed="${p.seed}"
  n="${p.n}" class-label="${p.classLabel}" guidance="${p.guidance}" autoplay></ddpm-sampler></body></html>`);
  dist = join(project, 'dist');
  await build({ root: project, configFile: false, logLevel: 'warn', worker: { format: 'es' }, build: { outDir: dist } });
  server = await serve({ '/': dist, '/fixtures/': model.models });
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  server?.close();
  model?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the packed npm package, bundled by Vite, defines the widget, finds its wasm and worker and matches the CLI', async () => {
  // Vite put the wasm module and the worker among its hashed assets: nothing is left to copy.
  const assets = readdirSync(join(dist, 'assets'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), assets.join(' '));
  assert.ok(assets.some((f) => /worker/.test(f)), assets.join(' '));
  assert.ok(!existsSync(join(dist, 'models')), 'the package holds no models');
  for (const licence of ['LICENSE-MIT', 'LICENSE-APACHE']) assert.ok(existsSync(join(installed, licence)), `the package lacks ${licence}`);
  const { page, problems } = await openPage(browser, `${server.url}/`);
  await waitFor(page, 'w', 'ddpm-done');
  const ready = (await events(page, 'w')).find((e) => e.type === 'ddpm-ready');
  assert.match(ready.detail.backend, /^CPU/);
  const values = await page.evaluate(async () => Array.from(await document.getElementById('w').values()));
  const diff = maxAbsDiff(values, model.cliValues);
  assert.ok(diff < 1e-3, `max |browser − CLI| = ${diff}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the mdBook guide tells a docs site to copy every file of the package', () => {
  // A file left off the list is a module the widget imports and the site then lacks: a blank tag.
  const guide = readFileSync(join(repo, 'www/docs/mdbook.md'), 'utf8');
  const { files } = JSON.parse(readFileSync(join(repo, 'web/npm/package.json'), 'utf8'));
  const named = (f) => (f.startsWith('cpu/') ? guide.includes('`cpu/` folder') : guide.includes(`\`${f}\``));
  // The licence texts come from the repository, not the site.
  assert.deepEqual(files.filter((f) => !f.startsWith('LICENSE-') && !named(f)), []);
});
