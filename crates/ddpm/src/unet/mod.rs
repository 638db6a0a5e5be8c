//! The U-Net of lucidrains' denoising-diffusion-pytorch (`Unet`, version 2.3.x), layer for
//! layer: the same modules, shapes and parameter count for the same configuration, so that a
//! PyTorch `state_dict` maps onto it by renaming keys only. Class conditioning follows the
//! seed's `classifier_free_guidance.Unet` (a class embedding with a learned null class, passed
//! through its own MLP and concatenated to the time embedding).

mod attention;
mod blocks;
mod config;
mod film;
pub mod lucidrains;
pub mod ops;

pub use attention::{Attention, LinearAttention, NUM_MEM_KV, StageAttention};
#[cfg(all(test, feature = "fused"))]
pub(crate) use blocks::conv;
pub use blocks::{
    Block, Down, EmbeddingMlp, ResnetBlock, RmsNorm, Up, pointwise, sinusoidal_embedding,
};
pub use config::{MAX_CLASSES, MAX_IMAGE_SIDE, MAX_LEVELS, MAX_WIDTH, UnetConfig, UnetConfigError};

use burn::module::{Module, Param};
use burn::nn::Embedding;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::{Int, Tensor, TensorData};

use crate::diffusion::{Denoiser, Timesteps};

/// One resolution on the way down: two ResNet blocks, attention, then downsampling.
#[derive(Module, Debug)]
pub struct DownStage {
    /// `downs.i.0`
    pub block1: ResnetBlock,
    /// `downs.i.1`
    pub block2: ResnetBlock,
    /// `downs.i.2`
    pub attn: StageAttention,
    /// `downs.i.3`
    pub downsample: Down,
}

/// One resolution on the way up: two ResNet blocks on concatenated skips, attention, upsampling.
#[derive(Module, Debug)]
pub struct UpStage {
    /// `ups.i.0`
    pub block1: ResnetBlock,
    /// `ups.i.1`
    pub block2: ResnetBlock,
    /// `ups.i.2`
    pub attn: StageAttention,
    /// `ups.i.3`
    pub upsample: Up,
}

/// The class embedding of `classifier_free_guidance.Unet`.
#[derive(Module, Debug)]
pub struct ClassEmbedding {
    /// One learned vector per class. `[num_classes, dim]`
    pub classes_emb: Embedding,
    /// The learned null class. `[dim]`
    pub null_classes_emb: Param<Tensor<1>>,
    /// `Linear(dim, 4·dim), GELU, Linear(4·dim, 4·dim)`.
    pub classes_mlp: EmbeddingMlp,
}

/// lucidrains' `Unet`.
#[derive(Module, Debug)]
pub struct Unet {
    /// 7×7 input conv.
    pub init_conv: Conv2d,
    /// Sinusoidal embedding → Linear → GELU → Linear.
    pub time_mlp: EmbeddingMlp,
    /// Present for class-conditional models.
    pub classes: Option<ClassEmbedding>,
    /// The contracting path.
    pub downs: Vec<DownStage>,
    /// Middle ResNet block before attention.
    pub mid_block1: ResnetBlock,
    /// Middle full attention.
    pub mid_attn: Attention,
    /// Middle ResNet block after attention.
    pub mid_block2: ResnetBlock,
    /// The expanding path.
    pub ups: Vec<UpStage>,
    /// ResNet block on the output concatenated with the input conv's features.
    pub final_res_block: ResnetBlock,
    /// 1×1 output conv.
    pub final_conv: Conv2d,
    dim: usize,
    channels: usize,
    theta: f64,
    self_condition: bool,
    num_classes: Option<usize>,
    /// Every block's FiLM projection as one, made by [`Self::for_sampling`]; not stored, and
    /// not updated by a module operation (`map`, `load_record`, `to_device`) after it: a
    /// sampling model's weights do not change.
    #[module(skip)]
    film: Option<film::JoinedFilm>,
}

impl Unet {
    /// The model ready to sample: the same weights, where the core's GPU kernels run laid out as
    /// the GPU's convolutions read them, so that no step copies them again (`gpu::layout`), and
    /// every block's FiLM projection joined into one (`film`); elsewhere the model as it is.
    /// Not for a model that will be trained.
    pub fn for_sampling(self) -> Self {
        #[cfg(feature = "gpu-kernels")]
        if crate::gpu::applies_without_gradients(&self.final_conv.weight.val()) {
            let mut model = crate::gpu::layout::channels_last_convolutions(self);
            model.film = film::JoinedFilm::of(&model.resnet_blocks());
            return model;
        }
        self
    }

    /// The `ResnetBlock`s in the order the forward pass runs them.
    #[cfg(feature = "gpu-kernels")]
    fn resnet_blocks(&self) -> Vec<&ResnetBlock> {
        let down = self.downs.iter().flat_map(|s| [&s.block1, &s.block2]);
        let mid = [&self.mid_block1, &self.mid_block2];
        let up = self.ups.iter().flat_map(|s| [&s.block1, &s.block2]);
        down.chain(mid)
            .chain(up)
            .chain([&self.final_res_block])
            .collect()
    }

