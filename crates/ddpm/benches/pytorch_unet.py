"""The PyTorch anchor for the benchmarks: lucidrains' denoising-diffusion-pytorch, same work.

Prints one JSON line per measurement. Two modes:

- default (benches/unet.rs's measurements, run by benches/run.sh): a bare training step
  (loss, backward, Adam) and one network evaluation, as `cargo bench --bench unet` times them;
- `--trainer` (benches/gpu.sh's measurements against `ddpm train` and `ddpm sample`): a step
  as lucidrains' Trainer takes it and `ddpm train` does (a batch moved to the device, loss,
  backward, gradient-norm clipping at 1, Adam, the EMA updated every 10 steps), network
  evaluations per second, and the wall time of a whole DDIM sampling run (its loop of
  `--sample-steps` network calls, as `ddpm sample` times its own).

    python pytorch_unet.py [--model mnist|cifar] [--batch 64 [128 ...]] [--device cpu|cuda]
                           [--autocast none|bf16 [...]] [--tf32 conv|on|off] [--trainer]
                           [--steps N] [--threads N] [--sample-batch 16] [--sample-steps 50]
                           [--small]

`--autocast none bf16` measures everything in fp32, then again with bf16 autocast, in one
process: one start of Python, torch and CUDA instead of two.

"fp32" on CUDA is not all fp32 by default: PyTorch runs cuDNN's convolutions in TF32 (tensor
cores, 10-bit mantissa) and matrix products in fp32. `--tf32` sets that explicitly (conv, the
default, is PyTorch's own default; on: both TF32; off: neither) and every line records it.
"""
import argparse
import json
import time

import torch
from denoising_diffusion_pytorch import GaussianDiffusion, Unet

# The reference MNIST U-Net and the paper's CIFAR-10 one (35.7 M parameters in lucidrains' code).
MODELS = {
    "mnist": dict(dim=32, dim_mults=(1, 2, 4), channels=1, image_size=28),
    "cifar": dict(dim=64, dim_mults=(1, 2, 4, 8), channels=3, image_size=32),
}

p = argparse.ArgumentParser()
p.add_argument("--model", choices=MODELS, default="mnist")
p.add_argument("--batch", type=int, nargs="+", default=[64])
p.add_argument("--sample-batch", type=int, default=16, help="0: no sampling measurements")
p.add_argument("--sample-steps", type=int, default=50)
p.add_argument("--device", default="cpu")
p.add_argument("--autocast", choices=["none", "bf16"], nargs="+", default=["none"])
p.add_argument("--trainer", action="store_true")
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, default=torch.get_num_threads())
p.add_argument("--tf32", choices=["conv", "on", "off"], default="conv")
p.add_argument("--small", action="store_true", help="a tiny U-Net (benches/gpu.sh's SMALL=1 check)")
args = p.parse_args()

device = args.device
if device == "cuda" and not torch.cuda.is_available():
    raise SystemExit("pytorch_unet.py: device cuda asked for, but torch sees no CUDA device")
torch.set_num_threads(args.threads)
torch.manual_seed(0)
spec = MODELS[args.model] | (dict(dim=8, dim_mults=(1, 2), attn_dim_head=8) if args.small else {})


def set_tf32(mode):
    """TF32 for convolutions and matrix products, through the API this torch has (2.9 added
    `fp32_precision`; the older flags still work there but warn)."""
    conv, matmul = mode in ("conv", "on"), mode == "on"
    if hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision"):
        torch.backends.cudnn.conv.fp32_precision = "tf32" if conv else "ieee"
        torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = conv
        torch.backends.cuda.matmul.allow_tf32 = matmul


set_tf32(args.tf32)
shape = (spec["channels"], spec["image_size"], spec["image_size"])
cast = "none"  # the precision being measured: one of args.autocast


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


def autocast():
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cast == "bf16")


