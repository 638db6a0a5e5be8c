//! `ddpm import`: a model trained with lucidrains' denoising-diffusion-pytorch, as the weights
//! file and model card `export` writes, so that `sample`, `eval` and the browser take it.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Device;
use ddpm::ModelConfig;

use crate::card::{self, Imported, Origin, Provenance};
use crate::load::WeightsChoice;
use crate::lucidrains::{self, DiffusionFlags};
use crate::output;

/// `ddpm import`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  ddpm import results/model-10.pt --image-size 32 -o model.bpk
  ddpm import unet.safetensors --image-size 64 --objective pred_noise --schedule linear -o model.bpk
  ddpm sample model.bpk -o samples.png

The U-Net's configuration (dim, dim_mults, channels, self-conditioning, learned variance,
attention heads, full attention per level) is read off the tensors; the schedule, T and the
objective off GaussianDiffusion's buffers (`betas`, `loss_weight`) where the file has them.")]
pub struct ImportArgs {
    /// A lucidrains Trainer checkpoint (`results/model-N.pt`), or a GaussianDiffusion or Unet
    /// state dict, as PyTorch `.pt` or `.safetensors`.
    pub file: PathBuf,
    /// The weights file to write; its model card goes beside it as `<name>.json`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The side (or HEIGHTxWIDTH) of the images the model was trained on, the Trainer's
    /// `image_size`: lucidrains keeps it outside the weights.
    #[arg(long, value_parser = parse_image_size, value_name = "SIZE")]
    pub image_size: Option<[usize; 2]>,
    /// Which weights of a Trainer checkpoint: the EMA (default) or the optimiser's own (`raw`).
    #[arg(long, value_enum)]
    pub weights: Option<WeightsChoice>,
    #[command(flatten)]
    pub diffusion: DiffusionFlags,
    /// Store the tensors as 16-bit floats (half the size).
    #[arg(long)]
    pub f16: bool,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

/// `28` or `32x48` (height × width).
fn parse_image_size(text: &str) -> Result<[usize; 2], String> {
    let side = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{text}` is not an image size (e.g. 32 or 32x48)"))
    };
    match text.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok([side(h)?, side(w)?]),
        None => side(text).map(|n| [n, n]),
    }
}

/// Runs `ddpm import`.
pub fn run(args: &ImportArgs) -> Result<()> {
    let card_path = args.out.with_extension("json");
    if card_path == args.out {
        bail!(
            "{}: the weights file would also be its card; name it e.g. model.bpk",
            args.out.display()
        );
    }
    output::refuse_inputs(&[args.out.clone(), card_path.clone()], &[&args.file])?;
    output::refuse_existing([&args.out, &card_path], args.force)?;
    let file = args.file.display().to_string();
    let dict = lucidrains::read(&args.file, args.weights).context(file.clone())?;
    let device = Device::flex();
    let older = dict.version.as_deref().filter(|v| !v.starts_with("2."));
    let (model, inferred) = lucidrains::unet(&dict, &device)
        .map_err(|e| match older {
            // 1.x had another `Unet` layout: say so rather than which of its keys failed.
            Some(v) => e.context(format!(
                "written by denoising-diffusion-pytorch {v}; its 2.x layout is needed"
            )),
            None => e,
        })
        .context(file.clone())?;
    // What `export --lucidrains` recorded is used where the tensors agree with it, for what
    // they cannot tell (dropout, the time embedding's θ) and to read back identical weights.
    let known = match &dict.config {
        Some(known) if same_layout(&known.unet, &inferred) => Some(known),
        Some(_) => {
            bail!("{file}: its metadata `ddpm.config` describes another U-Net than its tensors")
        }
        None => None,
    };
    let (diffusion, mut assumed) = lucidrains::infer_diffusion(
        &dict.buffers,
        known.map(|k| &k.diffusion),
        &args.diffusion,
        inferred.learned_variance,
    )
    .context(file.clone())?;
    if known.is_none() {
        // Self-conditioning with a learned variance has the tensors of a U-Net of twice the
        // image channels (2 or 6) without either. lucidrains' diffusions train only the second.
        if inferred.self_condition && inferred.learned_variance {
            let channels = 2 * inferred.channels;
            if !dict.buffers.is_empty() {
                bail!(
                    "{file}: a U-Net of {channels} image channels (its diffusion cannot train self-conditioning with a learned variance); images here are gray or RGB"
                );
            }
            assumed.push(format!(
                "self-conditioning with a learned variance ({channels} channels in and out; {channels}-channel images are not implemented here)"
            ));
        }
        // Neither is in a tensor or a buffer; a model made with others samples wrong.
        assumed
            .push("the time embedding's θ = 10000 (lucidrains' `sinusoidal_pos_emb_theta`)".into());
        assumed.push("images scaled to [−1, 1] for training (lucidrains' `auto_normalize`)".into());
    }
    let image_size = match (args.image_size, known.map(|k| k.image_size)) {
        (Some(given), Some(recorded)) if given != recorded => bail!(
            "--image-size {}x{} contradicts the file's metadata, which says {}x{}",
            given[0],
            given[1],
            recorded[0],
            recorded[1]
        ),
        (Some(size), _) | (None, Some(size)) => size,
        (None, None) => bail!(
            "{file}: give --image-size (the Trainer's image_size): lucidrains keeps it outside the weights"
        ),
    };
    let config = ModelConfig {
        unet: known.map_or(inferred, |k| k.unet.clone()),
        diffusion,
        image_size,
    };
    config.validate().map_err(|e| anyhow!("{file}: {e}"))?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assumed
        .iter()
        .for_each(|a| eprintln!("notice: {file} does not say; assumed {a}"));
    let origin = Origin {
        dataset: None,
        class_names: Vec::new(),
        history: Provenance {
            steps_trained: dict.step,
            averaging: dict.averaging.map(|w| w.name().to_string()),
            imported_from: Some(Imported {
                file: name,
                sha256: dict.sha256.clone(),
                format: dict.format.name().to_string(),
                keys: dict.prefix.clone(),
                lucidrains_version: dict.version.clone(),
                assumed: std::mem::take(&mut assumed),
            }),
            ..Provenance::default()
        },
    };
    output::prepare(&[args.out.clone(), card_path.clone()], &[])?;
    let card = card::WeightsFile::new(&model, config, args.f16)?.write(
        &args.out,
        origin,
        vec![],
        args.force,
    )?;
    eprintln!(
        "imported {file} ({} weights{}): {} parameters, {}×{} images, T = {}, {:?}; wrote {} and {}",
        card.origin.history.averaging.as_deref().unwrap_or("its"),
        dict.step.map_or(String::new(), |s| format!(" at step {s}")),
        card.parameters,
        card.config.image_size[0],
        card.config.image_size[1],
        card.config.diffusion.timesteps,
        card.config.diffusion.objective,
        args.out.display(),
        card_path.display()
    );
    Ok(())
}

/// Whether `known` (a file's metadata) describes the U-Net whose tensors gave `inferred`: the
/// same once its defaults are spelled as inference spells them, leaving what tensors cannot
/// tell (dropout, θ). Compared, not built: metadata is no bound on what it asks to allocate.
fn same_layout(known: &ddpm::UnetConfig, inferred: &ddpm::UnetConfig) -> bool {
    let levels = known.dim_mults.len();
    let innermost_only: Vec<bool> = (0..levels).map(|i| i + 1 == levels).collect();
    let default_out = known.channels * if known.learned_variance { 2 } else { 1 };
    let spelled = known
        .clone()
        .with_init_dim(known.init_dim.filter(|d| *d != known.dim))
        .with_out_dim(known.out_dim.filter(|o| *o != default_out))
        .with_full_attn(known.full_attn.clone().filter(|f| *f != innermost_only))
        .with_dropout(inferred.dropout)
        .with_sinusoidal_pos_emb_theta(inferred.sinusoidal_pos_emb_theta);
    spelled == *inferred
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_are_a_side_or_height_by_width() {
        assert_eq!(parse_image_size("28"), Ok([28, 28]));
        assert_eq!(parse_image_size("32x48"), Ok([32, 48]));
        assert_eq!(
            parse_image_size("0"),
            Err("`0` is not an image size (e.g. 32 or 32x48)".into())
        );
        assert!(parse_image_size("32x").is_err());
    }

    #[test]
    fn metadata_describes_the_tensors_u_net_up_to_what_tensors_cannot_tell() {
        let inferred = ddpm::UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1);
        let spelled_out = inferred
            .clone()
            .with_init_dim(Some(8))
            .with_out_dim(Some(1))
            .with_full_attn(Some(vec![false, true]))
            .with_dropout(0.1);
        assert!(same_layout(&spelled_out, &inferred));
        let wider = ddpm::UnetConfig {
            dim: 16,
            ..inferred.clone()
        };
        assert!(!same_layout(&wider, &inferred));
        let full = inferred.clone().with_full_attn(Some(vec![true, true]));
        assert!(!same_layout(&full, &inferred));
    }
}
