"""Turns benches/gpu.sh's JSON lines into the Markdown table BENCHMARKS.md takes.

    python3 gpu_table.py results.jsonl
    python3 gpu_table.py --pick results.jsonl [--want LABEL] [--kernels 0|1|auto] LABEL...

Columns: each `ddpm` build (by its cargo features; `+kernels`: DDPM_GPU_KERNELS=1), then PyTorch
fp32 eager and bf16 autocast, then the best build ÷ each PyTorch (above 1: ours is faster).
Lines that do not parse (a run cut off at its deadline) are skipped; a missing number is "–".
PyTorch's rows are shown whether or not any build ran.

`--pick` prints the build that trains in tools/gpu-window.sh and whether with the core's GPU
kernels: `LABEL 0|1`. Builds whose smoke test failed are never picked; `--want` is taken when it
passed; else the fastest at the first MNIST training batch, else the first label given. With
`--kernels auto`, 1 when LABEL+kernels trained faster than LABEL (geometric mean over the
training rows both have).
"""
import json
import math
import sys


def load(path):
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict) and isinstance(r.get("backend"), str) and isinstance(r.get("bench"), str):
                    rows.append(r)
    except OSError as e:
        print(f"gpu_table: {e}", file=sys.stderr)
    return rows


def num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def ours(rows):
    return [r for r in rows if r["backend"].startswith("ddpm ")]


def rate(rows, label, bench):
    return next((num(r.get("images_per_second")) for r in rows
                 if r["backend"] == f"ddpm {label}" and r["bench"] == bench), None)


def training_benches(rows):
    return list(dict.fromkeys(r["bench"] for r in ours(rows) if r["bench"].startswith(("mnist_b", "cifar_b"))))


def pick(rows, labels, want, kernels):
    failed = {r["backend"][5:] for r in ours(rows) if r["bench"] == "smoke" and r.get("ok") is not True}
    usable = [label for label in labels if label not in failed and not label.endswith("+kernels")]
    if not usable:
        print("gpu_table: every build failed its smoke test; training with the first", file=sys.stderr)
        usable = [label for label in labels if not label.endswith("+kernels")][:1]
    benches = training_benches(rows)
    if want in usable:
        build = want
    else:
        if want:
            print(f"gpu_table: {want} is not among the usable builds {usable}", file=sys.stderr)
        rates = [(rate(rows, b, benches[0]) or 0, -i, b) for i, b in enumerate(usable)] if benches else []
        build = max(rates)[2] if rates and max(rates)[0] > 0 else usable[0]
    if kernels != "auto":
        return build, kernels
    if f"{build}+kernels" in failed:
        return build, "0"
    ratios = [rate(rows, f"{build}+kernels", b) / rate(rows, build, b) for b in benches
              if rate(rows, f"{build}+kernels", b) and rate(rows, build, b)]
    faster = bool(ratios) and math.exp(sum(map(math.log, ratios)) / len(ratios)) > 1
    return build, "1" if faster else "0"


