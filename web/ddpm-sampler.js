// <ddpm-sampler>: a diffusion model drawing every denoising step on a canvas.
//
//   <script type="module" src="ddpm-sampler.js"></script>
//   <ddpm-sampler model="models/mnist.json" sampler="ddim" steps="50" seed="42" autoplay controls>
//
// Every widget on a page shares the page's engine (one worker on WebGPU, a pool of workers on
// the CPU; engine.js); a widget starts when it scrolls into view; bad attributes show a message
// inside it; its DOM lives in a shadow root. Events: ddpm-progress (while loading),
// ddpm-ready, ddpm-step, ddpm-done, ddpm-error, ddpm-settings, ddpm-draw (the pad is shown).
//
// Modes (`mode`): 'sample' runs from noise; 'finish' and 'fill' show a drawing pad (pad.js) and
// run from it when asked ("Finish it", "Fill the masked part", `restart()`): SDEdit from the
// drawing, RePaint of the image's masked part.

import { defaultWorkers, engine } from './engine.js';
import { Pace } from './pace.js';
import { DrawModes } from './draw.js';
import { ATTRIBUTES, randomSeed, readSettings, runOptions } from './settings.js';
import { CSS, controlsHtml, drawTools } from './view.js';

let nextRunId = 1;
const MAX_FRAMES = 200;
const IN_PLACE = ['controls', 'autoplay', 'draw-every'];
const sheet = new CSSStyleSheet();
sheet.replaceSync(CSS);
const reducedMotion = () => globalThis.matchMedia?.('(prefers-reduced-motion: reduce)').matches;

export class DdpmSampler extends HTMLElement {
  static observedAttributes = ATTRIBUTES;

