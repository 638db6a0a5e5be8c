"""Kernel launches per step on burn's cubecl backends: runs a `ddpm` command with cubecl's
profiling log (every kernel that runs, by name), finds the steps as the
run's repeating tail (after autotune, every training or sampling step launches the same
sequence of kernels), and prints one step's launches, in all and by kind. Launch counts are the
same on every adapter, so lavapipe measures them too; their cost is for a GPU to time.

    python3 crates/ddpm/benches/launches.py DDPM_BINARY ARGS...

e.g. `... target/release/ddpm sample www/models/mnist.bpk -n 2 --steps 6 --device wgpu -o x.png`
or `... train run --steps 6 --data mnist --device wgpu --set ema.every=1 --sample-every 0`
(at least four steps: three after the first, which autotunes). The environment passes through
(DDPM_GPU_KERNELS=1 for the core's GPU kernels). Prints one JSON line.
"""

import collections
import json
import os
import re
import subprocess
import sys
import tempfile


def step_period(names):
    """The longest p such that, after some short tail of other work, the log ends with three
    identical blocks of p launches (three steps after the autotuned first)."""
    for tail in range(0, 2000):
        end = len(names) - tail
        for p in range(end // 3, 0, -1):
            a, b, c = names[end - 3 * p:end - 2 * p], names[end - 2 * p:end - p], names[end - p:end]
            if a == b == c:
                return p, names[end - p:end], tail
    return None


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
        run = subprocess.run([binary, *args], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"launches: {binary} failed:\n{run.stderr[-2000:]}")
        launch = re.compile(r"^\| +[0-9.]+(?:ns|µs|ms|s) +\| (.+)$")
        with open(log, encoding="utf-8", errors="replace") as f:
            names = [m.group(1).strip() for m in map(launch.match, f) if m]
    found = step_period(names)
    if found is None:
        sys.exit(f"launches: no repeating step in {len(names)} launches (too few steps?)")
    period, step, tail = found
    kinds = collections.Counter(kind(n) for n in step)
    print(json.dumps({
        "command": " ".join(args),
        "gpu_kernels": os.environ.get("DDPM_GPU_KERNELS") == "1",
        "launches": len(names),
        "per_step": period,
        "after_the_steps": tail,
        "by_kind": dict(kinds.most_common()),
    }))


if __name__ == "__main__":
    main()
