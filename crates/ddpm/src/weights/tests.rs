use burn::tensor::{Distribution, Tensor};

use super::*;
use crate::diffusion::Objective;
use crate::schedule::BetaSchedule;
use crate::test_util::{device, values};

fn config() -> ModelConfig {
    ModelConfig {
        unet: UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .with_attn_heads(2)
            .with_attn_dim_head(4)
            .with_num_classes(Some(3)),
        diffusion: DiffusionConfig {
            timesteps: 100,
            beta_schedule: BetaSchedule::SIGMOID,
            objective: Objective::PredV,
            ..DiffusionConfig::default()
        },
        image_size: [8, 8],
    }
}

fn output(model: &Unet) -> Vec<f32> {
    let device = device();
    let x = crate::NoiseSource::new(3).normal_tensor([2, 1, 8, 8], &device);
    let t = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(vec![5.0f32, 77.0], [2]),
        &device,
    );
    let labels = Tensor::from_data(burn::tensor::TensorData::new(vec![0i64, 3], [2]), &device);
    values(model.forward(x, t, None, Some(labels)))
}

#[test]
fn round_trip_gives_bit_identical_outputs_and_the_config() {
    let device = device();
    let config = config();
    let model = config.unet.init(&device);
    let bytes = to_bytes(&model, &config, Precision::F32).expect("serialises");
    let loaded = from_bytes(&bytes, &device).expect("loads");
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.precision, Precision::F32);
    let (a, b) = (output(&model), output(&loaded.model));
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(read_config(&bytes).expect("header").0, config);
}

#[test]
fn every_unet_option_round_trips() {
    let device = device();
    let mut config = config();
    config.unet = config
        .unet
        .with_dropout(0.1)
        .with_self_condition(true)
        .with_learned_variance(true)
        .with_full_attn(Some(vec![true, true]))
        .with_init_dim(Some(12));
    let model = config.unet.init(&device);
    let bytes = to_bytes(&model, &config, Precision::F32).expect("serialises");
    let loaded = from_bytes(&bytes, &device).expect("loads");
    assert_eq!(loaded.config, config);
    assert_eq!(
        resident_tensors(&loaded.model, None)
            .expect("tensors")
            .len(),
        resident_tensors(&model, None).expect("tensors").len()
    );
    assert_eq!(
        checksum(&resident_tensors(&loaded.model, None).expect("t")).expect("checksum"),
        checksum(&resident_tensors(&model, None).expect("t")).expect("checksum")
    );
}

