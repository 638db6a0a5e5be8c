//! Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel 2020) in burn.
//!
//! The whole method lives here once; the CLI and the browser only choose a device and draw:
//!
//! - [`schedule`]: β schedules (linear, cosine, sigmoid) and every table derived from them.
//! - [`diffusion`]: the forward process q(x_t | x₀), the ε / x₀ / v parameterisations, the
//!   posterior, and the training loss (Algorithm 1).
//! - [`sampler`]: the reverse process one step per call: DDPM (Algorithm 2), DDIM, and
//!   classifier-free guidance.
//! - [`unet`]: lucidrains' U-Net, module for module.
//! - [`vlb`]: the variational-bound terms that train a learned variance.
//! - [`noise`]: seeded noise that is identical on every device.
//! - [`ema`]: the exponential moving average of the weights that gets sampled.
//! - [`fused`]: one-pass CPU kernels for the U-Net's element-wise chains (with the `fused`
//!   features).
//! - [`weights`]: one self-describing file holding the configuration and the weights.
//! - [`grid`]: a batch of samples as the RGBA pixels of one grid image.
//! - [`steer`]: sampling steered by an image (SDEdit), a mask (RePaint) or two seeds
//!   (interpolation).
//! - `gpu`: the same chains as cubecl kernels for burn's wgpu backend (with the
//!   `gpu-kernels` feature), checked against burn's own on the adapter before use.
//! - `split_batch`: the network's calls in parts of the batch on threads (not on wasm).
//!
//! The crate enables no burn backend (the `fused` features add burn's CPU backend, flex, for
//! their kernels): pass any [`burn::tensor::Device`].

pub mod diffusion;
pub mod ema;
pub mod fused;
#[cfg(feature = "gpu-kernels")]
pub mod gpu;
pub mod grid;
#[cfg(any(feature = "fused", feature = "gpu-kernels"))]
mod kernels;
pub mod noise;
pub mod sampler;
pub mod schedule;
#[cfg(not(target_arch = "wasm32"))]
pub mod split_batch;
pub mod steer;
pub mod unet;
pub mod vlb;
pub mod weights;

pub use diffusion::{Denoiser, DiffusionConfig, GaussianDiffusion, Objective, Timesteps};
pub use ema::Ema;
pub use noise::{NoiseSource, NoiseState};
pub use sampler::{
    ClassChoice, DdpmVariance, SampleRequest, Sampler, SamplerConfig, SamplerKind, Step,
};
pub use schedule::{BetaSchedule, NoiseSchedule};
#[cfg(not(target_arch = "wasm32"))]
pub use split_batch::SplitBatch;
pub use unet::{Unet, UnetConfig};
pub use weights::{ModelConfig, ModelConfigError, WeightsError};

#[cfg(test)]
pub(crate) mod test_util {
    use burn::tensor::{Device, Tensor};

    /// The CPU device the unit tests run on.
    pub fn device() -> Device {
        Device::flex()
    }

    /// The bytes of `sampling.safetensors`, PyTorch's numbers for the sampler and the U-Net
    /// (tests/fixtures/lucidrains/make_sampling.py).
    pub fn sampling_fixture() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/lucidrains/sampling.safetensors"
        );
        std::fs::read(path).expect("fixture")
    }

    /// Element-wise within 1e-4, relative for values above 1 (the kernels' tests share it).
    pub fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (p, q)) in got.iter().zip(want).enumerate() {
            assert!(
                (p - q).abs() <= 1e-4 * q.abs().max(1.0),
                "{what}[{i}]: {p} vs {q}"
            );
        }
    }

    /// A kernel's output against the composite's (within [`close`]), and the gradients of
    /// `Σ w·y` for each named leaf through each of them.
    pub fn same_outputs_and_gradients(
        kernel: Tensor<4>,
        composite: Tensor<4>,
        w: &Tensor<4>,
        leaves: &[(&str, &Tensor<4>)],
    ) {
        close(&values(kernel.clone()), &values(composite.clone()), "y");
        let g_kernel = (kernel * w.clone()).sum().backward();
        let g_composite = (composite * w.clone()).sum().backward();
        for (name, leaf) in leaves {
            close(
                &values(leaf.grad(&g_kernel).expect("kernel grad")),
                &values(leaf.grad(&g_composite).expect("composite grad")),
                name,
            );
        }
    }

    /// A tensor's values, read back synchronously (native tests only).
    pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32 data")
    }
}
