use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};

use super::*;
use crate::test_util::{device, values};

fn small() -> UnetConfig {
    UnetConfig::new(8)
        .with_dim_mults(vec![1, 2])
        .with_channels(1)
        .with_attn_heads(2)
        .with_attn_dim_head(4)
}

#[test]
fn parameter_count_matches_a_hand_count_of_the_architecture() {
    // dim 8, dim_mults (1, 2), 1 channel, 2 heads of 4: dims [8, 8, 16], time_dim 32.
    // conv(k, a→b) = k²ab + b; Linear(a→b) = ab + b.
    // ResnetBlock(a→b) = Linear(32→2b) + conv(3, a→b) + g_b + conv(3, b→b) + g_b (+ conv(1, a→b))
    //   R(8→8) = 528 + 584 + 8 + 584 + 8 = 1712          R(16→16) = 1056 + 2320 + 16 + 2320 + 16 = 5728
    //   R(24→16) = 1056 + 3472 + 16 + 2320 + 16 + 400 = 7280
    //   R(16→8) = 528 + 1160 + 8 + 584 + 8 + 136 = 2424
    // LinearAttention(d) = g_d + mem_kv 64 + to_qkv 24d + to_out (8d + d) + g_d = 35d + 64
    // Attention(d) = g_d + 64 + 24d + 9d = 34d + 64
    let expected = 400 // init_conv 7×7, 1→8
        + 1344 // time_mlp: Linear(8→32) 288 + Linear(32→32) 1056
        + (2 * 1712 + (35 * 8 + 64) + (32 * 8 + 8)) // downs.0: 2 R(8→8), LinearAttention(8), 1×1 32→8
        + (2 * 1712 + (34 * 8 + 64) + (9 * 8 * 16 + 16)) // downs.1: 2 R(8→8), Attention(8), 3×3 8→16
        + (2 * 5728 + (34 * 16 + 64)) // mid: 2 R(16→16), Attention(16)
        + (2 * 7280 + (34 * 16 + 64) + (9 * 16 * 8 + 8)) // ups.0: 2 R(24→16), Attention(16), 3×3 16→8
        + (2 * 2424 + (35 * 8 + 64) + (9 * 8 * 8 + 8)) // ups.1: 2 R(16→8), LinearAttention(8), 3×3 8→8
        + 2424 // final_res_block R(16→8)
        + 9; // final_conv 1×1 8→1
    assert_eq!(expected, 47_305);
    assert_eq!(small().init(&device()).num_params(), expected);
}

#[test]
fn conditioning_options_add_exactly_their_parameters() {
    // Self-conditioning doubles the input channels: init_conv 7×7 (2·3)→8 = 2360 instead of
    // 7×7 3→8 = 1184. Learned variance doubles the output: 1×1 8→6 = 54 instead of 27.
    // Ten classes add the embedding 10·8 + the null vector 8 + an MLP like time_mlp (1344),
    // and widen each ResNet block's FiLM input from 32 to 64: +64·dim_out for each of the
    // 4 + 2 + 2 + 2 + 1 blocks (dim_out 8, 8, 8, 8, 16, 16, 16, 16, 8, 8, 8): 64·120 = 7680.
    let base = small().with_channels(3).init(&device()).num_params();
    let full = small()
        .with_channels(3)
        .with_self_condition(true)
        .with_learned_variance(true)
        .with_num_classes(Some(10))
        .init(&device())
        .num_params();
    assert_eq!(
        full - base,
        (2360 - 1184) + (54 - 27) + (80 + 8 + 1344) + 7680
    );
}

#[test]
fn the_reference_mnist_and_default_configs_have_lucidrains_parameter_counts() {
    // Counted by PyTorch (tests/fixtures/lucidrains/make_sampling.py): Unet(dim=32,
    // dim_mults=(1, 2, 4), channels=1) and lucidrains' README's Unet(dim=64).
    let bytes = crate::test_util::sampling_fixture();
    let fixture = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let count = |name: &str| -> usize {
        let data = fixture.tensor(name).expect(name).data().to_vec();
        i64::from_le_bytes(data.try_into().expect("one i64")) as usize
    };
    let mnist = UnetConfig::new(32)
        .with_dim_mults(vec![1, 2, 4])
        .with_channels(1);
    assert_eq!(mnist.init(&device()).num_params(), count("params.mnist"));
    assert_eq!(
        UnetConfig::new(64).init(&device()).num_params(),
        count("params.cifar")
    );
}

