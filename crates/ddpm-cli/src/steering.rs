//! `ddpm sample`'s ways to steer a run with the same network: finish a drawing (SDEdit),
//! fill a masked region (RePaint), or interpolate between two seeds. The core's
//! [`Steer`] does the work; here the flags become its images.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use ddpm::steer::{self, Kept, Steer};

use crate::data::{self, Shaping};

/// The steering flags of `ddpm sample`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SteerArgs {
    /// Start from this image: with --strength, finish it (SDEdit); with --mask, fill in what
    /// the mask does not keep (RePaint). Resized and converted to the model's size and
    /// channels as training images are.
    #[arg(long, value_name = "IMAGE")]
    pub init: Option<PathBuf>,
    /// How much of the --init image to redo, in [0, 1]: 0 returns it, 1 ignores it.
    #[arg(long, requires = "init", conflicts_with = "mask")]
    pub strength: Option<f64>,
    /// Inpainting mask for --init: white keeps the image, black is generated.
    #[arg(long, value_name = "MASK", requires = "init")]
    pub mask: Option<PathBuf>,
    /// RePaint's jump length: every this many steps, go back as many.
    #[arg(long, default_value_t = 1, requires = "mask")]
    pub resample_jump: usize,
    /// RePaint's repeats: how often each stretch of steps is run (1: plain replacement).
    #[arg(long, default_value_t = 1, requires = "mask")]
    pub resample_repeats: usize,
    /// Images between two seeds (DDIM with η = 0): `-n` images whose starting noise is the
    /// spherical interpolation of seed A's and seed B's.
    #[arg(long, value_name = "SEED_A,SEED_B", value_parser = parse_seeds,
          conflicts_with_all = ["init", "seed"])]
    pub interpolate: Option<[u64; 2]>,
}

fn parse_seeds(text: &str) -> Result<[u64; 2], String> {
    let bad = || format!("`{text}` is not two seeds (e.g. 3,17)");
    let (a, b) = text.split_once(',').ok_or_else(bad)?;
    Ok([
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ])
}

impl SteerArgs {
    /// The core's steering for `n` images of `[channels, height, width]`, and the seed that
    /// replaces `--seed` (interpolation's first).
    pub fn steer(
        &self,
        n: usize,
        [channels, height, width]: [usize; 3],
        device: &Device,
    ) -> Result<(Steer, Option<u64>)> {
        if let Some([a, b]) = self.interpolate {
            return Ok((Steer::Interpolate { other: b }, Some(a)));
        }
        let Some(init) = &self.init else {
            return Ok((Steer::None, None));
        };
        let image = |path: &Path, channels| -> Result<Vec<f32>> {
            if height != width {
                bail!(
                    "{}: the model's images are not square ({height}×{width})",
                    path.display()
                );
            }
            let shaping = Shaping {
                image_size: height,
                channels,
                strict: true,
            };
            // The image crate's error repeats its source in its own message: no chain.
            let decoded = data::decode(path)
                .map_err(|e| anyhow::anyhow!("{}: not a readable image ({e})", path.display()))?;
            Ok(data::to_training_pixels(decoded, &shaping)
                .iter()
                .map(|&p| data::pixel_value(p))
                .collect::<Vec<f32>>())
        };
        let batch = |values: &[f32], channels| -> Result<Tensor<4>> {
            steer::batch(values, n, [channels, height, width], device)
                .context("an image of the model's size")
        };
        let picture = batch(&image(init, channels)?, channels)?;
        let steer = match &self.mask {
            Some(mask) => {
                // White keeps: pixels above mid-gray are 1.
                let keep: Vec<f32> = image(mask, 1)?
                    .iter()
                    .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
                    .collect();
                let kept = match Kept::of(&keep) {
                    Kept::Part => batch(&keep, 1)?,
                    whole => bail!(
                        "{}: the mask keeps {} of the image; it needs white to keep and black to fill",
                        mask.display(),
                        if whole == Kept::All { "all" } else { "nothing" }
                    ),
                };
                Steer::Inpaint {
                    image: picture,
                    mask: kept,
                    jump: self.resample_jump,
                    repeats: self.resample_repeats,
                }
            }
            None => Steer::Edit {
                image: picture,
                strength: self.strength.unwrap_or(0.6),
            },
        };
        Ok((steer, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_two_numbers() {
        assert_eq!(parse_seeds("3,17"), Ok([3, 17]));
        assert_eq!(parse_seeds(" 3 , 17 "), Ok([3, 17]));
        assert!(parse_seeds("3").is_err());
        assert!(parse_seeds("a,b").is_err());
    }
}