def unet():
    return Unet(dim=spec["dim"], dim_mults=spec["dim_mults"], channels=spec["channels"],
                attn_dim_head=spec.get("attn_dim_head", 32))


def report(**fields):
    backend = f"pytorch {torch.__version__} {device}" + (" bf16 autocast" if cast == "bf16" else "")
    print(json.dumps({"backend": backend, "model": args.model, "autocast": cast,
                      "tf32": args.tf32 if device == "cuda" else None, **fields}), flush=True)


def diffusion_for(model):
    # `ddpm train`'s defaults are the paper's: linear β, ε-prediction; the bare step keeps the
    # settings benches/unet.rs uses (lucidrains' sigmoid schedule and v-prediction).
    if args.trainer:
        kw = dict(objective="pred_noise", beta_schedule="linear")
    else:
        kw = dict(objective="pred_v", beta_schedule="sigmoid")
    return GaussianDiffusion(model, image_size=spec["image_size"], timesteps=1000,
                             sampling_timesteps=args.sample_steps, auto_normalize=False,
                             **kw).to(device)


def train(batch):
    model = unet()
    diffusion = diffusion_for(model)
    if args.trainer:
        from ema_pytorch import EMA
        opt = torch.optim.Adam(diffusion.parameters(), lr=2e-4, betas=(0.9, 0.99))
        ema = EMA(diffusion, beta=0.995, update_every=10).to(device)
    else:
        opt = torch.optim.Adam(diffusion.parameters(), lr=8e-5)

    def step():
        x0 = torch.randn(batch, *shape).clamp(-1, 1)
        x0 = x0.pin_memory().to(device, non_blocking=True) if device == "cuda" else x0.to(device)
        with autocast():
            loss = diffusion(x0)
        loss.backward()
        if args.trainer:
            torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if args.trainer:
            ema.update()
        return loss.item()  # the Trainer reads the loss every step; so does `ddpm train`

    first = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - first
    for _ in range(2):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    report(bench="train_step" if batch == 64 and not args.trainer else f"train_b{batch}",
           batch=batch, seconds=round(mean, 4), fastest=round(min(times), 4),
           first_step_seconds=round(first, 3), images_per_second=round(batch / mean, 2),
           params=sum(p.numel() for p in model.parameters()), threads=args.threads,
           peak_memory_mib=round(torch.cuda.max_memory_allocated() / 2**20)
           if device == "cuda" else None)
    del diffusion, opt, model
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def network_evaluations(batch):
    model = unet().eval().to(device)
    x = torch.randn(batch, *shape, device=device)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    with torch.inference_mode(), autocast():
        for _ in range(2):
            model(x, t)
        evals = args.steps * 4
        sync()
        start = time.perf_counter()
        for _ in range(evals):
            model(x, t)
        sync()
        per_eval = (time.perf_counter() - start) / evals
    name = "sampling_step" if batch == 16 and not args.trainer else f"network_eval_b{batch}"
    report(bench=name, batch=batch, seconds=round(per_eval, 5),
           images_per_second=round(batch / per_eval, 1))


def sampling_run(batch):
    """What `ddpm sample -n BATCH --steps S` does: DDIM (η = 0) from noise, S network calls;
    gpu_table.py reads BATCH · S ÷ seconds as ours: images × network evaluations per second."""
    diffusion = diffusion_for(unet()).eval()
    with torch.inference_mode(), autocast():
        diffusion.sample(batch_size=batch)  # warm-up (cuDNN's choices)
        sync()
        start = time.perf_counter()
        diffusion.sample(batch_size=batch)
        sync()
    report(bench=f"ddim{args.sample_steps}_b{batch}", batch=batch, sampler_steps=args.sample_steps,
           seconds=round(time.perf_counter() - start, 3))


for cast in args.autocast:
    for b in args.batch:
        train(b)
    if args.sample_batch > 0:
        network_evaluations(args.sample_batch)
        if args.trainer:
            sampling_run(args.sample_batch)
