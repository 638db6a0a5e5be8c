// The widget's looks: its style sheet (adopted by the shadow root, so no inline style is needed
// under a strict Content-Security-Policy) and the controls' markup.

export const CSS = `
:host { display: block; max-width: 32rem; font: 14px/1.4 system-ui, sans-serif; color: #222; }
:host([hidden]) { display: none; }
.frame { border: 1px solid #ccc; border-radius: 6px; padding: 8px; background: #fafafa; }
canvas { display: block; width: 100%; height: auto; image-rendering: pixelated; background: #202020; }
.status { margin-top: 4px; font-size: 12px; color: #555; min-height: 1.4em; }
.error { margin-top: 4px; padding: 6px; border-radius: 4px; background: #fde8e8; color: #8a1010; }
.controls { display: grid; grid-template-columns: repeat(auto-fill, minmax(7.5rem, 1fr)); gap: 6px; margin-top: 6px; }
.controls label { display: flex; flex-direction: column; font-size: 12px; color: #444; }
.controls input, .controls select, .controls button { font: inherit; }
.controls .wide { grid-column: 1 / -1; }
.buttons { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.buttons input[type=range] { width: 6rem; }
button[aria-pressed=true] { font-weight: 600; outline: 2px solid #4a6fd1; }
canvas.drawing, canvas.picking { touch-action: none; cursor: crosshair; }
canvas.picking { cursor: pointer; }
@media (prefers-reduced-motion: reduce) { * { transition: none !important; } }
`;

const escape = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function select(attr, label, options, current) {
  const items = options
    .map(([value, text]) => `<option value="${escape(value)}"${String(value) === String(current) ? ' selected' : ''}>${escape(text)}</option>`)
    .join('');
  return `<label>${label}<select data-attr="${attr}">${items}</select></label>`;
}

function input(attr, label, value, extra) {
  return `<label>${label}<input data-attr="${attr}" value="${escape(value)}" ${extra}></label>`;
}

const MODES = [['sample', 'Sample from noise'], ['finish', 'Finish a drawing'], ['fill', 'Fill a masked part']];

// The draw modes' tools: brush and eraser, their size, clear, an image file, the strength of
// "finish it", and the button that runs from the pad (or goes back to it after a run).
export function drawTools(settings, model, draw) {
  const fill = settings.mode === 'fill';
  // After a run from the pad the strength stays at hand: a new one runs the same drawing again.
  const strength = fill ? '' : `<label>Strength <input data-attr="strength" type="range" min="0" max="1" step="0.05" value="${escape(settings.strength)}"
    aria-valuetext="${escape(settings.strength)}"> ${escape(settings.strength)}</label>`;
  if (!draw.drawing) {
    return `<div class="buttons wide">${strength}<button data-action="draw">${fill ? 'Paint another mask' : 'Draw again'}</button></div>`;
  }
  const colour = !fill && model.info.channels === 3
    ? `<label>Colour <input name="color" type="color" value="${escape(draw.color)}"></label>` : '';
  // While the grid is shown to pick from, its images can also be picked by number.
  const pick = !fill || !draw.canPick ? ''
    : draw.picking ? `<label>Image (1–${draw.picking}) <input name="pick" type="number" min="1" max="${draw.picking}" value="1"></label>
      <button data-action="use">Use this image</button>`
      : '<button data-action="pick">Pick a generated image</button>';
  const run = fill ? 'Fill the masked part' : 'Finish it';
  return `<div class="buttons wide" role="group" aria-label="drawing">
    <button data-action="brush" aria-pressed="${!draw.erasing}">${fill ? 'Mask brush' : 'Brush'}</button>
    <button data-action="eraser" aria-pressed="${draw.erasing}">Eraser</button>
    <label>Size <input name="brush" type="range" min="1" max="8" step="0.5" value="${escape(draw.brush)}"></label>
    ${colour}<button data-action="clear">${fill ? 'Clear the mask' : 'Clear'}</button></div>
    <div class="buttons wide"><label>Image… <input name="file" type="file" accept="image/*"></label>${pick}</div>
    <div class="buttons wide">${strength}<button data-action="run">${run}</button></div>`;
}

/**
 * The controls for `settings` of a loaded `model` ({ card, info }); `draw` is the draw modes'
 * state ({ drawing, erasing, brush, color, canPick, picking: the images to pick from or 0 }).
 */
export function controlsHtml(settings, model, draw) {
  const { info, card } = model;
  const ddimOnly = settings.sampler === 'ddpm' ? ' disabled title="DDIM only: DDPM takes all T steps"' : '';
  const parts = [
    select('sampler', 'Sampler', [['ddim', 'DDIM'], ['ddpm', 'DDPM']], settings.sampler),
    // DDPM runs all T steps with its own variance: steps and η are DDIM's.
    input('steps', 'Steps', settings.steps, `type="number" min="1" max="${info.timesteps}"${ddimOnly}`),
    input('eta', 'η', settings.eta, `type="number" min="0" step="0.1"${ddimOnly}`),
    input('seed', 'Seed', settings.seed, `type="number" min="0"${settings.interpolate && settings.mode === 'sample' ? ' disabled title="the two seeds of “Between seeds” are used"' : ''}`),
  ];
  if (info.numClasses) {
    const names = card.class_names?.length === info.numClasses ? card.class_names : null;
    const classes = [['mixed', 'every class'], ['none', 'none (unconditional)']];
    for (let k = 0; k < info.numClasses; k++) classes.push([k, names ? names[k] : `class ${k}`]);
    parts.push(select('class-label', 'Class', classes, settings.class));
    const unguided = settings.class === 'none' ? ' disabled title="no class to guide towards"' : '';
    parts.push(input('guidance', 'Guidance', settings.guidance, `type="number" step="0.5"${unguided}`));
  }
  parts.push(select('view', 'Show', [['x', 'x_t'], ['x0', 'predicted x₀']], settings.view));
  parts.push(select('mode', 'Start from', MODES, settings.mode));
  if (settings.mode === 'sample') {
    const seeds = settings.interpolate ? settings.interpolate.join(',') : '';
    const interpolable = settings.sampler === 'ddim' && settings.eta === 0 ? '' : ' disabled title="DDIM with η = 0 only"';
    parts.push(input('interpolate', 'Between seeds', seeds, `placeholder="A,B"${interpolable}`));
  } else {
    parts.push(drawTools(settings, model, draw));
  }
  if (draw.drawing) return parts.join('');
  parts.push(`<div class="buttons wide">
    <button data-action="play">Play</button><button data-action="step">Step</button>
    <button data-action="restart">Restart</button><button data-action="seed">New seed</button>
    <button data-action="download">Download PNG</button></div>`);
  parts.push('<label class="wide">Steps computed<input name="scrub" type="range" min="0" max="0" value="0"></label>');
  return parts.join('');
}
