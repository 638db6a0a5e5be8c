"""Turns benches/gpu.sh's JSON lines into the Markdown table BENCHMARKS.md takes.

    python3 gpu_table.py results.jsonl
    python3 gpu_table.py --pick results.jsonl [--want LABEL] [--kernels 0|1|auto] LABEL...
    python3 gpu_table.py --record KEY=VALUE...

Columns: each `ddpm` build (by its cargo features; `+kernels`: DDPM_GPU_KERNELS=1; `+f16`:
DDPM_HALF_CONVS=1, training's convolutions in f16 with loss scaling), then PyTorch
fp32 eager and bf16 autocast, then the best build ÷ each PyTorch (above 1: ours is faster).
Lines that do not parse (a run cut off at its deadline) are skipped; a missing number is "–".
A number from a run cut off at its deadline (rc 124) or killed after it (rc 137) is marked `*`
and left out of the ratios. PyTorch's rows are shown whether or not any build ran.

`--pick` prints the build that trains in tools/gpu-window.sh and whether with the core's GPU
kernels: `LABEL 0|1`. Builds whose smoke test failed, and variants (`+…`), are never picked;
`--want` is taken when it passed; else the fastest at the first MNIST training batch, else the
first label given. With `--kernels auto`, 1 when LABEL+kernels trained faster than LABEL
(geometric mean over the training rows both have).

`--record` is gpu.sh's recorder: one JSON line of KEY=VALUE pairs (values that parse as JSON
stay numbers, true/false, null) plus what it reads from the files named by metrics= (rate),
smi= (utilisation), log= (adapter, sampler line) and start=/end= (wall time). A run killed at
its deadline leaves half-written files: only whole lines count, and a line that does not parse
is skipped, so one damaged line costs that line, not the number.
"""
import json
import math
import re
import sys

STRINGS = ("backend", "bench", "features", "commit", "sha256", "device")
# A smoke test on a machine with nvidia-smi must find the GPU through Vulkan, not a software
# adapter and not wgpu's GL fallback; the log says "on wgpu: NAME (Vulkan)".
SOFTWARE = re.compile(r"llvmpipe|lavapipe|swiftshader|software", re.I)


def whole_lines(path):
    """The lines of a file that were written whole: what follows the last newline is not."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().split("\n")[:-1]


def floats(line, n):
    """The line's n comma-separated numbers, or None."""
    try:
        values = [float(x) for x in line.split(",")]
    except ValueError:
        return None
    return values if len(values) == n and all(map(math.isfinite, values)) else None


def training_rate(path, warm, total, batch):
    """batch · timed steps ÷ their time, from metrics.csv's step and cumulative seconds."""
    lines = whole_lines(path)
    header = lines[0].split(",") if lines else []
    if "step" not in header or "seconds" not in header:
        return {"metrics_error": f"{path}: no step and seconds columns"}
    at = {}  # step → seconds since the run started
    for line in lines[1:]:
        values = floats(line, len(header))
        if values and values[header.index("step")] <= total:
            at[int(values[header.index("step")])] = values[header.index("seconds")]
    last = max(at, default=0)
    timed = warm in at and last > warm and at[last] > at[warm]
    return dict(steps=last, first_step_seconds=at.get(1),
                images_per_second=round(batch * (last - warm) / (at[last] - at[warm]), 2) if timed else None)


