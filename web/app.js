// The demo page: the model list, and the widget's settings mirrored in the address bar so that
// a link reproduces the same images.

const sampler = document.getElementById('sampler');
const picker = document.getElementById('model');
// URL parameter -> widget attribute (`class` is HTML's own attribute, hence `class-label`).
const SHARED = {
  model: 'model', sampler: 'sampler', steps: 'steps', eta: 'eta', seed: 'seed', n: 'n',
  class: 'class-label', guidance: 'guidance', view: 'view', backend: 'backend', workers: 'workers',
  mode: 'mode', strength: 'strength', interpolate: 'interpolate', 'gpu-kernels': 'gpu-kernels',
};

// Settings from the URL win over the page's defaults; the widget checks them.
const query = new URLSearchParams(location.search);
for (const [param, attr] of Object.entries(SHARED)) {
  if (query.has(param)) sampler.setAttribute(attr, query.get(param));
}

sampler.addEventListener('ddpm-settings', () => {
  const params = new URLSearchParams();
  for (const [param, attr] of Object.entries(SHARED)) {
    if (sampler.hasAttribute(attr)) params.set(param, sampler.getAttribute(attr));
  }
  history.replaceState(null, '', `?${params}`);
});

// Every shipped model, from models/index.json.
try {
  const models = await (await fetch('models/index.json')).json();
  for (const { card, title } of models) {
    const option = new Option(title, `models/${card}`);
    option.selected = sampler.getAttribute('model') === `models/${card}`;
    picker.add(option);
  }
  picker.addEventListener('change', () => sampler.setAttribute('model', picker.value));
} catch {
  picker.disabled = true;
}

// The sum of a card's `key` and that of every run it was warm-started from; null if one lacks it.
function overHistory(card, key) {
  let total = 0;
  for (let link = card; link; link = link.initialised_from) {
    if (!Number.isFinite(link[key])) return null;
    total += link[key];
  }
  return total;
}

// Where the model came from, from its card: when a run starts, or when the pad of a draw mode
// is shown (before any run).
const showProvenance = ({ detail: { card } }) => {
  // A hand-written card may lack any of these: show what it has.
  const parts = [];
  if (Number.isFinite(card.parameters)) parts.push(`${card.parameters.toLocaleString('en')} parameters`);
  if (Number.isFinite(card.bytes)) parts.push(`${(card.bytes / 1e6).toFixed(1)} MB (${card.precision ?? '?'})`);
  // A warm-started run (`ddpm train --init`) counts the steps and time of the weights it began from.
  const steps = overHistory(card, 'steps_trained');
  const seconds = overHistory(card, 'training_seconds');
  if (steps) parts.push(`${steps.toLocaleString('en')} training steps`);
  if (seconds) parts.push(`${(seconds / 60).toFixed(0)} min of training`);
  if (card.dataset) parts.push(`data: ${card.dataset}`);
  const imported = card.imported_from;
  if (imported) parts.push(`imported from ${imported.file}${imported.lucidrains_version ? ` (lucidrains ${imported.lucidrains_version})` : ''}`);
  // What `ddpm eval` measured (on held-out MNIST): the best class accuracy of these weights.
  const rows = (card.evaluation?.samples ?? []).filter((r) => r.weights === (card.averaging ?? 'ema') && r.accuracy != null);
  if (rows.length) {
    const best = rows.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
    parts.push(`${(100 * best.accuracy).toFixed(1)}% drawn as the digit asked (${best.sampler}, held-out classifier)`);
  }
  document.getElementById('provenance').textContent = parts.join(' · ');
};
sampler.addEventListener('ddpm-ready', showProvenance);
sampler.addEventListener('ddpm-draw', showProvenance);
