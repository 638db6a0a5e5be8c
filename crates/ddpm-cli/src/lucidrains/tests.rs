//! Against fixtures made once with PyTorch and lucidrains' package
//! (`tests/fixtures/lucidrains/make.py`): the imported networks give lucidrains' outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor as BurnTensor, TensorData};
use ddpm::{BetaSchedule, Objective, UnetConfig};

use super::state_dict::Format;
use super::*;
use crate::load::WeightsChoice;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/lucidrains")
        .join(name)
}

/// Little-endian f32 bytes as values.
fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `outputs.safetensors`: inputs and lucidrains' outputs, by name.
fn outputs() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    fixture_tensors("outputs.safetensors")
}

/// A fixture's f32 tensors (shape, values), by name.
pub(crate) fn fixture_tensors(name: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    safetensors_values(std::fs::read(fixture(name)).expect("fixture"))
}

/// A safetensors file's f32 tensors (shape, values), by name.
pub(crate) fn safetensors_values(bytes: Vec<u8>) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let file = safetensors_file::read(bytes).expect("safetensors");
    file.tensors
        .into_iter()
        .map(|(name, stored)| {
            let values = floats(&stored.bytes);
            let shape = stored.shape;
            (name, (shape, values))
        })
        .collect()
}

fn tensor<const D: usize>(
    outputs: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    name: &str,
) -> BurnTensor<D> {
    tensor_on(outputs, name, &Device::flex())
}

/// The fixture tensor `name` on `device`.
pub(crate) fn tensor_on<const D: usize>(
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    name: &str,
    device: &Device,
) -> BurnTensor<D> {
    let (shape, values) = &tensors[name];
    BurnTensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
}

