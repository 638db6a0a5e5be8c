//! The model card: what `export` writes beside a weights file so that the weights can be used
//! and trusted (their configuration, SHA-256, data, training history and evaluations), and the
//! record a warm-started run keeps of the weights it started from (`warm_start.json`). Both
//! carry one [`Provenance`]; `export`, `import`, `eval`, `train --init` and `info` read and
//! write cards through this module only.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use ddpm::weights::{self, Precision};
use ddpm::{ModelConfig, Unet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::eval::report::Report;
use crate::load::WeightsChoice;
use crate::output;
use crate::run_dir::RunDir;
use crate::session::{self, Session};

/// What `export` writes beside the weights: enough to use and to trust them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The weights file's name (in the same folder).
    pub weights: String,
    /// SHA-256 of the weights file, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// `f32` or `f16`.
    pub precision: Precision,
    /// Trainable parameters.
    pub parameters: usize,
    /// The network, the diffusion (schedule, objective, T) and the image size.
    pub config: ModelConfig,
    /// The data and the history of the weights.
    #[serde(flatten)]
    pub origin: Origin,
    /// What `ddpm eval` measured for these weights, when it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Report>,
    /// Further `ddpm eval` reports of the same weights with other settings (another `-n`,
    /// guidance or samplers), when `export` was given more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_evaluations: Vec<Report>,
}

/// What is known of a set of weights besides its tensors: what it was trained on and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// What it was trained on (`data.source`), when known.
    pub dataset: Option<String>,
    /// Class names, index = label (empty for unconditional models).
    pub class_names: Vec<String>,
    /// Steps, averaging, time and sessions.
    #[serde(flatten)]
    pub history: Provenance,
}

/// How a set of weights was trained: the model card's and a warm start's account of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Optimiser steps trained, when known.
    #[serde(default)]
    pub steps_trained: Option<usize>,
    /// `ema` (the moving average, what is normally shipped) or `raw` (the optimiser's
    /// weights), when exported from a run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub averaging: Option<String>,
    /// Wall-clock seconds those steps took (summed over resumed sessions), from `metrics.csv`.
    #[serde(default)]
    pub training_seconds: Option<f64>,
    /// The `ddpm train` sessions that made those steps: command, device and machine (from the
    /// run folder's `sessions.jsonl`; empty for runs older than it).
    #[serde(default)]
    pub training_sessions: Vec<Session>,
    /// The weights those steps started from, when the run was warm-started (`train --init`):
    /// their steps, time and sessions, so the whole history is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialised_from: Option<Box<WarmStart>>,
    /// The file the weights were imported from (`ddpm import`), when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<Imported>,
}

/// The lucidrains file a model was imported from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    /// Its name (no folder: cards carry no paths of the machine that wrote them).
    pub file: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// `pytorch` or `safetensors`.
    pub format: String,
    /// Where the U-Net's tensors start in it (`ema.ema_model.model.` in a Trainer checkpoint).
    pub keys: String,
    /// denoising-diffusion-pytorch's version, when a Trainer wrote the file.
    pub lucidrains_version: Option<String>,
    /// What the file did not tell and was assumed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assumed: Vec<String>,
}

/// Where a warm-started run's first weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStart {
    /// The weights file, or the run folder's checkpoint, as given to `--init`.
    pub from: String,
    /// SHA-256 of the weights file (none for a run folder).
    pub sha256: Option<String>,
    /// What its card (or run folder) says: steps, averaging, time and sessions.
    #[serde(flatten)]
    pub history: Provenance,
}

impl Origin {
    /// A run folder's checkpoint `ckpt`: the dataset (from the run's configuration), class
    /// names and step (from the checkpoint), the weights taken, the time and sessions to that
    /// step, and the weights the run started from.
    pub fn of_checkpoint(run: &RunDir, ckpt: &Path, weights: WeightsChoice) -> Result<Self> {
        let state = checkpoint::read_state(ckpt)?;
        let dataset = std::fs::read_to_string(run.config())
            .ok()
            .and_then(|text| TrainConfig::from_saved(&text, &[]).ok())
            .map(|c| c.data.source);
        Ok(Self {
            dataset,
            class_names: state.class_names,
            history: Provenance {
                steps_trained: Some(state.step),
                averaging: Some(weights.name().to_string()),
                training_seconds: training_seconds(run, state.step),
                training_sessions: session::sessions_until(&run.sessions(), state.step),
                initialised_from: WarmStart::read(&run.warm_start())?.map(Box::new),
                imported_from: None,
            },
        })
    }

    /// What the card beside the weights file `weights` says (nothing without a card).
    pub fn of_file(weights: &Path) -> Self {
        card_of(weights).map_or_else(Self::default, |card| card.origin)
    }
}

impl Provenance {
    /// Optimiser steps over the whole chain of warm starts, when every link knows its own.
    pub fn steps_in_all(&self) -> Option<usize> {
        let earlier = match &self.initialised_from {
            Some(w) => w.total_steps()?,
            None => 0,
        };
        Some(self.steps_trained? + earlier)
    }
}

