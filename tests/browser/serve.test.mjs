// The server of `bash web/serve.sh` (web/serve/serve.mjs) on the built site: what the page,
// its workers and the documentation example ask it for, and what it must refuse.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { repo, site } from './harness.mjs';

let server;
let url;

before(async () => {
  server = spawn('node', [join(repo, 'web/serve/serve.mjs'), site, '127.0.0.1', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(server.stdout, 'data');
  url = String(line).match(/at (http:\S+?)\/ /)[1];
});

after(() => server?.kill());

const get = (path, init) => fetch(url + path, { redirect: 'manual', ...init });

/** The status for `path` sent as it is (fetch would resolve its dot segments first). */
async function rawStatus(path) {
  const sent = request(url + '/', { path }).end();
  const [response] = await once(sent, 'response');
  response.resume();
  return response.statusCode;
}

test('the page, its wasm builds and a model, with their types and exact bytes', async () => {
  const page = await get('/');
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('content-type'), 'text/html;charset=utf-8');
  assert.equal(await page.text(), readFileSync(join(site, 'index.html'), 'utf8'));
  for (const wasm of ['/ddpm-web_bg.wasm', '/cpu/ddpm-web_bg.wasm']) {
    const response = await get(wasm);
    assert.equal(response.status, 200, wasm);
    // WebAssembly.compileStreaming refuses any other type.
    assert.equal(response.headers.get('content-type'), 'application/wasm', wasm);
  }
  const [entry] = JSON.parse(await (await get('/models/index.json')).text());
  const card = JSON.parse(await (await get(`/models/${entry.card}`)).text());
  const weights = await get(`/models/${card.weights}`);
  assert.equal(weights.headers.get('content-type'), 'application/octet-stream');
  assert.deepEqual(Buffer.from(await weights.arrayBuffer()), readFileSync(join(site, 'models', card.weights)));
});

test('a folder named without its slash is sent to it, so its relative links resolve', async () => {
  const bare = await get('/docs?x=1');
  assert.equal(bare.status, 301);
  assert.equal(bare.headers.get('location'), '/docs/?x=1');
  const docs = await get('/docs/');
  assert.equal(docs.status, 200);
  assert.match(await docs.text(), /href="docs\.css"/);
});

test('a missing file, a path out of the site and other methods are refused', async () => {
  assert.equal((await get('/models/nope.bpk')).status, 404);
  // No fallback to index.html: a wrong model URL must fail as one.
  assert.equal((await get('/nope')).status, 404);
  for (const out of ['/../../Cargo.toml', '/..%2f..%2fCargo.toml', '/%2e%2e/%2e%2e/Cargo.toml', '/../../web']) {
    assert.equal(await rawStatus(out), 404, out);
  }
  const post = await get('/', { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  assert.equal((await get('/favicon.ico')).status, 204);
});