fn max_diff(a: BurnTensor<4>, expected: &[f32]) -> f32 {
    let ours = a.into_data().try_into_vec::<f32>().expect("f32");
    assert_eq!(ours.len(), expected.len());
    ours.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_trainer_checkpoint_gives_lucidrains_outputs_with_its_ema_and_raw_weights() {
    let out = outputs();
    let (x, t) = (
        tensor::<4>(&out, "trainer.x"),
        tensor::<1>(&out, "trainer.t"),
    );
    for (choice, prefix, averaging, expected) in [
        (
            None,
            "ema.ema_model.model.",
            WeightsChoice::Ema,
            "trainer.ema",
        ),
        (
            Some(WeightsChoice::Raw),
            "model.model.",
            WeightsChoice::Raw,
            "trainer.raw",
        ),
    ] {
        let dict = read(&fixture("model-2.pt"), choice).expect("reads");
        assert_eq!(dict.prefix, prefix);
        assert_eq!(dict.averaging, Some(averaging));
        assert_eq!(
            (dict.step, dict.version.as_deref()),
            (Some(2), Some("2.3.1"))
        );
        let (model, config) = unet(&dict, &Device::flex()).expect("imports");
        // Unet(dim=4, dim_mults=(1, 2), channels=1, full_attn=(False, True), attn_heads=2,
        // attn_dim_head=4); (False, True) is the default for two levels.
        let expected_config = UnetConfig::new(4)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .with_attn_heads(2)
            .with_attn_dim_head(4);
        assert_eq!(config, expected_config);
        let diff = max_diff(
            model.forward(x.clone(), t.clone(), None, None),
            &out[expected].1,
        );
        assert!(diff < 1e-4, "{expected}: max |ours − lucidrains| = {diff}");
        let (diffusion, assumed) =
            infer_diffusion(&dict.buffers, None, &DiffusionFlags::default(), false)
                .expect("buffers");
        assert_eq!(
            (
                diffusion.timesteps,
                diffusion.beta_schedule,
                diffusion.objective
            ),
            (20, BetaSchedule::SIGMOID, Objective::PredV)
        );
        assert_eq!(diffusion.min_snr_gamma, None);
        assert!(assumed.is_empty(), "{assumed:?}");
    }
    // The EMA holds the weights after the first step (ema-pytorch's first update copies them,
    // the next comes after step 11); the raw weights have taken a second step since.
    assert!(max_diff(tensor(&out, "trainer.ema"), &out["trainer.raw"].1) > 1e-3);
}

#[test]
fn a_bare_safetensors_state_dict_with_self_conditioning_and_learned_variance() {
    let out = outputs();
    let dict = read(&fixture("unet.safetensors"), None).expect("reads");
    assert_eq!(
        (dict.format, dict.prefix.as_str()),
        (Format::Safetensors, "")
    );
    assert_eq!(
        (dict.averaging, dict.step, dict.buffers.len()),
        (None, None, 0)
    );
    let (model, config) = unet(&dict, &Device::flex()).expect("imports");
    let expected_config = UnetConfig::new(4)
        .with_dim_mults(vec![1, 2, 2])
        .with_channels(3)
        .with_self_condition(true)
        .with_learned_variance(true)
        .with_attn_heads(2)
        .with_attn_dim_head(8);
    assert_eq!(config, expected_config);
    let output = model.forward(
        tensor(&out, "bare.x"),
        tensor(&out, "bare.t"),
        Some(tensor(&out, "bare.x_self_cond")),
        None,
    );
    let diff = max_diff(output, &out["bare.out"].1);
    assert!(diff < 1e-4, "max |ours − lucidrains| = {diff}");
}

#[test]
fn export_writes_what_import_reads_back_identically() {
    let dict = read(&fixture("unet.safetensors"), None).expect("reads");
    let (model, unet_config) = unet(&dict, &Device::flex()).expect("imports");
    let config = ddpm::ModelConfig {
        unet: unet_config,
        diffusion: ddpm::DiffusionConfig::default(),
        image_size: [16, 16],
    };
    let bytes = to_safetensors(&model, &config).expect("exports");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("back.safetensors");
    std::fs::write(&path, &bytes).expect("write");
    let back = read(&path, None).expect("reads back");
    assert_eq!(back.config.as_ref(), Some(&config));
    // Every tensor as lucidrains wrote it: same keys, shapes and values.
    assert_eq!(back.unet, dict.unet);
    let (again, _) = unet(&back, &Device::flex()).expect("imports back");
    let bytes_again = to_safetensors(&again, &config).expect("exports");
    assert!(
        bytes_again == bytes,
        "a second export differs from the first"
    );
    let classes = ddpm::ModelConfig {
        unet: config.unet.clone().with_num_classes(Some(10)),
        ..config.clone()
    };
    let err = to_safetensors(&classes.unet.init(&Device::flex()), &classes).expect_err("classes");
    assert!(err.to_string().contains("class-conditional"), "{err}");
}

#[test]
fn bad_state_dicts_are_refused_by_key() {
    let dict = read(&fixture("unet.safetensors"), None).expect("reads");
    let refuse = |edit: &dyn Fn(&mut StateDict)| {
        let mut bad = dict.clone();
        edit(&mut bad);
        unet(&bad, &Device::flex())
            .expect_err("refused")
            .to_string()
    };
    let err = refuse(&|d| {
        d.unet.remove("ups.1.2.to_out.1.g");
    });
    assert!(
        err.starts_with("missing `ups.1.2.to_out.1.g` for Unet(dim=4"),
        "{err}"
    );
    let err = refuse(&|d| {
        let t = d.unet["final_conv.bias"].clone();
        d.unet.insert("final_conv.extra".into(), t);
    });
    assert!(err.starts_with("unexpected `final_conv.extra`"), "{err}");
    let err = refuse(&|d| {
        if let Some(t) = d.unet.get_mut("downs.1.0.block1.proj.weight") {
            t.values[7] = f32::NAN;
        }
    });
    assert_eq!(
        err,
        "`downs.1.0.block1.proj.weight` holds NaN or infinite values"
    );
    let err = refuse(&|d| {
        if let Some(t) = d.unet.get_mut("mid_block1.mlp.1.bias") {
            t.shape = vec![t.values.len() / 2, 2];
        }
    });
    assert!(
        err.starts_with("`mid_block1.mlp.1.bias` has shape [8, 2], expected [16]"),
        "{err}"
    );
    let err = refuse(&|d| {
        d.unet.remove("mid_attn.mem_kv");
    });
    assert_eq!(err, "no tensor `mid_attn.mem_kv`");
    // The shapes set the sizes: a zero or overflowing `dim` is refused, not divided by.
    for dim in [0usize, 1 << 62] {
        let err = refuse(&|d| {
            if let Some(t) = d.unet.get_mut("time_mlp.1.weight") {
                t.shape = vec![dim.wrapping_mul(4), dim];
            }
        });
        assert!(
            err.contains("time_mlp.1.weight` has shape") && err.contains("dim from 1 to 16384"),
            "{dim}: {err}"
        );
    }
}

#[test]
fn files_that_are_not_lucidrains_models_get_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let text = write("notes.pt", b"not a checkpoint at all");
    let err = read(&text, None).expect_err("text").to_string();
    assert!(
        err.starts_with("neither safetensors nor a readable PyTorch file"),
        "{err}"
    );
    let other = safetensors_file::write(
        vec![("encoder.weight".into(), vec![2], vec![1.0, 2.0])],
        Default::default(),
    )
    .expect("safetensors");
    let err = read(&write("other.safetensors", &other), None).expect_err("other");
    assert_eq!(
        err.to_string(),
        "no `init_conv.weight` among its 1 tensors (`encoder.weight`, …): not a lucidrains Unet, GaussianDiffusion or Trainer checkpoint"
    );
    let err = read(&fixture("unet.safetensors"), Some(WeightsChoice::Raw)).expect_err("no raw");
    assert!(err.to_string().contains("leave out --weights"), "{err}");
}

