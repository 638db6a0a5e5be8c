//! `ddpm export`: the EMA weights as the file the browser loads, a JSON model card beside it
//! (`card`), optionally safetensors.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::{DType, Device};
use ddpm::weights::{self, Precision};
use ddpm::{ModelConfig, Unet};

use crate::card::{self, ModelCard, Origin};
use crate::load::{self, WeightsChoice};
use crate::output;
use crate::run_dir::RunDir;

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
    output::refuse_existing(&outputs, args.force)?;
    let device = Device::flex();
    let (model, config, origin) = if args.model.is_dir() {
        // One checkpoint for the weights and for the card, even if a running trainer lands a
        // newer one in between.
        let run = RunDir(args.model.clone());
        let ckpt = load::newest_checkpoint(&run)?;
        let (model, config, _) = load::checkpoint_model(&ckpt, args.weights, &device)?;
        (
            model,
            config,
            Origin::of_checkpoint(&run, &ckpt, args.weights)?,
        )
    } else {
        let (model, config) = load::model(&args.model, &device)?;
        // Re-exporting a file (e.g. to f16) keeps what its card knew.
        let origin = Origin::of_file(&args.model);
        let averaging = origin.history.averaging.as_deref();
        if args.weights == WeightsChoice::Raw && averaging != Some("raw") {
            bail!(
                "{}: --weights raw needs a run folder (a weights file holds one set of weights, and its card does not say raw)",
                args.model.display()
            );
        }
        (model, config, origin)
    };
    let steps_trained = origin.history.steps_trained;
    let mut evaluations = args
        .eval
        .iter()
        .map(|path| card::read_evaluation(path, steps_trained))
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
        sha256: card::sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        precision,
        parameters: model.num_params(),
        config,
        origin,
        evaluation,
        more_evaluations,
    };
    let json = serde_json::to_string_pretty(&card)? + "\n";
    output::write_new(&card_path, json.as_bytes(), true)?;
    if let Some(path) = &args.safetensors {
        output::write_new(path, &safetensors_bytes(&model, &card.config)?, true)?;
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