#[test]
fn output_shape_equals_input_shape() {
    let device = device();
    let configs = [
        (small(), [2, 1, 28, 28]),
        (
            small().with_channels(3).with_dim_mults(vec![1, 2, 2]),
            [2, 3, 32, 32],
        ),
        (
            UnetConfig::new(8)
                .with_dim_mults(vec![1, 2, 4])
                .with_channels(1)
                .with_attn_heads(1)
                .with_attn_dim_head(8),
            [1, 1, 28, 28],
        ),
        (
            small().with_full_attn(Some(vec![true, true])),
            [3, 1, 8, 12],
        ),
    ];
    for (config, shape) in configs {
        let unet = config.init(&device);
        let x = Tensor::<4>::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_data(
            TensorData::new(vec![10.0f32; shape[0]], [shape[0]]),
            &device,
        );
        let out = unet.forward(x, t, None, None);
        assert_eq!(out.dims(), shape, "{config:?}");
        assert!(values(out).iter().all(|v| v.is_finite()));
    }
}

#[test]
fn learned_variance_doubles_the_output_channels() {
    let device = device();
    let unet = small().with_learned_variance(true).init(&device);
    let x = Tensor::<4>::zeros([1, 1, 8, 8], &device);
    let t = Tensor::<1>::zeros([1], &device);
    assert_eq!(unet.forward(x, t, None, None).dims(), [1, 2, 8, 8]);
}

#[test]
fn self_conditioning_input_changes_the_output() {
    let device = device();
    let unet = small().with_self_condition(true).init(&device);
    let x = Tensor::<4>::random(
        [2, 1, 8, 8],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let t = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 400.0], [2]), &device);
    let none = values(unet.forward(x.clone(), t.clone(), None, None));
    let zeros = values(unet.forward(x.clone(), t.clone(), Some(x.zeros_like()), None));
    let cond = values(unet.forward(x.clone(), t, Some(x.ones_like()), None));
    // No estimate means a zero estimate, as in lucidrains' code.
    assert_eq!(none, zeros);
    assert_ne!(none, cond);
}

#[test]
fn class_labels_select_embeddings_and_the_null_class() {
    let device = device();
    let unet = small().with_num_classes(Some(3)).init(&device);
    let x = Tensor::<4>::random(
        [1, 1, 8, 8],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let x = Tensor::cat(vec![x.clone(), x.clone(), x.clone(), x], 0);
    let t = Tensor::<1>::full([4], 100.0, &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 3, 0], [4]), &device);
    let out = values(unet.forward(x.clone(), t.clone(), None, Some(labels)));
    let image = |i: usize| out[i * 64..(i + 1) * 64].to_vec();
    assert_eq!(image(0), image(3), "same label, same output");
    assert_ne!(image(0), image(1), "different labels, different outputs");
    // Label 3 (= num_classes) is the null class, which is also what no labels mean.
    let unlabelled = values(unet.forward(x, t, None, None));
    assert_eq!(image(2), unlabelled[2 * 64..3 * 64].to_vec());
}

