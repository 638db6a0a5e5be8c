//! lucidrains' files: a denoising-diffusion-pytorch `Trainer` checkpoint, `GaussianDiffusion` or
//! `Unet` state dict (PyTorch `.pt` through burn-store's PyTorch reader, or `.safetensors`)
//! read as named f32 tensors, and a U-Net written back with lucidrains' keys.

mod diffusion;
mod state_dict;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow, bail};
use burn::store::ModuleSnapshot;
use burn::store::burn_pack;
use burn::tensor::{Bytes, DType, Device};
use ddpm::unet::lucidrains::{self as keys, LucidrainsError};
use ddpm::{ModelConfig, Unet};

pub use diffusion::{DiffusionFlags, infer_diffusion};
pub use state_dict::{StateDict, Tensor, read};

use crate::safetensors_file;

/// The U-Net of `dict` and its configuration, read off its tensors. Every tensor is checked
/// against the layout of that configuration: one missing, left over, of another shape or not
/// finite is an error naming it (with where the U-Net sits in the file).
pub fn unet(dict: &StateDict, device: &Device) -> Result<(Unet, ddpm::UnetConfig)> {
    let shapes: BTreeMap<String, Vec<usize>> = dict
        .unet
        .iter()
        .map(|(key, t)| (key.clone(), t.shape.clone()))
        .collect();
    let config = keys::infer_config(&shapes).map_err(|e| match e {
        // Name where the U-Net sits in the file, e.g. `ema.ema_model.model.mid_attn.mem_kv`.
        LucidrainsError::Missing(key) => anyhow!("no tensor `{}{key}`", dict.prefix),
        LucidrainsError::Shape {
            key,
            shape,
            expected,
        } => anyhow!(
            "`{}{key}` has shape {shape:?}, expected {expected}",
            dict.prefix
        ),
        other => anyhow!(other),
    })?;
    let mut model = config.try_init(device)?;
    let mut left: BTreeMap<&str, &Tensor> =
        dict.unet.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut tensors = Vec::new();
    let mut missing = Vec::new();
    for (index, entry) in keys::state_dict(&model).into_iter().enumerate() {
        let Some(tensor) = left.remove(entry.key.as_str()) else {
            missing.push(format!("`{}{}`", dict.prefix, entry.key));
            continue;
        };
        let name = format!("{}{}", dict.prefix, entry.key);
        if tensor.shape != entry.shape {
            bail!(
                "`{name}` has shape {:?}, expected {:?} for {}",
                tensor.shape,
                entry.shape,
                describe(&config)
            );
        }
        if tensor.values.iter().any(|v| !v.is_finite()) {
            bail!("`{name}` holds NaN or infinite values");
        }
        let (shape, values) = if entry.transposed {
            let mut shape = entry.shape.clone();
            shape.reverse();
            (
                shape,
                transpose(&tensor.values, entry.shape[0], entry.shape[1]),
            )
        } else {
            (entry.shape.clone(), tensor.values.clone())
        };
        // Parameter ids by position, not burn's random ones: the weights file records them,
        // and importing the same file twice must give the same bytes.
        let id = Some(index as u64);
        let bytes = Bytes::from_elems(values);
        tensors.push(burn_pack::Tensor::new(
            entry.path,
            DType::F32,
            shape,
            id,
            bytes,
        ));
    }
    if !missing.is_empty() {
        bail!("missing {} for {}", list(&missing), describe(&config));
    }
    if !left.is_empty() {
        let extra: Vec<String> = left
            .keys()
            .map(|k| format!("`{}{k}`", dict.prefix))
            .collect();
        bail!("unexpected {} for {}", list(&extra), describe(&config));
    }
    let result = model.apply(tensors, None, None, false);
    if let Some(e) = result.errors.first() {
        bail!("{e}");
    }
    Ok((model, config))
}

/// `model` as a safetensors file `Unet.load_state_dict` accepts: lucidrains' keys and layouts
/// (f32), with this project's configuration in the metadata (`ddpm.config`) so that `ddpm
/// import` gets back what a bare state dict cannot tell (image size, schedule, objective).
pub fn to_safetensors(model: &Unet, config: &ModelConfig) -> Result<Vec<u8>> {
    if config.unet.num_classes.is_some() {
        bail!(
            "a class-conditional model has no lucidrains counterpart: lucidrains' Unet takes no classes, and its classifier_free_guidance.Unet has another layout"
        );
    }
    let mut tensors = Vec::new();
    for tensor in model.collect(None, None, false) {
        let entry = keys::StateDictEntry::of(&tensor);
        let values = safetensors_file::f32_values(&tensor)?;
        let values = if entry.transposed {
            // burn's [in, out] → PyTorch's [out, in].
            transpose(&values, entry.shape[1], entry.shape[0])
        } else {
            values
        };
        tensors.push((entry.key, entry.shape, values));
    }
    // One key: safetensors writes a map's keys in its hash order, and the file must be the
    // same bytes every time.
    let metadata = HashMap::from([("ddpm.config".to_string(), serde_json::to_string(config)?)]);
    safetensors_file::write(tensors, metadata)
}

/// A `[rows, cols]` matrix's transpose.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// The first few of `names`, and how many more.
fn list(names: &[String]) -> String {
    let shown = names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 4 => format!("{shown} and {} more", n - 4),
        _ => shown,
    }
}

/// A configuration in lucidrains' terms, for messages.
fn describe(config: &ddpm::UnetConfig) -> String {
    format!(
        "Unet(dim={}, dim_mults={:?}, channels={}, attn_heads={}, attn_dim_head={})",
        config.dim, config.dim_mults, config.channels, config.attn_heads, config.attn_dim_head
    )
}
