//! An exponential moving average of a model's weights, the copy that gets sampled and exported
//! (Ho et al. 2020 §4 use a decay of 0.9999; lucidrains' `Trainer` uses 0.995 every 10 steps).
//!
//! The average lives on the plain (non-autodiff) device as a copy made by `valid()`, so the
//! parameters of the trained model and of the average share their [`ParamId`]s: each update
//! pairs them by id, whatever the module's structure.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// The EMA copy of a model: `ema ← decay · ema + (1 − decay) · θ`.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    model: M,
}

impl<M: Module> Ema<M> {
    /// Starts the average at the model's current weights.
    pub fn new(model: &M) -> Self {
        Self {
            model: model.valid(),
        }
    }

    /// Wraps an existing average (e.g. one loaded from a checkpoint).
    pub fn from_model(model: M) -> Self {
        Self {
            model: model.valid(),
        }
    }

    /// The averaged model, on the plain device.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Consumes the average, returning the averaged model.
    pub fn into_model(self) -> M {
        self.model
    }

    /// Moves the average towards `model` by `1 − decay` (`decay` in [0, 1]; 0 copies the
    /// weights). Parameters the average does not know (by id) are left alone.
    pub fn update(&mut self, model: &M, decay: f32) {
        let mut current = Collect::default();
        model.visit(&mut current);
        let mut lerp = Lerp {
            current: current.0,
            decay,
        };
        self.model = self.model.clone().map(&mut lerp);
    }
}

/// lucidrains' (ema-pytorch's) warm-up of the decay: `1 − (1 + step / inv_gamma)^(−power)`,
/// capped at `max_decay`, with `inv_gamma = 1`: the average follows the weights closely at
/// first and settles to `max_decay`. `power = 2/3` suits runs of ~100k steps, 3/4 shorter ones.
pub fn warmup_decay(step: usize, power: f64, max_decay: f64) -> f32 {
    let decay = 1.0 - (1.0 + step as f64).powf(-power);
    decay.clamp(0.0, max_decay) as f32
}

/// The decay for the EMA update after optimiser step `step`, as ema-pytorch schedules it: until
/// `update_after_step` the average is a plain copy (decay 0), so the random initial weights do
/// not linger in it; after that [`warmup_decay`] counts from there.
pub fn decay_at(step: usize, update_after_step: usize, power: f64, max_decay: f64) -> f32 {
    if step <= update_after_step {
        return 0.0;
    }
    warmup_decay(step - update_after_step - 1, power, max_decay)
}

/// Whether the EMA updates after optimiser step `step` (1-based) when it updates every `every`
/// steps: after steps 1, 1 + every, 1 + 2·every, …, as ema-pytorch does in lucidrains' Trainer
/// (its `update` checks its call count before counting the call).
pub fn updates_after(step: usize, every: usize) -> bool {
    step >= 1 && (step - 1).is_multiple_of(every)
}

/// Every float parameter of a model, detached and flattened, by id.
#[derive(Default)]
struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Off the autodiff graph: mixed with the plain EMA tensors it would make them tracked
        // again, and sampling the average would then keep every activation alive.
        let value = param.val().without_autodiff();
        let n = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([n]));
    }
}

struct Lerp {
    current: HashMap<ParamId, Tensor<1>>,
    decay: f32,
}

impl ModuleMapper for Lerp {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.current.remove(&param.id) else {
            return param;
        };
        let decay = self.decay;
        param.map(|ema| {
            let shape = ema.shape();
            let device = ema.device();
            let current = current.to_device(&device).reshape(shape);
            #[cfg(feature = "gpu-kernels")]
            if crate::gpu::applies(&ema) {
                return crate::gpu::ema::ema_lerp(ema, current, decay);
            }
            ema.mul_scalar(decay) + current.mul_scalar(1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{device, values};
    use crate::unet::UnetConfig;

    fn all_values<M: Module>(model: &M) -> Vec<f32> {
        let mut collect = Collect::default();
        model.visit(&mut collect);
        let mut ids: Vec<_> = collect.0.keys().copied().collect();
        ids.sort_by_key(|id| id.val());
        ids.iter()
            .flat_map(|id| values(collect.0[id].clone()))
            .collect()
    }

    #[test]
    fn update_is_an_exact_lerp_of_every_parameter() {
        let device = device();
        let config = UnetConfig::new(8)
            .with_dim_mults(vec![1, 2])
            .with_channels(1);
        let train_device = device.autodiff();
        let start = config.init(&train_device);
        let mut ema = Ema::new(&start);
        assert!(!ema.model().devices()[0].is_autodiff());
        // A "trained" model: the same ids, every weight moved by +1.
        let moved = start.clone().map(&mut Shift(1.0));
        ema.update(&moved, 0.75);
        let mut tracked = Tracked(0);
        ema.model().visit(&mut tracked);
        assert_eq!(
            tracked.0, 0,
            "EMA parameters must stay off the autodiff graph"
        );
        let before = all_values(&start);
        let after = all_values(ema.model());
        assert_eq!(before.len(), after.len());
        assert_eq!(before.len(), start.num_params());
        for (b, a) in before.iter().zip(&after) {
            // 0.75 · w + 0.25 · (w + 1) = w + 0.25
            assert!((a - (b + 0.25)).abs() < 1e-5, "{a} vs {b} + 0.25");
        }
        // Decay 0 copies.
        ema.update(&moved, 0.0);
        let copied = all_values(ema.model());
        for (b, a) in before.iter().zip(&copied) {
            assert!((a - (b + 1.0)).abs() < 1e-5);
        }
    }

    #[test]
    fn warmup_decay_rises_to_its_cap() {
        assert_eq!(warmup_decay(0, 0.75, 0.995), 0.0);
        let d10 = warmup_decay(10, 0.75, 0.995);
        assert!((f64::from(d10) - (1.0 - 11f64.powf(-0.75))).abs() < 1e-6);
        assert!(warmup_decay(100, 0.75, 0.995) > d10);
        assert_eq!(warmup_decay(1_000_000, 0.75, 0.995), 0.995);
    }

    #[test]
    fn the_average_copies_until_update_after_step_then_warms_up() {
        assert_eq!(decay_at(1, 100, 0.75, 0.995), 0.0);
        assert_eq!(decay_at(100, 100, 0.75, 0.995), 0.0);
        assert_eq!(
            decay_at(101, 100, 0.75, 0.995),
            warmup_decay(0, 0.75, 0.995)
        );
        assert_eq!(
            decay_at(111, 100, 0.75, 0.995),
            warmup_decay(10, 0.75, 0.995)
        );
        assert_eq!(decay_at(10, 0, 0.75, 0.995), warmup_decay(9, 0.75, 0.995));
    }

    #[test]
    fn updates_come_after_the_first_step_and_every_nth_after_it() {
        let steps = |every| {
            (1..=25)
                .filter(|&s| updates_after(s, every))
                .collect::<Vec<_>>()
        };
        assert_eq!(steps(10), [1, 11, 21]);
        assert_eq!(steps(3), [1, 4, 7, 10, 13, 16, 19, 22, 25]);
        assert_eq!(steps(1), (1..=25).collect::<Vec<_>>());
        assert!(!updates_after(0, 1));
    }

    /// Counts parameters on an autodiff device.
    struct Tracked(usize);

    impl ModuleVisitor for Tracked {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += usize::from(param.val().is_autodiff());
        }
    }

    struct Shift(f32);

    impl ModuleMapper for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let by = self.0;
            param.map(|t| t.add_scalar(by))
        }
    }
}
