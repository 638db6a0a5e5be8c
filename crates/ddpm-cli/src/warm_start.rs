//! `ddpm train --init`: a new run that starts from trained weights instead of a random
//! initialisation (fine-tuning, or training a shipped model further once its run folder is
//! gone). The optimiser's moments, the noise stream and the data order start afresh; what the
//! weights were is written to the run folder and carried into the model cards of its exports.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use ddpm::{ModelConfig, Unet};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::eval::WeightsChoice;
use crate::export::{self, Provenance};
use crate::sample::{load_checkpoint_model, newest_checkpoint};
use crate::session::Session;

/// Where a warm-started run's first weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStart {
    /// The weights file, or the run folder's checkpoint, as given to `--init`.
    pub from: String,
    /// SHA-256 of the weights file (none for a run folder).
    pub sha256: Option<String>,
    /// What its card (or run folder) says: steps, averaging, time and sessions.
    pub steps_trained: Option<usize>,
    /// `ema` or `raw`, when known.
    pub averaging: Option<String>,
    /// Wall-clock seconds of those steps, when known.
    pub training_seconds: Option<f64>,
    /// The `ddpm train` sessions that made them.
    #[serde(default)]
    pub training_sessions: Vec<Session>,
    /// Where those weights started, if they were warm-started too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialised_from: Option<Box<WarmStart>>,
}

impl WarmStart {
    /// Optimiser steps over the whole chain of warm starts, when every link knows its own.
    pub fn total_steps(&self) -> Option<usize> {
        let earlier = match &self.initialised_from {
            Some(w) => w.total_steps()?,
            None => 0,
        };
        Some(self.steps_trained? + earlier)
    }

    /// Reads the record a warm-started run folder keeps (none for other runs).
    pub fn read(path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_slice(&text)
            .map(Some)
            .with_context(|| format!("{}: not a warm-start record", path.display()))
    }

    /// Writes the record into a new run folder.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(path, json).with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// The weights `path` (a weights file, or a run folder's newest EMA weights) for a new run
/// whose data and configuration make `expected` with classes `class_names`, on `device`.
pub fn load(
    path: &Path,
    expected: &ModelConfig,
    class_names: &[String],
    device: &Device,
) -> Result<(Unet, WarmStart)> {
    let (model, config, known, sha256, from) = if path.is_dir() {
        let ckpt = newest_checkpoint(path)?;
        let (model, config, _) = load_checkpoint_model(&ckpt, checkpoint::EMA, device)?;
        let known = export::provenance(path, &ckpt, WeightsChoice::Ema)?;
        (model, config, known, None, ckpt.display().to_string())
    } else if path.is_file() {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let loaded = ddpm::weights::from_bytes(&bytes, device)
            .with_context(|| path.display().to_string())?;
        let known = export::card_of(path).map_or_else(Provenance::default, Provenance::from);
        let sha = export::sha256_hex(&bytes);
        (
            loaded.model,
            loaded.config,
            known,
            Some(sha),
            path.display().to_string(),
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
        steps_trained: known.steps_trained,
        averaging: known.averaging,
        training_seconds: known.training_seconds,
        training_sessions: known.training_sessions,
        initialised_from: known.initialised_from.map(Box::new),
    };
    Ok((model, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(steps: Option<usize>, earlier: Option<WarmStart>) -> WarmStart {
        WarmStart {
            from: "w.bpk".into(),
            sha256: None,
            steps_trained: steps,
            averaging: None,
            training_seconds: None,
            training_sessions: vec![],
            initialised_from: earlier.map(Box::new),
        }
    }

    #[test]
    fn total_steps_add_up_the_chain_and_are_unknown_if_one_link_is() {
        assert_eq!(link(Some(5), None).total_steps(), Some(5));
        assert_eq!(
            link(Some(5), Some(link(Some(7), None))).total_steps(),
            Some(12)
        );
        assert_eq!(link(Some(5), Some(link(None, None))).total_steps(), None);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("warm_start.json");
        assert_eq!(WarmStart::read(&path).expect("absent"), None);
        let chain = link(Some(5), Some(link(Some(7), None)));
        chain.write(&path).expect("write");
        assert_eq!(WarmStart::read(&path).expect("read"), Some(chain));
        std::fs::write(&path, "{").expect("write");
        let err = WarmStart::read(&path).expect_err("bad json");
        assert!(err.to_string().contains("warm_start.json"), "{err}");
    }
}
