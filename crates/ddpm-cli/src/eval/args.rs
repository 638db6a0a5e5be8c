//! `ddpm eval`'s arguments: the samplers, weights and measures asked for.

use std::path::PathBuf;
use std::str::FromStr;

use ddpm::{DdpmVariance, SamplerKind};

use crate::data::EMBEDDED_MNIST_TEST;
use crate::device::DeviceChoice;
use crate::load::WeightsChoice;

/// Images per network call when neither `--batch` nor the extended report says.
pub const DEFAULT_BATCH: usize = 250;

/// `--samplers`: `ddpm` (ancestral, all T steps) or `ddim-K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerSpec {
    /// Algorithm 2 through every step.
    Ddpm,
    /// DDIM (η = 0) over this many steps.
    Ddim(usize),
}

impl FromStr for SamplerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a sampler: give `ddpm` or `ddim-K` (e.g. ddim-50)");
        match s {
            "ddpm" => Ok(Self::Ddpm),
            _ => match s.strip_prefix("ddim-").map(str::parse::<usize>) {
                Some(Ok(steps)) if steps > 0 => Ok(Self::Ddim(steps)),
                _ => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for SamplerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ddpm => write!(f, "ddpm"),
            Self::Ddim(steps) => write!(f, "ddim-{steps}"),
        }
    }
}

impl SamplerSpec {
    pub fn kind(self) -> SamplerKind {
        match self {
            Self::Ddpm => SamplerKind::Ddpm {
                variance: DdpmVariance::Posterior,
            },
            Self::Ddim(steps) => SamplerKind::Ddim { steps, eta: 0.0 },
        }
    }
}

/// `ddpm eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A run folder (EMA and raw weights of its newest checkpoint) or an exported weights file
    /// (the one set of weights it holds, EMA or raw as its card says). A model of 28×28
    /// grayscale digits gets every measure; any other model only its bits/dim, on the
    /// `--heldout` images it is given.
    pub model: PathBuf,
    /// Generated images per sampler and weights for the class-conditional measures (the
    /// classes in turn), and as many without a class [default: 1000]. Digit models only.
    #[arg(long, short)]
    pub n: Option<usize>,
    /// Samplers, comma-separated: `ddpm` (all T steps) and `ddim-K` [default:
    /// ddpm,ddim-10,ddim-20,ddim-50,ddim-100]. Digit models only.
    #[arg(long, value_delimiter = ',')]
    pub samplers: Option<Vec<SamplerSpec>>,
    /// Which weights of a run folder, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ema,raw")]
    pub weights: Vec<WeightsChoice>,
    /// Classifier-free guidance scale of the class-conditional samples (1 = none) [default:
    /// 3]. Digit models only.
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Held-out images for the bits/dim (0 skips it) [default: 1000].
    #[arg(long)]
    pub nll_images: Option<usize>,
    /// 1 evaluates all T terms of the bound; K > 1 one random step per block of K (weighted
    /// by K): an unbiased estimate K times faster [default: 1].
    #[arg(long)]
    pub nll_stride: Option<usize>,
    /// Images per network call; it also fixes which noise each image gets [default: 250].
    #[arg(long)]
    pub batch: Option<usize>,
    /// The held-out images: the embedded MNIST test set (digit models), or a folder (of class
    /// folders, IDX files or CIFAR-10 batches) of images the model was not trained on.
    #[arg(long, default_value = EMBEDDED_MNIST_TEST)]
    pub heldout: String,
    /// Classifier weights made by `ddpm classifier` (default: the embedded ones).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Fixes the sampling noise: the same seed gives the same numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the results as JSON here (`ddpm export --eval` puts them in the model card).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Add to this earlier `--out` report of the same checkpoint instead of starting afresh:
    /// only the weights × samplers (by default its samplers) and bits/dim it lacks are
    /// measured, with its settings (-n, guidance, batch, bound's images and stride — none if it
    /// has no bits/dim, unless --nll-images asks —, held-out set, seed, classifier); `--out`
    /// (needed; it may be this file, with --force) gets both.
    #[arg(long, value_name = "REPORT")]
    pub extend: Option<PathBuf>,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    pub force: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_specs_parse_and_print() {
        assert_eq!("ddpm".parse::<SamplerSpec>(), Ok(SamplerSpec::Ddpm));
        assert_eq!("ddim-50".parse::<SamplerSpec>(), Ok(SamplerSpec::Ddim(50)));
        assert_eq!(SamplerSpec::Ddim(20).to_string(), "ddim-20");
        for bad in ["ddim", "ddim-0", "ddim-x", "DDPM", "ddim50"] {
            let err = bad.parse::<SamplerSpec>().expect_err(bad);
            assert!(err.contains(bad) && err.contains("ddim-K"), "{err}");
        }
    }
}
