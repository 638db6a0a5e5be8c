//! A lucidrains file read as named f32 tensors: where its U-Net sits (a Trainer checkpoint holds
//! two, `ema.ema_model.model.` and `model.model.`), the diffusion's buffers beside it, and what
//! else the file says (the Trainer's step and version, this project's configuration).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::store::pytorch_reader::{self, PickleValue, PytorchReader};
use burn::tensor::{Bytes, DType, TensorData};
use ddpm::ModelConfig;

use crate::card;
use crate::load::WeightsChoice;
use crate::safetensors_file;

/// A tensor of the file, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// The file's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save`'s (ZIP, or older).
    Pytorch,
    /// safetensors.
    Safetensors,
}

impl Format {
    /// `pytorch` or `safetensors`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pytorch => "pytorch",
            Self::Safetensors => "safetensors",
        }
    }
}

/// What `ddpm import` takes from a lucidrains file.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// The container.
    pub format: Format,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// Where the U-Net's keys start in the file (`ema.ema_model.model.`, `model.`, or empty).
    pub prefix: String,
    /// The U-Net's tensors by lucidrains' key (`downs.0.0.block1.proj.weight`).
    pub unet: BTreeMap<String, Tensor>,
    /// The `GaussianDiffusion` buffers beside it that tell the diffusion (`betas`,
    /// `loss_weight`), when the file has them.
    pub buffers: BTreeMap<String, Tensor>,
    /// Which of a checkpoint's weights these are, when it held a choice.
    pub averaging: Option<WeightsChoice>,
    /// The Trainer's step.
    pub step: Option<usize>,
    /// The denoising-diffusion-pytorch version the Trainer wrote.
    pub version: Option<String>,
    /// This project's configuration, when `ddpm export --lucidrains` wrote the file.
    pub config: Option<ModelConfig>,
}

/// The diffusion's buffers read beside the U-Net.
const BUFFERS: [&str; 2] = ["betas", "loss_weight"];

/// A tensor not yet read: its dtype (`Err`: the file's name of a type that is no float), shape
/// and a way to read its bytes.
pub(crate) struct Lazy {
    pub(crate) dtype: Result<DType, String>,
    pub(crate) shape: Vec<usize>,
    pub(crate) read: Box<dyn Fn() -> Result<Vec<u8>>>,
}

/// Reads `path`: safetensors when its header says so, else a PyTorch file. `choice` picks the
/// EMA or raw weights of a checkpoint that has both (default: EMA, or the only U-Net).
pub fn read(path: &Path, choice: Option<WeightsChoice>) -> Result<StateDict> {
    let bytes = std::fs::read(path).context("cannot read")?;
    let sha256 = card::sha256_hex(&bytes);
    let (format, lazy, config) = if is_safetensors(&bytes) {
        let (lazy, config) = safetensors_tensors(bytes)?;
        (Format::Safetensors, lazy, config)
    } else {
        (Format::Pytorch, pytorch_tensors(path)?, None)
    };
    let (prefix, averaging) = choose_unet(&lazy, choice)?;
    let read_as_f32 = |name: &str, t: &Lazy| -> Result<Tensor> {
        let dtype = t
            .dtype
            .clone()
            .map_err(|what| anyhow!("`{name}` holds {what}, not floating-point weights"))?;
        let bytes = (t.read)().with_context(|| format!("`{name}`"))?;
        let values =
            TensorData::try_from_bytes(Bytes::from_bytes_vec(bytes), t.shape.clone(), dtype)
                .and_then(|data| data.try_cast_as::<f32>())
                .and_then(|data| data.try_into_vec::<f32>())
                .map_err(|e| anyhow!("`{name}`: cannot read as f32 ({e:?})"))?;
        Ok(Tensor {
            shape: t.shape.clone(),
            values,
        })
    };
    let mut unet = BTreeMap::new();
    for (name, tensor) in lazy.iter().filter(|(n, _)| n.starts_with(&prefix)) {
        unet.insert(name[prefix.len()..].to_string(), read_as_f32(name, tensor)?);
    }
    let mut buffers = BTreeMap::new();
    if let Some(outer) = without_wrappers(&prefix).strip_suffix("model.") {
        for buffer in BUFFERS {
            let name = format!("{outer}{buffer}");
            if let Some(tensor) = lazy.get(&name) {
                buffers.insert(buffer.to_string(), read_as_f32(&name, tensor)?);
            }
        }
    }
    let (step, version) = match format {
        Format::Pytorch => trainer_step_and_version(path),
        Format::Safetensors => (None, None),
    };
    Ok(StateDict {
        format,
        sha256,
        prefix,
        unet,
        buffers,
        averaging,
        step,
        version,
        config,
    })
}

/// `prefix` without the segments wrappers add inside `GaussianDiffusion` (`torch.compile`'s
/// `_orig_mod.`, `DataParallel`'s `module.`), so that the diffusion's buffers are found beside
/// a wrapped U-Net.
fn without_wrappers(prefix: &str) -> &str {
    let mut inner = prefix;
    while let Some(rest) = ["_orig_mod.", "module."].iter().find_map(|w| {
        inner
            .strip_suffix(w)
            .filter(|rest| rest.is_empty() || rest.ends_with('.'))
    }) {
        inner = rest;
    }
    inner
}

/// safetensors begin with the length of a JSON header, then the header.
fn is_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[8] == b'{'
}

