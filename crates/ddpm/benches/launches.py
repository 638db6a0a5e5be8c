"""Kernel launches per step on burn's cubecl backends: runs a `ddpm` command with cubecl's
profiling log (every kernel that runs, by name), finds the steps as the run's repeating tail
(after autotune, every training or sampling step launches the same sequence of kernels), and
prints one step's launches, in all and by kind, and the kernels' own times in that step (the
profiler waits for each kernel, so the times add up to the step's GPU time without overlap or
launch latency). Launch counts are the same on every adapter, so lavapipe measures them too;
their times there are a software rasteriser's.

    python3 crates/ddpm/benches/launches.py DDPM_BINARY ARGS...

e.g. `... target/release/ddpm sample www/models/mnist.bpk -n 2 --steps 6 --device wgpu -o x.png`
(at least four steps: three after the first, which autotunes) or `... train run --steps 1000
--data mnist --device wgpu --set ema.every=1`: a training run is interrupted (Ctrl-C, which
checkpoints) once its metrics.csv has 6 steps, before the sample grid that ends a finished
run. The environment passes through (DDPM_GPU_KERNELS=1 for the core's GPU kernels). Prints
one JSON line.
"""

import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def step_period(names):
    """(launches per step, where the last whole step starts in `names`): the longest of the periods p for which some
    kernel's last four launches lie p apart with three identical blocks between them (after the
    first step, which autotunes, every step launches the same sequence). Anchored on each
    kernel's own last launches, so that other work after the steps (a checkpoint's copies) does
    not hide them."""
    last = collections.defaultdict(list)
    for i, name in enumerate(names):
        last[name] = (last[name] + [i])[-4:]
    best = None
    for i1, i2, i3, i4 in (v for v in last.values() if len(v) == 4):
        p = i2 - i1
        if p == i3 - i2 == i4 - i3 and (best is None or p > best[0]):
            if names[i1:i2] == names[i2:i3] == names[i3:i4]:
                best = (p, i3)
    return best


def interrupt_after(run, metrics, steps):
    """Sends Ctrl-C to a training `run` once `metrics` has `steps` rows."""
    while run.poll() is None:
        try:
            rows = sum(1 for _ in open(metrics)) - 1
        except FileNotFoundError:
            rows = 0
        if rows >= steps:
            run.send_signal(signal.SIGINT)
            return
        time.sleep(0.5)


def kind(name):
    """A launch's kind: its kernel's name without the hash of its specialisation."""
    return re.sub(r"_[0-9a-f]{8}\b", "", name).split(" | TensorArgs | DynamicScalar")[0]


def main():
    binary, args = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as work:
        # cubecl's own switches: its log in a file, each kernel that runs with its time (the
        # log also holds the compiled kernels, which are skipped).
        log = os.path.join(work, "cubecl.log")
        env = dict(os.environ, CUBECL_DEBUG_LOG=log, CUBECL_DEBUG_OPTION="profile")
        err = os.path.join(work, "stderr")
        with open(err, "w") as stderr:
            run = subprocess.Popen([binary, *args], env=env, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
            if args[0] == "train":
                interrupt_after(run, os.path.join(args[1], "metrics.csv"), 6)
            if run.wait() != 0:
                sys.exit(f"launches: {binary} failed:\n{open(err).read()[-2000:]}")
        launch = re.compile(r"^\| +([0-9.]+)(ns|µs|ms|s) +\| (.+)$")
        with open(log, encoding="utf-8", errors="replace") as f:
            found = [m.groups() for m in map(launch.match, f) if m]
    names = [name.strip() for _, _, name in found]
    # Each launch's time in ms as the profiler measured it (it waits for each kernel).
    unit = {"ns": 1e-6, "µs": 1e-3, "ms": 1.0, "s": 1e3}
    times = [float(value) * unit[u] for value, u, _ in found]
    period = step_period(names)
    if period is None:
        sys.exit(f"launches: no repeating step in {len(names)} launches (too few steps?)")
    period, start = period
    step = range(start, start + period)
    kinds = collections.Counter(kind(names[i]) for i in step)
    ms = collections.Counter()
    for i in step:
        ms[kind(names[i])] += times[i]
    print(json.dumps({
        "command": " ".join(args),
        "gpu_kernels": os.environ.get("DDPM_GPU_KERNELS") == "1",
        "launches": len(names),
        "per_step": period,
        "by_kind": dict(kinds.most_common()),
        "ms_per_step": round(sum(ms.values()), 3),
        "ms_by_kind": {k: round(v, 3) for k, v in ms.most_common()},
    }))


if __name__ == "__main__":
    main()
