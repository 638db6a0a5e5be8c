//! The weights file: one burnpack (`.bpk`) holding the U-Net's tensors and, in its metadata,
//! the whole [`ModelConfig`] as JSON, a format version, the storage precision and a CRC-32 of
//! the tensors. It is the contract between the CLI that trains and the browser that samples:
//! everything needed to rebuild the network and its sampler comes from the file alone.
//!
//! Loading works from bytes (the browser fetches them) as well as from files, and never
//! panics on bad input: a truncated, corrupted or mismatched file gives a [`WeightsError`].

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::burn_pack::{self, Reader, Writer};
use burn::store::{HalfPrecisionAdapter, ModuleAdapter, ModuleSnapshot};
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::diffusion::DiffusionConfig;
use crate::unet::{Unet, UnetConfig, UnetConfigError};

/// The value of the `ddpm.format` metadata key.
pub const FORMAT: &str = "ddpm-rs";
/// The file layout version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const KEY_FORMAT: &str = "ddpm.format";
const KEY_VERSION: &str = "ddpm.format_version";
const KEY_CONFIG: &str = "ddpm.config";
const KEY_PRECISION: &str = "ddpm.precision";
const KEY_CHECKSUM: &str = "ddpm.crc32";

/// Everything needed to rebuild a trained model and sample from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The network.
    pub unet: UnetConfig,
    /// The diffusion it was trained with.
    pub diffusion: DiffusionConfig,
    /// `[height, width]` of the training images.
    pub image_size: [usize; 2],
}

impl ModelConfig {
    /// Checks that the network can be built and takes images of `image_size`.
    pub fn validate(&self) -> Result<(), UnetConfigError> {
        self.unet.validate()?;
        let [height, width] = self.image_size;
        self.unet.check_image_size(height, width)
    }
}

/// How tensors are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit floats, exactly as trained.
    F32,
    /// 16-bit floats: half the size, loaded back as f32.
    F16,
}

impl Precision {
    fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// A configuration field whose value differs between a file and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// Dotted path of the field, e.g. `unet.dim`.
    pub field: String,
    /// The value in the file, as JSON.
    pub file: String,
    /// The expected value, as JSON.
    pub expected: String,
}

/// Why weights could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a readable burnpack (truncated, wrong magic, bad header).
    #[error("not a readable weights file: {0}")]
    Format(String),
    /// A burnpack without this project's metadata (or with another format's).
    #[error("not a ddpm-rs weights file: metadata key `{0}` is missing or wrong")]
    MissingMetadata(&'static str),
    /// Written by a newer or older, incompatible layout.
    #[error(
        "weights format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The file's version.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// The embedded configuration does not parse or cannot build a U-Net.
    #[error("the file's model configuration is invalid: {0}")]
    Config(String),
    /// The tensors do not match the checksum recorded when the file was written.
    #[error(
        "the weights are corrupted: checksum {found:08x} does not match the recorded {recorded:08x}"
    )]
    Checksum {
        /// Recorded at save time.
        recorded: u32,
        /// Computed now.
        found: u32,
    },
    /// The file's configuration differs from the one the caller expected.
    #[error("the file's model configuration differs: {}", describe(.0))]
    ConfigMismatch(Vec<FieldDiff>),
    /// Tensors missing, unexpected or of the wrong shape for the configuration.
    #[error("the weights do not fit the configuration: {0}")]
    Tensors(String),
}