#[test]
fn configs_that_cannot_build_are_rejected() {
    assert_eq!(
        small().with_dim_mults(vec![]).validate(),
        Err(UnetConfigError::Zero("dim_mults"))
    );
    assert_eq!(UnetConfig::new(7).validate(), Err(UnetConfigError::Dim(7)));
    assert_eq!(
        small().with_full_attn(Some(vec![true])).validate(),
        Err(UnetConfigError::FullAttn { got: 1, levels: 2 })
    );
    assert_eq!(
        small().with_dropout(1.0).validate(),
        Err(UnetConfigError::Dropout(1.0))
    );
    assert!(small().validate().is_ok());
    // Sizes from a damaged file are bounded before any product of them is formed.
    let too_large = |config: UnetConfig, name| {
        let max = if name == "dim_mults' levels" {
            MAX_LEVELS
        } else {
            MAX_WIDTH
        };
        assert_eq!(config.validate(), Err(UnetConfigError::TooLarge(name, max)));
    };
    too_large(UnetConfig::new(1 << 62), "dim");
    too_large(
        small().with_dim_mults(vec![1, usize::MAX]),
        "dim × dim_mults",
    );
    too_large(small().with_dim_mults(vec![1 << 13, 1]), "dim × dim_mults");
    too_large(
        small().with_attn_heads(1 << 40).with_attn_dim_head(1 << 40),
        "attn_heads × attn_dim_head",
    );
    too_large(
        small().with_dim_mults(vec![1; MAX_LEVELS + 1]),
        "dim_mults' levels",
    );
    assert_eq!(
        small().with_num_classes(Some(MAX_CLASSES + 1)).validate(),
        Err(UnetConfigError::TooLarge("num_classes", MAX_CLASSES))
    );
    assert_eq!(
        small().check_image_size(MAX_IMAGE_SIDE * 2, 8),
        Err(UnetConfigError::TooLarge("image side", MAX_IMAGE_SIDE))
    );
    let three_levels = small().with_dim_mults(vec![1, 2, 4]);
    assert!(three_levels.check_image_size(28, 28).is_ok());
    assert_eq!(
        three_levels.check_image_size(30, 28),
        Err(UnetConfigError::ImageSize {
            height: 30,
            width: 28,
            factor: 4,
            levels: 3
        })
    );
}

#[test]
fn pixel_unshuffle_and_nearest_upsample_move_pixels_like_einops() {
    // Identity 1×1 convs expose the rearrangement itself.
    let device = device();
    let eye = |n: usize| {
        let mut w = vec![0.0f32; n * n];
        for i in 0..n {
            w[i * n + i] = 1.0;
        }
        Tensor::<4>::from_data(TensorData::new(w, [n, n, 1, 1]), &device)
    };
    let mut conv = blocks::conv(4, 4, 1, true, &device);
    conv.weight = burn::module::Param::from_tensor(eye(4));
    conv.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
        [4],
        &device,
    )));
    let x = Tensor::<4>::from_data(
        TensorData::new((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4]),
        &device,
    );
    // 'b c (h p1) (w p2) -> b (c p1 p2) h w': channel p1·2+p2 holds pixel (2h+p1, 2w+p2).
    let down = values(Down::PixelUnshuffle(conv).forward(x));
    assert_eq!(
        down,
        vec![
            0., 2., 8., 10., 1., 3., 9., 11., 4., 6., 12., 14., 5., 7., 13., 15.
        ]
    );

    let mut conv = blocks::conv(1, 1, 3, true, &device);
    let mut k = vec![0.0f32; 9];
    k[4] = 1.0;
    conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
        TensorData::new(k, [1, 1, 3, 3]),
        &device,
    ));
    conv.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
        [1],
        &device,
    )));
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![1.0f32, 2., 3., 4.], [1, 1, 2, 2]),
        &device,
    );
    let up = values(Up::Nearest(conv).forward(x));
    assert_eq!(
        up,
        vec![
            1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.
        ]
    );
}

#[test]
fn rms_norm_is_lucidrains_normalize_times_sqrt_dim() {
    let device = device();
    let norm = RmsNorm::new(2, &device);
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![3.0f32, 0.0, 4.0, 0.0], [1, 2, 1, 2]),
        &device,
    );
    // Pixel 0 has channels (3, 4): ‖·‖ = 5, times √2. Pixel 1 is all zero and stays zero.
    let y = values(norm.forward(x));
    let s = 2f32.sqrt();
    let expected = [3.0 / 5.0 * s, 0.0, 4.0 / 5.0 * s, 0.0];
    for (a, b) in y.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{y:?}");
    }
}

#[test]
fn sinusoidal_embedding_matches_the_formula() {
    let device = device();
    let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 5.0], [2]), &device);
    let e = values(sinusoidal_embedding(t, 8, 10_000.0));
    // half = 4, frequencies 10000^(−i/3).
    for i in 0..4 {
        let f = (-(i as f64) * (10_000f64).ln() / 3.0).exp();
        assert_eq!(e[i], 0.0); // sin(0)
        assert_eq!(e[4 + i], 1.0); // cos(0)
        assert!((e[8 + i] as f64 - (5.0 * f).sin()).abs() < 1e-5);
        assert!((e[12 + i] as f64 - (5.0 * f).cos()).abs() < 1e-5);
    }
}

