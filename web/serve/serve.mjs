// The static server of `bash web/serve.sh`: sirv serves the built site's files (types, ranges,
// ETags, paths kept inside the folder); this adds what a site of folders needs.
//
//   node web/serve/serve.mjs SITE ADDRESS PORT    (port 0: any free port; the line says which)

import { statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, posix, resolve } from 'node:path';
import sirv from 'sirv';

const [root, address, port] = [resolve(process.argv[2] ?? '.'), process.argv[3] ?? '127.0.0.1', Number(process.argv[4] ?? 8080)];

// dev: each request reads the file system, so a site rebuilt while this runs is what a reload
// gets; with etag, a reload revalidates (304) rather than downloading the models again.
const files = sirv(root, {
  dev: true,
  etag: true,
  // A weights file has no type of its own; say so rather than sending an empty one.
  setHeaders: (response, path) => path.endsWith('.bpk') && response.setHeader('content-type', 'application/octet-stream'),
});

/** Whether `pathname` names a folder of the site (posix.normalize never climbs above "/"). */
function isFolder(pathname) {
  try {
    return statSync(join(root, posix.normalize(decodeURIComponent(pathname)))).isDirectory();
  } catch {
    return false;
  }
}

const server = createServer((request, response) => {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const url = new URL(request.url, 'http://x');
  // The site has no icon; a 404 for the one browsers ask for would be noise in the console.
  if (url.pathname === '/favicon.ico') {
    response.writeHead(204).end();
    return;
  }
  // sirv would serve docs/index.html at /docs, where its relative links miss: send the slash.
  if (!url.pathname.endsWith('/') && isFolder(url.pathname)) {
    response.writeHead(301, { location: `${url.pathname}/${url.search}` }).end();
    return;
  }
  files(request, response, () => {
    console.error(`404 ${request.url}`);
    response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
});
server.once('error', (e) => {
  console.error(`serve.sh: cannot listen on ${address}:${port} (${e.code}); choose another port with --port`);
  process.exit(1);
});
server.listen(port, address, () => {
  const host = address.includes(':') ? `[${address}]` : address;
  console.log(`serving ${process.argv[2]} at http://${host}:${server.address().port}/ (Ctrl-C stops it)`);
});
