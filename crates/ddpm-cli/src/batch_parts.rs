//! How many parts a batch is split into on this device: on burn's CPU backend each network
//! call's batch runs in two halves at the same time (the core's `ddpm::SplitBatch`), which
//! overlaps the element-wise work it runs on one core (as training's batch parts do,
//! `gradients.rs`); elsewhere it runs whole.

use burn::tensor::Device;
use ddpm::{SplitBatch, Unet};

/// `model` calling in two halves on the CPU backend, whole elsewhere.
pub fn for_device<'a>(model: &'a Unet, device: &Device) -> SplitBatch<'a> {
    SplitBatch::new(model, if on_cpu(device) { 2 } else { 1 })
}

/// Whether `device` is burn's CPU backend (flex), whose element-wise work runs on one core, so
/// that batches pay to be split over threads (here and in training, `gradients.rs`).
pub fn on_cpu(device: &Device) -> bool {
    *device == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm::{Denoiser, UnetConfig};

    #[test]
    fn the_cpu_gets_halves_and_keeps_the_models_classes() {
        let device = Device::flex();
        let model = UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1)
            .with_num_classes(Some(3))
            .init(&device);
        assert!(on_cpu(&device));
        assert_eq!(for_device(&model, &device).parts(), 2);
        assert_eq!(for_device(&model, &device).num_classes(), Some(3));
    }
}