/// A few thousand corruptions of the fixtures (flipped bytes, zeroed runs, truncations, most of
/// them in the containers' headers and indexes where the structure is): each reads as a model
/// or is refused with one line; none panics.
#[test]
fn corrupted_files_are_refused_cleanly_and_never_panic() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("corrupt");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        // xorshift64*: deterministic, so a failure names a reproducible variant.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    };
    let (mut refused, mut read_ok) = (0, 0);
    for (name, variants) in [("model-2.pt", 1500), ("unet.safetensors", 500)] {
        let original = std::fs::read(fixture(name)).expect("fixture");
        let len = original.len();
        for variant in 0..variants {
            let mut bytes = original.clone();
            // Positions: a quarter anywhere, the rest in the first and last 4 KiB (the ZIP's
            // local headers, pickle and central directory; the safetensors header).
            let at = |next: &mut dyn FnMut(usize) -> usize| match next(4) {
                0 => next(len),
                1 => next(4096.min(len)),
                _ => len - 1 - next(4096.min(len)),
            };
            match variant % 4 {
                0 | 1 => {
                    for _ in 0..1 + next(8) {
                        let i = at(&mut next);
                        bytes[i] ^= 1 << next(8);
                    }
                }
                2 => {
                    let i = at(&mut next);
                    let end = (i + 1 + next(64)).min(len);
                    bytes[i..end].fill(0);
                }
                _ => bytes.truncate(at(&mut next)),
            }
            std::fs::write(&path, &bytes).expect("write");
            let outcome = std::panic::catch_unwind(|| {
                let dict = read(&path, None)?;
                let (model, _) = unet(&dict, &Device::flex())?;
                infer_diffusion(&dict.buffers, None, &DiffusionFlags::default(), false)?;
                anyhow::Ok(model)
            });
            match outcome {
                Err(_) => panic!("{name} variant {variant} panicked"),
                Ok(Ok(_)) => read_ok += 1,
                Ok(Err(e)) => {
                    let message = format!("{e:#}");
                    assert!(
                        !message.is_empty() && !message.contains('\n'),
                        "{name} variant {variant}: {message:?}"
                    );
                    refused += 1;
                }
            }
        }
    }
    // Most corruptions are caught (the ZIP's checksums, the header's lengths); some only
    // change weights, which then load.
    eprintln!("corruptions: {refused} refused, {read_ok} read");
    assert!(refused > 1000, "refused {refused}, read {read_ok}");
}

#[test]
fn lucidrains_own_buffers_at_t_1000_tell_schedule_objective_and_min_snr() {
    let bytes = std::fs::read(fixture("schedules.safetensors")).expect("fixture");
    let file = safetensors_file::read(bytes).expect("safetensors");
    for (name, schedule, objective, gamma) in [
        (
            "sigmoid.pred_v",
            BetaSchedule::SIGMOID,
            Objective::PredV,
            None,
        ),
        (
            "cosine.pred_noise",
            BetaSchedule::COSINE,
            Objective::PredNoise,
            Some(5.0),
        ),
        (
            "linear.pred_x0",
            BetaSchedule::Linear {},
            Objective::PredX0,
            None,
        ),
    ] {
        let buffers = ["betas", "loss_weight"]
            .into_iter()
            .map(|buffer| {
                let stored = &file.tensors[&format!("{name}.{buffer}")];
                let values = floats(&stored.bytes);
                let shape = stored.shape.clone();
                (buffer.to_string(), Tensor { shape, values })
            })
            .collect();
        let (config, _) =
            infer_diffusion(&buffers, None, &DiffusionFlags::default(), false).expect(name);
        assert_eq!(
            (
                config.timesteps,
                config.beta_schedule,
                config.objective,
                config.min_snr_gamma
            ),
            (1000, schedule, objective, gamma),
            "{name}"
        );
        // And the tables built from that config are PyTorch's, value for value.
        let diffusion = ddpm::GaussianDiffusion::new(config);
        let ours = [
            ("betas", &diffusion.schedule().betas[..]),
            ("alphas_cumprod", &diffusion.schedule().alphas_cumprod[..]),
            ("loss_weight", diffusion.loss_weight()),
        ];
        for (buffer, ours) in ours {
            let theirs = floats(&file.tensors[&format!("{name}.{buffer}")].bytes);
            assert_eq!(theirs.len(), ours.len(), "{name}.{buffer}");
            let worst = theirs
                .iter()
                .zip(ours)
                .map(|(t, o)| (t - o).abs() / t.abs().max(1e-6))
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{name}.{buffer}: relative error {worst}");
        }
    }
}
