// How often a playing widget draws. Reading a picture back from the model's device and putting
// it on the canvas costs about the same whatever the step costs; when steps are faster than the
// screen can show them, drawing each one would spend the time on pictures nobody sees. So with
// `draw-every="auto"` (the default) the widget measures the time per step while it plays
// (compute and drawing together, between two drawn steps) and draws every k-th step, k chosen so
// that about one picture is drawn per display frame. Slow backends (CPU, software WebGPU) get
// k = 1: every step is drawn.

/** One display frame at 60 Hz, in ms. */
export const FRAME_MS = 1000 / 60;

/** The largest k `auto` picks: even the fastest run shows some of its steps. */
export const MAX_EVERY = 64;

/** k for a measured time per step (ms): 1 when a step takes a frame or more. */
export function autoDrawEvery(msPerStep) {
  if (!(msPerStep > 0)) return 1;
  return Math.min(MAX_EVERY, Math.max(1, Math.round(FRAME_MS / msPerStep)));
}

/** Tracks drawn steps of a run and the measured time per step between them. */
export class Pace {
  constructor(drawEvery) {
    this.setting = drawEvery; // 'auto' or a whole number
    this.every = drawEvery === 'auto' ? 1 : drawEvery;
    this.lastStep = 0;
    this.lastTime = null;
    this.msPerStep = null;
  }

  /** Whether step `step` (1-based) should be drawn while playing. */
  due(step) {
    return step - this.lastStep >= this.every;
  }

  /** Step `step` was drawn at `now` (ms); `playing` says whether the time since the last one counts. */
  drawn(step, now, playing) {
    if (playing && this.lastTime !== null && step > this.lastStep) {
      this.msPerStep = (now - this.lastTime) / (step - this.lastStep);
      if (this.setting === 'auto') this.every = autoDrawEvery(this.msPerStep);
    }
    this.lastStep = step;
    this.lastTime = playing ? now : null;
  }
}