impl WarmStart {
    /// Optimiser steps over the whole chain of warm starts, when every link knows its own.
    pub fn total_steps(&self) -> Option<usize> {
        self.history.steps_in_all()
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
        output::write_new(path, json.as_bytes(), true)
    }
}

/// A weights file's bytes (f16 or f32), made before anything is written: `export` checks its
/// evaluations against their SHA-256 first.
pub struct WeightsFile {
    bytes: Vec<u8>,
    precision: Precision,
    parameters: usize,
    config: ModelConfig,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

impl WeightsFile {
    /// `model`'s weights file.
    pub fn new(model: &Unet, config: ModelConfig, f16: bool) -> Result<Self> {
        let precision = if f16 { Precision::F16 } else { Precision::F32 };
        let bytes = weights::to_bytes(model, &config, precision)?;
        Ok(Self {
            sha256: sha256_hex(&bytes),
            bytes,
            precision,
            parameters: model.num_params(),
            config,
        })
    }

    /// Writes the file as `out` (atomically; an existing one only with `force`) and its card
    /// beside it (`out` with `.json`), as `export` and `import` do.
    pub fn write(
        self,
        out: &Path,
        origin: Origin,
        evaluations: Vec<Report>,
        force: bool,
    ) -> Result<ModelCard> {
        // Through the CLI's one writer of outputs: a temporary file of its own, synced, renamed.
        output::write_new(out, &self.bytes, force)?;
        let mut evaluations = evaluations.into_iter();
        let card = ModelCard {
            weights: out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: self.sha256,
            bytes: self.bytes.len() as u64,
            precision: self.precision,
            parameters: self.parameters,
            config: self.config,
            origin,
            evaluation: evaluations.next(),
            more_evaluations: evaluations.collect(),
        };
        let json = serde_json::to_string_pretty(&card)? + "\n";
        output::write_new(&out.with_extension("json"), json.as_bytes(), true)?;
        Ok(card)
    }
}

/// The model card `ddpm export` wrote beside a weights file, when it describes that file (same
/// SHA-256).
pub fn card_of(weights: &Path) -> Option<ModelCard> {
    let path = weights.with_extension("json");
    if !path.exists() {
        return None;
    }
    let read = std::fs::read(&path).map_err(|e| e.to_string());
    let card = read.and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string()));
    let card: ModelCard = match card {
        Ok(card) => card,
        Err(why) => {
            // Said, not silent: what the card knew (class names, training history) is missing
            // from what this command prints or writes.
            eprintln!(
                "notice: {}: not a readable model card ({why}); ignoring it",
                path.display()
            );
            return None;
        }
    };
    let bytes = std::fs::read(weights).ok()?;
    if card.sha256 != sha256_hex(&bytes) {
        eprintln!(
            "notice: {}: its card describes other weights (another SHA-256); ignoring the card",
            weights.display()
        );
        return None;
    }
    Some(with_matching_classes(card, &bytes, weights))
}

/// `card` with its class names dropped, and a notice, when they are not one per class of the
/// weights: a hand-edited list would name the wrong class for `--class`.
fn with_matching_classes(mut card: ModelCard, bytes: &[u8], weights: &Path) -> ModelCard {
    // Unreadable weights are the loader's to report.
    let Ok((config, _)) = weights::read_config(bytes) else {
        return card;
    };
    let (names, classes) = (card.origin.class_names.len(), config.unet.num_classes);
    if names > 0 && Some(names) != classes {
        eprintln!(
            "notice: {}: its card names {names} classes, but the weights have {}; ignoring the \
             card's class names",
            weights.display(),
            classes.unwrap_or(0)
        );
        card.origin.class_names.clear();
    }
    card
}

/// The class names of a run folder (its newest checkpoint's) or of a weights file (its card's),
/// index = label; empty when unconditional or unknown (a file without its card).
pub fn class_names_of(model: &Path) -> Result<Vec<String>> {
    if model.is_dir() {
        let ckpt = crate::load::newest_checkpoint(&RunDir(model.to_path_buf()))?;
        Ok(checkpoint::read_state(&ckpt)?.class_names)
    } else {
        Ok(card_of(model).map_or_else(Vec::new, |c| c.origin.class_names))
    }
}

/// `--class`: a class of `names` by name (as `ddpm info` lists them) or by number, names first
/// (a folder's classes named `2` and `10` sort as `10`, `2`).
pub fn class_index(arg: &str, names: &[String]) -> Result<usize> {
    if let Some(index) = names.iter().position(|n| n == arg) {
        return Ok(index);
    }
    match arg.parse::<usize>() {
        Ok(index) => Ok(index),
        Err(_) if names.is_empty() => {
            anyhow::bail!("--class {arg}: this model names no classes; give a class number")
        }
        Err(_) => anyhow::bail!(
            "--class {arg}: no class of that name (its classes: {})",
            names.join(", ")
        ),
    }
}