    /// Predicts the objective's target for `x` at the (float) steps `time`.
    ///
    /// `classes` holds one label per image; the label `num_classes` selects the null class.
    /// Without `classes`, a class-conditional model uses the null class for every image.
    ///
    /// # Shapes
    /// - `x`, `x_self_cond`: `[batch, channels, height, width]`
    /// - `time`: `[batch]`; `classes`: `[batch]`
    /// - output: `[batch, out_dim, height, width]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        time: Tensor<1>,
        x_self_cond: Option<Tensor<4>>,
        classes: Option<Tensor<1, Int>>,
    ) -> Tensor<4> {
        let [batch, ..] = x.dims();
        let x = if self.self_condition {
            let cond = x_self_cond.unwrap_or_else(|| x.zeros_like());
            Tensor::cat(vec![cond, x], 1) // [b, 2·channels, h, w]
        } else {
            x // [b, channels, h, w]
        };
        let x = ops::same_conv(&self.init_conv, x); // [b, dim, h, w]
        let r = x.clone();

        let mut emb = self
            .time_mlp
            .forward(sinusoidal_embedding(time, self.dim, self.theta)); // [b, 4·dim]
        if let Some(class) = &self.classes {
            emb = Tensor::cat(vec![emb, class.embed(classes, batch)], 1); // [b, 8·dim]
        }
        // Each `ResnetBlock`'s `mlp` starts with this SiLU: applied once here for all of them.
        let mut films = film::Films::new(self.film.as_ref(), silu(emb));

        let mut x = x;
        let mut skips = Vec::with_capacity(self.downs.len() * 2);
        // Level i works at [b, c_i, h/2^i, w/2^i], c_i = dim · dim_mults[i]; its downsample
        // leaves [b, c_{i+1}, h/2^(i+1), w/2^(i+1)] (the last level keeps its size).
        for stage in &self.downs {
            x = stage.block1.forward_film(x, films.next(&stage.block1)); // [b, c_i, h_i, w_i]
            skips.push(x.clone());
            x = stage.block2.forward_film(x, films.next(&stage.block2));
            x = stage.attn.forward(x.clone()) + x;
            skips.push(x.clone());
            x = stage.downsample.forward(x); // [b, c_{i+1}, h_{i+1}, w_{i+1}]
        }

        // [b, c_mid, h_mid, w_mid], c_mid = dim · dim_mults[last]
        x = self
            .mid_block1
            .forward_film(x, films.next(&self.mid_block1));
        x = self.mid_attn.forward(x.clone()) + x;
        x = self
            .mid_block2
            .forward_film(x, films.next(&self.mid_block2));

        for stage in &self.ups {
            let skip = skips.pop().expect("one skip per down block");
            x = stage
                .block1
                .forward_film(ops::cat_channels(vec![x, skip]), films.next(&stage.block1)); // [b, c_out, h_i, w_i]
            let skip = skips.pop().expect("one skip per down block");
            x = stage
                .block2
                .forward_film(ops::cat_channels(vec![x, skip]), films.next(&stage.block2));
            x = stage.attn.forward(x.clone()) + x;
            x = stage.upsample.forward(x); // [b, c_{i−1}, h_{i−1}, w_{i−1}]
        }

        let x = self.final_res_block.forward_film(
            ops::cat_channels(vec![x, r]),
            films.next(&self.final_res_block),
        ); // [b, dim, h, w]
        blocks::pointwise(&self.final_conv, x) // [b, out_dim, h, w]
    }

    /// Image channels.
    pub fn channels(&self) -> usize {
        self.channels
    }
}

impl ClassEmbedding {
    /// The class MLP's output for each label; label `num_classes` (or no labels) is null.
    fn embed(&self, classes: Option<Tensor<1, Int>>, batch: usize) -> Tensor<2> {
        let [num_classes, dim] = self.classes_emb.weight.val().dims();
        let null = self
            .null_classes_emb
            .val()
            .reshape([1, dim])
            .expand([batch, dim]);
        let emb = match classes {
            Some(labels) => {
                let is_null = labels
                    .clone()
                    .equal_elem(num_classes as i64)
                    .reshape([batch, 1])
                    .expand([batch, dim]);
                let safe = labels.clamp_max(num_classes as i64 - 1).reshape([batch, 1]);
                let emb = self.classes_emb.forward(safe).reshape([batch, dim]);
                emb.mask_where(is_null, null)
            }
            None => null,
        };
        self.classes_mlp.forward(emb)
    }
}

impl Denoiser for Unet {
    fn denoise(
        &self,
        x: Tensor<4>,
        t: &Timesteps,
        x_self_cond: Option<Tensor<4>>,
        classes: Option<&[usize]>,
    ) -> Tensor<4> {
        let [batch, ..] = x.dims();
        let device = x.device();
        let labels = classes.map(|labels| {
            let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device)
        });
        self.forward(x, t.to_tensor(batch, &device), x_self_cond, labels)
    }

    fn check_shape(&self, [_, channels, height, width]: [usize; 4]) -> Result<(), String> {
        if channels != self.channels {
            return Err(format!(
                "the model takes {} channels, not {channels}",
                self.channels
            ));
        }
        let factor = 1 << self.downs.len().saturating_sub(1);
        if !height.is_multiple_of(factor) || !width.is_multiple_of(factor) {
            return Err(format!(
                "image size {height}×{width} must be divisible by {factor} for this model"
            ));
        }
        Ok(())
    }

    fn self_condition(&self) -> bool {
        self.self_condition
    }

    fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }
}

#[cfg(test)]
mod tests;