#[test]
fn the_sampler_refuses_shapes_the_unet_cannot_take() {
    use crate::diffusion::{Denoiser, DiffusionConfig, GaussianDiffusion};
    use crate::sampler::{SampleRequest, Sampler, SamplerConfig, SamplerError};
    let device = device();
    let unet = small().with_dim_mults(vec![1, 2, 4]).init(&device);
    assert_eq!(unet.check_shape([2, 1, 28, 28]), Ok(()));
    let diffusion = GaussianDiffusion::new(DiffusionConfig::default());
    let start = |shape| {
        let request = SampleRequest {
            seed: 0,
            shape,
            classes: None,
        };
        Sampler::new(
            &diffusion,
            SamplerConfig::default(),
            request,
            &unet,
            &device,
        )
        .err()
    };
    assert_eq!(
        start([1, 3, 28, 28]),
        Some(SamplerError::Shape(
            "the model takes 1 channels, not 3".into()
        ))
    );
    assert_eq!(
        start([1, 1, 30, 28]),
        Some(SamplerError::Shape(
            "image size 30×28 must be divisible by 4 for this model".into()
        ))
    );
    assert_eq!(
        start([0, 1, 28, 28]),
        Some(SamplerError::EmptyShape([0, 1, 28, 28]))
    );
    assert_eq!(
        Sampler::new(
            &diffusion,
            SamplerConfig::default(),
            SampleRequest {
                seed: 0,
                shape: [1, 1, 28, 28],
                classes: Some(vec![0])
            },
            &unet,
            &device
        )
        .err(),
        Some(SamplerError::NotConditional)
    );
}

#[test]
fn pointwise_matmul_equals_the_1x1_convolution_and_its_gradients() {
    let device = device().autodiff();
    let conv = blocks::conv(6, 5, 1, true, &device);
    let x = Tensor::<4>::random(
        [3, 6, 4, 5],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    )
    .require_grad();
    let weights = Tensor::<4>::random(
        [3, 5, 4, 5],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    // On an autodiff device `pointwise` takes the matmul path; `conv.forward` is the reference.
    let y_mm = blocks::pointwise(&conv, x.clone());
    let y_conv = conv.forward(x.clone());
    let close = |a: Vec<f32>, b: Vec<f32>| {
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4 * q.abs().max(1.0), "{p} vs {q}");
        }
    };
    close(values(y_mm.clone()), values(y_conv.clone()));
    let g_mm = (y_mm * weights.clone()).sum().backward();
    let g_conv = (y_conv * weights).sum().backward();
    close(
        values(x.grad(&g_mm).expect("x grad")),
        values(x.grad(&g_conv).expect("x grad")),
    );
    let w = conv.weight.val();
    close(
        values(w.grad(&g_mm).expect("w grad")),
        values(w.grad(&g_conv).expect("w grad")),
    );
    let bias = conv.bias.as_ref().expect("bias").val();
    close(
        values(bias.grad(&g_mm).expect("b grad")),
        values(bias.grad(&g_conv).expect("b grad")),
    );
}

#[test]
fn training_and_sampling_paths_compute_the_same_function() {
    // With gradients recorded, 1×1 convs and the q/k/v projection run as matmuls; without,
    // as convolutions. `valid()` gives the same weights on the plain device.
    let plain_device = device();
    let device = plain_device.clone().autodiff();
    let unet = small()
        .with_num_classes(Some(2))
        .with_self_condition(true)
        .init(&device);
    let plain = unet.valid();
    let x = crate::NoiseSource::new(4).normal_tensor([2, 1, 8, 8], &plain_device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 70.0], [2]), &plain_device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &plain_device);
    let reference =
        values(plain.forward(x.clone(), t.clone(), Some(x.clone()), Some(labels.clone())));
    let to_ad = |x: Tensor<4>| Tensor::<4>::from_data(x.into_data(), &device);
    let recorded = values(unet.forward(
        to_ad(x.clone()).require_grad(),
        Tensor::from_data(t.into_data(), &device),
        Some(to_ad(x)),
        Some(Tensor::from_data(labels.into_data(), &device)),
    ));
    for (a, b) in recorded.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
}
