//! The sampling kernels checked against burn's on the adapter at hand before a program trusts
//! them. A kernel that an adapter's compiler refuses is never run: cubecl marks its output as
//! failed, but a concatenation whose other part is sound clears the mark (the U-Net's last skip
//! does), so the images would come out wrong and no read would fail. One small forward pass
//! each way finds that, and a kernel that compiles to something wrong too. Native only: it reads
//! the outputs back synchronously.

use burn::tensor::{Device, Tensor, TensorData};

use crate::unet::Unet;

/// How far the kernels may stray from burn's: [`crate::test_util::close`]'s 1e-4 with room for
/// a whole network's rounding, relative for values above 1.
const TOLERANCE: f32 = 1e-3;

/// One forward pass of `model` (as [`Unet::for_sampling`] made it) on two small noise images
/// with the kernels and one with burn's, on `device`. `Err` says what failed (burn's error, over
/// several lines) or how far the predictions differ; `Ok` also where the kernels would not run. Leaves the switch
/// ([`super::enabled`]) as it found it.
pub fn check_sampling(model: &Unet, device: &Device) -> Result<(), String> {
    // The smallest size every level can halve, twice over: the same kernels as a full image.
    let size = 2usize << model.downs.len().saturating_sub(1);
    let shape = [2, model.channels(), size, size];
    let count = shape.iter().product::<usize>();
    let noise: Vec<f32> = (0..count)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(noise, shape), device);
    if !super::applies_without_gradients(&x) {
        return Ok(());
    }
    let time = Tensor::<1>::from_data(TensorData::from([10.0f32, 600.0]), device);
    let predict = || -> Result<Vec<f32>, String> {
        model
            .forward(x.clone(), time.clone(), None, None)
            .try_into_vec_as::<f32>()
            .map_err(|e| e.to_string())
    };
    let kernels = predict().map_err(|e| format!("failed on this adapter ({e})"));
    super::set_enabled(false);
    let burn = predict().map_err(|e| format!("could not be checked: burn's failed ({e})"));
    super::set_enabled(true);
    match disagreement(&kernels?, &burn?) {
        Some((i, got, want)) => Err(format!(
            "predict {got} where burn's kernels predict {want} (output {i} of a check on \
             {size}×{size} images)"
        )),
        None => Ok(()),
    }
}

/// The first output outside [`TOLERANCE`] of burn's (a NaN is outside), as its index, the
/// kernels' value and burn's.
fn disagreement(kernels: &[f32], burn: &[f32]) -> Option<(usize, f32, f32)> {
    kernels
        .iter()
        .zip(burn)
        .enumerate()
        .find(|&(_, (&k, &b))| {
            (k - b).abs().is_nan() || (k - b).abs() > TOLERANCE * b.abs().max(1.0)
        })
        .map(|(i, (&k, &b))| (i, k, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_disagrees_past_the_tolerance_or_where_it_is_nan() {
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
    }
}
