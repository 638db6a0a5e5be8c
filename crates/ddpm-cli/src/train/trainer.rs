//! One training run's state and loop: the model, its EMA, Adam, the noise stream and the data
//! order, stepped and checkpointed.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::tensor::Device;
use ddpm::ema::{decay_at, updates_after};
use ddpm::{Ema, GaussianDiffusion, ModelConfig, NoiseSource, Unet};
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};

use super::adam::{ClippedAdam, GradientNorm};
use crate::batch_parts;
use crate::card::WarmStart;
use crate::checkpoint::{self, TrainingState};
use crate::config::TrainConfig;
use crate::data::{BatchOrder, Dataset, Visits};
use crate::gradients::Batches;
use crate::loss_scale::{self, LossScale};
use crate::plot;
use crate::read_back;
use crate::run_dir::{RunDir, truncate_metrics};
use crate::sample::{self, SampleOptions};
use crate::session::Session;
use crate::warm_start;

/// Where a training session's weights come from.
pub enum Start<'a> {
    /// A checkpoint of this run and its state (read once: its configuration is compared
    /// before the trainer is made).
    Resume(&'a Path, Box<TrainingState>),
    /// A new run: a random initialisation, or these weights (`--init`).
    New(Option<&'a Path>),
}

/// A run in progress.
pub struct Trainer {
    /// The effective configuration.
    pub config: TrainConfig,
    dataset: Dataset,
    device: Device,
    model_config: ModelConfig,
    diffusion: GaussianDiffusion,
    model: Unet,
    ema: Ema<Unet>,
    optim: burn::optim::ModuleOptimizer,
    /// The norm of each step's gradients, which `optim` clips by.
    norm: GradientNorm,
    noise: NoiseSource,
    order: BatchOrder,
    /// The images an epoch visits (`data.balance`).
    visits: Visits,
    step: usize,
    /// Where Adam started afresh, if it did ([`TrainingState::rewarm_from`]).
    rewarm_from: Option<usize>,
    /// Images in each of a step's `optim.accumulation` micro-batches.
    micro_batch: usize,
    /// Parts of each micro-batch computed at the same time (`optim.parallel` resolved).
    parts: usize,
    /// With f16 convolutions (`DDPM_HALF_CONVS=1`), what the loss is scaled by.
    loss_scale: Option<LossScale>,
}

impl Trainer {
    /// The model, EMA, optimiser and streams of a new run, a warm start or a checkpoint.
    pub fn new(
        config: TrainConfig,
        dataset: Dataset,
        device: Device,
        run: &RunDir,
        start: Start<'_>,
    ) -> Result<(Self, Option<WarmStart>)> {
        let micro_batch = config.optim.batch_size / config.optim.accumulation;
        let parts = match config.optim.parallel {
            0 if batch_parts::on_cpu(&device) && micro_batch.is_multiple_of(2) => 2,
            0 => 1,
            n => n,
        };
        let visits = match &dataset.labels {
            Some(labels) => Visits::balanced(labels, config.data.balance),
            None if config.data.balance > 0.0 => bail!(
                "data.balance needs class labels, and {} has none (a folder of class folders has them)",
                config.data.source
            ),
            None => Visits::once(dataset.len()),
        };
        let num_classes = if config.data.class_conditional {
            dataset.num_classes()
        } else {
            None
        };
        let model_config = ModelConfig {
            unet: config.model.unet(dataset.channels, num_classes),
            diffusion: config.diffusion.clone(),
            image_size: [dataset.size; 2],
        };
        model_config.validate()?;
        let train_device = device.clone().autodiff();
        train_device.seed(config.run.seed);
        let mut model = model_config.unet.try_init(&train_device)?;
        let mut ema = Ema::new(&model);
        let norm = GradientNorm::default();
        let mut optim = ClippedAdam::module(&config.optim, &norm);
        let mut noise = NoiseSource::new(config.run.seed);
        let mut order = BatchOrder::new(config.run.seed);
        let mut step = 0;
        let mut rewarm_from = None;
        let mut warm_start = None;
        // A run goes on with the scale it had; one that trained in f32 starts at the initial.
        let mut loss_scale = loss_scale::half_convs().then(LossScale::default);
        if let Start::New(Some(path)) = start {
            let (weights, record) =
                warm_start::load(path, &model_config, &dataset.class_names, &device)?;
            model = model
                .try_load_record(weights.into_record())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            ema = Ema::new(&model);
            warm_start = Some(record);
        }
        if let Start::Resume(ckpt, state) = start {
            if state.model != model_config {
                bail!(
                    "{}: the checkpoint's model differs from the one this data and configuration make ({} in {})",
                    ckpt.display(),
                    ddpm::weights::config_diff(&state.model, &model_config)
                        .first()
                        .map_or("?".into(), |d| format!(
                            "{} is {} there, {} here",
                            d.field, d.file, d.expected
                        )),
                    run.0.display()
                );
            }
            model = checkpoint::load_weights(model, ckpt, checkpoint::MODEL)?;
            let ema_model = checkpoint::load_weights(model.valid(), ckpt, checkpoint::EMA)?;
            ema = Ema::from_model(ema_model);
            rewarm_from = state.rewarm_from;
            if ckpt.join(checkpoint::OPTIMIZER).exists() {
                optim = checkpoint::read_optimizer(ckpt, optim)?;
            } else {
                // A checkpoint carried light (tools/gpu-window.sh): Adam's moments stayed behind.
                eprintln!(
                    "notice: {}: no {}; Adam starts afresh and the learning rate warms up again over {} steps",
                    ckpt.display(),
                    checkpoint::OPTIMIZER,
                    config.optim.warmup_steps
                );
                rewarm_from = Some(state.step);
            }
            noise = NoiseSource::from_state(&state.noise)
                .with_context(|| format!("{}: bad noise state", ckpt.display()))?;
            order = state.order;
            step = state.step;
            if let (Some(scale), Some(kept)) = (loss_scale.as_mut(), state.loss_scale) {
                *scale = kept;
            }
            if config.run.steps < step {
                bail!(
                    "{}: the run is already at step {step}, past --steps {}; ask for more steps (or --force to start over)",
                    ckpt.display(),
                    config.run.steps
                );
            }
        }
        let diffusion = GaussianDiffusion::new(model_config.diffusion.clone());
        let trainer = Self {
            config,
            dataset,
            device,
            model_config,
            diffusion,
            model,
            ema,
            optim,
            norm,
            noise,
            order,
            visits,
            step,
            rewarm_from,
            micro_batch,
            parts,
            loss_scale,
        };
        Ok((trainer, warm_start))
    }

    /// Trains to the configured step count, checkpointing; Ctrl-C stops after a checkpoint.
    pub fn train(mut self, run: &RunDir, device_name: &str) -> Result<()> {
        let total = self.config.run.steps;
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let flag = interrupted.clone();
            // A second handler cannot be installed (tests run several trainings per process).
            let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
        }
        // Rows after the checkpoint being resumed belong to steps that will run again.
        truncate_metrics(&run.metrics(), self.step)?;
        let mut metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.metrics())
            .with_context(|| format!("{}: cannot open", run.metrics().display()))?;
        if metrics.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            writeln!(metrics, "step,loss,lr,images_per_second,seconds")?;
        }
        eprintln!(
            "training {} parameters on {device_name}: {} images{}{}, steps {}..{total}{}",
            self.model.num_params(),
            self.dataset.len(),
            self.model_config
                .unet
                .num_classes
                .map_or(String::new(), |n| format!(" in {n} classes")),
            match self.config.data.balance {
                0.0 => String::new(),
                b => format!(
                    " visited {} times an epoch (data.balance {b})",
                    self.visits.epoch_len()
                ),
            },
            self.step + 1,
            match self.parts {
                1 => String::new(),
                n => format!(", each batch in {n} parts on {n} threads"),
            }
        );
        if self.step == total && !self.preview_path(run).is_file() {
            // Stopped (or killed) between its last checkpoint and its last preview: the run is
            // complete, and running it again draws what it left out.
            eprintln!("the training is complete; drawing its last preview, which was not drawn");
            let model = crate::load::for_sampling(
                self.ema.model().clone(),
                self.model_config.image_size,
                &self.device,
            );
            if !self.write_samples(run, &model, &interrupted)? {
                eprintln!("stopped, the preview not drawn");
            }
            return Ok(());
        }
        if self.step < total {
            Session::current(self.step, device_name).append_to(&run.sessions())?;
            #[cfg(feature = "wgpu")]
            super::kernel_check::check(
                (&self.model, self.ema.model()),
                &self.device,
                self.model_config.image_size,
                self.micro_batch / self.parts,
                &self.config.optim,
            );
        }
        let bar = ProgressBar::new(total as u64).with_position(self.step as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let first_step = self.step;
        let mut smoothed: Option<f64> = None;
        while self.step < total {
            let step_started = Instant::now();
            let loss = self.optimizer_step()?;
            if !loss.is_finite() {
                bar.abandon();
                let kept = match checkpoint::latest(&run.checkpoints()).ok().flatten() {
                    Some(last) => format!(
                        "the last good checkpoint is kept in {}: resume it",
                        last.display()
                    ),
                    None => "before any checkpoint: start over with --force".into(),
                };
                bail!(
                    "step {}: the loss is {loss}; stopped, {kept} with a lower --lr, or with --set optim.grad_clip=…",
                    self.step
                );
            }
            let rate = self.config.optim.batch_size as f64 / step_started.elapsed().as_secs_f64();
            let s = smoothed.map_or(f64::from(loss), |s| 0.98 * s + 0.02 * f64::from(loss));
            smoothed = Some(s);
            writeln!(
                metrics,
                "{},{loss},{:e},{rate:.2},{:.3}",
                self.step,
                self.lr(),
                started.elapsed().as_secs_f64()
            )?;
            bar.set_position(self.step as u64);
            bar.set_message(format!("loss {s:.4} {rate:.1} img/s"));
            let mut stop = interrupted.load(Ordering::SeqCst);
            let checkpoint_due =
                self.step.is_multiple_of(self.config.run.checkpoint_every) || self.step == total;
            if checkpoint_due || stop {
                self.save_checkpoint(run)?;
                // Piped to a log (nohup, tee, a batch system) the bar is not drawn: a line per
                // checkpoint says how far the run is, as tqdm's lines would.
                if bar.is_hidden() {
                    let done = (self.step - first_step) as f64;
                    let left = started.elapsed().mul_f64((total - self.step) as f64 / done);
                    eprintln!(
                        "step {}/{total}: loss {s:.4}, {rate:.1} img/s, checkpoint written{}",
                        self.step,
                        if self.step < total {
                            format!(", about {} left", HumanDuration(left))
                        } else {
                            String::new()
                        }
                    );
                }
            }
            let every = self.config.run.sample_every;
            let preview_due = (every > 0 && self.step.is_multiple_of(every)) || self.step == total;
            // A preview takes a while on the CPU: Ctrl-C during it stops it, unwritten, and
            // the run stops as it would have after the step (checkpointed first).
            // The layout `ddpm sample` draws with, which the run's first step checked on this
            // adapter (`kernel_check`); without the kernels it is the EMA as it is.
            let draw = || {
                let model = self.ema.model().clone().for_sampling();
                self.write_samples(run, &model, &interrupted)
            };
            if preview_due && !stop && !bar.suspend(draw)? {
                stop = true;
                if !checkpoint_due {
                    self.save_checkpoint(run)?;
                }
            }
            if stop {
                bar.abandon_with_message("interrupted");
                if self.step == total {
                    eprintln!(
                        "stopped at the last step, its preview not drawn; the training is complete (`ddpm train {}` again draws it)",
                        run.0.display()
                    );
                } else {
                    eprintln!(
                        "stopped at step {}; continue with `ddpm train {}`",
                        self.step,
                        run.0.display()
                    );
                }
                return Ok(());
            }
        }
        bar.finish_with_message(format!("done in {:.0?}", started.elapsed()));
        Ok(())
    }

    /// The learning rate of the current step (`step`, 1-based): the schedule's, warming up
    /// again for `optim.warmup_steps` steps after a resume that started Adam afresh, whose
    /// first steps would otherwise move every weight by about the full rate.
    fn lr(&self) -> f64 {
        let optim = &self.config.optim;
        let lr = optim.lr_at(self.step, self.config.run.steps);
        match self.rewarm_from {
            Some(from) if self.step - from < optim.warmup_steps => {
                lr * (self.step - from) as f64 / optim.warmup_steps as f64
            }
            _ => lr,
        }
    }

    /// One optimiser step over `accumulation` micro-batches; returns the mean loss.
    fn optimizer_step(&mut self) -> Result<f32> {
        let optim_config = &self.config.optim;
        let train_device = self.device.clone().autodiff();
        let batches = Batches {
            dataset: &self.dataset,
            diffusion: &self.diffusion,
            class_conditional: self.model_config.unet.num_classes.is_some(),
            device: &train_device,
        };
        let scale = self.loss_scale.map_or(1.0, |s| s.scale);
        // The loss is multiplied by the scale for the backward pass (see `loss_scale`).
        let divisor = (optim_config.accumulation * self.parts) as f32 / scale;
        let mut accumulator = GradientsAccumulator::<Unet>::new();
        let mut total = 0.0f32;
        for _ in 0..optim_config.accumulation {
            let flip = if self.config.data.flip { 0.5 } else { 0.0 };
            let (indices, flips) = self.order.next(&self.visits, self.micro_batch, flip);
            let parts = batches.gradients(
                &self.model,
                (&indices, &flips),
                &mut self.noise,
                divisor,
                self.parts,
            )?;
            for (grads, loss) in parts {
                accumulator.accumulate(&self.model, grads);
                // A power of two: exact.
                total += loss / scale;
            }
        }
        self.step += 1;
        let mut grads = accumulator.grads();
        let apply = match self.loss_scale.as_mut() {
            // Unscaled before the norm that clips them; a norm that is not finite skips the step.
            Some(loss_scale) => {
                loss_scale::unscale(&self.model, &mut grads, scale);
                self.norm.measure(&self.model, &grads);
                let sum = read_back::values(self.norm.sum_of_squares(), "the gradients' norm")?;
                loss_scale.update(sum.iter().all(|v| v.is_finite()), self.step)?
            }
            None => {
                if optim_config.clip_together().is_some() {
                    self.norm.measure(&self.model, &grads);
                }
                true
            }
        };
        if apply {
            self.model = self.optim.step(self.lr(), self.model.clone(), grads);
        }
        let ema = &self.config.ema;
        if updates_after(self.step, ema.every) {
            let decay = decay_at(self.step, ema.update_after_step, ema.power, ema.decay);
            self.ema.update(&self.model, decay);
        }
        Ok(total)
    }

    fn save_checkpoint(&self, run: &RunDir) -> Result<()> {
        let bytes = |m: &Unet| -> Result<Vec<u8>> {
            Ok(m.clone()
                .into_record()
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("cannot serialise the weights: {e}"))?
                .to_vec())
        };
        let model = bytes(&self.model)?;
        let ema = bytes(self.ema.model())?;
        let optim = self
            .optim
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e}"))?
            .to_vec();
        let state = TrainingState {
            step: self.step,
            noise: self.noise.state(),
            order: self.order.clone(),
            model: self.model_config.clone(),
            class_names: self.dataset.class_names.clone(),
            rewarm_from: self.rewarm_from,
            config: Some(self.config.to_table()?),
            loss_scale: self.loss_scale,
        };
        let files = [
            (checkpoint::MODEL, model.as_slice()),
            (checkpoint::EMA, ema.as_slice()),
            (checkpoint::OPTIMIZER, optim.as_slice()),
        ];
        checkpoint::write(&run.checkpoints(), &state, &files, self.config.run.keep)?;
        Ok(())
    }

    /// Where the preview of the current step goes.
    fn preview_path(&self, run: &RunDir) -> PathBuf {
        run.samples().join(format!("step-{:09}.png", self.step))
    }

    /// Draws the preview grid from `model` (the EMA in its sampling layout) and the loss curve;
    /// `false`, with neither written, when `stop` (Ctrl-C) was raised during the preview.
    fn write_samples(&self, run: &RunDir, model: &Unet, stop: &AtomicBool) -> Result<bool> {
        let n = self.model_config.unet.num_classes.map_or(16, |c| c * 4);
        let options = SampleOptions::preview(
            n,
            self.model_config.unet.num_classes,
            self.model_config.diffusion.timesteps,
        );
        // A run folder brought from another machine may hold only its checkpoints.
        std::fs::create_dir_all(run.samples())
            .with_context(|| format!("{}: cannot create", run.samples().display()))?;
        let path = self.preview_path(run);
        if !sample::grid_to_file(
            model,
            &self.model_config,
            &options,
            &self.device,
            &path,
            stop,
        )? {
            return Ok(false);
        }
        plot::loss_curve(&plot::read_losses(&run.metrics())?, &run.loss_plot())?;
        Ok(true)
    }
}
