// Writes the Noto emoji (Google's set, Apache-2.0) as 64×64 RGBA PNGs into
// `data/emoji/images/<category>/`, one folder per emoji category, the layout `ddpm train --data`
// reads classes from. Every 20th emoji, with all its skin-tone variants (near copies of each
// other), goes to `data/emoji/heldout/<category>/` instead: the held-out split of `ddpm eval`.
// Source: the npm package emoji-datasource-google@16.0.0 (needs npm).
//
//   node data/emoji/fetch.mjs
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = 'emoji-datasource-google@16.0.0';
const here = dirname(fileURLToPath(import.meta.url));
const train = join(here, 'images');
const heldout = join(here, 'heldout');
const tmp = mkdtempSync(join(tmpdir(), 'emoji-'));
try {
  execFileSync('npm', ['pack', '--silent', PACKAGE], { cwd: tmp, stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync('tar', ['xzf', 'emoji-datasource-google-16.0.0.tgz'], { cwd: tmp });
  const pkg = join(tmp, 'package');
  const emoji = JSON.parse(readFileSync(join(pkg, 'emoji.json'), 'utf8'));
  // "Smileys & Emotion" -> "smileys-emotion".
  const slug = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  const counts = { [train]: {}, [heldout]: {} };
  rmSync(train, { recursive: true, force: true });
  rmSync(heldout, { recursive: true, force: true });
  for (const [i, e] of emoji.entries()) {
    const out = i % 20 === 19 ? heldout : train;
    const variants = [e, ...Object.values(e.skin_variations ?? {})];
    for (const v of variants) {
      const source = join(pkg, 'img', 'google', '64', v.image);
      if (!v.has_img_google || !existsSync(source)) continue;
      const folder = join(out, slug(e.category));
      mkdirSync(folder, { recursive: true });
      copyFileSync(source, join(folder, v.image));
      counts[out][slug(e.category)] = (counts[out][slug(e.category)] ?? 0) + 1;
    }
  }
  for (const [out, byCategory] of Object.entries(counts)) {
    const total = Object.values(byCategory).reduce((a, b) => a + b, 0);
    console.log(`${total} images in ${Object.keys(byCategory).length} categories under ${out}`);
    for (const [name, n] of Object.entries(byCategory).sort()) console.log(`  ${name}: ${n}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
