// The drawing pad of the widget's draw modes: what a steered run starts from. "finish" (SDEdit):
// the image is a drawing, painted with the brush over a background (black for one-channel
// models such as MNIST, white for colour ones) or over a given picture. "fill" (RePaint): the
// image is a given or generated picture and the brush paints the mask, the part to generate.
//
// The image the model gets is kept at the model's size (`base`), so that a given picture of
// that size reaches the sampler unchanged (the browser tests compare it with `ddpm sample
// --init`); strokes are drawn on layers at a finer scale and averaged down to it.

const GRID_PAD = 2; // pixels between a grid's images: the core's `grid::PAD`
const PAD_PIXELS = 280; // the pad's longer side on screen, in canvas pixels

function canvas(width, height) {
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  return c;
}

/** An image source as an ImageBitmap-like that `drawImage` takes, or an Error naming it. */
export async function decode(source) {
  try {
    if (typeof source === 'string' || source instanceof URL) {
      const response = await fetch(source);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      source = await response.blob();
    }
    if (source instanceof ImageData) {
      const c = canvas(source.width, source.height);
      c.getContext('2d').putImageData(source, 0, 0);
      return c;
    }
    // Blobs (files), images, canvases, bitmaps; no colour management, as the CLI decodes them.
    return await createImageBitmap(source, { colorSpaceConversion: 'none' });
  } catch (e) {
    throw new Error(`not a readable image (${e?.message ?? e})`);
  }
}

/** RGBA pixels of a model-sized canvas as channel-major values in [−1, 1], `channels` deep. */
function toValues(rgba, channels) {
  const plane = rgba.length / 4;
  const values = new Float32Array(channels * plane);
  for (let p = 0; p < plane; p++) {
    const [r, g, b] = [rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]];
    if (channels === 1) {
      // PIL's convert('L') (Rec. 601 luma in its fixed point), as the CLI makes gray.
      values[p] = ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) / 127.5 - 1;
    } else {
      values[p] = r / 127.5 - 1;
      values[plane + p] = g / 127.5 - 1;
      values[2 * plane + p] = b / 127.5 - 1;
    }
  }
  return values;
}

export class Pad {
  /** A pad for a model's images (`info` from the worker: imageSize [h, w], channels). */
  constructor(info) {
    [this.height, this.width] = info.imageSize;
    this.channels = info.channels;
    this.scale = Math.max(1, Math.round(PAD_PIXELS / Math.max(this.height, this.width)));
    this.background = this.channels === 1 ? '#000000' : '#ffffff';
    this.color = this.channels === 1 ? '#ffffff' : '#000000';
    this.brush = 2.5; // model pixels
    this.erasing = false;
    this.given = false; // whether the image was given (setImage, a file, a picked image)
    this.base = canvas(this.width, this.height);
    this.strokes = canvas(this.width * this.scale, this.height * this.scale);
    this.mask = canvas(this.width * this.scale, this.height * this.scale);
    this.clear('image');
  }

  /** Starts over: 'image' (the background, no strokes, no mask) or 'mask' (nothing masked). */
  clear(what) {
    const full = (c) => [0, 0, c.width, c.height];
    this.mask.getContext('2d').clearRect(...full(this.mask));
    if (what === 'mask') return;
    const base = this.base.getContext('2d');
    base.fillStyle = this.background;
    base.fillRect(...full(this.base));
    this.strokes.getContext('2d').clearRect(...full(this.strokes));
    this.given = false;
  }

  /** Draws `bitmap` as the image: over white (transparency), fitted as the CLI fits training
   * images (the shorter side fills the pad, the rest is cropped at the centre). */
  setImage(bitmap) {
    this.clear('image');
    this.#fit(this.base.getContext('2d'), bitmap);
    this.given = true;
  }

