//! `ddpm train --init`: a new run that starts from trained weights instead of a random
//! initialisation (fine-tuning, or training a shipped model further once its run folder is
//! gone). The optimiser's moments, the noise stream and the data order start afresh; what the
//! weights were is written to the run folder and carried into the model cards of its exports.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use ddpm::{ModelConfig, Unet};

use crate::card::{self, Origin, WarmStart};
use crate::load::{self, WeightsChoice};
use crate::run_dir::RunDir;
use crate::session;

/// The weights `path` (a weights file, or a run folder's newest EMA weights) for a new run
/// whose data and configuration make `expected` with classes `class_names`, on `device`.
pub fn load(
    path: &Path,
    expected: &ModelConfig,
    class_names: &[String],
    device: &Device,
) -> Result<(Unet, WarmStart)> {
    let (model, config, known, sha256, from) = if path.is_dir() {
        let run = RunDir(path.to_path_buf());
        let ckpt = load::newest_checkpoint(&run)?;
        let (model, config, _) = load::checkpoint_model(&ckpt, WeightsChoice::Ema, device)?;
        let known = Origin::of_checkpoint(&run, &ckpt, WeightsChoice::Ema)?;
        (model, config, known, None, session::portable_path(&ckpt))
    } else if path.is_file() {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let loaded = ddpm::weights::from_bytes(&bytes, device)
            .with_context(|| path.display().to_string())?;
        let known = Origin::of_file(path);
        let sha = card::sha256_hex(&bytes);
        (
            loaded.model,
            loaded.config,
            known,
            Some(sha),
            session::portable_path(path),
        )
    } else {
        bail!(
            "{}: --init: no such weights file or run folder",
            path.display()
        );
    };
    if let Some(d) = ddpm::weights::config_diff(&config, expected).first() {
        bail!(
            "{}: --init: these weights are of another model ({} is {} there, {} here); match it with --set",
            path.display(),
            d.field,
            d.file,
            d.expected
        );
    }
    if !known.class_names.is_empty() && known.class_names != class_names {
        bail!(
            "{}: --init: these weights were trained on other classes ({} there, {} in the data)",
            path.display(),
            known.class_names.join(", "),
            class_names.join(", ")
        );
    }
    let record = WarmStart {
        from,
        sha256,
        history: known.history,
    };
    Ok((model, record))
}