#[test]
fn files_round_trip_atomically_and_are_not_overwritten_by_default() {
    let device = device();
    let config = config();
    let model = config.unet.init(&device);
    let dir = std::env::temp_dir().join(format!("ddpm-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.bpk");
    save(&model, &config, Precision::F32, &path, false).expect("saves");
    let first = std::fs::read(&path).expect("written");
    // A second save without `overwrite` fails and leaves the file as it was.
    let other = config.unet.init(&device);
    let err = save(&other, &config, Precision::F32, &path, false).expect_err("refuses");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&path).expect("still there"), first);
    save(&other, &config, Precision::F32, &path, true).expect("overwrites");
    assert_eq!(
        output(&load(&path, &device).expect("loads").model),
        output(&other)
    );
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.bpk")]);
    let missing = load(&dir.join("nope.bpk"), &device).expect_err("missing file");
    assert!(matches!(missing, WeightsError::Io { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn f16_storage_halves_the_file_and_stays_close() {
    let device = device();
    let config = config();
    let mut model = config.unet.init(&device);
    // Move one gain away from 1 so that the custom modules' casts are exercised too.
    model.mid_attn.norm.g = burn::module::Param::from_tensor(Tensor::random(
        [1, 16, 1, 1],
        Distribution::Uniform(0.5, 1.5),
        &device,
    ));
    let full = to_bytes(&model, &config, Precision::F32).expect("f32");
    let half = to_bytes(&model, &config, Precision::F16).expect("f16");
    assert!(
        half.len() * 10 < full.len() * 6,
        "{} vs {}",
        half.len(),
        full.len()
    );
    let loaded = from_bytes(&half, &device).expect("loads f16");
    assert_eq!(loaded.precision, Precision::F16);
    for (a, b) in output(&model).iter().zip(output(&loaded.model)) {
        assert!((a - b).abs() < 2e-2 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn truncated_and_corrupted_files_give_typed_errors() {
    let device = device();
    let config = config();
    let bytes = to_bytes(&config.unet.init(&device), &config, Precision::F32).expect("f32");

    for len in [0, 3, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = from_bytes(&bytes[..len], &device).expect_err("truncated");
        assert!(matches!(err, WeightsError::Format(_)), "len {len}: {err}");
    }

    // A flipped bit inside a tensor's data is caught by the checksum.
    let model = from_bytes(&bytes, &device).expect("loads").model;
    let weight = values(model.final_res_block.block1.proj.weight.val());
    let needle: Vec<u8> = weight[..8].iter().flat_map(|v| v.to_le_bytes()).collect();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the tensor's bytes are in the file");
    let mut flipped = bytes.clone();
    flipped[at + 13] ^= 0x10;
    let Err(err) = from_bytes(&flipped, &device) else {
        panic!("corrupted data was loaded")
    };
    assert!(matches!(err, WeightsError::Checksum { .. }), "{err}");

    // A damaged magic number or header.
    let mut magic = bytes.clone();
    magic[0] ^= 0xff;
    assert!(matches!(
        from_bytes(&magic, &device),
        Err(WeightsError::Format(_))
    ));

    // Not a weights file at all.
    let text = b"hello, this is not a model".repeat(20);
    assert!(matches!(
        from_bytes(&text, &device),
        Err(WeightsError::Format(_))
    ));
}

#[test]
fn a_burnpack_without_our_metadata_is_rejected() {
    let device = device();
    let model = config().unet.init(&device);
    let mut store = burn::store::BurnpackStore::from_bytes(None);
    burn::store::ModuleStore::collect_from(&mut store, &model).expect("plain burnpack");
    let bytes = store.get_bytes().expect("bytes");
    let err = from_bytes(&bytes, &device).expect_err("foreign file");
    assert!(
        matches!(err, WeightsError::MissingMetadata("ddpm.format")),
        "{err}"
    );
}

#[test]
fn a_file_for_another_config_names_the_fields_that_differ() {
    let device = device();
    let config = config();
    let bytes = to_bytes(&config.unet.init(&device), &config, Precision::F32).expect("f32");
    let mut expected = config.clone();
    expected.unet.dim = 16;
    expected.diffusion.timesteps = 1000;
    let err = from_bytes_expecting(&bytes, &expected, &device).expect_err("mismatch");
    let WeightsError::ConfigMismatch(diffs) = &err else {
        panic!("wrong error: {err}")
    };
    let fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["diffusion.timesteps", "unet.dim"]);
    assert_eq!(
        err.to_string(),
        "the file's model configuration differs: `diffusion.timesteps` is 100 in the file, \
         expected 1000; `unet.dim` is 8 in the file, expected 16"
    );
    assert!(from_bytes_expecting(&bytes, &config, &device).is_ok());
}

/// A weights file of `model`'s tensors under `config`'s metadata, with `overrides`.
fn file_with(model: &Unet, config: &ModelConfig, overrides: &[(&str, &str)]) -> Vec<u8> {
    let json = serde_json::to_string(config).expect("json");
    let mut metadata = vec![
        (KEY_FORMAT, FORMAT),
        (KEY_VERSION, "1"),
        (KEY_CONFIG, json.as_str()),
        (KEY_PRECISION, "f32"),
    ];
    metadata.extend_from_slice(overrides);
    pack(resident_tensors(model, None).expect("tensors"), &metadata).expect("bytes")
}

#[test]
fn tensors_that_do_not_fit_the_recorded_config_are_rejected() {
    // Weights of one architecture under the metadata of another: every shape is checked.
    let device = device();
    let small = config();
    let mut wide = small.clone();
    wide.unet.dim = 16;
    let bytes = file_with(&wide.unet.init(&device), &small, &[]);
    let err = from_bytes(&bytes, &device).expect_err("shape mismatch");
    let WeightsError::Tensors(msg) = &err else {
        panic!("wrong error: {err}")
    };
    assert!(msg.contains("init_conv.weight"), "{msg}");
    // Every tensor differs, but the message names a few and counts the rest.
    assert!(
        msg.matches("; ").count() == 3 && msg.ends_with(" more"),
        "{msg}"
    );
}

#[test]
fn a_precision_label_that_is_not_the_tensors_is_refused() {
    // The label is outside the checksum: f32 tensors called f16 (and f16 ones called f32)
    // would reach the network with mixed dtypes.
    let device = device();
    let config = config();
    let model = config.unet.init(&device);
    let err = from_bytes(
        &file_with(&model, &config, &[(KEY_PRECISION, "f16")]),
        &device,
    )
    .expect_err("mislabelled");
    assert!(
        err.to_string()
            .ends_with("is stored as F32, but the file says its precision is f16"),
        "{err}"
    );
    let half = to_bytes(&model, &config, Precision::F16).expect("f16");
    let reader = reader(&half).expect("reader");
    let kept: Vec<(String, String)> = reader
        .metadata()
        .clone()
        .into_iter()
        .filter(|(k, _)| k != KEY_PRECISION)
        .collect();
    let tensors = reader.into_tensors().expect("tensors");
    let mut meta: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    meta.push((KEY_PRECISION, "f32"));
    let err = from_bytes(&pack(tensors, &meta).expect("bytes"), &device).expect_err("mislabelled");
    assert!(
        err.to_string()
            .ends_with("is stored as F16, but the file says its precision is f32"),
        "{err}"
    );
}

#[test]
fn bad_metadata_gives_typed_errors() {
    let device = device();
    let config = config();
    let model = config.unet.init(&device);
    let with = |key: &str, value: &str| {
        from_bytes(&file_with(&model, &config, &[(key, value)]), &device).map(|_| ())
    };
    assert!(with(KEY_VERSION, "1").is_ok());
    assert!(matches!(
        with(KEY_VERSION, "2"),
        Err(WeightsError::Version { .. })
    ));
    assert!(matches!(
        with(KEY_CONFIG, "{not json"),
        Err(WeightsError::Config(_))
    ));
    let mut bad = config.clone();
    bad.image_size = [9, 8];
    let err = with(KEY_CONFIG, &serde_json::to_string(&bad).expect("json")).expect_err("bad size");
    assert_eq!(
        err.to_string(),
        "the file's model configuration is invalid: image size 9×8 must be divisible by 2 for 2 levels"
    );
    // The rest of the metadata is checked too: a damaged T or image size is refused before
    // anything is allocated for it.
    let mut endless = config.clone();
    endless.diffusion.timesteps = usize::MAX;
    let err = with(KEY_CONFIG, &serde_json::to_string(&endless).expect("json")).expect_err("T");
    assert_eq!(
        err.to_string(),
        format!(
            "the file's model configuration is invalid: diffusion.timesteps must be from 1 to 100000, got {}",
            usize::MAX
        )
    );
    let mut huge = config.clone();
    huge.image_size = [1 << 62, 1 << 62];
    let err = with(KEY_CONFIG, &serde_json::to_string(&huge).expect("json")).expect_err("size");
    assert_eq!(
        err.to_string(),
        "the file's model configuration is invalid: U-Net config: `image side` must be at most 4096"
    );
    // Four channels make a valid U-Net, but not images that can be drawn.
    let mut rgba = config.clone();
    rgba.unet.channels = 4;
    let rgba_model = rgba.unet.init(&device);
    let err = from_bytes(&file_with(&rgba_model, &rgba, &[]), &device)
        .map(|_| ())
        .expect_err("4 channels");
    assert_eq!(
        err.to_string(),
        "the file's model configuration is invalid: images have 1 (gray) or 3 (RGB) channels, got 4"
    );
    assert!(matches!(
        with(KEY_PRECISION, "f8"),
        Err(WeightsError::Config(_))
    ));
    assert!(matches!(
        with(KEY_CHECKSUM, "zz"),
        Err(WeightsError::MissingMetadata(_))
    ));
    assert!(matches!(
        with(KEY_CHECKSUM, "00000000"),
        Err(WeightsError::Checksum { recorded: 0, .. })
    ));
    assert!(matches!(
        with(KEY_FORMAT, "other"),
        Err(WeightsError::MissingMetadata(KEY_FORMAT))
    ));
}
