//! Mixed precision for training on a GPU, as PyTorch's autocast does it for convolutions: a
//! U-Net's 3×3 (and 7×7) convolutions take their input and weight cast to f16 and give their
//! result back in f32, so that norms, softmaxes, the loss and the parameters stay f32 and the
//! parameters' gradients arrive in f32 (burn differentiates through `cast`). On Vulkan,
//! cubecl's matrix kernels reach the tensor cores only through the cooperative matrices the
//! driver lists, which on NVIDIA are 16-bit inputs as far as we know, where PyTorch's "fp32"
//! convolutions use them in TF32. The 1×1 convolutions (the output's among them) stay f32.
//!
//! Off unless `DDPM_HALF_CONVS=1` or [`set_enabled`]: whether it is faster, and whether
//! bits/dim stays as good, is for a GPU to measure. The gradients in f16 underflow without
//! loss scaling, which is the trainer's to do (the CLI's `train::loss_scale`).

use burn::nn::conv::Conv2d;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};

use super::Switch;

static HALF_CONVS: Switch = Switch::new("DDPM_HALF_CONVS");

/// Whether training's convolutions run in f16: as [`set_enabled`] last set it, else whether
/// `DDPM_HALF_CONVS=1` (read once per process).
pub fn enabled() -> bool {
    HALF_CONVS.enabled()
}

/// Turns f16 convolutions on or off for the whole process, whatever the environment says.
pub fn set_enabled(on: bool) {
    HALF_CONVS.set(on);
}

/// Whether `x` is convolved in f16: asked for, an `f32` tensor recording gradients on a cubecl
/// device (sampling stays f32).
pub fn applies(x: &Tensor<4>) -> bool {
    enabled() && super::on_cube(x) && x.dtype() == DType::F32 && x.device().is_autodiff()
}

/// `conv.forward(x)` in f16 for a "same" convolution (`unet::ops::is_same_conv`): input and
/// weight cast to f16, the result cast back to f32 and the bias added in f32.
pub fn same_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let pad = conv.kernel_size[0] / 2;
    let options = ConvOptions::new(conv.stride, [pad, pad], conv.dilation, conv.groups);
    let weight = conv.weight.val();
    let out = weight.dims()[0];
    let y = conv2d(
        x.cast(FloatDType::F16),
        weight.cast(FloatDType::F16),
        None,
        options,
    )
    .cast(FloatDType::F32);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, out, 1, 1]),
        None => y,
    }
}
