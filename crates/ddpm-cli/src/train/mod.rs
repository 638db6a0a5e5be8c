//! `ddpm train`: Algorithm 1 with Adam, EMA, checkpoints that survive crashes, and resume.

mod adam;
#[cfg(test)]
mod against_lucidrains;
mod args;
#[cfg(feature = "wgpu")]
mod kernel_check;
mod trainer;

use anyhow::{Result, bail};

use crate::batch_parts;
use crate::checkpoint;
use crate::data::{self, Shaping};
use crate::device;
use crate::loss_scale;
use crate::output;
use crate::run_dir::{RunDir, RunLock, prepare_new_run};
pub use args::TrainArgs;
use trainer::{Start, Trainer};

/// Runs `ddpm train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let run = RunDir(args.run_dir.clone());
    let wanted = args.config()?;
    // Held until training ends. A folder that holds a run is locked before anything in it is
    // read or removed; any other folder only once `prepare_new_run` has accepted it, so that a
    // refused folder gets no lock file.
    let holds_run = run.config().is_file() || run.checkpoints().is_dir();
    let mut lock = match holds_run {
        true => Some(RunLock::acquire(&run)?),
        false => None,
    };
    let latest = if args.force {
        None
    } else {
        checkpoint::remove_leftovers(&run.checkpoints())?;
        checkpoint::latest(&run.checkpoints())?
    };
    if args.resume && latest.is_none() {
        bail!("{}: no checkpoint to resume from", run.0.display());
    }
    if args.init.is_some() && latest.is_some() {
        bail!(
            "{}: holds a run with checkpoints, and --init starts a new one (leave out --init to resume it, or pass --force to start over)",
            run.0.display()
        );
    }
    let resumed = match &latest {
        Some(ckpt) => Some((ckpt.as_path(), checkpoint::read_state(ckpt)?)),
        None => None,
    };
    let (config, resume_notes) = match &resumed {
        Some((_, state)) => args.resumed_config(&run, wanted, state.config.as_ref())?,
        None => (wanted, Vec::new()),
    };
    // Everything that can fail on bad input happens before the run folder is touched.
    let mut selected = device::select(args.device)?;
    if loss_scale::half_convs() {
        if batch_parts::on_cpu(&selected.device) {
            bail!(
                "DDPM_HALF_CONVS=1: f16 convolutions run on a GPU, and this training runs on the CPU ({})",
                selected.description
            );
        }
        // An experiment until measured: the device line (and so the session's record) says so.
        selected.description += ", training's convolutions in f16 (DDPM_HALF_CONVS=1)";
    }
    let shaping = Shaping {
        image_size: config.data.image_size,
        channels: config.data.channels,
        strict: config.data.strict,
    };
    let dataset = data::load(&config.data.source, &shaping)?;
    let start = match resumed {
        Some((ckpt, state)) => Start::Resume(ckpt, Box::new(state)),
        None => Start::New(args.init.as_deref()),
    };
    let (trainer, warm_start) = Trainer::new(config, dataset, selected.device, &run, start)?;
    if latest.is_some() {
        // A `samples` that is not a folder is found now, not at the first preview, steps later
        // (a new run's folder is checked whole by prepare_new_run).
        output::prepare(&[], &[run.samples()])?;
    } else {
        prepare_new_run(&run, args.force)?;
        if lock.is_none() {
            lock = Some(RunLock::acquire(&run)?);
        }
        output::write_new(&run.config(), trainer.config.to_toml()?.as_bytes(), true)?;
        if let Some(record) = warm_start {
            record.write(&run.warm_start())?;
            eprintln!(
                "starting from the weights of {}{}",
                record.from,
                record
                    .total_steps()
                    .map_or(String::new(), |s| format!(" ({s} steps trained)"))
            );
        }
    }
    if !resume_notes.is_empty() {
        // The resumed run goes on with what changed (Trainer::new refused what cannot).
        for note in &resume_notes {
            eprintln!("{note}");
        }
        output::write_new(&run.config(), trainer.config.to_toml()?.as_bytes(), true)?;
    }
    let trained = trainer.train(&run, &selected.description);
    drop(lock);
    trained
}
