//! `ddpm export` (the EMA weights as the file the browser loads, a JSON model card beside it,
//! optionally safetensors) and `ddpm info`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::{DType, Device};
use ddpm::weights::{self, Precision};
use ddpm::{ModelConfig, Unet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::eval::Report;
use crate::eval::WeightsChoice;
use crate::run_dir::RunDir;
use crate::sample::{load_checkpoint_model, load_model, newest_checkpoint};
use crate::session::{self, Session};
use crate::warm_start::WarmStart;

/// `ddpm export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A run folder (its newest checkpoint's EMA weights) or a weights file.
    pub model: PathBuf,
    /// The weights file to write; the model card goes beside it as `<name>.json`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Store the tensors as 16-bit floats (half the size).
    #[arg(long)]
    pub f16: bool,
    /// Which weights of a run folder's checkpoint: the EMA (default) or the optimiser's own
    /// (`raw`), e.g. when `ddpm eval` measures the raw ones better early in training.
    #[arg(long, value_enum, default_value = "ema")]
    pub weights: WeightsChoice,
    /// Also write the weights as safetensors (f32) here.
    #[arg(long, value_name = "FILE")]
    pub safetensors: Option<PathBuf>,
    /// Put this `ddpm eval --out` report into the model card (it must have evaluated the same
    /// step). Repeatable: the first is the card's `evaluation`, the others (e.g. another `-n` or
    /// guidance) its `more_evaluations`.
    #[arg(long, value_name = "FILE")]
    pub eval: Vec<PathBuf>,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

/// `ddpm info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A weights file or a run folder.
    pub model: PathBuf,
}

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
    /// What it was trained on (`data.source`), when known.
    pub dataset: Option<String>,
    /// Class names, index = label (empty for unconditional models).
    pub class_names: Vec<String>,
    /// Optimiser steps trained, when known.
    pub steps_trained: Option<usize>,
    /// `ema` (the moving average, what is normally shipped) or `raw` (the optimiser's
    /// weights), when exported from a run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub averaging: Option<String>,
    /// Wall-clock seconds those steps took (summed over resumed sessions), from `metrics.csv`.
    pub training_seconds: Option<f64>,
    /// The `ddpm train` sessions that made those steps: command, device and machine (from the
    /// run folder's `sessions.jsonl`; empty for runs older than it).
    #[serde(default)]
    pub training_sessions: Vec<Session>,
    /// The weights those steps started from, when the run was warm-started (`train --init`):
    /// their steps, time and sessions, so the whole history is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialised_from: Option<WarmStart>,
    /// What `ddpm eval` measured for these weights, when it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Report>,
    /// Further `ddpm eval` reports of the same weights with other settings (another `-n`,
    /// guidance or samplers), when `export` was given more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_evaluations: Vec<Report>,
}

