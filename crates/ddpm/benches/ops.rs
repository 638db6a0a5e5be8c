//! Per-operation profile of the MNIST U-Net's building blocks on burn's CPU backend (flex):
//! forward and forward+backward time of each layer at the shapes it runs at in a training
//! step (batch 64), with its FLOP count and the rate it reaches, then LinearAttention at 28×28
//! taken apart step by step.
//!
//! `cargo bench -p ddpm --bench ops --features fused-autodiff,fused-rayon [-- REPEATS]` (the
//! layers as the CLI runs them; without the features, as burn's composites). Not part of the
//! tests.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use ddpm::UnetConfig;
use ddpm::unet::{Attention, LinearAttention, ResnetBlock, RmsNorm, pointwise};

/// The fastest of `repeats` runs after a warm-up: the least disturbed by other work on a
/// shared machine.
fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn report(name: &str, forward: f64, both: f64, flops: f64) {
    // Backward costs about twice the forward FLOPs for convolutions and matmuls.
    println!(
        "{name:<34} fwd {:>8.2} ms {:>6.1} GFLOP/s   fwd+bwd {:>8.2} ms {:>6.1} GFLOP/s",
        forward * 1e3,
        flops / forward / 1e9,
        both * 1e3,
        3.0 * flops / both / 1e9
    );
}

/// Times `f` on an input of `shape`, forward only and with the backward pass.
fn profile(
    name: &str,
    device: &Device,
    shape: [usize; 4],
    flops: f64,
    repeats: usize,
    f: impl Fn(Tensor<4>) -> Tensor<4>,
) {
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let forward = time(repeats, || {
        let _ = f(x.clone()).into_data();
    });
    let both = time(repeats, || {
        let x = x.clone().require_grad();
        let _ = f(x).sum().backward();
    });
    report(name, forward, both, flops);
}

fn main() {
    let repeats: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let device = Device::flex().autodiff();
    let b = 64;
    let conv_flops =
        |cin: f64, cout: f64, k: f64, hw: f64| 2.0 * b as f64 * cin * cout * k * k * hw;

    for (cin, cout, k, side) in [
        (1, 32, 7, 28),
        (32, 32, 3, 28),
        (64, 32, 3, 28),
        (64, 64, 3, 14),
        (128, 128, 3, 7),
        (32, 384, 1, 28),
        (128, 32, 1, 14),
    ] {
        let conv = burn::nn::conv::Conv2dConfig::new([cin, cout], [k, k])
            .with_padding(burn::nn::PaddingConfig2d::Explicit(
                k / 2,
                k / 2,
                k / 2,
                k / 2,
            ))
            .init(&device);
        let flops = conv_flops(cin as f64, cout as f64, k as f64, (side * side) as f64);
        profile(
            &format!("conv {k}x{k} {cin}->{cout} @{side}"),
            &device,
            [b, cin, side, side],
            flops,
            repeats,
            |x| conv.forward(x),
        );
        if k > 1 {
            profile(
                "  the same through unet::ops::same_conv",
                &device,
                [b, cin, side, side],
                flops,
                repeats,
                |x| ddpm::unet::ops::same_conv(&conv, x),
            );
        }
    }

    // The same 1×1 convolution through `unet::pointwise`, the batched matmul `W·x` the U-Net
    // uses while gradients are recorded.
    let conv = burn::nn::conv::Conv2dConfig::new([32, 384], [1, 1]).init(&device);
    profile(
        "1x1 as matmul (pointwise) 32->384",
        &device,
        [b, 32, 28, 28],
        conv_flops(32.0, 384.0, 1.0, 784.0),
        repeats,
        |x| pointwise(&conv, x),
    );

    let w = Tensor::<2>::random([384, 32], Distribution::Normal(0.0, 0.1), &device).require_grad();
    profile(
        "1x1 as channels-last GEMM 32->384",
        &device,
        [b, 32, 28, 28],
        conv_flops(32.0, 384.0, 1.0, 784.0),
        repeats,
        |x| {
            let [b, c, h, wd] = x.dims();
            let rows = x.permute([0, 2, 3, 1]).reshape([b * h * wd, c]);
            rows.matmul(w.clone().transpose())
                .reshape([b, h, wd, 384])
                .permute([0, 3, 1, 2])
        },
    );

    let norm = RmsNorm::new(32, &device);
    profile(
        "RMSNorm 32 @28",
        &device,
        [b, 32, 28, 28],
        4.0 * (b * 32 * 784) as f64,
        repeats,
        |x| norm.forward(x),
    );

    let emb = Tensor::<2>::random([b, 128], Distribution::Normal(0.0, 1.0), &device);
    let block = ResnetBlock::new(32, 32, 128, 0.0, &device);
    profile(
        "ResnetBlock 32->32 @28",
        &device,
        [b, 32, 28, 28],
        2.0 * conv_flops(32.0, 32.0, 3.0, 784.0),
        repeats,
        |x| block.forward(x, emb.clone()),
    );

    let linear = LinearAttention::new(32, 4, 32, &device);
    // to_qkv + to_out 1×1 convs + the two n×d×d products.
    let lin_flops = conv_flops(32.0, 384.0, 1.0, 784.0)
        + conv_flops(128.0, 32.0, 1.0, 784.0)
        + 2.0 * 2.0 * (b * 4 * 32 * 32 * 788) as f64;
    profile(
        "LinearAttention 32 @28",
        &device,
        [b, 32, 28, 28],
        lin_flops,
        repeats,
        |x| linear.forward(x),
    );

    linear_attention_parts(&device, b, repeats);

    let full = Attention::new(128, 4, 32, &device);
    let n = 49.0;
    let full_flops = conv_flops(128.0, 384.0, 1.0, n)
        + conv_flops(128.0, 128.0, 1.0, n)
        + 2.0 * 2.0 * b as f64 * 4.0 * n * (n + 4.0) * 32.0;
    profile(
        "Attention 128 @7",
        &device,
        [b, 128, 7, 7],
        full_flops,
        repeats,
        |x| full.forward(x),
    );

    profile(
        "pixel-unshuffle 32 @28",
        &device,
        [b, 32, 28, 28],
        (b * 32 * 784) as f64,
        repeats,
        |x| {
            let [b, c, h, w] = x.dims();
            x.reshape([b, c, h / 2, 2, w / 2, 2])
                .permute([0, 1, 3, 5, 2, 4])
                .reshape([b, c * 4, h / 2, w / 2])
        },
    );
    profile(
        "nearest upsample 64 @14",
        &device,
        [b, 64, 14, 14],
        (b * 64 * 784) as f64,
        repeats,
        |x| {
            let [b, c, h, w] = x.dims();
            x.reshape([b, c, h, 1, w, 1])
                .expand([b, c, h, 2, w, 2])
                .reshape([b, c, h * 2, w * 2])
        },
    );

    // Adam over the whole MNIST U-Net's parameters, with gradients of ones.
    let model = UnetConfig::new(32)
        .with_dim_mults(vec![1, 2, 4])
        .with_channels(1)
        .init(&device);
    let params = model.num_params() as f64;
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<4>::zeros([1, 1, 28, 28], &device);
    let t = Tensor::<1>::zeros([1], &device);
    let mut model = Some(model);
    let adam = time(repeats, || {
        let m = model.take().expect("model");
        let grads = GradientsParams::from_grads(
            m.forward(x.clone(), t.clone(), None, None).sum().backward(),
            &m,
        );
        model = Some(optim.step(1e-4, m, grads));
    });
    println!(
        "{:<34} {:>8.2} ms for {params} parameters (with a batch-1 forward/backward)",
        "Adam step",
        adam * 1e3
    );
}

