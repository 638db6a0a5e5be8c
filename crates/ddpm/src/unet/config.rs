//! The U-Net's configuration: lucidrains' hyper-parameters, their validation, and the
//! construction of the layers in the order lucidrains' code lists them.

use burn::config::Config;
use burn::module::Param;
use burn::nn::EmbeddingConfig;
use burn::tensor::{Device, Distribution, Tensor};

use super::blocks::{EmbeddingMlp, ResnetBlock, conv};
use super::{
    Attention, ClassEmbedding, Down, DownStage, LinearAttention, StageAttention, Unet, Up, UpStage,
};

/// The most channels any layer may have (`dim` × a multiplier, heads × head size, …), levels
/// and classes, and the longest image side. Configurations are read from files, so these keep
/// a damaged one from overflowing or allocating without bound; lucidrains' largest U-Nets are
/// far inside them.
pub const MAX_WIDTH: usize = 16_384;
/// See [`MAX_WIDTH`].
pub const MAX_LEVELS: usize = 16;
/// See [`MAX_WIDTH`].
pub const MAX_CLASSES: usize = 100_000;
/// See [`MAX_WIDTH`].
pub const MAX_IMAGE_SIDE: usize = 4096;

/// The U-Net's hyper-parameters, with lucidrains' names and defaults.
#[derive(Config, Debug, PartialEq)]
pub struct UnetConfig {
    /// Base channel width.
    pub dim: usize,
    /// Channels after the 7×7 input conv (default: `dim`).
    #[config(default = "None")]
    pub init_dim: Option<usize>,
    /// Output channels (default: `channels`, doubled with `learned_variance`).
    #[config(default = "None")]
    pub out_dim: Option<usize>,
    /// Channel multiplier of each resolution level.
    #[config(default = "vec![1, 2, 4, 8]")]
    pub dim_mults: Vec<usize>,
    /// Image channels.
    #[config(default = 3)]
    pub channels: usize,
    /// Whether the network also takes its previous x₀ estimate as input.
    #[config(default = false)]
    pub self_condition: bool,
    /// Whether the network also outputs an interpolation of the variance (doubles `out_dim`).
    #[config(default = false)]
    pub learned_variance: bool,
    /// θ of the sinusoidal time embedding.
    #[config(default = 10000.0)]
    pub sinusoidal_pos_emb_theta: f64,
    /// Dropout in each ResNet block's first block.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Channels per attention head.
    #[config(default = 32)]
    pub attn_dim_head: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub attn_heads: usize,
    /// Full attention per level (default: only the innermost level).
    #[config(default = "None")]
    pub full_attn: Option<Vec<bool>>,
    /// Class-conditional with this many classes (label `num_classes` is the null class).
    #[config(default = "None")]
    pub num_classes: Option<usize>,
}

/// A configuration that cannot build a U-Net.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnetConfigError {
    /// A size that must be positive is 0.
    #[error("U-Net config: `{0}` must be at least 1")]
    Zero(&'static str),
    /// A size over its bound (`MAX_WIDTH` and its siblings).
    #[error("U-Net config: `{0}` must be at most {1}")]
    TooLarge(&'static str, usize),
    /// The sinusoidal embedding needs an even `dim` of at least 4.
    #[error(
        "U-Net config: `dim` must be even and at least 4 for the sinusoidal embedding, got {0}"
    )]
    Dim(usize),
    /// `full_attn` must name every level.
    #[error("U-Net config: `full_attn` has {got} entries but `dim_mults` has {levels} levels")]
    FullAttn {
        /// Entries given.
        got: usize,
        /// Levels.
        levels: usize,
    },
    /// Dropout must be a probability.
    #[error("U-Net config: `dropout` must be in [0, 1), got {0}")]
    Dropout(f64),
    /// θ must be a finite number greater than 1.
    #[error("U-Net config: `sinusoidal_pos_emb_theta` must be finite and > 1, got {0}")]
    Theta(f64),
    /// A model's images are gray or RGB.
    #[error("images have 1 (gray) or 3 (RGB) channels, got {0}")]
    ImageChannels(usize),
    /// An image size the U-Net cannot take.
    #[error("image size {height}×{width} must be divisible by {factor} for {levels} levels")]
    ImageSize {
        /// Height.
        height: usize,
        /// Width.
        width: usize,
        /// 2^(levels−1).
        factor: usize,
        /// Levels.
        levels: usize,
    },
}

