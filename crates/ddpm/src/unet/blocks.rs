//! The U-Net's building blocks, each the counterpart of a class in lucidrains'
//! `denoising_diffusion_pytorch.py` (2.3.x), with the same parameters and shapes.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};

use super::ops::{self, norm_film_silu, same_conv};

/// A `k×k` convolution with "same" padding, as `nn.Conv2d(i, o, k, padding = k // 2)`.
pub(crate) fn conv(
    channels_in: usize,
    channels_out: usize,
    kernel: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .init(device)
}

/// A 1×1 convolution. When gradients are being recorded it runs as one batched matmul
/// `W · x` over `[batch, c, h·w]`: the same parameters and result, but burn's CPU backend runs
/// the matmul's backward pass about twice as fast as the convolution's, while the plain
/// convolution's forward pass is the faster one for sampling (docs/notebook.md, "What changed
/// the numbers").
pub fn pointwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !x.device().is_autodiff() {
        return conv.forward(x);
    }
    let [batch, channels, height, width] = x.dims();
    let w = conv.weight.val();
    let [out, ..] = w.dims();
    let y = w
        .reshape([1, out, channels])
        .matmul(x.reshape([batch, channels, height * width]));
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, out, 1]),
        None => y,
    };
    y.reshape([batch, out, height, width])
}

/// lucidrains' `RMSNorm`: `F.normalize(x, dim = 1) * g * sqrt(dim)`, with `g` of shape
/// `[1, dim, 1, 1]` (this is not burn's `RmsNorm`, which normalises the last dimension).
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Per-channel gain, initialised to 1. `[1, dim, 1, 1]`
    pub g: Param<Tensor<4>>,
}

impl RmsNorm {
    /// A norm over `dim` channels.
    pub fn new(dim: usize, device: &Device) -> Self {
        Self {
            g: Param::from_tensor(Tensor::ones([1, dim, 1, 1], device)),
        }
    }

    /// # Shapes
    /// - `x` and the output: `[batch, dim, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        ops::rms_norm(x, self.g.val())
    }
}

/// The transformer sinusoidal embedding of the step t (`SinusoidalPosEmb`): half sines, half
/// cosines, at frequencies θ^(−i/(d/2 − 1)).
///
/// # Shapes
/// - `t`: `[batch]`; output: `[batch, dim]`
pub fn sinusoidal_embedding(t: Tensor<1>, dim: usize, theta: f64) -> Tensor<2> {
    let half = dim / 2;
    let step = theta.ln() / (half as f64 - 1.0).max(1.0);
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(i as f64) * step).exp() as f32)
        .collect();
    let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), &t.device());
    let batch = t.dims()[0];
    let args = t.reshape([batch, 1]) * freqs.reshape([1, half]);
    Tensor::cat(vec![args.clone().sin(), args.cos()], 1)
}

/// `Sequential(Linear, GELU, Linear)`, the MLP after the sinusoidal (or class) embedding.
#[derive(Module, Debug)]
pub struct EmbeddingMlp {
    /// First projection (`time_mlp.1`).
    pub linear1: Linear,
    /// Second projection (`time_mlp.3`).
    pub linear2: Linear,
}

impl EmbeddingMlp {
    /// `Linear(d_in, d_out), GELU, Linear(d_out, d_out)`.
    pub fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self {
            linear1: LinearConfig::new(d_in, d_out).init(device),
            linear2: LinearConfig::new(d_out, d_out).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, d_in]`; output: `[batch, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear2.forward(gelu(self.linear1.forward(x)))
    }
}

/// `Block`: 3×3 conv, RMSNorm, optional FiLM scale/shift, SiLU, dropout.
#[derive(Module, Debug)]
pub struct Block {
    /// The 3×3 convolution.
    pub proj: Conv2d,
    /// The channel norm.
    pub norm: RmsNorm,
    /// Present when the block's dropout is non-zero.
    pub dropout: Option<Dropout>,
}

