//! The U-Net's norms as sampling runs them: the kernels of [`super::norm_film_silu`] taking
//! lucidrains' parameters as the model stores them (the RMSNorm's gain `g`, and the FiLM
//! projection's scale and shift) and making the factor `g · √C · (1 + scale)` in the kernel.
//! burn makes it in two to three launches per norm (a third of a sampling step's). Forward
//! only: training makes the factor with burn, its gradients flowing through it, and runs the
//! kernels of [`super::norm_film_silu`] and [`super::rms_norm`] with it.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use super::norm_film_silu::launch_forward;

/// The norms with their stored parameters, on burn's cubecl backends, without gradients.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait SamplingNormKernels: Backend {
    /// `silu(normalize(h) · g · √C · (1 + scale) + shift)` with `film`, else
    /// `normalize(h) · g · √C`, then the SiLU if `silu`. `g`, `scale` and `shift` are
    /// `[batch, channels, 1, 1]` (any strides); without `film`, `scale` and `shift` are unread.
    #[fusion(dtype = h, shape = h)]
    fn stored_norm(
        h: FloatTensor<Self>,
        g: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        film: bool,
        silu: bool,
    ) -> FloatTensor<Self>;
}

impl SamplingNormKernels for CubeBackend {
    fn stored_norm(
        h: CubeTensor,
        g: CubeTensor,
        scale: CubeTensor,
        shift: CubeTensor,
        film: bool,
        silu: bool,
    ) -> CubeTensor {
        launch_forward(h, g, shift, Some(scale), silu, film)
    }
}

/// lucidrains' RMSNorm of `h` with its stored gain `g` (`[1, channels, 1, 1]`), FiLM by
/// `scale_shift` (two `[batch, channels, 1, 1]`, or `[1, channels, 1, 1]` for all) if given, then the SiLU if `silu`: the
/// `Block`'s and the attentions' norms (`unet::ops`), in one launch. For tensors on a cubecl
/// device without gradients.
pub fn stored_norm(
    h: Tensor<4>,
    g: Tensor<4>,
    scale_shift: Option<(Tensor<4>, Tensor<4>)>,
    silu: bool,
) -> Tensor<4> {
    // Only when a test asks for the fault: an added zero would copy `h` out of its layout.
    #[cfg(test)]
    let h = match super::verify::FAULT.get() {
        skew if skew != 0.0 => h.add_scalar(skew),
        _ => h,
    };
    let [batch, channels, ..] = h.dims();
    let per_image = [batch, channels, 1, 1];
    let g = g.expand(per_image);
    let film = scale_shift.is_some();
    // One time for the whole batch gives a FiLM of one image, which burn's operations
    // broadcast; the kernel reads an image's own, so the stride 0 makes them one.
    let (scale, shift) = scale_shift.map_or_else(
        || (g.clone(), g.clone()),
        |(scale, shift)| (scale.expand(per_image), shift.expand(per_image)),
    );
    Tensor::from_dispatch(<Dispatch as SamplingNormKernels>::stored_norm(
        h.into_dispatch(),
        g.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        film,
        silu,
    ))
}