  #root;
  #settings = null;
  #engine = null; // held (engine.js counts the widgets that hold it)
  #heldModel = null; // { url, release } of the model held in it
  #model = null; // { card, info }
  #runId = `run-${nextRunId++}`;
  #total = 0;
  #done = 0;
  #started = false; // a run has started (it may have no steps: SDEdit at strength 0)
  #frames = []; // ImageData of each drawn step, for the scrubber
  #pace = new Pace(1);
  #playing = false;
  #queue = Promise.resolve(); // worker calls of this widget, one after another
  #visible = false;
  #generation = 0; // bumps on every restart; stale loops stop
  #columns = 0; // of the run's grid
  #modes = new DrawModes({
    canvas: () => this.#root.querySelector('canvas'),
    settings: () => this.#settings,
    status: (text) => this.#statusText(text),
    backend: () => this.#backendName,
    controls: () => this.#renderControls(),
    emit: (name, detail) => this.#emit(name, detail),
    fail: (e) => this.#fail(e),
    run: () => this.restart(),
    back: () => this.#backToPad(),
    setImage: (file) => this.setImage(file),
  });

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
    this.#root.adoptedStyleSheets = [sheet];
    // The status changes with every step, so it is not a live region (a screen reader would
    // read each one); the canvas names what it shows instead.
    this.#root.innerHTML = `<div class="frame"><canvas part="canvas" role="img" aria-label="no images yet"></canvas>
      <div class="status" part="status"></div>
      <div class="error" part="error" role="alert" hidden></div><div class="controls"></div></div>`;
    this.#modes.attach(this.#root.querySelector('canvas'));
  }

  connectedCallback() {
    if (this.#observer) {
      // Moved elsewhere in the page (disconnected, then connected again): start again, or wait
      // to be seen again.
      if (this.#visible) this.#restart();
      else this.#observer.observe(this);
      return;
    }
    // Bad attributes are reported at once, even before the widget scrolls into view.
    try {
      readSettings(this);
    } catch (e) {
      this.#fail(e);
    }
    this.#observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !this.#visible) {
        this.#visible = true;
        this.#observer.disconnect();
        this.#restart();
      }
    });
    this.#observer.observe(this);
  }

  #observer = null;

  // Removed from the page: stop, free the run on the model thread, let go of the engine and stop
  // listening to it. One never seen stops being watched (the observer would keep it alive).
  disconnectedCallback() {
    if (!this.#visible) this.#observer?.disconnect();
    this.#playing = false;
    clearTimeout(this.#debounce);
    this.#generation++; // a restart or step in flight ends without drawing
    this.#total = 0;
    this.#done = 0;
    this.#started = false;
    this.#listening?.removeEventListener('device-lost', this.#onDeviceLost);
    this.#listening?.removeEventListener('progress', this.#onProgress);
    this.#listening = null;
    this.#letGo();
  }

  // Drops this widget's run on its engine, then lets go of the model and the engine: the last
  // widget to let go of them frees them (web/engine.js). A start still in flight there is
  // dropped too, by the engine, when it ends.
  #letGo() {
    const runner = this.#engine;
    const model = this.#heldModel;
    this.#engine = null;
    this.#heldModel = null;
    if (!runner) return;
    runner.call('drop', { runId: this.#runId }).catch(() => {}).then(() => {
      model?.release();
      runner.release();
    });
  }

  attributeChangedCallback(name, before, after) {
    if (!this.#visible || !this.isConnected || before === after) return;
    // A new mode or model starts at its pad, not by running the old pad again.
    if (name === 'mode' || name === 'model') this.#modes.padRun = false;
    this.#changed.add(name);
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      const changed = [...this.#changed];
      this.#changed.clear();
      if (this.#started && changed.every((n) => IN_PLACE.includes(n))) this.#applyInPlace();
      else this.#restart();
    }, 0);
  }

  #debounce = 0;
  #changed = new Set();

  // `controls`, `autoplay` and `draw-every` change how the run is shown and driven, not its
  // images: they apply to the run in progress instead of starting it over.
  #applyInPlace() {
    let s;
    try {
      s = readSettings(this);
    } catch (e) {
      // Paused by the bad value; playing again once it is mended.
      this.#resume ||= this.#playing;
      this.#fail(e);
      return;
    }
    const resume = this.#resume;
    this.#resume = false;
    this.#error(null);
    const was = this.#settings;
    this.#settings = s;
    if (s.drawEvery !== was.drawEvery) this.#pace = new Pace(s.drawEvery);
    if (s.controls !== was.controls) this.#renderControls();
    this.#emit('ddpm-settings', { ...s });
    if ((s.autoplay && !was.autoplay) || resume) this.play();
  }

  #resume = false;

  // --- the JS API -----------------------------------------------------------------------

  /** Which backend runs the model, e.g. "WebGPU (google swiftshader)" or "CPU (…)". */
  get backend() {
    return this.#backendName ?? null;
  }

  #backendName = null;
  #gpu = false;

  /** Steps done and in all. */
  get progress() {
    return { done: this.#done, total: this.#total };
  }

  /** Runs denoising steps until the end (or `pause()`). */
  play() {
    if (this.#playing || !this.#total) return;
    this.#playing = true;
    this.#syncButtons();
    const generation = this.#generation;
    const loop = async () => {
      while (this.#playing && generation === this.#generation && this.#done < this.#total) {
        await this.step();
      }
      if (generation === this.#generation) this.#playing = false;
      this.#syncButtons();
    };
    loop();
  }

  pause() {
    this.#playing = false;
    this.#syncButtons();
  }

  /** One denoising step; while playing, draws it unless reduced motion or `draw-every` skips it. */
  step() {
    const generation = this.#generation;
    this.#queue = this.#queue.then(async () => {
      if (generation !== this.#generation || this.#done >= this.#total) return;
      const next = this.#done + 1;
      const s = this.#settings;
      // The last step and a step asked for by hand are always drawn; while playing, reduced
      // motion draws nothing else and `draw-every` picks the steps (see pace.js).
      const playing = this.#playing;
      const draw = next === this.#total || !playing || (!reducedMotion() && this.#pace.due(next));
      // The first step on WebGPU compiles every kernel, which can take a while.
      if (next === 1 && this.#gpu) {
        this.#statusText(`preparing the GPU kernels (first step)… · ${this.#backendName}`);
        this.#emit('ddpm-progress', { stage: 'tuning' });
      }
      const runner = this.#engine;
      try {
        const frame = await runner.call('step', { runId: this.#runId, view: draw ? s.view : 'none' });
        if (generation !== this.#generation || frame === null) return;
        this.#done = frame.step;
        // A step in flight when play was paused (e.g. by the scrubber) keeps its frame for the
        // scrubber but does not draw over what is shown.
        const show = !(playing && !this.#playing);
        if (draw) {
          this.#draw(frame, show);
          this.#pace.drawn(frame.step, performance.now(), playing);
        }
        // A step that draws nothing may only have queued its work on the GPU; the time per
        // step measured between drawn steps is the one to show.
        if (show) this.#status(this.#pace.msPerStep ?? frame.ms);
        this.#emit('ddpm-step', { step: frame.step, total: this.#total, ms: frame.ms });
        if (this.#done === this.#total) {
          this.#syncButtons();
          await this.#finished(runner, generation);
        }
      } catch (e) {
        // A lost device restarts the widget on the CPU (see #onDeviceLost).
        if (!e?.deviceLost && generation === this.#generation) this.#fail(e);
      }
    });
    return this.#queue;
  }

  // The run's last step is done (or it had none): its images are kept for 'fill' to pick one.
  async #finished(runner, generation) {
    const values = await runner.call('values', { runId: this.#runId });
    if (generation !== this.#generation) return;
    this.#modes.keepGrid({ values, n: this.#settings.n, columns: this.#columns, image: this.#frames[this.#total] });
    this.#emit('ddpm-done', { total: this.#total });
  }

  /** Starts over with the current settings; in the draw modes, runs from the pad. */
  restart() {
    return this.#restart({ fromPad: true });
  }

  /** The current images as raw values (`[n, c, h, w]`, a Float32Array): x_t during a run, the
   * final images in [−1, 1] after its last step. */
  async values() {
    await this.#queue;
    if (!this.#started || !this.#engine) throw new Error('ddpm-sampler: no images yet (the widget has not started)');
    return this.#engine.call('values', { runId: this.#runId });
  }

  /**
   * The pad's image (the drawing to finish, or the image to fill in): a File/Blob, URL,
   * ImageBitmap, ImageData, <img> or <canvas>, fitted to the model's size as `ddpm sample
   * --init` fits it. Shows it when the pad is shown.
   */
  setImage(source) {
    return this.#modes.applySource(source, (pad, bitmap) => {
      pad.setImage(bitmap);
      this.#modes.picking = false;
    });
  }

  /** The mask of 'fill' mode, as `ddpm sample --mask` takes it: light keeps, dark is filled in. */
  setMask(source) {
    return this.#modes.applySource(source, (pad, bitmap) => pad.setMask(bitmap));
  }

  /** What a run from the pad starts from: `{ image, mask }`, `c·h·w` values in [−1, 1] and
   * `h·w` values (1 keeps, 0 is filled in). */
  async padValues() {
    const pad = await this.#modes.padReady();
    return { image: pad.image(), mask: pad.keep() };
  }

  /** Images between the starting noise of seeds `a` and `b` (DDIM, η = 0), as a strip. */
  interpolate(a, b) {
    this.setAttribute('mode', 'sample');
    this.setAttribute('interpolate', `${a},${b}`);
  }

  /** Saves the grid on the canvas as a PNG. */
  download() {
    const canvas = this.#root.querySelector('canvas');
    canvas.toBlob((blob) => {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `ddpm-seed${this.#settings?.seed ?? 0}-step${this.#shown}.png`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    }, 'image/png');
  }

  // --- internals ------------------------------------------------------------------------

  async #restart({ fromPad = false } = {}) {
    const generation = ++this.#generation;
    this.#playing = false;
    // Nothing to play or step until the new run has started.
    this.#total = 0;
    this.#done = 0;
    this.#started = false;
    this.#resume = false;
    this.#syncButtons();
    this.#error(null);
    try {
      this.#settings = readSettings(this);
    } catch (e) {
      this.#fail(e);
      return;
    }
    this.#emit('ddpm-settings', { ...this.#settings });
    const s = this.#settings;
    try {
      const next = await engine(s.backend, s.workers === 'auto' ? defaultWorkers() : s.workers, s.gpuKernels);
      if (generation !== this.#generation) return;
      // A run on another engine (another backend or pool, or a new one after the old one
      // failed) is not this widget's any more, nor is that engine.
      if (next !== this.#engine) {
        next.retain();
        this.#letGo();
        this.#engine = next;
      }
      if (this.#listening !== this.#engine) {
        this.#listening?.removeEventListener('device-lost', this.#onDeviceLost);
        this.#listening?.removeEventListener('progress', this.#onProgress);
        this.#engine.addEventListener('device-lost', this.#onDeviceLost);
        this.#engine.addEventListener('progress', this.#onProgress);
        this.#listening = this.#engine;
      }
      this.#statusText('starting the model…');
      const runner = this.#engine;
      // The model code and the weights download at the same time; the backend is read again
      // once the model is loaded, whose check of the GPU kernels may have renamed it.
      const [, model] = await Promise.all([runner.backend, runner.model(s.model)]);
      const backend = await runner.backend;
      const backendName = backend.gpu || backend.workers === 1 ? backend.name : `${backend.name} · ${backend.workers} workers`;
      if (generation !== this.#generation) return;
      if (this.#heldModel?.url !== s.model) {
        const held = { url: s.model, release: runner.holdModel(s.model) };
        this.#heldModel?.release();
        this.#heldModel = held;
      }
      // Kept only now: a restart that a newer one overtook changes nothing.
      this.#backendName = backendName;
      this.#gpu = backend.gpu;
      this.#modes.setModel(model);
      this.#model = model;
      await this.#modes.loadSources(s, (name) => this.getAttribute(name), () => generation !== this.#generation);
      if (generation !== this.#generation) return;
      // The draw modes show the pad until asked to run from it (or at once with `autoplay` and
      // an `image`, and a `mask` to fill); after a run from the pad, a change of settings runs
      // it again.
      const { drawing, padRun } = this.#modes;
      const auto = s.autoplay && s.image !== null && (s.mode === 'finish' || s.mask !== null) && !drawing;
      const fromPadNow = s.mode !== 'sample' && (fromPad || auto || (padRun && !drawing));
      if (s.mode !== 'sample' && !fromPadNow) {
        this.#modes.enter();
        return;
      }
      const pad = fromPadNow ? this.#modes.options(s.mode) : null;
      // Overtaken by a drop (removed from the page, moved to another engine) while it starts,
      // the engine drops this start itself.
      const { total, columns } = await runner.call('start', { key: s.model, runId: this.#runId, options: runOptions(s, pad) });
      if (generation !== this.#generation) return;
      Object.assign(this.#modes, { padRun: fromPadNow, drawing: false, picking: false });
      this.#columns = columns;
      this.#total = total;
      this.#done = 0;
      this.#started = true;
      this.#pace = new Pace(s.drawEvery);
      this.#frames = [];
      this.#shown = 0;
      this.#renderControls();
      this.#status(null);
      this.#emit('ddpm-ready', { backend: this.#backendName, workers: backend.workers, model: this.#model.info, card: this.#model.card, total });
      if (total === 0) {
        // Nothing to denoise (SDEdit at a strength below one step): the start is the result.
        const frame = await runner.call('frame', { runId: this.#runId });
        if (generation !== this.#generation) return;
        this.#draw(frame, true);
        this.#statusText(`no step at strength ${s.strength}: the drawing as it is · ${this.#backendName}`);
        await this.#finished(runner, generation);
      } else if (s.autoplay) this.play();
    } catch (e) {
      if (generation !== this.#generation) return;
      this.#fail(e);
      if (!this.#model) this.#modes.noModel(e);
    }
  }

  #listening = null;

  // Back to the pad after a run from it: the run stops.
  #backToPad() {
    this.#generation++;
    this.#playing = false;
    this.#total = 0;
    this.#done = 0;
    this.#started = false;
    this.#modes.padRun = false;
    this.#modes.enter();
  }

  // What the engine is loading, shown until the run is ready (and sent as ddpm-progress): the
  // model code's and the weights' bytes, compiling, starting the workers, checking the GPU
  // kernels. Progress of a model this widget does not show is not its business.
  #onProgress = ({ detail }) => {
    if (this.#started || (detail.model && detail.model !== this.#settings?.model)) return;
    const mb = (bytes) => (bytes / 1e6).toFixed(1);
    const bytes = detail.total ? `${mb(detail.loaded)} of ${mb(detail.total)} MB` : `${mb(detail.loaded ?? 0)} MB`;
    const text = {
      code: `downloading the model code… ${bytes}`,
      compiling: 'compiling the model code…',
      weights: `downloading the weights… ${bytes}`,
      starting: 'starting the model…',
      checking: 'checking the GPU kernels on this adapter…',
    }[detail.stage];
    if (text) this.#statusText(text);
    this.#emit('ddpm-progress', { ...detail });
  };

  // The WebGPU device was lost: the engine now runs on the CPU; start this widget's run again
  // there (same settings, so the same images within float rounding) and keep playing if it was.
  #onDeviceLost = () => {
    const resume = this.#playing;
    this.#restart().then(() => resume && this.play());
  };

  #draw(frame, show) {
    const image = new ImageData(frame.pixels, frame.width, frame.height);
    this.#frames[frame.step] = image;
    this.#thinFrames();
    const scrub = this.#root.querySelector('[name=scrub]');
    if (scrub) scrub.max = String(frame.step);
    if (!show) return;
    const canvas = this.#root.querySelector('canvas');
    canvas.className = '';
    canvas.width = frame.width;
    canvas.height = frame.height;
    this.#show(image, frame.step);
    if (scrub) scrub.value = String(frame.step);
  }

  // Puts a drawn step on the canvas (the PNG download is named after it).
  #show(image, step) {
    const canvas = this.#root.querySelector('canvas');
    canvas.getContext('2d').putImageData(image, 0, 0);
    canvas.setAttribute('aria-label', `${this.#settings.n} generated images, denoising step ${step} of ${this.#total}`);
    this.#shown = step;
  }

  #shown = 0;

  // The scrubber keeps at most MAX_FRAMES drawn steps (a DDPM run of 64 images draws 1000 of
  // about 234 KB each): past that, every other kept step goes, the newest always stays.
  #thinFrames() {
    const kept = [];
    this.#frames.forEach((_, step) => kept.push(step));
    if (kept.length <= MAX_FRAMES) return;
    kept.slice(0, -1).forEach((step, i) => {
      if (i % 2 === 1) delete this.#frames[step];
    });
  }

  #scrubTo(step) {
    // The nearest drawn step at or before the one asked for (not every step is drawn or kept).
    const shown = this.#frames.slice(0, step + 1).findLastIndex(Boolean);
    if (shown < 0) return;
    this.pause();
    this.#show(this.#frames[shown], shown);
    this.#statusText(`showing step ${shown} of ${this.#total} · ${this.#backendName}`);
  }

  #status(ms) {
    const timing = ms === null ? '' : ` · ${ms.toFixed(0)} ms/step`;
    this.#statusText(`step ${this.#done}/${this.#total}${timing} · ${this.#backendName}`);
  }

  #statusText(text) {
    this.#root.querySelector('.status').textContent = text;
  }

  #fail(e) {
    const message = String(e?.message ?? e);
    this.#playing = false;
    this.#error(message);
    this.#emit('ddpm-error', { message });
  }

  #error(message) {
    const box = this.#root.querySelector('.error');
    box.hidden = message === null;
    box.textContent = message === null ? '' : `ddpm-sampler: ${message}`;
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  #renderControls() {
    const box = this.#root.querySelector('.controls');
    // The draw modes always have their tools and the button that runs from the pad: a pad
    // without them could not be used; `controls` adds the rest.
    const drawOnly = !this.#settings.controls && this.#settings.mode !== 'sample';
    if (!this.#settings.controls && !drawOnly) {
      box.replaceChildren();
      return;
    }
    // The control that had the keyboard focus gets it back in the new markup.
    const focused = this.#root.activeElement?.dataset ?? {};
    const html = drawOnly ? drawTools : controlsHtml;
    box.innerHTML = html(this.#settings, this.#model, this.#modes.state());
    this.#modes.wire(box);
    const set = (name, value) => this.setAttribute(name, String(value));
    for (const input of box.querySelectorAll('[data-attr]')) {
      input.addEventListener('change', () => set(input.dataset.attr, input.value));
    }
    const on = (action, handler) => box.querySelector(`[data-action=${action}]`)?.addEventListener('click', handler);
    on('play', () => (this.#playing ? this.pause() : this.play()));
    on('step', () => {
      this.pause();
      this.step();
    });
    on('restart', () => this.#restart());
    on('seed', () => set('seed', randomSeed()));
    on('download', () => this.download());
    box.querySelector('[name=scrub]')?.addEventListener('input', (e) => this.#scrubTo(Number(e.target.value)));
    this.#syncButtons();
    const again = focused.attr ? `[data-attr="${focused.attr}"]` : focused.action ? `[data-action="${focused.action}"]` : null;
    if (again) box.querySelector(again)?.focus();
  }

  #syncButtons() {
    const play = this.#root.querySelector('[data-action=play]');
    if (play) play.textContent = this.#playing ? 'Pause' : 'Play';
    // Nothing to play or step before the run has started or after its last step.
    const finished = !this.#total || this.#done >= this.#total;
    for (const action of ['play', 'step']) {
      const button = this.#root.querySelector(`[data-action=${action}]`);
      if (!button) continue;
      const focused = this.#root.activeElement === button;
      button.disabled = finished && !this.#playing;
      // A disabled button drops the keyboard's focus to the page: it goes to Restart instead.
      if (focused && button.disabled) this.#root.querySelector('[data-action=restart]')?.focus();
    }
  }
}

if (!customElements.get('ddpm-sampler')) customElements.define('ddpm-sampler', DdpmSampler);