impl Block {
    fn new(dim: usize, dim_out: usize, dropout: f64, device: &Device) -> Self {
        Self {
            proj: conv(dim, dim_out, 3, true, device),
            norm: RmsNorm::new(dim_out, device),
            dropout: (dropout > 0.0).then(|| DropoutConfig::new(dropout).init()),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, dim, h, w]`; `scale_shift`: two `[batch, dim_out, 1, 1]`;
    ///   output: `[batch, dim_out, h, w]`
    fn forward(&self, x: Tensor<4>, scale_shift: Option<(Tensor<4>, Tensor<4>)>) -> Tensor<4> {
        let x = norm_film_silu(same_conv(&self.proj, x), self.norm.g.val(), scale_shift);
        match &self.dropout {
            Some(dropout) => dropout.forward(x),
            None => x,
        }
    }
}

/// `ResnetBlock`: two [`Block`]s whose first is modulated by the time (and class) embedding,
/// plus a residual path (a 1×1 conv when the channel count changes).
#[derive(Module, Debug)]
pub struct ResnetBlock {
    /// The `Linear(emb_dim, 2·dim_out)` of `Sequential(SiLU, Linear)`: the FiLM scale and shift
    /// (its SiLU is the caller's, see [`Self::forward`]).
    pub mlp: Linear,
    /// First block (with dropout).
    pub block1: Block,
    /// Second block.
    pub block2: Block,
    /// 1×1 conv on the residual path when `dim != dim_out`.
    pub res_conv: Option<Conv2d>,
}

impl ResnetBlock {
    /// A block from `dim` to `dim_out` channels, conditioned on an embedding of `emb_dim`.
    pub fn new(dim: usize, dim_out: usize, emb_dim: usize, dropout: f64, device: &Device) -> Self {
        Self {
            mlp: LinearConfig::new(emb_dim, dim_out * 2).init(device),
            block1: Block::new(dim, dim_out, dropout, device),
            block2: Block::new(dim_out, dim_out, 0.0, device),
            res_conv: (dim != dim_out).then(|| conv(dim, dim_out, 1, true, device)),
        }
    }

    /// `emb_silu` is the embedding after the `mlp`'s SiLU: the same for every block, so the
    /// U-Net applies it once (on a GPU it is seven launches forward, more backward).
    ///
    /// # Shapes
    /// - `x`: `[batch, dim, h, w]`; `emb_silu`: `[batch, emb_dim]`; output: `[batch, dim_out, h, w]`
    pub fn forward(&self, x: Tensor<4>, emb_silu: Tensor<2>) -> Tensor<4> {
        self.forward_film(x, self.film(emb_silu))
    }

    /// The FiLM scale and shift side by side, `[batch, 2·dim_out, 1, 1]`, of `emb_silu`.
    pub fn film(&self, emb_silu: Tensor<2>) -> Tensor<4> {
        let [batch, _] = emb_silu.dims();
        let film = self.mlp.forward(emb_silu);
        let width = film.dims()[1];
        film.reshape([batch, width, 1, 1])
    }

    /// [`Self::forward`] with the FiLM projection made already ([`Self::film`], or the U-Net's
    /// for all blocks at once when it samples).
    pub fn forward_film(&self, x: Tensor<4>, film: Tensor<4>) -> Tensor<4> {
        let dim_out = film.dims()[1] / 2;
        let scale = film.clone().narrow(1, 0, dim_out);
        let shift = film.narrow(1, dim_out, dim_out);
        let h = self.block1.forward(x.clone(), Some((scale, shift)));
        let h = self.block2.forward(h, None);
        let residual = match &self.res_conv {
            Some(conv) => pointwise(conv, x),
            None => x,
        };
        h + residual
    }
}

/// How a down stage ends: `Downsample` (pixel-unshuffle by 2 then a 1×1 conv) or, at the last
/// level, a plain 3×3 conv that keeps the resolution.
#[derive(Module, Debug)]
pub enum Down {
    /// `Rearrange('b c (h p1) (w p2) -> b (c p1 p2) h w')` then `Conv2d(4·dim, dim_out, 1)`.
    PixelUnshuffle(Conv2d),
    /// `Conv2d(dim, dim_out, 3, padding = 1)`.
    Same(Conv2d),
}

impl Down {
    /// # Shapes
    /// - `x`: `[batch, c, h, w]`; output `[batch, c_out, h/2, w/2]` (or `h, w` for `Same`)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::PixelUnshuffle(conv) => {
                let [b, c, h, w] = x.dims();
                let x = x
                    .reshape([b, c, h / 2, 2, w / 2, 2])
                    .permute([0, 1, 3, 5, 2, 4])
                    .reshape([b, c * 4, h / 2, w / 2]);
                pointwise(conv, x)
            }
            Self::Same(conv) => same_conv(conv, x),
        }
    }
}

/// How an up stage ends: `Upsample` (nearest ×2 then a 3×3 conv) or, at the last level, a plain
/// 3×3 conv.
#[derive(Module, Debug)]
pub enum Up {
    /// `nn.Upsample(scale_factor = 2, mode = 'nearest')` then `Conv2d(dim, dim_out, 3)`.
    Nearest(Conv2d),
    /// `Conv2d(dim, dim_out, 3, padding = 1)`.
    Same(Conv2d),
}

impl Up {
    /// # Shapes
    /// - `x`: `[batch, c, h, w]`; output `[batch, c_out, 2h, 2w]` (or `h, w` for `Same`)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Nearest(conv) => {
                let [b, c, h, w] = x.dims();
                let x = x
                    .reshape([b, c, h, 1, w, 1])
                    .expand([b, c, h, 2, w, 2])
                    .reshape([b, c, h * 2, w * 2]);
                same_conv(conv, x)
            }
            Self::Same(conv) => same_conv(conv, x),
        }
    }
}
