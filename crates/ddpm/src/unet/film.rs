//! Every `ResnetBlock`'s FiLM projection (its `mlp`: the embedding to a scale and a shift) as
//! one matrix product, for sampling. All fifteen blocks of the seed's U-Net project the same
//! embedding, so their weights side by side give every block's scale and shift at once: on a
//! GPU two launches per network evaluation instead of two per block.

use burn::tensor::Tensor;

use super::blocks::ResnetBlock;

/// The blocks' projections side by side, in the order the U-Net's forward pass runs the
/// blocks: weights `[emb_dim, Σ 2·dim_out]` and biases.
#[derive(Clone, Debug)]
pub(super) struct JoinedFilm {
    weight: Tensor<2>,
    bias: Tensor<1>,
}

impl JoinedFilm {
    /// The projections of `blocks` joined (`None` if one has no bias, which the seed's do not
    /// lack).
    #[cfg(feature = "gpu-kernels")]
    pub(super) fn of(blocks: &[&ResnetBlock]) -> Option<Self> {
        let biases = blocks
            .iter()
            .map(|b| b.mlp.bias.as_ref().map(|bias| bias.val()))
            .collect::<Option<Vec<_>>>()?;
        let weights = blocks.iter().map(|b| b.mlp.weight.val()).collect();
        Some(Self {
            weight: Tensor::cat(weights, 1),
            bias: Tensor::cat(biases, 0),
        })
    }
}

/// Each block's FiLM projection `[batch, 2·dim_out, 1, 1]` of one embedding, taken in the
/// blocks' order: from one joined product where there is one, else from each block's `mlp`.
pub(super) enum Films {
    Each(Tensor<2>),
    Joined { all: Tensor<4>, at: usize },
}

impl Films {
    /// `emb_silu` `[batch, emb_dim]`: the embedding after the projections' shared SiLU.
    pub(super) fn new(joined: Option<&JoinedFilm>, emb_silu: Tensor<2>) -> Self {
        match joined {
            Some(j) => {
                let all = emb_silu.matmul(j.weight.clone()) + j.bias.clone().unsqueeze();
                let [batch, width] = all.dims();
                // Split after the reshape: a view of a view is free, a reshape of one copies.
                Self::Joined {
                    all: all.reshape([batch, width, 1, 1]),
                    at: 0,
                }
            }
            None => Self::Each(emb_silu),
        }
    }

    /// The projection for `block`, the next block the forward pass runs.
    pub(super) fn next(&mut self, block: &ResnetBlock) -> Tensor<4> {
        match self {
            Self::Each(emb_silu) => block.film(emb_silu.clone()),
            Self::Joined { all, at } => {
                let width = block.mlp.weight.dims()[1];
                let film = all.clone().narrow(1, *at, width);
                *at += width;
                film
            }
        }
    }
}