/// Runs `ddpm export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let card_path = args.out.with_extension("json");
    let mut outputs = vec![args.out.clone(), card_path.clone()];
    outputs.extend(args.safetensors.clone());
    // The weights, their card (the weights' name with `.json`) and the safetensors copy are
    // three files: one path for two of them would overwrite what was just written.
    if let Some(a) = repeated(&outputs) {
        bail!(
            "{}: would hold two of the outputs (the weights, their card `{}`, the safetensors copy); name the weights file e.g. model.bpk",
            a.display(),
            card_path.display()
        );
    }
    if let Some(path) = repeated(&args.eval) {
        bail!("{}: given twice to --eval", path.display());
    }
    for out in &outputs {
        if out.exists() && !args.force {
            bail!("{}: exists; pass --force to overwrite it", out.display());
        }
    }
    let device = Device::flex();
    let (model, config, known) = if args.model.is_dir() {
        // One checkpoint for the weights and for the card, even if a running trainer lands a
        // newer one in between.
        let ckpt = newest_checkpoint(&args.model)?;
        let file = args.weights.checkpoint_file();
        let (model, config, _) = load_checkpoint_model(&ckpt, file, &device)?;
        (model, config, provenance(&args.model, &ckpt, args.weights)?)
    } else {
        let (model, config) = load_model(&args.model, &device)?;
        // Re-exporting a file (e.g. to f16) keeps what its card knew.
        let known = card_of(&args.model).map_or_else(Provenance::default, Provenance::from);
        if args.weights == WeightsChoice::Raw && known.averaging.as_deref() != Some("raw") {
            bail!(
                "{}: --weights raw needs a run folder (a weights file holds one set of weights, and its card does not say raw)",
                args.model.display()
            );
        }
        (model, config, known)
    };
    let Provenance {
        dataset,
        class_names,
        steps_trained,
        averaging,
        training_seconds,
        training_sessions,
        initialised_from,
    } = known;
    let mut evaluations = args
        .eval
        .iter()
        .map(|path| read_evaluation(path, steps_trained))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let evaluation = evaluations.next();
    let more_evaluations = evaluations.collect();
    let precision = if args.f16 {
        Precision::F16
    } else {
        Precision::F32
    };
    weights::save(&model, &config, precision, &args.out, args.force)?;
    let bytes = std::fs::read(&args.out)
        .with_context(|| format!("{}: cannot read back", args.out.display()))?;
    let card = ModelCard {
        weights: args
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        precision,
        parameters: model.num_params(),
        config,
        dataset,
        class_names,
        steps_trained,
        averaging,
        training_seconds,
        training_sessions,
        initialised_from,
        evaluation,
        more_evaluations,
    };
    let json = serde_json::to_string_pretty(&card)? + "\n";
    std::fs::write(&card_path, json)
        .with_context(|| format!("{}: cannot write", card_path.display()))?;
    if let Some(path) = &args.safetensors {
        std::fs::write(path, safetensors_bytes(&model, &card.config)?)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    eprintln!(
        "wrote {} ({} bytes, {:?}, sha256 {}) and {}",
        args.out.display(),
        card.bytes,
        precision,
        card.sha256,
        card_path.display()
    );
    Ok(())
}

/// The first path that appears twice in `paths`.
fn repeated(paths: &[PathBuf]) -> Option<&PathBuf> {
    paths
        .iter()
        .enumerate()
        .find_map(|(i, p)| paths[..i].contains(p).then_some(p))
}

/// The model card `ddpm export` wrote beside a weights file, when it describes that file (same
/// SHA-256).
pub fn card_of(weights: &Path) -> Option<ModelCard> {
    let card: ModelCard =
        serde_json::from_slice(&std::fs::read(weights.with_extension("json")).ok()?).ok()?;
    let bytes = std::fs::read(weights).ok()?;
    if card.sha256 != sha256_hex(&bytes) {
        eprintln!(
            "notice: {}: its card describes other weights (another SHA-256); ignoring the card",
            weights.display()
        );
        return None;
    }
    Some(card)
}

/// A `ddpm eval` report, checked to be of the step being exported.
fn read_evaluation(path: &Path, steps_trained: Option<usize>) -> Result<Report> {
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
    Ok(report)
}

/// Where exported weights came from: what the model card says besides the weights themselves.
#[derive(Debug, Default)]
pub struct Provenance {
    /// `data.source`.
    pub dataset: Option<String>,
    /// Index = label.
    pub class_names: Vec<String>,
    /// Optimiser steps.
    pub steps_trained: Option<usize>,
    /// `ema` or `raw`.
    pub averaging: Option<String>,
    /// Wall-clock seconds of those steps.
    pub training_seconds: Option<f64>,
    /// The `ddpm train` sessions that made them.
    pub training_sessions: Vec<Session>,
    /// What a warm-started run started from.
    pub initialised_from: Option<WarmStart>,
}

impl From<ModelCard> for Provenance {
    fn from(card: ModelCard) -> Self {
        Self {
            dataset: card.dataset,
            class_names: card.class_names,
            steps_trained: card.steps_trained,
            averaging: card.averaging,
            training_seconds: card.training_seconds,
            training_sessions: card.training_sessions,
            initialised_from: card.initialised_from,
        }
    }
}

