// The widget's draw modes ('finish', 'fill'): the pad on the canvas, the pointer painting on it
// or picking an image of the last grid, the drawing tools, and what a run from the pad takes.
// The element (ddpm-sampler.js) owns the runs; it tells this when the model is known, asks it
// for the pad's values, and is told (through `host`) to redraw its controls, show a status,
// report an error, run from the pad or come back to it.

import { Pad, decode, gridCell } from './pad.js';

export class DrawModes {
  #host;
  #waiters = []; // padReady() calls waiting for the model's size: [resolve, reject]
  #loaded = { image: null, mask: null }; // the `image` and `mask` attributes on the pad
  #stroke = null; // the pointer's last point while it paints
  #model = null; // { card, info } of the pad's model
  pad = null;
  drawing = false; // the pad is shown (no run in progress)
  picking = false; // 'fill' without an image: a click on the last grid picks one
  padRun = false; // the run shown started from the pad (settings changes run it again)
  lastGrid = null; // the last finished run's { model, values, n, columns, image }, to pick from

  /**
   * `host`: { canvas(), settings(), status(text), backend(), controls(), emit(name, detail),
   * fail(error), run(), back(), setImage(file) }.
   */
  constructor(host) {
    this.#host = host;
  }

  // The model is known: its pad (a new one for a model of another size) and the calls that
  // waited for it.
  setModel(model) {
    this.#model = model;
    const { imageSize, channels } = model.info;
    const pad = this.pad;
    if (!pad || pad.height !== imageSize[0] || pad.width !== imageSize[1] || pad.channels !== channels) {
      this.pad = new Pad(model.info);
      this.#loaded = { image: null, mask: null };
    }
    for (const [resolve] of this.#waiters.splice(0)) resolve(this.pad);
  }

  // The model could not be loaded: calls waiting for its pad fail with the reason.
  noModel(error) {
    for (const [, reject] of this.#waiters.splice(0)) reject(error);
  }

  padReady() {
    return this.pad ? Promise.resolve(this.pad) : new Promise((resolve, reject) => this.#waiters.push([resolve, reject]));
  }

  // Decodes `source` and applies it to the pad; a bad source is a message in the widget. The
  // pad copies the pixels, so the decoded bitmap is closed at once (it holds decoded memory,
  // on the GPU in some browsers, until then).
  async applySource(source, change) {
    try {
      const bitmap = await decode(source);
      try {
        change(await this.padReady(), bitmap);
      } finally {
        bitmap.close?.();
      }
    } catch (e) {
      this.#host.fail(e);
      throw e;
    }
    if (this.drawing) this.showPad();
  }

  // The `image` and `mask` attributes, onto the pad when they name new files; nothing once
  // `stale()` (a newer start asked for other files, which may arrive first).
  async loadSources(s, attribute, stale) {
    for (const [key, apply] of [['image', (pad, b) => pad.setImage(b)], ['mask', (pad, b) => pad.setMask(b)]]) {
      if (s[key] === null || s[key] === this.#loaded[key]) continue;
      let bitmap;
      try {
        bitmap = await decode(s[key]);
      } catch (e) {
        throw new Error(`${key}="${attribute(key)}": ${e.message}`);
      }
      try {
        if (stale()) return;
        apply(this.pad, bitmap);
        this.#loaded[key] = s[key];
      } finally {
        bitmap.close?.();
      }
    }
  }

  // The pad's values for a run, or an Error saying what is missing.
  options(mode) {
    const pad = this.pad;
    if (mode === 'finish') return { image: pad.image() };
    if (!pad.given) throw new Error('nothing to fill in: pick a generated image, drop an image here or call setImage()');
    const mask = pad.keep();
    if (!mask.includes(0)) throw new Error('paint over the part to fill in first (or call setMask())');
    return { image: pad.image(), mask };
  }

  // Shows the pad (or, in 'fill' without an image, the last grid to pick from) and its tools.
  enter() {
    this.drawing = true;
    const s = this.#host.settings();
    this.picking = s.mode === 'fill' && !this.pad.given && this.#canPick();
    this.#host.controls();
    if (this.picking) this.showGrid();
    else this.showPad();
    this.#host.emit('ddpm-draw', { mode: s.mode, model: this.#model.info, card: this.#model.card });
  }

  showPad() {
    const canvas = this.#host.canvas();
    const mode = this.#host.settings().mode;
    this.pad.show(canvas, mode);
    canvas.className = 'drawing';
    const fill = mode === 'fill';
    canvas.setAttribute('aria-label', fill ? 'image to fill in; paint the part to generate' : 'drawing pad; draw, then press Finish it');
    const hint = fill
      ? this.pad.given ? 'paint over the part to fill in, then press “Fill the masked part”' : 'drop an image here or choose one with “Image…”'
      : 'draw here (or drop an image), then press “Finish it”';
    this.#host.status(`${hint} · ${this.#host.backend()}`);
  }

  showGrid() {
    const canvas = this.#host.canvas();
    const { image } = this.lastGrid;
    canvas.width = image.width;
    canvas.height = image.height;
    canvas.getContext('2d').putImageData(image, 0, 0);
    canvas.className = 'picking';
    canvas.setAttribute('aria-label', 'generated images: click one to fill in part of it');
    this.#host.status('click an image (or give its number below) to fill in part of it, or drop one here');
  }

  // Whether the last finished run's images are this model's, to pick one from.
  #canPick() {
    return this.lastGrid?.model === this.#host.settings().model;
  }

  // The finished run's images, for 'fill' to pick one from.
  keepGrid(grid) {
    this.lastGrid = { ...grid, model: this.#host.settings().model };
  }

  // Listens to the canvas: pointers paint on the pad or pick an image of the grid; an image
  // file dropped on the pad becomes its image.
  attach(canvas) {
    for (const type of ['pointerdown', 'pointermove', 'pointerup', 'pointercancel']) {
      canvas.addEventListener(type, (e) => this.#pointer(e));
    }
    canvas.addEventListener('dragover', (e) => this.drawing && e.preventDefault());
    canvas.addEventListener('drop', (e) => {
      const file = e.dataTransfer?.files?.[0];
      if (!this.drawing || !file) return;
      e.preventDefault();
      this.#open(file);
    });
  }

  // A file the reader chose or dropped (a bad one is a message in the widget).
  #open(file) {
    this.#host.setImage(file).catch(() => {});
  }

  #pointer(e) {
    const canvas = e.currentTarget;
    const box = canvas.getBoundingClientRect();
    const at = { x: ((e.clientX - box.left) * canvas.width) / box.width, y: ((e.clientY - box.top) * canvas.height) / box.height };
    if (this.picking && e.type === 'pointerdown') {
      const { height, width } = this.pad;
      const { values, n, columns } = this.lastGrid;
      const index = gridCell(at, { n, columns, width, height });
      if (index >= 0) this.#pick(values, index);
      return;
    }
    if (!this.drawing || this.picking) return;
    if (e.type === 'pointerdown') {
      canvas.setPointerCapture(e.pointerId);
      this.#stroke = at;
    } else if (e.type !== 'pointermove') {
      this.#stroke = null;
      return;
    }
    if (!this.#stroke) return;
    e.preventDefault();
    this.pad.stroke(this.#host.settings().mode, this.#stroke, at);
    this.#stroke = at;
    this.showPad();
  }

  // Image `index` of the last grid becomes the pad's image.
  #pick(values, index) {
    this.pad.setValues(values, index);
    this.picking = false;
    this.#host.controls();
    this.showPad();
  }

  wire(box) {
    const on = (action, handler) => box.querySelector(`[data-action=${action}]`)?.addEventListener('click', handler);
    const pad = this.pad;
    const mode = this.#host.settings().mode;
    on('draw', () => this.#host.back());
    on('run', () => this.#host.run());
    on('pick', () => {
      this.picking = true;
      this.#host.controls();
      this.showGrid();
    });
    // The keyboard's way to pick: the image's number (1 is the top left, row after row).
    on('use', () => {
      const { values, n } = this.lastGrid;
      const index = Number(box.querySelector('[name=pick]')?.value) - 1;
      if (Number.isInteger(index) && index >= 0 && index < n) this.#pick(values, index);
      else this.#host.fail(new Error(`pick an image from 1 to ${n}`));
    });
    const erase = (erasing) => () => {
      pad.erasing = erasing;
      this.#host.controls();
    };
    on('brush', erase(false));
    on('eraser', erase(true));
    on('clear', () => {
      pad.clear(mode === 'fill' ? 'mask' : 'image');
      this.showPad();
    });
    box.querySelector('[name=brush]')?.addEventListener('input', (e) => (pad.brush = Number(e.target.value)));
    box.querySelector('[name=color]')?.addEventListener('input', (e) => (pad.color = e.target.value));
    box.querySelector('[name=file]')?.addEventListener('change', (e) => {
      const file = e.target.files?.[0];
      if (file) this.#open(file);
    });
  }

  // What a 'fill' pad can pick from, and the pad's tools, for the controls.
  state() {
    const pad = this.pad;
    const picking = this.picking ? this.lastGrid.n : 0;
    return { drawing: this.drawing, erasing: pad?.erasing ?? false, brush: pad?.brush ?? 2.5, color: pad?.color ?? '#000000', canPick: this.#canPick(), picking };
  }
}
