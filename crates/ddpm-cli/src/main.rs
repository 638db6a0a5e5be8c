//! `ddpm`: train a DDPM on a GPU (burn's wgpu backend) or the CPU, sample from it (steered or
//! not), export its weights for the browser, import lucidrains' checkpoints, evaluate a model
//! (`eval`, with the classifier `classifier` trains), and inspect weights files.

mod batch_parts;
mod card;
mod checkpoint;
mod config;
mod data;
mod device;
mod eval;
mod export;
mod gradients;
mod import;
mod info;
mod load;
mod loss_scale;
mod lucidrains;
mod output;
mod picture;
mod plot;
mod read_back;
mod run_dir;
mod safetensors_file;
mod sample;
mod session;
mod steering;
mod train;
mod warm_start;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// Denoising diffusion probabilistic models (Ho et al. 2020): train, sample, export.
#[derive(Debug, Parser)]
#[command(name = "ddpm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model into a run folder (resumes one that has checkpoints).
    Train(train::TrainArgs),
    /// Generate images from a run folder or a weights file.
    Sample(sample::SampleArgs),
    /// Write the EMA (or raw) weights for the browser, with a model card (and safetensors).
    Export(export::ExportArgs),
    /// Turn a model trained with lucidrains' denoising-diffusion-pytorch (a Trainer's
    /// model-N.pt, or a state dict in .pt or .safetensors) into a weights file and card.
    Import(import::ImportArgs),
    /// Print a weights file's configuration, parameter count and size.
    Info(info::InfoArgs),
    /// Measure a digit model on held-out MNIST: Fréchet distance, class accuracy, class
    /// entropy, bits/dim.
    Eval(eval::args::EvalArgs),
    /// Train the small classifier that `eval` measures samples with (MNIST digits by default).
    Classifier(eval::train_classifier::ClassifierArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, or a bare `ddpm`: clap prints them.
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            // A bad flag is a user error like any other: its first paragraph on one line
            // (clap's usage and tips follow in its own output, dropped here), status 1.
            let text = e.render().to_string();
            let lines: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{} (see --help)", lines.join(" "));
            return ExitCode::FAILURE;
        }
    };
    let device = match &cli.command {
        Command::Train(args) => Some(args.device),
        Command::Sample(args) => Some(args.device),
        Command::Eval(args) => Some(args.device),
        Command::Classifier(args) => Some(args.device),
        Command::Export(_) | Command::Import(_) | Command::Info(_) => None,
    };
    if let Err(e) = device::pin_default(device) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
        Command::Info(args) => info::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Classifier(args) => eval::train_classifier::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain, outermost first.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
