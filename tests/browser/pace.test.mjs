// The widget's drawing pace (web/pace.js), without a browser: which steps a playing widget
// draws for a measured time per step.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FRAME_MS, MAX_EVERY, Pace, autoDrawEvery } from '../../web/pace.js';

test('auto draws every step when a step takes a frame or more, fewer when steps are faster', () => {
  assert.equal(autoDrawEvery(37800), 1); // WebGPU on SwiftShader
  assert.equal(autoDrawEvery(1940), 1); // the CPU fallback
  assert.equal(autoDrawEvery(FRAME_MS), 1);
  assert.equal(autoDrawEvery(4), 4); // a real GPU: about one picture per frame
  assert.equal(autoDrawEvery(0.01), MAX_EVERY);
  assert.equal(autoDrawEvery(NaN), 1);
  assert.equal(autoDrawEvery(0), 1);
});

test('a pace learns the time per step between drawn steps while playing, not while paused', () => {
  const pace = new Pace('auto');
  assert.ok(pace.due(1));
  pace.drawn(1, 1000, true);
  assert.equal(pace.msPerStep, null); // one drawn step measures nothing yet
  pace.drawn(2, 1004, true); // 4 ms per step
  assert.equal(pace.msPerStep, 4);
  assert.equal(pace.every, 4);
  assert.ok(!pace.due(5) && pace.due(6));
  pace.drawn(6, 1020, true); // still 4 ms per step over the four steps
  assert.equal(pace.msPerStep, 4);
  pace.drawn(7, 5000, false); // a step by hand: its time does not count
  assert.equal(pace.msPerStep, 4);
  pace.drawn(8, 5100, true); // the clock restarts after a pause
  assert.equal(pace.msPerStep, 4);
  pace.drawn(9, 5300, true); // 200 ms per step: draw every step again
  assert.equal(pace.every, 1);
});

test('a fixed draw-every keeps its k whatever the time per step', () => {
  const pace = new Pace(3);
  pace.drawn(3, 0, true);
  pace.drawn(6, 3, true);
  assert.equal(pace.every, 3);
  assert.ok(!pace.due(8) && pace.due(9));
});
