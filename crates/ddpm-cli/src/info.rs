//! `ddpm info`: what a weights file or a run folder holds (configuration, parameters, size).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use ddpm::weights;

use crate::card;
use crate::load;
use crate::output;

/// `ddpm info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A weights file or a run folder.
    pub model: PathBuf,
}

/// Runs `ddpm info`.
pub fn run(args: &InfoArgs) -> Result<()> {
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
        let (model, config) = load::model(&args.model, &device)?;
        (model, config, None, None)
    };
    let mut text = format!("{}\n", args.model.display());
    if let Some(size) = size {
        text += &format!("  size        {size} bytes\n");
    }
    if let Some(precision) = precision {
        text += &format!("  precision   {precision:?}\n");
    }
    text += &format!("  parameters  {}\n", model.num_params());
    text += &format!(
        "  image       {}×{}×{}\n",
        config.unet.channels, config.image_size[0], config.image_size[1]
    );
    let names = card::class_names_of(&args.model)?;
    text += &format!(
        "  classes     {}{}\n",
        config
            .unet
            .num_classes
            .map_or("none".into(), |c| c.to_string()),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    );
    text += &format!(
        "  config      {}\n",
        serde_json::to_string_pretty(&config)?.replace('\n', "\n              ")
    );
    output::print(&text)
}
