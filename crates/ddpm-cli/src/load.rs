//! Weights from where users keep them: a run folder (its newest checkpoint, EMA or raw) or an
//! exported weights file. `sample`, `eval`, `export`, `info` and `train --init` load here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;
use ddpm::{ModelConfig, Unet};

use crate::checkpoint;
use crate::run_dir::RunDir;

/// `model` ready to sample images of `image_size` on `device` ([`Unet::for_sampling`]). Where
/// the core's GPU kernels run they are first checked against burn's on this adapter, on two
/// images of that size (`ddpm::gpu::verify`): a kernel it cannot compile, or compiles wrong,
/// would otherwise give wrong images without an error.
pub fn for_sampling(model: Unet, image_size: [usize; 2], device: &Device) -> Unet {
    let model = model.for_sampling();
    #[cfg(feature = "wgpu")]
    if let Err(why) = ddpm::gpu::verify::check_sampling(&model, device, image_size) {
        let why = crate::read_back::one_line(&why);
        eprintln!("warning: the core's GPU kernels {why}; using burn's kernels instead");
        ddpm::gpu::set_enabled(false);
    }
    #[cfg(not(feature = "wgpu"))]
    let _ = (device, image_size);
    model
}

/// `--weights`: which of a checkpoint's two sets of weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightsChoice {
    /// The exponential moving average (what export ships).
    Ema,
    /// The optimiser's weights at the same step.
    Raw,
}

impl WeightsChoice {
    /// `ema` or `raw`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ema => "ema",
            Self::Raw => "raw",
        }
    }

    /// The file of a checkpoint folder that holds these weights.
    fn checkpoint_file(self) -> &'static str {
        match self {
            Self::Ema => checkpoint::EMA,
            Self::Raw => checkpoint::MODEL,
        }
    }

    /// That file in the checkpoint folder `ckpt`.
    pub fn file_in(self, ckpt: &Path) -> PathBuf {
        ckpt.join(self.checkpoint_file())
    }
}

/// A model from a run folder (newest checkpoint, EMA weights) or a weights file.
pub fn model(path: &Path, device: &Device) -> Result<(Unet, ModelConfig)> {
    if path.is_dir() {
        let ckpt = newest_checkpoint(&RunDir(path.to_path_buf()))?;
        let (model, config, _) = checkpoint_model(&ckpt, WeightsChoice::Ema, device)?;
        Ok((model, config))
    } else if path.is_file() {
        let loaded =
            ddpm::weights::load(path, device).with_context(|| path.display().to_string())?;
        Ok((loaded.model, loaded.config))
    } else {
        bail!("{}: no such run folder or weights file", path.display())
    }
}

/// The configuration of a run folder's newest checkpoint or of a weights file, read without a
/// device: `sample` and `eval` check their model with it before they open a GPU, whose driver
/// may print its own lines before any error of theirs.
pub fn model_config(path: &Path) -> Result<ModelConfig> {
    if path.is_dir() {
        let ckpt = newest_checkpoint(&RunDir(path.to_path_buf()))?;
        Ok(checkpoint::read_state(&ckpt)?.model)
    } else if path.is_file() {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (config, _) =
            ddpm::weights::read_config(&bytes).with_context(|| path.display().to_string())?;
        Ok(config)
    } else {
        bail!("{}: no such run folder or weights file", path.display())
    }
}

/// What a command that reads `model` reads of it, for [`crate::output::refuse_inputs`]: a
/// weights file and its card (the weights' name with `.json`), or a run folder's checkpoints
/// and records ([`RunDir::kept`]).
pub fn files_read(model: &Path) -> Vec<PathBuf> {
    if model.is_dir() {
        RunDir(model.to_path_buf()).kept().into()
    } else {
        vec![model.to_path_buf(), model.with_extension("json")]
    }
}

/// The newest checkpoint folder of a run folder. Callers that read a checkpoint twice (weights
/// and card, or EMA and raw) take it once, so that a trainer writing a newer one in between
/// cannot mix two steps.
pub fn newest_checkpoint(run: &RunDir) -> Result<PathBuf> {
    checkpoint::latest(&run.checkpoints())?
        .with_context(|| format!("{}: no checkpoint in this run folder", run.0.display()))
}

/// One set of weights of a checkpoint folder, with its configuration and step.
pub fn checkpoint_model(
    ckpt: &Path,
    which: WeightsChoice,
    device: &Device,
) -> Result<(Unet, ModelConfig, usize)> {
    let state = checkpoint::read_state(ckpt)?;
    let model = state.model.unet.try_init(device)?;
    let model = checkpoint::load_weights(model, ckpt, which.checkpoint_file())?;
    Ok((model, state.model, state.step))
}
