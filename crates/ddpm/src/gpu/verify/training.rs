//! The training kernels checked against burn's on the adapter at hand, as sampling's are
//! ([`super`]): a forward and backward pass, an optimizer step and an EMA update, each once
//! with the kernels and once with burn's. A step that is wrong but finite would not stop a run:
//! it would train a worse model for hours. Native only (it reads back synchronously).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor};

use super::{TOLERANCE, inputs, judge, read};
use crate::ema::Ema;
use crate::unet::Unet;

/// One forward and backward pass of `model` (on the autodiff `device`) on `batch` images of
/// `image_size` (the run's own batch, so that autotune's choices for its shapes serve the run
/// as well), with the kernels and with burn's; then `optimizer_step` (a fresh optimizer's
/// step or steps, as the caller trains) from burn's gradients, and an EMA update towards its
/// result, each both ways. `Err` says which prediction, gradient, step or average differs by
/// more than [`TOLERANCE`] of burn's (relative to the norm of a parameter's gradient or change),
/// or why a pass failed; `Ok` also where the kernels would not run. Leaves the switch
/// ([`crate::gpu::enabled`]) as it found it.
pub fn check_training(
    model: &Unet,
    device: &Device,
    image_size: [usize; 2],
    batch: usize,
    optimizer_step: impl Fn(Unet, Gradients) -> Unet,
) -> Result<(), String> {
    let (x, time) = inputs(model, device, batch, image_size);
    if !crate::gpu::applies(&x) {
        return Ok(());
    }
    let pass = || {
        let out = model.forward(x.clone(), time.clone(), None, None);
        let grads = out.clone().square().mean().backward();
        (out, grads)
    };
    let step = |grads| {
        let stepped = optimizer_step(model.clone(), grads);
        let mut ema = Ema::new(model);
        ema.update(&stepped, 0.5);
        (stepped, ema.into_model())
    };
    // Both steps start from burn's gradients (two passes, as `Gradients` cannot be copied), so
    // that a step's difference is the optimizer's own.
    let (out, grads) = pass();
    crate::gpu::set_enabled(false);
    let (burn_out, burn_grads) = pass();
    let (burn_stepped, burn_ema) = step(pass().1);
    let for_kernels = pass().1;
    crate::gpu::set_enabled(true);
    let (stepped, ema) = step(for_kernels);

    judge(image_size, read(out), read(burn_out))?;
    let size = format!("a check on {}×{} images", image_size[0], image_size[1]);
    let params = Flat::of(model, None);
    let gradients = Flat::of(model, Some(&grads)).off(&Flat::of(model, Some(&burn_grads)), None);
    if let Some((i, off)) = gradients? {
        return Err(format!(
            "give {}'s gradient {off:.2} % away from burn's kernels' ({size})",
            params.paths[i]
        ));
    }
    let update = Flat::of(&stepped, None).off(&Flat::of(&burn_stepped, None), Some(&params));
    if let Some((i, off)) = update? {
        return Err(format!(
            "change {} in an optimizer step {off:.2} % away from burn's kernels ({size})",
            params.paths[i]
        ));
    }
    let average = Flat::of(&ema, None).off(&Flat::of(&burn_ema, None), Some(&params));
    if let Some((i, off)) = average? {
        return Err(format!(
            "average {} (EMA) {off:.2} % away from burn's kernels ({size})",
            params.paths[i]
        ));
    }
    Ok(())
}

/// A model's parameters (or their gradients) flattened, in the order the model visits them.
#[derive(Default)]
struct Flat<'a> {
    grads: Option<&'a Gradients>,
    /// Where the visit is: the fields down to the parameter.
    at: Vec<String>,
    paths: Vec<String>,
    /// `None` for a parameter without a gradient.
    values: Vec<Option<Tensor<1>>>,
}

impl<'a> Flat<'a> {
    /// `model`'s parameters, or their gradients in `grads`.
    fn of(model: &Unet, grads: Option<&'a Gradients>) -> Self {
        let mut flat = Self {
            grads,
            ..Self::default()
        };
        model.visit(&mut flat);
        flat
    }

    /// The first parameter where `self` differs from `want` by more than [`TOLERANCE`] of
    /// `want`'s norm (or of its distance from `base`), and by how many percent; also one that
    /// has a gradient in only one of them. The norms are computed where the tensors are and read
    /// back in one go.
    fn off(&self, want: &Self, base: Option<&Self>) -> Result<Option<(usize, f32)>, String> {
        let mut norms = Vec::new();
        for (i, (got, wanted)) in self.values.iter().zip(&want.values).enumerate() {
            match (got, wanted) {
                (Some(got), Some(wanted)) => {
                    let from = match base.and_then(|b| b.values[i].clone()) {
                        Some(b) => wanted.clone() - b,
                        None => wanted.clone(),
                    };
                    norms.push((got.clone() - wanted.clone()).square().sum());
                    norms.push(from.square().sum());
                }
                (None, None) => {}
                _ => return Ok(Some((i, 100.0))),
            }
        }
        if norms.is_empty() {
            return Ok(None);
        }
        // A concatenation's sound parts clear the failure a refused kernel left on its output
        // (as in `super`), and a sum does not: read the sum first, so that a refusal fails the
        // read instead of comparing whatever was in the failed slot's memory.
        let total = norms.iter().cloned().reduce(|a, b| a + b);
        if let Some(total) = total {
            total
                .try_into_vec_as::<f32>()
                .map_err(|e| format!("failed on this adapter ({e})"))?;
        }
        let squares = Tensor::cat(norms, 0)
            .try_into_vec_as::<f32>()
            .map_err(|e| format!("failed on this adapter ({e})"))?;
        let with_both = self.values.iter().enumerate().filter(|(_, v)| v.is_some());
        Ok(with_both
            .zip(squares.chunks_exact(2))
            .map(|((i, _), pair)| (i, pair[0].sqrt(), pair[1].sqrt()))
            .find(|&(_, diff, norm)| diff.is_nan() || diff > TOLERANCE * norm + 1e-9)
            .map(|(i, diff, norm)| (i, 100.0 * diff / norm)))
    }
}

impl ModuleVisitor for Flat<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.at.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.at.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = match self.grads {
            Some(grads) => param.val().grad(grads),
            None => Some(param.val().without_autodiff()),
        };
        self.paths.push(self.at.join("."));
        self.values.push(value.map(|v| {
            let n = v.shape().num_elements();
            v.reshape([n])
        }));
    }
}
