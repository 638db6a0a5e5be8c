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
use burn::tensor::{Bytes, DType, Device};
use serde::{Deserialize, Serialize};

use crate::diffusion::{DiffusionConfig, DiffusionConfigError};
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

/// A model configuration that cannot be built or sampled with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelConfigError {
    /// The network's part.
    #[error(transparent)]
    Unet(#[from] UnetConfigError),
    /// The diffusion's part.
    #[error(transparent)]
    Diffusion(#[from] DiffusionConfigError),
}

impl ModelConfig {
    /// Checks that the network can be built and takes images of `image_size`, gray or RGB
    /// (what samples are drawn as; the U-Net alone takes any number of channels), and that the
    /// diffusion can be sampled with.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        self.diffusion.validate()?;
        self.unet.validate()?;
        if !matches!(self.unet.channels, 1 | 3) {
            return Err(UnetConfigError::ImageChannels(self.unet.channels).into());
        }
        let [height, width] = self.image_size;
        Ok(self.unet.check_image_size(height, width)?)
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
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error (in the message, not repeated as a source).
        reason: std::io::Error,
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
    let io = |reason| WeightsError::Io {
        path: path.display().to_string(),
        reason,
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

/// The first tensor not stored in `precision`: the label is outside the checksum, and
/// a wrong one would make the network mix dtypes (a panic in burn) instead of an error.
fn check_dtypes(tensors: &[burn_pack::Tensor], precision: Precision) -> Result<(), WeightsError> {
    let stored = match precision {
        Precision::F32 => DType::F32,
        Precision::F16 => DType::F16,
    };
    match tensors.iter().find(|t| t.dtype != stored) {
        Some(t) => Err(WeightsError::Format(format!(
            "tensor `{}` is stored as {:?}, but the file says its precision is {}",
            t.name,
            t.dtype,
            precision.as_str()
        ))),
        None => Ok(()),
    }
}

/// At most a few of burn's problems with the tensors, so that a file made for another model
/// gives one readable line rather than hundreds of entries.
fn summarise(problems: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut line = problems[..problems.len().min(SHOWN)].join("; ");
    if problems.len() > SHOWN {
        line.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    line
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
    check_dtypes(&tensors, precision)?;
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
        return Err(WeightsError::Tensors(summarise(&problems)));
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
    let bytes = std::fs::read(path).map_err(|reason| WeightsError::Io {
        path: path.display().to_string(),
        reason,
    })?;
    from_bytes(&bytes, device)
}

/// Every leaf field whose value differs between `file` and `expected`.
pub fn config_diff(file: &ModelConfig, expected: &ModelConfig) -> Vec<FieldDiff> {
    field_diff(file, expected)
}

/// Every leaf field whose value differs between two values of one serialisable type (the CLI's
/// training configuration too), by dotted path in key order, each value as JSON (`null` where
/// one side has none).
pub fn field_diff<T: Serialize>(file: &T, expected: &T) -> Vec<FieldDiff> {
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
mod tests;
