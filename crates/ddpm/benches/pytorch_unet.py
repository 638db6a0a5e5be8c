"""The same measurements as benches/unet.rs, with lucidrains' denoising-diffusion-pytorch.

Prints one JSON line per measurement. Run by benches/run.sh inside its virtual environment:

    python pytorch_unet.py [STEPS] [THREADS] [DEVICE: cpu | cuda]
"""
import json
import sys
import time

import torch
from denoising_diffusion_pytorch import GaussianDiffusion, Unet

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
threads = int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads()
device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("pytorch_unet.py: device cuda asked for, but torch sees no CUDA device")
torch.set_num_threads(threads)
torch.manual_seed(0)


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


def mnist_unet():
    return Unet(dim=32, dim_mults=(1, 2, 4), channels=1)


unet = mnist_unet()
diffusion = GaussianDiffusion(unet, image_size=28, timesteps=1000, objective="pred_v",
                              beta_schedule="sigmoid", auto_normalize=False).to(device)
opt = torch.optim.Adam(diffusion.parameters(), lr=8e-5)
batch = 64


def train_step():
    x0 = torch.randn(batch, 1, 28, 28, device=device).clamp(-1, 1)
    loss = diffusion(x0)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()


train_step()
sync()
start = time.perf_counter()
for _ in range(steps):
    train_step()
sync()
per_step = (time.perf_counter() - start) / steps
print(json.dumps({"bench": "train_step", "backend": f"pytorch {torch.__version__} {device}",
                  "batch": batch, "seconds": round(per_step, 4),
                  "images_per_second": round(batch / per_step, 2),
                  "params": sum(p.numel() for p in unet.parameters()), "threads": threads}))

model = mnist_unet().eval().to(device)
x = torch.randn(16, 1, 28, 28, device=device)
t = torch.full((16,), 500, dtype=torch.long, device=device)
with torch.inference_mode():
    model(x, t)
    evals = steps * 4
    sync()
    start = time.perf_counter()
    for _ in range(evals):
        model(x, t)
    sync()
    per_eval = (time.perf_counter() - start) / evals
print(json.dumps({"bench": "sampling_step", "backend": f"pytorch {torch.__version__} {device}",
                  "batch": 16, "seconds": round(per_eval, 4)}))
