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
.buttons { display: flex; flex-wrap: wrap; gap: 4px; }
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

/** The controls for `settings` of a loaded `model` ({ card, info }). */
export function controlsHtml(settings, model) {
  const { info, card } = model;
  const ddimOnly = settings.sampler === 'ddpm' ? ' disabled title="DDIM only: DDPM takes all T steps"' : '';
  const parts = [
    select('sampler', 'Sampler', [['ddim', 'DDIM'], ['ddpm', 'DDPM']], settings.sampler),
    // DDPM runs all T steps with its own variance: steps and η are DDIM's.
    input('steps', 'Steps', settings.steps, `type="number" min="1" max="${info.timesteps}"${ddimOnly}`),
    input('eta', 'η', settings.eta, `type="number" min="0" step="0.1"${ddimOnly}`),
    input('seed', 'Seed', settings.seed, 'type="number" min="0"'),
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
  parts.push(`<div class="buttons wide">
    <button data-action="play">Play</button><button data-action="step">Step</button>
    <button data-action="restart">Restart</button><button data-action="seed">New seed</button>
    <button data-action="download">Download PNG</button></div>`);
  parts.push('<label class="wide">Steps computed<input name="scrub" type="range" min="0" max="0" value="0"></label>');
  return parts.join('');
}