/// A `ddpm eval` report for a card, checked to be of the step being exported and, where it
/// records what it read (reports since 2026-12-07), of these weights: `weights_sha256` are the
/// SHA-256s they go by (the file exported from, and the file written).
pub fn read_evaluation(
    path: &Path,
    steps_trained: Option<usize>,
    weights_sha256: &[&str],
) -> Result<Report> {
    let report = Report::read(path)?;
    if report.step != steps_trained {
        let show = |s: Option<usize>| s.map_or("unknown".into(), |s| s.to_string());
        bail!(
            "{}: evaluates step {}, but the weights exported are of step {}",
            path.display(),
            show(report.step),
            show(steps_trained)
        );
    }
    let read = &report.weights_sha256;
    if !read.is_empty()
        && !read
            .values()
            .any(|sha| weights_sha256.contains(&sha.as_str()))
    {
        bail!(
            "{}: evaluates other weights than those exported ({} there, SHA-256 {}; here {})",
            path.display(),
            report.model,
            read.values()
                .map(|s| short(s))
                .collect::<Vec<_>>()
                .join(", "),
            weights_sha256
                .iter()
                .map(|s| short(s))
                .collect::<Vec<_>>()
                .join(" or ")
        );
    }
    Ok(report)
}

/// The first 12 hex digits of a SHA-256, enough to tell two apart in a message.
pub fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// The wall time of steps 1..=`step` of a run: its `metrics.csv` restarts the `seconds` column
/// at 0 in every session, so each session adds its last value.
fn training_seconds(run: &RunDir, step: usize) -> Option<f64> {
    let text = std::fs::read_to_string(run.metrics()).ok()?;
    let (mut total, mut session) = (0.0, 0.0);
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(row_step), Some(seconds)) = (
            fields.first().and_then(|s| s.parse::<usize>().ok()),
            fields.get(4).and_then(|s| s.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if row_step > step {
            break;
        }
        if seconds < session {
            total += session;
        }
        session = seconds;
    }
    Some(total + session)
}

/// SHA-256 of the file `path`, as [`sha256_hex`].
pub fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(sha256_hex(&bytes))
}

/// SHA-256 of `bytes` in lower-case hexadecimal (model cards, eval reports, warm starts).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_time_adds_up_resumed_sessions() {
        let dir = tempfile::tempdir().expect("tmp");
        let csv = "step,loss,lr,images_per_second,seconds\n1,0.9,1e-4,10,2.0\n2,0.8,1e-4,10,4.0\n\
                   3,0.7,1e-4,10,1.5\n4,0.6,1e-4,10,3.5\n5,0.5,1e-4,10,5.0\n";
        std::fs::write(dir.path().join("metrics.csv"), csv).expect("write");
        let run = RunDir(dir.path().to_path_buf());
        assert_eq!(training_seconds(&run, 4), Some(4.0 + 3.5));
        assert_eq!(training_seconds(&run, 2), Some(4.0));
        assert_eq!(training_seconds(&RunDir(dir.path().join("nope")), 2), None);
    }

    fn link(steps: Option<usize>, earlier: Option<WarmStart>) -> WarmStart {
        WarmStart {
            from: "w.bpk".into(),
            sha256: None,
            history: Provenance {
                steps_trained: steps,
                initialised_from: earlier.map(Box::new),
                ..Provenance::default()
            },
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

    #[test]
    fn a_card_naming_other_classes_than_its_weights_loses_its_names() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www/models");
        let dir = tempfile::tempdir().expect("tmp");
        let weights = dir.path().join("m.bpk");
        std::fs::copy(models.join("mnist.bpk"), &weights).expect("copy");
        let text = std::fs::read_to_string(models.join("mnist.json")).expect("card");
        let mut card: ModelCard = serde_json::from_str(&text).expect("parses");
        let write = |card: &ModelCard| {
            let json = serde_json::to_string(card).expect("json");
            std::fs::write(weights.with_extension("json"), json).expect("write");
        };
        write(&card);
        assert_eq!(
            card_of(&weights).expect("card").origin.class_names.len(),
            10
        );
        card.origin.class_names.truncate(9);
        write(&card);
        let read = card_of(&weights).expect("the card is kept");
        assert!(read.origin.class_names.is_empty());
        assert_eq!(read.origin.history, card.origin.history);
    }

    #[test]
    fn the_shipped_cards_keep_their_keys_through_a_read_and_a_write() {
        // The page reads these keys; the flattened provenance must write them where they were.
        for name in ["mnist.json", "emoji.json"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../www/models")
                .join(name);
            let text = std::fs::read_to_string(&path).expect("shipped card");
            let card: ModelCard = serde_json::from_str(&text).expect("parses");
            let again = serde_json::to_string_pretty(&card).expect("writes") + "\n";
            assert_eq!(again, text, "{name} changed on a round trip");
        }
    }
}
