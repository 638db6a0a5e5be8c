//! The sampling kernels checked against burn's on the adapter at hand before a program trusts
//! them. A kernel that an adapter's compiler refuses is never run: cubecl marks its output as
//! failed, but a concatenation whose other part is sound clears the mark (the U-Net's last skip
//! does), so the images would come out wrong and no read would fail; in a browser the refusal is
//! only logged. One forward pass of two images each way finds that, and a kernel that compiles to
//! something wrong on this adapter too (real GPUs run a cube's units in parallel, where
//! lavapipe and SwiftShader, which the tests run on, may not). [`check_training`] does the
//! same for the kernels a training step runs.

use burn::tensor::{Device, Tensor, TensorData};

use crate::unet::Unet;

#[cfg(all(feature = "fused-autodiff", not(target_family = "wasm")))]
mod training;
#[cfg(all(feature = "fused-autodiff", not(target_family = "wasm")))]
pub use training::check_training;

/// How far the kernels may stray from burn's: [`crate::test_util::close`]'s 1e-4 with room for
/// a whole network's rounding, relative for values above 1.
const TOLERANCE: f32 = 1e-3;

#[cfg(test)]
thread_local! {
    /// Added to `sampling_norm`'s input and to the `Block` kernel's gradient of its input, so
    /// that their outputs are wrong: the fault a test of a check makes.
    pub(crate) static FAULT: std::cell::Cell<f32> = const { std::cell::Cell::new(0.0) };
}

/// One forward pass of `model` (as [`Unet::for_sampling`] made it) on two noise images of
/// `image_size` with the kernels and one with burn's, on `device`. `Err` says what failed
/// (burn's error, over several lines) or how far the predictions differ; `Ok` also where the
/// kernels would not run. Leaves the switch ([`super::enabled`]) as it found it. The model's own
/// image size, so that the check runs the kernels at the shapes its images will (an odd size at
/// the lowest level, as MNIST's 7×7, included). Reads the outputs back synchronously: native
/// only ([`check_sampling_async`] elsewhere).
#[cfg(not(target_family = "wasm"))]
pub fn check_sampling(model: &Unet, device: &Device, image_size: [usize; 2]) -> Result<(), String> {
    let Some(check) = Check::launch(model, device, image_size) else {
        return Ok(());
    };
    judge(
        check.size,
        read(check.kernels.clone()),
        read(check.burn.clone()),
    )
}

/// [`check_sampling`] with the outputs read back asynchronously, as a browser must.
pub async fn check_sampling_async(
    model: &Unet,
    device: &Device,
    image_size: [usize; 2],
) -> Result<(), String> {
    let Some(check) = Check::launch(model, device, image_size) else {
        return Ok(());
    };
    let kernels = read_async(check.kernels.clone()).await;
    let burn = read_async(check.burn.clone()).await;
    judge(check.size, kernels, burn)
}

/// `t`'s values, read back synchronously (native only).
#[cfg(not(target_family = "wasm"))]
fn read(t: Tensor<4>) -> Result<Vec<f32>, String> {
    t.try_into_vec_as::<f32>().map_err(|e| e.to_string())
}

async fn read_async(t: Tensor<4>) -> Result<Vec<f32>, String> {
    let data = t.into_data_async().await.map_err(|e| e.to_string())?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// The two passes of a check, queued on the device.
struct Check {
    kernels: Tensor<4>,
    burn: Tensor<4>,
    size: [usize; 2],
}

impl Check {
    /// Queues both passes (`None` where the kernels would not run). The switch is off only
    /// while burn's pass is queued, without an await in between, so that nothing else running
    /// on the same thread (a browser's other widgets) queues work without the kernels.
    fn launch(model: &Unet, device: &Device, size: [usize; 2]) -> Option<Self> {
        let (x, time) = inputs(model, device, 2, size);
        if !super::applies_without_gradients(&x) {
            return None;
        }
        let predict = || model.forward(x.clone(), time.clone(), None, None);
        let kernels = predict();
        super::set_enabled(false);
        let burn = predict();
        super::set_enabled(true);
        Some(Self {
            kernels,
            burn,
            size,
        })
    }
}

/// `Ok` when both predictions on images of `size` were read and agree within [`TOLERANCE`].
fn judge(
    size: [usize; 2],
    kernels: Result<Vec<f32>, String>,
    burn: Result<Vec<f32>, String>,
) -> Result<(), String> {
    let kernels = kernels.map_err(|e| format!("failed on this adapter ({e})"))?;
    let burn = burn.map_err(|e| format!("could not be checked: burn's failed ({e})"))?;
    match disagreement(&kernels, &burn) {
        Some((i, got, want)) => Err(format!(
            "predict {got} where burn's kernels predict {want} (output {i} of a check on \
             {h}×{w} images)",
            h = size[0],
            w = size[1]
        )),
        None => Ok(()),
    }
}

/// `batch` images of `size` for `model` (fixed values in [−1, 1), no randomness to seed) and
/// their times, early and late in the chain by turns.
fn inputs(model: &Unet, device: &Device, batch: usize, size: [usize; 2]) -> (Tensor<4>, Tensor<1>) {
    let shape = [batch, model.channels(), size[0], size[1]];
    let count = shape.iter().product::<usize>();
    let noise: Vec<f32> = (0..count)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(noise, shape), device);
    let times: Vec<f32> = (0..batch).map(|i| [10.0, 600.0][i % 2]).collect();
    let time = Tensor::<1>::from_data(TensorData::new(times, [batch]), device);
    (x, time)
}

/// The first output outside [`TOLERANCE`] of burn's, as its index, the kernels' value and
/// burn's. A NaN of the kernels' is outside; where burn's is NaN the model is at fault, not
/// the kernels, and nothing is compared.
fn disagreement(kernels: &[f32], burn: &[f32]) -> Option<(usize, f32, f32)> {
    kernels
        .iter()
        .zip(burn)
        .enumerate()
        .find(|&(_, (&k, &b))| {
            !b.is_nan() && (k.is_nan() || (k - b).abs() > TOLERANCE * b.abs().max(1.0))
        })
        .map(|(i, (&k, &b))| (i, k, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_disagrees_past_the_tolerance_or_where_only_the_kernels_give_nan() {
        assert_eq!(
            disagreement(&[1.0, -2.0005, 500.4], &[1.0, -2.0, 500.0]),
            None
        );
        assert_eq!(
            disagreement(&[1.0, 0.5, 9.0], &[1.0, 0.4985, 9.0]),
            Some((1, 0.5, 0.4985))
        );
        let nan = disagreement(&[0.0, f32::NAN], &[0.0, 0.0]).expect("a NaN disagrees");
        assert_eq!(nan.0, 1);
        assert_eq!(disagreement(&[f32::NAN, 3.0], &[f32::NAN, f32::NAN]), None);
    }
}