fn describe(diffs: &[FieldDiff]) -> String {
    diffs
        .iter()
        .map(|d| {
            format!(
                "`{}` is {} in the file, expected {}",
                d.field, d.file, d.expected
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A model read from a weights file.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network, on the requested device, in f32.
    pub model: Unet,
    /// Its configuration.
    pub config: ModelConfig,
    /// How the file stored the tensors.
    pub precision: Precision,
}

fn adapter() -> Box<dyn ModuleAdapter> {
    // The project's own parameter holders are cast too, not only burn's layers.
    Box::new(
        HalfPrecisionAdapter::new()
            .with_module("RmsNorm")
            .with_module("LinearAttention")
            .with_module("Attention")
            .with_module("ClassEmbedding"),
    )
}

/// CRC-32 over every tensor's name, dtype, shape and bytes, in name order.
fn checksum(tensors: &[burn_pack::Tensor]) -> Result<u32, WeightsError> {
    let mut sorted: Vec<&burn_pack::Tensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = crc32fast::Hasher::new();
    for t in sorted {
        hasher.update(t.name.as_bytes());
        hasher.update(format!("{:?}{:?}", t.dtype, t.shape.as_slice()).as_bytes());
        let bytes = t
            .to_bytes()
            .map_err(|e| WeightsError::Format(e.to_string()))?;
        hasher.update(&bytes);
    }
    Ok(hasher.finalize())
}

/// Serialises `model` and `config` into the bytes of a weights file.
pub fn to_bytes(
    model: &Unet,
    config: &ModelConfig,
    precision: Precision,
) -> Result<Vec<u8>, WeightsError> {
    let adapter = (precision == Precision::F16).then(adapter);
    let config_json =
        serde_json::to_string(config).map_err(|e| WeightsError::Config(e.to_string()))?;
    pack(
        resident_tensors(model, adapter)?,
        &[
            (KEY_FORMAT, FORMAT),
            (KEY_VERSION, &FORMAT_VERSION.to_string()),
            (KEY_CONFIG, &config_json),
            (KEY_PRECISION, precision.as_str()),
        ],
    )
}

/// The model's tensors, each read back once, so that the checksum and the writer see the
/// same bytes.
fn resident_tensors(
    model: &Unet,
    adapter: Option<Box<dyn ModuleAdapter>>,
) -> Result<Vec<burn_pack::Tensor>, WeightsError> {
    model
        .collect(None, adapter, false)
        .into_iter()
        .map(|t| {
            let (name, dtype, shape, id, bytes) = t
                .into_parts()
                .map_err(|e| WeightsError::Format(e.to_string()))?;
            Ok(burn_pack::Tensor::new(name, dtype, shape, id, bytes))
        })
        .collect()
}

/// A burnpack of `tensors` with their checksum and `metadata` (later entries win).
fn pack(
    tensors: Vec<burn_pack::Tensor>,
    metadata: &[(&str, &str)],
) -> Result<Vec<u8>, WeightsError> {
    let crc = checksum(&tensors)?;
    let mut writer = Writer::new(tensors).with_metadata(KEY_CHECKSUM, &format!("{crc:08x}"));
    for (key, value) in metadata {
        writer = writer.with_metadata(key, value);
    }
    let bytes = writer
        .into_bytes()
        .map_err(|e| WeightsError::Format(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// Writes a weights file atomically: a crash leaves either the old file or the new one.
/// An existing file is replaced only when `overwrite` is set.
pub fn save(
    model: &Unet,
    config: &ModelConfig,
    precision: Precision,
    path: &Path,
    overwrite: bool,
) -> Result<(), WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.display().to_string(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "file exists (refusing to overwrite)",
        )));
    }
    let bytes = to_bytes(model, config, precision)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Reads the configuration and precision of a weights file without building the model.
pub fn read_config(bytes: &[u8]) -> Result<(ModelConfig, Precision), WeightsError> {
    let reader = reader(bytes)?;
    header(reader.metadata())
}

fn reader(bytes: &[u8]) -> Result<Reader, WeightsError> {
    Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| WeightsError::Format(e.to_string()))
}

fn header(meta: &BTreeMap<String, String>) -> Result<(ModelConfig, Precision), WeightsError> {
    let get = |key: &'static str| meta.get(key).ok_or(WeightsError::MissingMetadata(key));
    if get(KEY_FORMAT)? != FORMAT {
        return Err(WeightsError::MissingMetadata(KEY_FORMAT));
    }
    let version = get(KEY_VERSION)?;
    if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(WeightsError::Version {
            found: version.clone(),
            supported: FORMAT_VERSION,
        });
    }
    let config: ModelConfig =
        serde_json::from_str(get(KEY_CONFIG)?).map_err(|e| WeightsError::Config(e.to_string()))?;
    config
        .validate()
        .map_err(|e| WeightsError::Config(e.to_string()))?;
    let precision = match get(KEY_PRECISION)?.as_str() {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        other => return Err(WeightsError::Config(format!("unknown precision `{other}`"))),
    };
    Ok((config, precision))
}

/// Loads a model from the bytes of a weights file onto `device`.
pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<LoadedModel, WeightsError> {
    let reader = reader(bytes)?;
    let (config, precision) = header(reader.metadata())?;
    let recorded = reader
        .metadata()
        .get(KEY_CHECKSUM)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or(WeightsError::MissingMetadata(KEY_CHECKSUM))?;
    let tensors = reader
        .into_tensors()
        .map_err(|e| WeightsError::Format(e.to_string()))?;
    let found = checksum(&tensors)?;
    if found != recorded {
        return Err(WeightsError::Checksum { recorded, found });
    }
    let mut model = config.unet.init(device);
    let adapter = (precision == Precision::F16).then(adapter);
    let result = model.apply(tensors, None, adapter, false);
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(path, _)| format!("missing tensor `{path}`")),
    );
    problems.extend(
        result
            .unused
            .iter()
            .map(|path| format!("unexpected tensor `{path}`")),
    );
    if !problems.is_empty() {
        return Err(WeightsError::Tensors(problems.join("; ")));
    }
    Ok(LoadedModel {
        model,
        config,
        precision,
    })
}

/// Like [`from_bytes`], but first checks that the file's configuration equals `expected`,
/// naming every field that differs.
pub fn from_bytes_expecting(
    bytes: &[u8],
    expected: &ModelConfig,
    device: &Device,
) -> Result<LoadedModel, WeightsError> {
    let (config, _) = read_config(bytes)?;
    let diffs = config_diff(&config, expected);
    if !diffs.is_empty() {
        return Err(WeightsError::ConfigMismatch(diffs));
    }
    from_bytes(bytes, device)
}

/// Loads a model from a weights file onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_bytes(&bytes, device)
}

/// Every leaf field whose value differs between `file` and `expected`.
pub fn config_diff(file: &ModelConfig, expected: &ModelConfig) -> Vec<FieldDiff> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<FieldDiff>) {
        use serde_json::Value::Object;
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for key in keys {
                    let null = serde_json::Value::Null;
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(
                        &path,
                        x.get(key).unwrap_or(&null),
                        y.get(key).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(FieldDiff {
                field: prefix.to_string(),
                file: a.to_string(),
                expected: b.to_string(),
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let (a, b) = (serde_json::to_value(file), serde_json::to_value(expected));
    if let (Ok(a), Ok(b)) = (a, b) {
        walk("", &a, &b, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
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
            checksum(&resident_tensors(&loaded.model, None).expect("t")).ok(),
            checksum(&resident_tensors(&model, None).expect("t")).ok()
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
        let err =
            with(KEY_CONFIG, &serde_json::to_string(&bad).expect("json")).expect_err("bad size");
        assert_eq!(
            err.to_string(),
            "the file's model configuration is invalid: image size 9×8 must be divisible by 2 for 2 levels"
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
}