/// A run folder's checkpoint `ckpt`: dataset (from the run's configuration), class names and
/// step (from the checkpoint), the weights exported, the time and sessions to that step, and
/// the weights it started from.
pub fn provenance(run: &Path, ckpt: &Path, weights: WeightsChoice) -> Result<Provenance> {
    let state = checkpoint::read_state(ckpt)?;
    let dataset = std::fs::read_to_string(run.join("config.toml"))
        .ok()
        .and_then(|text| TrainConfig::from_toml(&text, &[]).ok())
        .map(|c| c.data.source);
    let run_dir = RunDir(run.to_path_buf());
    Ok(Provenance {
        dataset,
        class_names: state.class_names,
        steps_trained: Some(state.step),
        averaging: Some(weights.name().to_string()),
        training_seconds: training_seconds(run, state.step),
        training_sessions: session::sessions_until(&run_dir.sessions(), state.step),
        initialised_from: WarmStart::read(&run_dir.warm_start())?,
    })
}

/// The wall time of steps 1..=`step` of a run: its `metrics.csv` restarts the `seconds` column
/// at 0 in every session, so each session adds its last value.
fn training_seconds(run: &Path, step: usize) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).ok()?;
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

/// The model's tensors as safetensors (f32), named by module path, with the configuration in
/// the metadata under `ddpm.config`.
fn safetensors_bytes(model: &Unet, config: &ModelConfig) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    for snapshot in model.collect(None, None, false) {
        let (name, dtype, shape, _, bytes) = snapshot
            .into_parts()
            .map_err(|e| anyhow::anyhow!("cannot read tensor: {e}"))?;
        if dtype != DType::F32 {
            bail!("{name}: unexpected dtype {dtype:?}");
        }
        tensors.push((name, shape.as_slice().to_vec(), bytes.to_vec()));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("ddpm.config".to_string(), serde_json::to_string(config)?)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow::anyhow!("safetensors: {e}"))
}

/// SHA-256 of `bytes` in lower-case hexadecimal (model cards, eval reports).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `ddpm info`.
pub fn info(args: &InfoArgs) -> Result<()> {
    let device = Device::flex();
    // A weights file is read once: its size, precision and model come from the same bytes.
    let (model, config, precision, size) = if args.model.is_file() {
        let bytes = std::fs::read(&args.model)
            .with_context(|| format!("{}: cannot read", args.model.display()))?;
        let loaded = weights::from_bytes(&bytes, &device)
            .with_context(|| args.model.display().to_string())?;
        (
            loaded.model,
            loaded.config,
            Some(loaded.precision),
            Some(bytes.len()),
        )
    } else {
        let (model, config) = load_model(&args.model, &device)?;
        (model, config, None, None)
    };
    println!("{}", args.model.display());
    if let Some(size) = size {
        println!("  size        {size} bytes");
    }
    if let Some(precision) = precision {
        println!("  precision   {precision:?}");
    }
    println!("  parameters  {}", model.num_params());
    println!(
        "  image       {}×{}×{}",
        config.unet.channels, config.image_size[0], config.image_size[1]
    );
    println!(
        "  classes     {}",
        config
            .unet
            .num_classes
            .map_or("none".into(), |c| c.to_string())
    );
    println!(
        "  config      {}",
        serde_json::to_string_pretty(&config)?.replace('\n', "\n              ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn training_time_adds_up_resumed_sessions() {
        let dir = tempfile::tempdir().expect("tmp");
        let csv = "step,loss,lr,images_per_second,seconds\n1,0.9,1e-4,10,2.0\n2,0.8,1e-4,10,4.0\n\
                   3,0.7,1e-4,10,1.5\n4,0.6,1e-4,10,3.5\n5,0.5,1e-4,10,5.0\n";
        std::fs::write(dir.path().join("metrics.csv"), csv).expect("write");
        assert_eq!(super::training_seconds(dir.path(), 4), Some(4.0 + 3.5));
        assert_eq!(super::training_seconds(dir.path(), 2), Some(4.0));
        assert_eq!(super::training_seconds(&dir.path().join("nope"), 2), None);
    }
}