  // `bitmap` over white on a model-sized canvas, fitted as the CLI fits its images: the
  // shorter side fills it, the rest is cropped at the centre.
  #fit(context, bitmap) {
    context.fillStyle = '#ffffff';
    context.fillRect(0, 0, this.width, this.height);
    const fit = Math.max(this.width / bitmap.width, this.height / bitmap.height);
    const [w, h] = [bitmap.width * fit, bitmap.height * fit];
    context.imageSmoothingQuality = 'high';
    context.drawImage(bitmap, (this.width - w) / 2, (this.height - h) / 2, w, h);
  }

  /** Image `index` of a batch of values `[n, c, h, w]` (e.g. a finished run's) as the image. */
  setValues(values, index) {
    const plane = this.width * this.height;
    const pixels = new ImageData(this.width, this.height);
    const byte = (v) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5);
    const at = index * this.channels * plane;
    for (let p = 0; p < plane; p++) {
      for (let k = 0; k < 3; k++) {
        const c = this.channels === 1 ? 0 : k;
        pixels.data[4 * p + k] = byte(values[at + c * plane + p]);
      }
      pixels.data[4 * p + 3] = 255;
    }
    this.clear('image');
    this.base.getContext('2d').putImageData(pixels, 0, 0);
    this.given = true;
  }

  /** A mask from `bitmap`, as the CLI's --mask: fitted like the image, light pixels keep, dark
   * ones are generated. */
  setMask(bitmap) {
    const small = canvas(this.width, this.height).getContext('2d');
    this.#fit(small, bitmap);
    const keep = toValues(small.getImageData(0, 0, this.width, this.height).data, 1);
    this.clear('mask');
    const mask = this.mask.getContext('2d');
    mask.fillStyle = '#e0245e';
    const s = this.scale;
    keep.forEach((v, p) => v <= 0 && mask.fillRect((p % this.width) * s, Math.floor(p / this.width) * s, s, s));
  }

  /** The image the model starts from: `c·h·w` values in [−1, 1]. */
  image() {
    const small = canvas(this.width, this.height).getContext('2d');
    small.drawImage(this.base, 0, 0);
    small.imageSmoothingQuality = 'high';
    small.drawImage(this.strokes, 0, 0, this.width, this.height);
    return toValues(small.getImageData(0, 0, this.width, this.height).data, this.channels);
  }

  /** The keep-mask: `h·w` values, 1 keeps, 0 where at least half a pixel is painted. */
  keep() {
    const small = canvas(this.width, this.height).getContext('2d');
    small.imageSmoothingQuality = 'high';
    small.drawImage(this.mask, 0, 0, this.width, this.height);
    const rgba = small.getImageData(0, 0, this.width, this.height).data;
    return Float32Array.from({ length: this.width * this.height }, (_, p) => (rgba[4 * p + 3] >= 128 ? 0 : 1));
  }

  /** A stroke from `from` to `to` (pad pixels) in `mode` ('finish' paints the image, 'fill'
   * the mask); the eraser paints the background, or unmasks. */
  stroke(mode, from, to) {
    const layer = (mode === 'fill' ? this.mask : this.strokes).getContext('2d');
    layer.save();
    layer.lineCap = 'round';
    layer.lineJoin = 'round';
    layer.lineWidth = this.brush * this.scale;
    if (mode === 'fill') {
      layer.globalCompositeOperation = this.erasing ? 'destination-out' : 'source-over';
      layer.strokeStyle = '#e0245e';
    } else {
      layer.strokeStyle = this.erasing ? this.background : this.color;
    }
    layer.beginPath();
    layer.moveTo(from.x, from.y);
    layer.lineTo(to.x + 0.01, to.y); // a click without a move still paints a dot
    layer.stroke();
    layer.restore();
  }

  /** Draws the pad on `target` (resized to the pad's pixels): the image, the strokes and, in
   * 'fill' mode, the mask as a translucent overlay. */
  show(target, mode) {
    target.width = this.strokes.width;
    target.height = this.strokes.height;
    const ctx = target.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.base, 0, 0, target.width, target.height);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.strokes, 0, 0);
    if (mode === 'fill') {
      ctx.globalAlpha = 0.6;
      ctx.drawImage(this.mask, 0, 0);
      ctx.globalAlpha = 1;
    }
  }
}

/** The image of a grid (the core's layout: `columns`, images `w`×`h`, `n` of them) under a
 * point of its canvas, or -1 between images. */
export function gridCell({ x, y }, { n, columns, width, height }) {
  const [col, row] = [Math.floor((x - GRID_PAD) / (width + GRID_PAD)), Math.floor((y - GRID_PAD) / (height + GRID_PAD))];
  const [dx, dy] = [x - GRID_PAD - col * (width + GRID_PAD), y - GRID_PAD - row * (height + GRID_PAD)];
  const index = row * columns + col;
  const inside = col >= 0 && row >= 0 && col < columns && dx < width && dy < height;
  return inside && index < n ? index : -1;
}
