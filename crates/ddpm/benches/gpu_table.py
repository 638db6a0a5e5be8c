"""Turns benches/gpu.sh's JSON lines into the Markdown table BENCHMARKS.md takes.

    python3 gpu_table.py results.jsonl

Columns: each `ddpm` build, then PyTorch fp32 eager and bf16 autocast; the last columns are the
best `ddpm` build ÷ each PyTorch (above 1: ours is faster).
"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
ours = [r for r in rows if r["backend"].startswith("ddpm ")]
torch = [r for r in rows if r["backend"].startswith("pytorch")]
builds = list(dict.fromkeys(r["backend"][5:] for r in ours))


def find(backend, bench, model=None):
    for r in rows:
        if r["backend"] == backend and r["bench"] == bench and r.get("model", model) == model:
            return r
    return None


def torch_backend(bf16):
    names = [r["backend"] for r in torch if r["backend"].endswith("bf16 autocast") == bf16]
    return names[0] if names else None


fp32, bf16 = torch_backend(False), torch_backend(True)
# (label, our bench, PyTorch's bench and model, how a row gives images/s, unit)
measurements = []
for r in ours:
    if r["bench"].startswith(("mnist_b", "cifar_b")) and r["bench"] not in [m[1] for m in measurements]:
        model, batch = r["bench"].split("_b")
        measurements.append((f"train {model}, batch {batch} (images/s)", r["bench"], f"train_b{batch}", model))


def ours_rate(build, bench):
    r = find(f"ddpm {build}", bench)
    return r and r.get("images_per_second")


def sampling_rate(build):
    """Images per network evaluation per second: DDIM-50 minus DDIM-10, both warm."""
    long = [r for r in ours if r["backend"] == f"ddpm {build}" and r["bench"].endswith("_warm")]
    short = [r for r in ours if r["backend"] == f"ddpm {build}" and r["bench"].endswith("_short")]
    if not long or not short or long[0]["seconds"] <= short[0]["seconds"]:
        return None
    return long[0]["batch"] * 40 / (long[0]["seconds"] - short[0]["seconds"])


def cell(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"


header = ["measurement", *builds, "PyTorch fp32", "PyTorch bf16", "best ÷ fp32", "best ÷ bf16"]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def line(label, values, theirs):
    best = max((v for v in values if v), default=None)
    t32, t16 = theirs
    lines.append("| " + " | ".join([label, *map(cell, values), cell(t32), cell(t16),
                                    ratio(best, t32), ratio(best, t16)]) + " |")


for label, bench, their_bench, model in measurements:
    theirs = [(find(b, their_bench, model) or {}).get("images_per_second") if b else None
              for b in (fp32, bf16)]
    line(label, [ours_rate(b, bench) for b in builds], theirs)

sample_batch = next((r["batch"] for r in ours if "_cold" in r["bench"]), None)
if sample_batch:
    theirs = [(find(b, f"network_eval_b{sample_batch}", "mnist") or {}).get("images_per_second")
              if b else None for b in (fp32, bf16)]
    line(f"sampling, batch {sample_batch}: images × network evaluations / s",
         [sampling_rate(b) for b in builds], theirs)

    def wall(build, tag):
        r = [x for x in ours if x["backend"] == f"ddpm {build}" and x["bench"].endswith(tag)]
        return r[0]["seconds"] if r else None

    their_wall = [(find(b, f"ddim50_b{sample_batch}", "mnist") or {}).get("seconds") if b else None
                  for b in (fp32, bf16)]
    for tag, what in (("_cold", "cold autotune cache"), ("_warm", "warm cache")):
        values = [wall(b, tag) for b in builds]
        lines.append("| " + " | ".join(
            [f"`ddpm sample -n {sample_batch}` (DDIM-50), {what} (s, whole process)",
             *[cell(v, 2) for v in values], cell(their_wall[0], 2), cell(their_wall[1], 2),
             "–", "–"]) + " |")

for key, label in (("first_step_seconds", "first training step, MNIST (s, autotune included)"),
                   ("gpu_utilisation_percent", "GPU utilisation, MNIST training (%)")):
    bench = measurements[0][1] if measurements else None
    values = [(find(f"ddpm {b}", bench) or {}).get(key) for b in builds]
    lines.append("| " + " | ".join([label, *[cell(v, 1) for v in values], "–", "–", "–", "–"]) + " |")

print("\n".join(lines))
adapters = sorted({r["adapter"] for r in ours if r.get("adapter")})
if adapters:
    print("\nAdapter: " + "; ".join(adapters))