def utilisation(path):
    """Median utilisation and peak memory of nvidia-smi's `UTIL, MEMORY` lines."""
    samples = [v for v in (floats(line, 2) for line in whole_lines(path)) if v]
    util = sorted(s[0] for s in samples)
    return dict(gpu_samples=len(samples), gpu_utilisation_percent=util[len(util) // 2] if util else None,
                gpu_memory_mib=max((s[1] for s in samples), default=None))


def record(pairs):
    row = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            row[key] = value if key in STRINGS else json.loads(value)
        except ValueError:
            row[key] = value
    metrics, smi, log = row.pop("metrics", None), row.pop("smi", None), row.pop("log", None)
    start, end = row.pop("start", None), row.pop("end", None)
    try:
        if metrics:
            row.update(training_rate(metrics, row["warm"], row["total"], row["batch"]))
    except (OSError, KeyError, TypeError) as e:
        row["metrics_error"] = str(e)
    try:
        if smi:
            row.update(utilisation(smi))
    except OSError:
        row.update(gpu_samples=0, gpu_utilisation_percent=None, gpu_memory_mib=None)
    try:
        text = open(log, encoding="utf-8", errors="replace").read() if log else ""
    except OSError:
        text = ""
    m = re.search(r"training (\d+) parameters on (.*?): \d+ images", text)
    if m:
        row.update(params=int(m.group(1)), adapter=m.group(2))
    if row["bench"].startswith("ddim"):
        m = re.search(r"sampled (\d+) images in ([\d.]+) s \((\d+) steps\)", text)
        s, k = (float(m.group(2)), int(m.group(3))) if m else (None, None)
        row.update(sampler_seconds=s, sampler_steps=k,
                   evaluations_per_second=round(k / s, 3) if m and s > 0 else None)
    if row.get("rc") not in (None, 0) and text.strip():
        row["error"] = text.strip().splitlines()[-1][-300:]
    try:
        if start is not None:
            row["seconds"] = round(float(str(end).replace(",", ".")) - float(str(start).replace(",", ".")), 3)
    except ValueError:
        pass
    if row["bench"] == "smoke":
        adapter, rc = row.get("adapter", ""), row.get("rc")
        if not adapter:
            why = "it named no adapter"
        elif row.get("expect_gpu") and rc != 0:
            why = f"rc {rc}: with a GPU two tiny steps end well within their time"
        elif row.get("expect_gpu") and SOFTWARE.search(adapter):
            why = "a software adapter on a machine with a GPU"
        elif row.get("expect_gpu") and row.get("device") == "wgpu" and "(Vulkan)" not in adapter:
            why = "not through Vulkan (wgpu's GL fallback?)"
        elif rc not in (0, 124):
            why = f"rc {rc}"
        else:
            why = None
        row["ok"] = why is None
        if why:
            row["refused"] = why
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


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


def partial(r):
    """Cut off at the deadline (124) or killed after it (137) before its work was done."""
    if r.get("rc") not in (124, 137):
        return False
    steps, total = num(r.get("steps")), num(r.get("total"))
    return not (steps and total and steps >= total)


def ours(rows):
    return [r for r in rows if r["backend"].startswith("ddpm ")]


def rate(rows, label, bench):
    """A build's whole training rate (not from a cut-off run), for --pick."""
    return next((num(r.get("images_per_second")) for r in rows
                 if r["backend"] == f"ddpm {label}" and r["bench"] == bench and not partial(r)), None)


def training_benches(rows):
    return list(dict.fromkeys(r["bench"] for r in ours(rows) if r["bench"].startswith(("mnist_b", "cifar_b"))))


def pick(rows, labels, want, kernels):
    failed = {r["backend"][5:] for r in ours(rows) if r["bench"] == "smoke" and r.get("ok") is not True}
    # A variant (`+kernels`, `+f16`) is a build run with a switch, not a build to train with.
    usable = [label for label in labels if label not in failed and "+" not in label]
    if not usable:
        print("gpu_table: every build failed its smoke test; training with the first", file=sys.stderr)
        usable = [label for label in labels if "+" not in label][:1]
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

    def mine(label, bench, key):
        """(value, partial) of build LABEL's KEY in BENCH; KEY may be a function of the row."""
        r = next((r for r in our_rows if r["backend"] == f"ddpm {label}" and r["bench"] == bench), {})
        return num(key(r) if callable(key) else r.get(key)), partial(r)

    tf32 = next((r.get("tf32") for r in fp32 if r.get("tf32")), None)
    fp32_name = {"conv": "PyTorch fp32 (TF32 convs)", "on": "PyTorch TF32", "off": "PyTorch fp32 (no TF32)"}
    header = ["measurement", *builds, fp32_name.get(tf32, "PyTorch fp32"), "PyTorch bf16",
              "best ÷ fp32", "best ÷ bf16"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(x, digits, star=False):
        return "–" if x is None else f"{x:,.{digits}f}" + ("*" if star else "")

    def line(label, values, theirs, digits=0, higher_is_better=True, ratios=True):
        values, theirs = [(num(v), p) for v, p in values], [num(v) for v in theirs]
        if all(v is None for v, _ in values) and all(t is None for t in theirs):
            return
        whole = [v for v, p in values if v and not p]  # cut-off runs stay out of the ratios
        best = (max if higher_is_better else min)(whole) if whole else None

        def ratio(t):
            if not ratios or not best or not t:
                return "–"
            return f"{best / t if higher_is_better else t / best:.2f}×"
        lines.append("| " + " | ".join([label, *(cell(v, digits, p) for v, p in values),
                                        *(cell(t, digits) for t in theirs),
                                        *(ratio(t) for t in theirs)]) + " |")

    # Training: our bench names are model_bBATCH, PyTorch's train_bBATCH with its model.
    benches = set(training_benches(rows))
    benches |= {f"{r['model']}_b{r['bench'][7:]}" for r in torch
                if r["bench"].startswith("train_b") and r.get("model") in ("mnist", "cifar")}
    for bench in sorted(benches, key=lambda b: (not b.startswith("mnist"), int(b.split("_b")[1]))):
        model, batch = bench.split("_b")
        line(f"train {model}, batch {batch} (images/s)",
             [mine(b, bench, "images_per_second") for b in builds],
             [find(g, f"train_b{batch}", model).get("images_per_second") for g in (fp32, bf16)])

    sample_benches = {r["bench"].rsplit("_", 1)[0] for r in our_rows if r["bench"].startswith("ddim")}
    sample_benches |= {r["bench"] for r in torch if r["bench"].startswith("ddim")}
    for sb in sorted(sample_benches):
        steps, batch = sb[4:].split("_b")

        # Both sides the same: images × network evaluations per second of a whole DDIM loop,
        # N·K/S (ours: the warm sampler loop of `ddpm sample`; PyTorch's: its own DDIM loop).
        def ours_evals(r):
            k, s = num(r.get("sampler_steps")), num(r.get("sampler_seconds"))
            return int(batch) * k / s if k and s else None

        def their_evals(r):
            k, s = num(r.get("sampler_steps")) or int(steps), num(r.get("seconds"))
            return int(batch) * k / s if s else None
        line(f"sampling, batch {batch}: images × network evaluations / s (DDIM-{steps} loop)",
             [mine(b, f"{sb}_warm", ours_evals) for b in builds],
             [their_evals(find(g, sb, "mnist")) for g in (fp32, bf16)])
        line(f"DDIM-{steps} of {batch} images, sampler loop, warm (s)",
             [mine(b, f"{sb}_warm", "sampler_seconds") for b in builds],
             [find(g, sb, "mnist").get("seconds") for g in (fp32, bf16)], 2, False)
        for tag, what in (("cold", "cold caches"), ("warm", "warm caches")):
            line(f"`ddpm sample -n {batch}` (DDIM-{steps}), {what} (s, whole process)",
                 [mine(b, f"{sb}_{tag}", "seconds") for b in builds], [None, None], 2, False)
    # PyTorch's bare model(x, t) calls, without the loop around them: an extra, not compared.
    for batch in sorted({r["bench"][len("network_eval_b"):] for r in torch if r["bench"].startswith("network_eval_b")}):
        line(f"PyTorch's bare `model(x, t)`, batch {batch}: images × evaluations / s (no DDIM loop)",
             [(None, False)] * len(builds),
             [find(g, f"network_eval_b{batch}", "mnist").get("images_per_second") for g in (fp32, bf16)],
             ratios=False)

    first = sorted((b for b in benches if b.startswith("mnist")), key=lambda b: int(b.split("_b")[1]))
    if first:
        batch = first[0].split("_b")[1]
        for key, their_key, what, digits in (
                ("first_step_seconds", "first_step_seconds", "first training step (s, autotune included)", 2),
                ("gpu_utilisation_percent", None, "GPU utilisation during the timed steps (%, median)", 0),
                ("gpu_memory_mib", "peak_memory_mib", "GPU memory (MiB; ours: the device's, PyTorch: its peak allocation)", 0)):
            line(f"MNIST batch {batch}: {what}", [mine(b, first[0], key) for b in builds],
                 [find(g, f"train_b{batch}", "mnist").get(their_key) for g in (fp32, bf16)], digits,
                 ratios=False)

    notes = []
    gpu = next((r.get("gpu") for r in rows if r["bench"] == "gpu"), None)
    if gpu:
        notes.append(f"GPU: {gpu}.")
    adapters = sorted({r["adapter"] for r in our_rows if isinstance(r.get("adapter"), str)})
    if adapters:
        notes.append("Adapter: " + "; ".join(adapters) + ".")
    shas = [f"`{r['backend'][5:]}`" + (f" commit {r['commit']}," if r.get("commit") else "")
            + f" sha256 {str(r.get('sha256'))[:12]}" for r in our_rows if r["bench"] == "smoke" and r.get("sha256")]
    if shas:
        notes.append("Builds: " + "; ".join(shas) + ".")
    # The same U-Net on both sides: its parameter count, per model (ours: training rows' logs).
    def model_of(r):
        if r["backend"].startswith("ddpm ") and r["bench"].startswith(("mnist_b", "cifar_b")):
            return r["bench"].split("_b")[0]
        return r.get("model") if r["bench"].startswith("train_b") else None
    for model in ("mnist", "cifar"):
        counts = {f"`{r['backend'][5:]}`" if r["backend"].startswith("ddpm ") else "PyTorch": r["params"]
                  for r in rows if model_of(r) == model and num(r.get("params"))}
        if len(set(counts.values())) == 1:
            notes.append(f"{model} U-Net: {next(iter(counts.values())):,} parameters ({', '.join(counts)}).")
        elif counts:
            notes.append(f"{model} U-Net parameters differ: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ".")
    if tf32:
        version = torch[0]["backend"].split(" ")[1]
        tf32_text = {"conv": "convolutions in TF32 (cuDNN's default), matrix products in fp32",
                     "on": "convolutions and matrix products in TF32", "off": "no TF32"}
        notes.append(f"PyTorch {version}: fp32 eager means " + tf32_text.get(tf32, "as the device defaults") + ".")
    failures = [f"`{r['backend'][5:]}` {r['bench']}" + (f" ({r.get('refused') or r['error']})"
                                                       if r.get("refused") or r.get("error") else "")
                for r in our_rows if r.get("ok") is False
                or (r.get("rc") not in (None, 0, 124, 137) and r["bench"] != "smoke")]
    if failures:
        notes.append("Failed: " + "; ".join(failures) + ".")
    cut = [f"`{r['backend'][5:]}` {r['bench']}" + (f" after {r['steps']} steps" if r.get("steps") else "")
           for r in our_rows if partial(r) and r["bench"] != "smoke"]
    if cut:
        notes.append("`*`: cut off at the deadline (rc 124) or killed after it (rc 137): its numbers are over"
                     " what it ran, and left out of the ratios: " + "; ".join(cut) + ".")
    return "\n".join(lines + ([""] + notes if notes else []))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--record":
        print(json.dumps(record(sys.argv[2:])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--pick":
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
