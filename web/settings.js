// The widget's attributes, read and checked at the edge: a bad value becomes one message naming
// the attribute, shown inside the widget.

export const ATTRIBUTES = [
  'model', 'sampler', 'steps', 'eta', 'seed', 'n', 'class-label', 'guidance', 'view', 'backend',
  'draw-every', 'columns', 'workers', 'autoplay', 'controls', 'mode', 'strength', 'resample-jump',
  'resample-repeats', 'interpolate', 'image', 'mask', 'gpu-kernels',
];

const MAX_SEED = Number.MAX_SAFE_INTEGER;

function integer(name, text, min, max) {
  if (!/^\s*\d+\s*$/.test(text)) throw new Error(`${name}="${text}": must be a whole number`);
  const value = Number(text);
  if (value < min || value > max) throw new Error(`${name}="${text}": must be between ${min} and ${max}`);
  return value;
}

function number(name, text, min) {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min) {
    throw new Error(`${name}="${text}": must be a number${min > -Infinity ? ` ≥ ${min}` : ''}`);
  }
  return value;
}

function oneOf(name, text, allowed) {
  if (!allowed.includes(text)) throw new Error(`${name}="${text}": must be one of ${allowed.join(', ')}`);
  return text;
}

// `auto` (see pace.js) or a whole number k: draw every k-th step while playing.
function drawEvery(text) {
  if (text === 'auto') return 'auto';
  if (!/^\d+$/.test(text)) throw new Error(`draw-every="${text}": must be "auto" or a whole number`);
  return integer('draw-every', text, 1, 100000);
}

function fraction(name, text) {
  const value = number(name, text, 0);
  if (value > 1) throw new Error(`${name}="${text}": must be between 0 and 1`);
  return value;
}

// "A,B": two seeds, as the CLI's --interpolate.
function seeds(text) {
  const parts = text.split(',');
  if (parts.length !== 2) throw new Error(`interpolate="${text}": must be two seeds, e.g. "3,17"`);
  return parts.map((part) => integer('interpolate', part, 0, MAX_SEED));
}

function workersOf(text) {
  return text === 'auto' ? 'auto' : integer('workers', text, 1, 16);
}

function url(element, name, text) {
  try {
    return new URL(text, element.ownerDocument.baseURI).href;
  } catch {
    throw new Error(`${name}="${text}": not a URL`);
  }
}

/** The settings of `element`, or an Error naming the first bad attribute. */
export function readSettings(element) {
  const get = (name, fallback) => element.getAttribute(name) ?? fallback;
  const model = get('model', '').trim();
  if (!model) throw new Error('model: the attribute is required (the URL of a model card JSON)');
  const modelUrl = url(element, 'model', model);
  const optionalUrl = (name) => (get(name, '').trim() ? url(element, name, get(name).trim()) : null);
  // `class` is HTML's own attribute (CSS classes), so the diffusion class is `class-label`.
  const classText = get('class-label', 'mixed').trim();
  const columns = element.getAttribute('columns');
  return {
    model: modelUrl,
    sampler: oneOf('sampler', get('sampler', 'ddim'), ['ddim', 'ddpm']),
    steps: integer('steps', get('steps', '50'), 1, 100000),
    eta: number('eta', get('eta', '0'), 0),
    seed: integer('seed', get('seed', '0'), 0, MAX_SEED),
    n: integer('n', get('n', '16'), 1, 64),
    // A class number past the model's classes is refused by the model, naming its count.
    class: /^\d+$/.test(classText) ? integer('class-label', classText, 0, 1_000_000) : oneOf('class-label', classText, ['mixed', 'none']),
    guidance: number('guidance', get('guidance', '1'), -Infinity),
    view: oneOf('view', get('view', 'x'), ['x', 'x0']),
    backend: oneOf('backend', get('backend', 'auto'), ['auto', 'cpu']),
    // On WebGPU: the core's fused kernels instead of burn's chains of small ones.
    gpuKernels: oneOf('gpu-kernels', get('gpu-kernels', 'on').trim(), ['on', 'off']) === 'on',
    drawEvery: drawEvery(get('draw-every', 'auto').trim()),
    columns: columns === null ? null : integer('columns', columns, 1, 64),
    // CPU workers sharing each run's images ('auto': one per core, at most 8).
    workers: workersOf(get('workers', 'auto').trim()),
    // What a run starts from: noise ('sample'), the pad's drawing ('finish', SDEdit) or the
    // pad's image and mask ('fill', RePaint).
    mode: oneOf('mode', get('mode', 'sample').trim(), ['sample', 'finish', 'fill']),
    strength: fraction('strength', get('strength', '0.6')),
    resampleJump: integer('resample-jump', get('resample-jump', '1'), 1, 1000),
    resampleRepeats: integer('resample-repeats', get('resample-repeats', '1'), 1, 100),
    // The pad's image and mask (URLs), as setImage() and setMask() take them.
    image: optionalUrl('image'),
    mask: optionalUrl('mask'),
    interpolate: element.hasAttribute('interpolate') && get('interpolate').trim() !== '' ? seeds(get('interpolate')) : null,
    autoplay: element.hasAttribute('autoplay'),
    controls: element.hasAttribute('controls'),
  };
}

/**
 * What the sampler in the worker takes (the wasm crate's `RunOptions`); `pad` is `{ image,
 * mask }` (the pad's values) for a run of the draw modes.
 */
export function runOptions(settings, pad = null) {
  const options = {
    sampler: settings.sampler,
    steps: settings.steps,
    eta: settings.eta,
    seed: settings.seed,
    n: settings.n,
    class: settings.class,
    guidance: settings.guidance,
  };
  if (settings.columns !== null) options.columns = settings.columns;
  if (pad && settings.mode === 'finish') Object.assign(options, { init: pad.image, strength: settings.strength });
  if (pad && settings.mode === 'fill') {
    Object.assign(options, { init: pad.image, mask: pad.mask, resampleJump: settings.resampleJump, resampleRepeats: settings.resampleRepeats });
  }
  if (!pad && settings.interpolate) {
    options.interpolate = settings.interpolate;
    // An interpolation is a strip, from one seed's image to the other's.
    options.columns ??= settings.n;
  }
  return options;
}

/** A random seed for the "new seed" button. */
export function randomSeed() {
  return Math.floor(Math.random() * 2 ** 31);
}