impl UnetConfig {
    /// Checks every field; [`UnetConfig::init`] may panic on a config this rejects.
    pub fn validate(&self) -> Result<(), UnetConfigError> {
        let positive = [
            ("dim", self.dim),
            ("channels", self.channels),
            ("attn_heads", self.attn_heads),
            ("attn_dim_head", self.attn_dim_head),
            ("dim_mults", self.dim_mults.len()),
            ("init_dim", self.init_dim.unwrap_or(1)),
            ("out_dim", self.out_dim.unwrap_or(1)),
            ("num_classes", self.num_classes.unwrap_or(1)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(UnetConfigError::Zero(name));
        }
        if self.dim_mults.contains(&0) {
            return Err(UnetConfigError::Zero("dim_mults"));
        }
        self.check_bounds()?;
        if !self.dim.is_multiple_of(2) || self.dim < 4 {
            return Err(UnetConfigError::Dim(self.dim));
        }
        if let Some(full) = &self.full_attn
            && full.len() != self.dim_mults.len()
        {
            return Err(UnetConfigError::FullAttn {
                got: full.len(),
                levels: self.dim_mults.len(),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(UnetConfigError::Dropout(self.dropout));
        }
        if !(self.sinusoidal_pos_emb_theta.is_finite() && self.sinusoidal_pos_emb_theta > 1.0) {
            return Err(UnetConfigError::Theta(self.sinusoidal_pos_emb_theta));
        }
        Ok(())
    }

    /// Every width within [`MAX_WIDTH`] (products checked, so nothing overflows), levels and
    /// classes within theirs.
    fn check_bounds(&self) -> Result<(), UnetConfigError> {
        let widest_level = self
            .dim_mults
            .iter()
            .map(|m| self.dim.checked_mul(*m))
            .try_fold(0, |widest, w| w.map(|w| widest.max(w)));
        let widths = [
            ("dim", Some(self.dim)),
            ("dim × dim_mults", widest_level),
            ("init_dim", Some(self.init_dim.unwrap_or(0))),
            ("out_dim", Some(self.out_dim.unwrap_or(0))),
            ("channels", Some(self.channels)),
            (
                "attn_heads × attn_dim_head",
                self.attn_heads.checked_mul(self.attn_dim_head),
            ),
        ];
        // None: the product overflowed.
        let too_wide = |w: Option<usize>| w.is_none_or(|w| w > MAX_WIDTH);
        if let Some((name, _)) = widths.iter().find(|(_, w)| too_wide(*w)) {
            return Err(UnetConfigError::TooLarge(name, MAX_WIDTH));
        }
        if self.dim_mults.len() > MAX_LEVELS {
            return Err(UnetConfigError::TooLarge("dim_mults' levels", MAX_LEVELS));
        }
        if self.num_classes.is_some_and(|n| n > MAX_CLASSES) {
            return Err(UnetConfigError::TooLarge("num_classes", MAX_CLASSES));
        }
        Ok(())
    }

    /// The factor image sides must be divisible by: 2^(levels − 1).
    pub fn downsample_factor(&self) -> usize {
        1 << self.dim_mults.len().saturating_sub(1)
    }

    /// Checks that an image of `height × width` fits this U-Net (after [`UnetConfig::validate`]).
    pub fn check_image_size(&self, height: usize, width: usize) -> Result<(), UnetConfigError> {
        if height.max(width) > MAX_IMAGE_SIDE {
            return Err(UnetConfigError::TooLarge("image side", MAX_IMAGE_SIDE));
        }
        let factor = self.downsample_factor();
        if height == 0
            || width == 0
            || !height.is_multiple_of(factor)
            || !width.is_multiple_of(factor)
        {
            return Err(UnetConfigError::ImageSize {
                height,
                width,
                factor,
                levels: self.dim_mults.len(),
            });
        }
        Ok(())
    }

    /// Channels the network outputs.
    pub fn output_channels(&self) -> usize {
        self.out_dim
            .unwrap_or(self.channels * if self.learned_variance { 2 } else { 1 })
    }

    /// Builds the U-Net with fresh weights, after [`UnetConfig::validate`].
    pub fn try_init(&self, device: &Device) -> Result<Unet, UnetConfigError> {
        self.validate()?;
        Ok(self.init(device))
    }

    /// Builds the U-Net with fresh weights.
    ///
    /// # Panics
    /// On a configuration that [`UnetConfig::validate`] rejects.
    pub fn init(&self, device: &Device) -> Unet {
        let init_dim = self.init_dim.unwrap_or(self.dim);
        let input_channels = self.channels * if self.self_condition { 2 } else { 1 };
        let dims: Vec<usize> = std::iter::once(init_dim)
            .chain(self.dim_mults.iter().map(|m| self.dim * m))
            .collect();
        let in_out: Vec<(usize, usize)> = dims.windows(2).map(|w| (w[0], w[1])).collect();
        let levels = in_out.len();
        let time_dim = self.dim * 4;
        let emb_dim = time_dim
            + if self.num_classes.is_some() {
                time_dim
            } else {
                0
            };
        let full_attn = self
            .full_attn
            .clone()
            .unwrap_or_else(|| (0..levels).map(|i| i == levels - 1).collect());
        let resnet = |a, b| ResnetBlock::new(a, b, emb_dim, self.dropout, device);
        let attention = |full: bool, d: usize| {
            if full {
                StageAttention::Full(Attention::new(
                    d,
                    self.attn_heads,
                    self.attn_dim_head,
                    device,
                ))
            } else {
                StageAttention::Linear(LinearAttention::new(
                    d,
                    self.attn_heads,
                    self.attn_dim_head,
                    device,
                ))
            }
        };

        let downs = in_out
            .iter()
            .zip(&full_attn)
            .enumerate()
            .map(|(i, (&(d_in, d_out), &full))| DownStage {
                block1: resnet(d_in, d_in),
                block2: resnet(d_in, d_in),
                attn: attention(full, d_in),
                downsample: if i + 1 < levels {
                    Down::PixelUnshuffle(conv(d_in * 4, d_out, 1, true, device))
                } else {
                    Down::Same(conv(d_in, d_out, 3, true, device))
                },
            })
            .collect();
        let mid_dim = dims[levels];
        let ups = in_out
            .iter()
            .zip(&full_attn)
            .rev()
            .enumerate()
            .map(|(i, (&(d_in, d_out), &full))| UpStage {
                block1: resnet(d_out + d_in, d_out),
                block2: resnet(d_out + d_in, d_out),
                attn: attention(full, d_out),
                upsample: if i + 1 < levels {
                    Up::Nearest(conv(d_out, d_in, 3, true, device))
                } else {
                    Up::Same(conv(d_out, d_in, 3, true, device))
                },
            })
            .collect();

        Unet {
            init_conv: conv(input_channels, init_dim, 7, true, device),
            time_mlp: EmbeddingMlp::new(self.dim, time_dim, device),
            classes: self.num_classes.map(|n| ClassEmbedding {
                classes_emb: EmbeddingConfig::new(n, self.dim).init(device),
                null_classes_emb: Param::from_tensor(Tensor::random(
                    [self.dim],
                    Distribution::Normal(0.0, 1.0),
                    device,
                )),
                classes_mlp: EmbeddingMlp::new(self.dim, time_dim, device),
            }),
            downs,
            mid_block1: resnet(mid_dim, mid_dim),
            mid_attn: Attention::new(mid_dim, self.attn_heads, self.attn_dim_head, device),
            mid_block2: resnet(mid_dim, mid_dim),
            ups,
            final_res_block: resnet(init_dim * 2, init_dim),
            final_conv: conv(init_dim, self.output_channels(), 1, true, device),
            dim: self.dim,
            channels: self.channels,
            theta: self.sinusoidal_pos_emb_theta,
            self_condition: self.self_condition,
            num_classes: self.num_classes,
            film: None,
        }
    }
}