/// Every tensor of a safetensors file, and the configuration in its metadata if it has one.
fn safetensors_tensors(bytes: Vec<u8>) -> Result<(BTreeMap<String, Lazy>, Option<ModelConfig>)> {
    let file = safetensors_file::read(bytes)?;
    let config =
        match file.metadata.get("ddpm.config") {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                anyhow!("metadata `ddpm.config` is not a model configuration ({e})")
            })?),
            None => None,
        };
    let tensors = file
        .tensors
        .into_iter()
        .map(|(name, stored)| {
            let bytes = stored.bytes;
            let read: Box<dyn Fn() -> Result<Vec<u8>>> = Box::new(move || Ok(bytes.clone()));
            let (dtype, shape) = (stored.dtype, stored.shape);
            (name, Lazy { dtype, shape, read })
        })
        .collect();
    Ok((tensors, config))
}

/// Every tensor of a PyTorch file, through burn-store's reader (nested dictionaries give
/// dotted names: `ema.ema_model.model.init_conv.weight`).
fn pytorch_tensors(path: &Path) -> Result<BTreeMap<String, Lazy>> {
    let reader = PytorchReader::new(path)
        .map_err(|e| anyhow!("neither safetensors nor a readable PyTorch file ({e})"))?;
    Ok(reader
        .into_tensors()
        .into_iter()
        .map(|(name, tensor)| {
            use pytorch_reader::DType as P;
            // Integer tensors (a Trainer's `ema.step`) are no weights; they are refused only
            // if they sit among the U-Net's keys.
            let dtype = match tensor.dtype() {
                P::F64 => Ok(DType::F64),
                P::F32 => Ok(DType::F32),
                P::F16 => Ok(DType::F16),
                P::BF16 => Ok(DType::BF16),
                other => Err(format!("{other:?}")),
            };
            let shape = tensor.shape().to_vec();
            let read: Box<dyn Fn() -> Result<Vec<u8>>> =
                Box::new(move || tensor.read().context("cannot read its bytes"));
            (name, Lazy { dtype, shape, read })
        })
        .collect())
}

/// The Trainer's `step` and `version` entries, when the file's root is a Trainer's dictionary.
fn trainer_step_and_version(path: &Path) -> (Option<usize>, Option<String>) {
    let Ok(PickleValue::Dict(root)) = PytorchReader::read_pickle_data(path, None) else {
        return (None, None);
    };
    let step = match root.get("step") {
        Some(PickleValue::Int(step)) => usize::try_from(*step).ok(),
        _ => None,
    };
    let version = match root.get("version") {
        Some(PickleValue::String(v)) => Some(v.clone()),
        _ => None,
    };
    (step, version)
}

/// Where the U-Net sits in a file whose tensors are `tensors`: every `init_conv.weight` starts
/// one. A Trainer checkpoint has the EMA's (`ema.ema_model.model.`), the trained model's
/// (`model.model.`) and the EMA's copy of the latter (`ema.online_model.model.`).
fn choose_unet(
    tensors: &BTreeMap<String, Lazy>,
    choice: Option<WeightsChoice>,
) -> Result<(String, Option<WeightsChoice>)> {
    let prefixes: Vec<&str> = tensors
        .keys()
        .filter_map(|name| name.strip_suffix("init_conv.weight"))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .collect();
    if prefixes.is_empty() {
        let some: Vec<&str> = tensors.keys().take(3).map(String::as_str).collect();
        bail!(
            "no `init_conv.weight` among its {} tensors{}: not a lucidrains Unet, GaussianDiffusion or Trainer checkpoint",
            tensors.len(),
            if some.is_empty() {
                String::new()
            } else {
                format!(" (`{}`, …)", some.join("`, `"))
            }
        );
    }
    let ema: Vec<&str> = prefixes
        .iter()
        .copied()
        .filter(|p| p.contains("ema_model."))
        .collect();
    let online: Vec<&str> = prefixes
        .iter()
        .copied()
        .filter(|p| p.contains("online_model."))
        .collect();
    let raw: Vec<&str> = prefixes
        .iter()
        .copied()
        .filter(|p| !p.contains("ema_model.") && !p.contains("online_model."))
        .collect();
    let several = |which: &[&str]| {
        anyhow!(
            "holds several U-Nets (`{}`): the file is not one this command knows",
            which
                .iter()
                .map(|p| format!("{p}init_conv.weight"))
                .collect::<Vec<_>>()
                .join("`, `")
        )
    };
    let has_both = !ema.is_empty() && (!raw.is_empty() || !online.is_empty());
    match choice {
        None | Some(WeightsChoice::Ema) => match (ema.as_slice(), prefixes.as_slice()) {
            ([one], _) => Ok((one.to_string(), has_both.then_some(WeightsChoice::Ema))),
            ([], [only]) if choice.is_none() => Ok((only.to_string(), None)),
            ([], _) if choice.is_some() => bail!(
                "has no EMA weights (no `ema_model.` keys); leave out --weights to import its U-Net"
            ),
            _ => Err(several(&prefixes)),
        },
        Some(WeightsChoice::Raw) => match (raw.as_slice(), online.as_slice()) {
            ([one], _) | ([], [one]) if has_both => Ok((one.to_string(), Some(WeightsChoice::Raw))),
            _ if !has_both => bail!(
                "holds one set of weights, not a checkpoint's EMA and raw ones; leave out --weights"
            ),
            _ => Err(several(&prefixes)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::without_wrappers;

    #[test]
    fn wrappers_inside_the_diffusion_are_looked_through() {
        for (prefix, inner) in [
            ("ema.ema_model.model._orig_mod.", "ema.ema_model.model."),
            ("model.module._orig_mod.", "model."),
            ("_orig_mod.model.", "_orig_mod.model."),
            ("model.", "model."),
            ("", ""),
            ("model.my_orig_mod.", "model.my_orig_mod."),
        ] {
            assert_eq!(without_wrappers(prefix), inner, "{prefix}");
        }
    }
}
