//! `ddpm export`: the EMA weights as the file the browser loads, a JSON model card beside it
//! (`card`), optionally safetensors.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use ddpm::{ModelConfig, Unet};

use crate::card::{self, Origin};
use crate::load::{self, WeightsChoice};
use crate::lucidrains;
use crate::output;
use crate::run_dir::RunDir;
use crate::safetensors_file;

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
    /// Also write the weights as safetensors (f32) here, named by burn's module paths.
    #[arg(long, value_name = "FILE")]
    pub safetensors: Option<PathBuf>,
    /// Also write the U-Net as a lucidrains `Unet` state dict here (safetensors, f32, lucidrains'
    /// keys and layouts): `Unet(...).load_state_dict(safetensors.torch.load_file(FILE))`.
    #[arg(long, value_name = "FILE")]
    pub lucidrains: Option<PathBuf>,
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
    outputs.extend(args.lucidrains.clone());
    // The weights, their card (the weights' name with `.json`) and the safetensors copies are
    // separate files: one path for two of them would overwrite what was just written.
    if let Some(a) = output::repeated(&outputs) {
        bail!(
            "{}: would hold two of the outputs (the weights, their card `{}`, the safetensors copies); name the weights file e.g. model.bpk",
            a.display(),
            card_path.display()
        );
    }
    if let Some(path) = output::repeated(&args.eval) {
        bail!("{}: given twice to --eval", path.display());
    }
    // A weights file's card is read too (what it knew is carried over).
    let model_files = load::files_read(&args.model);
    let inputs: Vec<&PathBuf> = model_files.iter().chain(&args.eval).collect();
    output::refuse_inputs(&outputs, &inputs)?;
    output::refuse_existing(&outputs, args.force)?;
    let device = Device::flex();
    let (model, config, origin, source) = if args.model.is_dir() {
        // One checkpoint for the weights and for the card, even if a running trainer lands a
        // newer one in between.
        let run = RunDir(args.model.clone());
        let ckpt = load::newest_checkpoint(&run)?;
        let (model, config, _) = load::checkpoint_model(&ckpt, args.weights, &device)?;
        let origin = Origin::of_checkpoint(&run, &ckpt, args.weights)?;
        (model, config, origin, args.weights.file_in(&ckpt))
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
        (model, config, origin, args.model.clone())
    };
    let file = card::WeightsFile::new(&model, config.clone(), args.f16)?;
    // A report of the file exported from, or of an earlier export just like this one.
    let source_sha256 = card::sha256_of(&source)?;
    let evaluations = args
        .eval
        .iter()
        .map(|path| {
            let shas = [source_sha256.as_str(), file.sha256.as_str()];
            card::read_evaluation(path, origin.history.steps_trained, &shas)
        })
        .collect::<Result<Vec<_>>>()?;
    let lucidrains = match &args.lucidrains {
        // Refused before anything is written (a class-conditional model has no counterpart).
        Some(path) => Some((path, lucidrains::to_safetensors(&model, &config)?)),
        None => None,
    };
    output::prepare(&outputs, &[])?;
    let card = file.write(&args.out, origin, evaluations, args.force)?;
    if let Some(path) = &args.safetensors {
        output::write_new(path, &safetensors_bytes(&model, &card.config)?, true)?;
    }
    if let Some((path, bytes)) = lucidrains {
        output::write_new(path, &bytes, true)?;
    }
    eprintln!(
        "wrote {} ({} bytes, {:?}, sha256 {}) and {}",
        args.out.display(),
        card.bytes,
        card.precision,
        card.sha256,
        card_path.display()
    );
    Ok(())
}

/// The model's tensors as safetensors (f32), named by module path, with the configuration in
/// the metadata under `ddpm.config`.
fn safetensors_bytes(model: &Unet, config: &ModelConfig) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    for tensor in model.collect(None, None, false) {
        let values = safetensors_file::f32_values(&tensor)?;
        tensors.push((tensor.name, tensor.shape.as_slice().to_vec(), values));
    }
    let metadata = HashMap::from([("ddpm.config".to_string(), serde_json::to_string(config)?)]);
    safetensors_file::write(tensors, metadata)
}