def table(rows):
    our_rows = ours(rows)
    builds = list(dict.fromkeys(r["backend"][5:] for r in our_rows))
    torch = [r for r in rows if r["backend"].startswith("pytorch")]
    fp32 = [r for r in torch if r.get("autocast", "none") == "none" and "bf16" not in r["backend"]]
    bf16 = [r for r in torch if r not in fp32]

    def find(group, bench, model):
        return next((r for r in group if r["bench"] == bench and r.get("model") == model), {})

    def mine(label, bench):
        return next((r for r in our_rows if r["backend"] == f"ddpm {label}" and r["bench"] == bench), {})

    tf32 = next((r.get("tf32") for r in fp32 if r.get("tf32")), None)
    fp32_name = {"conv": "PyTorch fp32 (TF32 convs)", "on": "PyTorch TF32", "off": "PyTorch fp32 (no TF32)"}
    header = ["measurement", *builds, fp32_name.get(tf32, "PyTorch fp32"), "PyTorch bf16",
              "best ÷ fp32", "best ÷ bf16"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(x, digits):
        return "–" if x is None else f"{x:,.{digits}f}"

    def line(label, values, theirs, digits=0, higher_is_better=True, ratios=True):
        values, theirs = [num(v) for v in values], [num(v) for v in theirs]
        if all(v is None for v in values + theirs):
            return
        present = [v for v in values if v]
        best = (max if higher_is_better else min)(present) if present else None

        def ratio(t):
            if not best or not t:
                return "–"
            return f"{best / t if higher_is_better else t / best:.2f}×"
        lines.append("| " + " | ".join([label, *(cell(v, digits) for v in values),
                                        *(cell(t, digits) for t in theirs),
                                        *(ratio(t) if ratios else "–" for t in theirs)]) + " |")

    # Training: our bench names are model_bBATCH, PyTorch's train_bBATCH with its model.
    benches = set(training_benches(rows))
    benches |= {f"{r['model']}_b{r['bench'][7:]}" for r in torch
                if r["bench"].startswith("train_b") and r.get("model") in ("mnist", "cifar")}
    for bench in sorted(benches, key=lambda b: (not b.startswith("mnist"), int(b.split("_b")[1]))):
        model, batch = bench.split("_b")
        line(f"train {model}, batch {batch} (images/s)",
             [mine(b, bench).get("images_per_second") for b in builds],
             [find(g, f"train_b{batch}", model).get("images_per_second") for g in (fp32, bf16)])

    sample_benches = {r["bench"].rsplit("_", 1)[0] for r in our_rows if r["bench"].startswith("ddim")}
    sample_benches |= {r["bench"] for r in torch if r["bench"].startswith("ddim")}
    for sb in sorted(sample_benches):
        steps, batch = sb[4:].split("_b")

        def evals(label):  # images × network evaluations per second of the warm sampler loop
            r = mine(label, f"{sb}_warm")
            k, s = num(r.get("sampler_steps")), num(r.get("sampler_seconds"))
            return int(batch) * k / s if k and s else None
        line(f"sampling, batch {batch}: images × network evaluations / s", [evals(b) for b in builds],
             [find(g, f"network_eval_b{batch}", "mnist").get("images_per_second") for g in (fp32, bf16)])
        line(f"DDIM-{steps} of {batch} images, sampler loop, warm (s)",
             [mine(b, f"{sb}_warm").get("sampler_seconds") for b in builds],
             [find(g, sb, "mnist").get("seconds") for g in (fp32, bf16)], 2, False)
        for tag, what in (("cold", "cold caches"), ("warm", "warm caches")):
            line(f"`ddpm sample -n {batch}` (DDIM-{steps}), {what} (s, whole process)",
                 [mine(b, f"{sb}_{tag}").get("seconds") for b in builds], [None, None], 2, False)

    first = sorted((b for b in benches if b.startswith("mnist")), key=lambda b: int(b.split("_b")[1]))
    if first:
        batch = first[0].split("_b")[1]
        for key, their_key, what, digits in (
                ("first_step_seconds", "first_step_seconds", "first training step (s, autotune included)", 2),
                ("gpu_utilisation_percent", None, "GPU utilisation during the timed steps (%, median)", 0),
                ("gpu_memory_mib", "peak_memory_mib", "GPU memory (MiB; ours: the device's, PyTorch: its peak allocation)", 0)):
            line(f"MNIST batch {batch}: {what}", [mine(b, first[0]).get(key) for b in builds],
                 [find(g, f"train_b{batch}", "mnist").get(their_key) for g in (fp32, bf16)], digits,
                 ratios=False)

    notes = []
    gpu = next((r.get("gpu") for r in rows if r["bench"] == "gpu"), None)
    if gpu:
        notes.append(f"GPU: {gpu}.")
    adapters = sorted({r["adapter"] for r in our_rows if isinstance(r.get("adapter"), str)})
    if adapters:
        notes.append("Adapter: " + "; ".join(adapters) + ".")
    shas = [f"`{r['backend'][5:]}` {str(r.get('sha256'))[:12]}" for r in our_rows
            if r["bench"] == "smoke" and r.get("sha256")]
    if shas:
        notes.append("Builds (sha256 of the binary): " + ", ".join(shas) + ".")
    if tf32:
        version = torch[0]["backend"].split(" ")[1]
        tf32_text = {"conv": "convolutions in TF32 (cuDNN's default), matrix products in fp32",
                     "on": "convolutions and matrix products in TF32", "off": "no TF32"}
        notes.append(f"PyTorch {version}: fp32 eager means " + tf32_text.get(tf32, "as the device defaults") + ".")
    failures = [f"`{r['backend'][5:]}` {r['bench']}" + (f" ({r['error']})" if r.get("error") else "")
                for r in our_rows if r.get("ok") is False
                or (r.get("rc") not in (None, 0, 124) and r["bench"] != "smoke")]
    if failures:
        notes.append("Failed: " + "; ".join(failures) + ".")
    cut = [f"`{r['backend'][5:]}` {r['bench']}" + (f" after {r['steps']} steps" if r.get("steps") else "")
           for r in our_rows if r.get("rc") == 124 and r["bench"] != "smoke"]
    if cut:
        notes.append("Cut off at the deadline (its numbers are over what it ran): " + "; ".join(cut) + ".")
    return "\n".join(lines + ([""] + notes if notes else []))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--pick":
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--pick", metavar="RESULTS")
        p.add_argument("--want", default="")
        p.add_argument("--kernels", choices=["0", "1", "auto"], default="auto")
        p.add_argument("labels", nargs="+")
        a = p.parse_args()
        print(*pick(load(a.pick), a.labels, a.want, a.kernels))
    elif len(sys.argv) == 2:
        print(table(load(sys.argv[1])))
    else:
        sys.exit(__doc__)