/// One operation under test, building its output from captured inputs.
type Part<'a> = Box<dyn Fn() -> Tensor<4> + 'a>;

/// LinearAttention(32, heads 4, dim_head 32) at 28×28, one operation at a time, with the shapes
/// of the real forward pass.
fn linear_attention_parts(device: &Device, b: usize, repeats: usize) {
    // The U-Net's softmax: the fused kernel when built with the `fused` features.
    use ddpm::unet::ops::softmax;
    let (heads, d, n, m) = (4, 32, 784, 4);
    let rand =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let x = rand([b, 32, 28, 28]);
    let norm = RmsNorm::new(32, device);
    let qkv = burn::nn::conv::Conv2dConfig::new([32, 384], [1, 1])
        .with_bias(false)
        .init(device);
    let part = rand([b, heads, d, n]);
    let mem = rand([1, heads, d, m]);
    let kv = rand([b, heads, d, n + m]);
    let ctx = rand([b, heads, d, d]);
    let projected = rand([b, 384, 28, 28]);
    let parts: Vec<(&str, Part<'_>)> = vec![
        (
            "  norm",
            Box::new(|| norm.forward(x.clone().require_grad())),
        ),
        (
            "  to_qkv 1x1 conv",
            Box::new(|| qkv.forward(x.clone().require_grad())),
        ),
        (
            "  chunk + reshape to heads",
            Box::new(|| {
                let y = projected.clone().require_grad();
                y.chunk(3, 1).remove(0).reshape([b, heads, d, n])
            }),
        ),
        (
            "  cat memory k",
            Box::new(|| {
                Tensor::cat(
                    vec![
                        mem.clone().expand([b, heads, d, m]),
                        part.clone().require_grad(),
                    ],
                    3,
                )
            }),
        ),
        (
            "  softmax q over d",
            Box::new(|| softmax(part.clone().require_grad(), 2)),
        ),
        (
            "  softmax k over n",
            Box::new(|| softmax(kv.clone().require_grad(), 3)),
        ),
        (
            "  context = k v^T",
            Box::new(|| kv.clone().require_grad().matmul(kv.clone().swap_dims(2, 3))),
        ),
        (
            "  out = context^T q",
            Box::new(|| {
                ctx.clone()
                    .require_grad()
                    .swap_dims(2, 3)
                    .matmul(part.clone().require_grad())
            }),
        ),
    ];
    for (name, f) in parts {
        let forward = time(repeats, || {
            let _ = f().into_data();
        });
        let both = time(repeats, || {
            let _ = f().sum().backward();
        });
        println!(
            "{name:<34} fwd {:>8.2} ms              fwd+bwd {:>8.2} ms",
            forward * 1e3,
            both * 1e3
        );
    }
}
