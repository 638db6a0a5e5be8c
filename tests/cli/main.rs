//! The `ddpm` command as a user runs it: training on a small dataset, crashes and resumes,
//! export and sampling in fresh processes, and the messages for bad input.

mod common;
mod eval;
mod import;
mod steer;
mod warm_start;
#[cfg(feature = "wgpu")]
mod wgpu;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn args<'a>(fixed: &'a [&'a str], tiny: &'a [String]) -> Vec<&'a str> {
    fixed
        .iter()
        .copied()
        .chain(tiny.iter().map(String::as_str))
        .collect()
}

#[test]
fn a_few_hundred_steps_drive_the_loss_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 64);
    let run = dir.path().join("run");
    let tiny = tiny(&data);
    let run_s = run.to_str().expect("utf8");
    let out = ok(&args(
        &[
            "train",
            run_s,
            "--steps",
            "300",
            "--sample-every",
            "0",
            "--checkpoint-every",
            "100",
            "--set",
            "ema.every=3",
        ],
        &tiny,
    ));
    let losses: Vec<f64> = losses(&run)
        .iter()
        .map(|(_, l)| l.parse().expect("f64"))
        .collect();
    assert_eq!(losses.len(), 300);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..30]), mean(&losses[270..]));
    assert!(last < 0.5 * first, "loss went from {first:.4} to {last:.4}");
    // Piped, the bar is not drawn: each checkpoint says so in a line instead.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": loss ") && l.contains("checkpoint written"))
        .collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    for (line, step) in lines.iter().zip([100, 200, 300]) {
        assert!(
            line.starts_with(&format!("step {step}/300: loss ")),
            "{line}"
        );
    }
    assert!(lines[1].contains(" left"), "{}", lines[1]);
    assert!(lines[2].ends_with("checkpoint written"), "{}", lines[2]);
    // The run left its config, three checkpoints and a final sample grid.
    assert!(run.join("config.toml").is_file());
    assert_eq!(
        std::fs::read_dir(run.join("checkpoints"))
            .expect("dir")
            .count(),
        3
    );
    assert!(run.join("samples/step-000000300.png").is_file());
    // The EMA is a copy of the weights until ema.update_after_step (100), an average after.
    // Every 3 steps as ema-pytorch counts them (after steps 1, 4, …, 97, 100, …), step 100's
    // update is the last copy.
    let record = |step, name| checkpoint_file(&run, step, name);
    assert!(record(100, "ema.bpk") == record(100, "model.bpk"));
    assert!(record(300, "ema.bpk") != record(300, "model.bpk"));
}

/// A resume may change the step count, the learning rate and the clipping (the way out of a
/// loss that became NaN) and nothing else; steps added to a cosine decay stay at its floor.
#[test]
fn a_resume_changes_steps_lr_and_clipping_only_and_a_cosine_decay_keeps_its_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 32);
    let tiny = tiny(&data);
    let run = dir.path().join("run");
    let run_s = run.to_str().expect("utf8");
    // The tiny runs warm up over 10 steps; the cosine then falls to its floor at step 12.
    let first = [
        "train",
        run_s,
        "--steps",
        "12",
        "--sample-every",
        "0",
        "--set",
        "optim.decay=cosine",
    ];
    ok(&args(&first, &tiny));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    let err = fails(&[
        "train", run_s, "--device", "cpu", "--steps", "16", "--seed", "5",
    ]);
    assert!(
        err.contains("config.toml: run.seed 0 → 5); only --steps, --lr and optim.grad_clip may change on resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).expect("config"),
        config
    );
    let out = ok(&[
        "train",
        run_s,
        "--device",
        "cpu",
        "--steps",
        "16",
        "--lr",
        "1e-3",
        "--set",
        "optim.grad_clip=0.5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for note in [
        "run.steps changes on resume: 12 → 16",
        "optim.lr changes on resume: 2e-3 → 1e-3",
        "optim.grad_clip changes on resume: 1 → 0.5",
    ] {
        assert!(stderr.contains(note), "{note}: {stderr}");
    }
    assert!(!stderr.contains("changed since the checkpoint"), "{stderr}");
    let saved = std::fs::read_to_string(run.join("config.toml")).expect("config");
    assert!(saved.contains("decay_steps = 12"), "{saved}");
    // Steps 13–16 at the floor of the new rate (0.1 of it), not climbing a stretched cosine.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    let rates: Vec<(usize, f64)> = metrics
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().expect("step"), f[2].parse().expect("lr"))
        })
        .collect();
    assert_eq!(rates.len(), 16, "{metrics}");
    assert!((rates[10].1 - 1.1e-3).abs() < 1e-12, "{metrics}");
    assert!((rates[11].1 - 2e-4).abs() < 1e-12, "{metrics}");
    for &(step, lr) in &rates[12..] {
        assert!((lr - 1e-4).abs() < 1e-12, "step {step}: {lr}");
    }
    // Fewer steps than the run has trained is refused, and the configuration stays.
    let err = fails(&["train", run_s, "--device", "cpu", "--steps", "10"]);
    assert!(err.contains("already at step 16, past --steps 10"), "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).expect("config"),
        saved
    );
    // An edit of config.toml between sessions is said on resume, key by key.
    assert!(saved.contains("keep = 3"), "{saved}");
    let edited = saved.replace("keep = 3", "keep = 2");
    std::fs::write(run.join("config.toml"), edited).expect("edit");
    let out = ok(&["train", run_s, "--device", "cpu", "--steps", "17"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note: run.keep changes on resume: 3 → 2 (")
            && stderr.contains("config.toml, changed since the checkpoint)"),
        "{stderr}"
    );
}

/// Kills the training process at random moments (some during checkpoint writes), resumes it
/// each time, and checks that the loss of every step equals an uninterrupted run's, bit for bit.
#[test]
fn killed_and_resumed_training_gives_the_same_losses_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 64);
    let tiny = tiny(&data);
    let steps = "40";
    let reference = dir.path().join("reference");
    let ref_s = reference.to_str().expect("utf8");
    let common = [
        "--steps",
        steps,
        "--sample-every",
        "0",
        "--checkpoint-every",
        "3",
    ];
    ok(&args(&[&["train", ref_s][..], &common].concat(), &tiny));
    let expected = losses(&reference);

    let crashed = dir.path().join("crashed");
    let crashed_s = crashed.to_str().expect("utf8");
    let fixed = [&["train", crashed_s][..], &common].concat();
    let train = args(&fixed, &tiny);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // The step of the newest complete checkpoint (0 without one).
    let newest = || {
        std::fs::read_dir(crashed.join("checkpoints"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    // Kills are placed by the run's progress, not by time (a tiny run takes about a second, and
    // a loaded machine can take longer than that to start one; killed before its first
    // checkpoint, a run is refused without --force): each comes once the run has checkpointed a
    // random 1–12 steps past where it resumed, a random 0–20 ms after that checkpoint was seen
    // (mid-step or mid-write), until the run is near its end.
    let stderr = dir.path().join("stderr");
    let mut kills = 0;
    while kills < 5 && newest() < 33 {
        let target = newest() + 1 + random(12) as usize;
        let mut child = ddpm()
            .args(&train)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(120);
        while newest() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(random(21)));
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
    }
    assert!(
        kills > 0,
        "no kill came after a checkpoint: {:?}",
        std::fs::read_to_string(&stderr)
    );
    // Finish the run (it resumes from the newest complete checkpoint), its samples folder gone
    // as in a run folder brought from another machine with its checkpoints only.
    let samples = crashed.join("samples");
    if samples.is_dir() {
        std::fs::remove_dir_all(&samples).expect("remove samples");
    }
    ok(&train);
    assert!(samples.join(format!("step-{steps:0>9}.png")).is_file());
    let got = losses(&crashed);
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected, "losses differ after {kills} kills");
    // The sessions that trained: at least one of them resumed from a checkpoint.
    let sessions = std::fs::read_to_string(crashed.join("sessions.jsonl")).expect("sessions");
    let resumed = sessions
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|s| s["from_step"].as_u64().is_some_and(|step| step > 0))
        .count();
    assert!(resumed > 0, "no session resumed: {sessions}");
    // Re-running a finished run changes nothing, but draws its last preview if a stop (or a
    // kill between the last checkpoint and the preview) left it out.
    let preview = samples.join(format!("step-{steps:0>9}.png"));
    let drawn = std::fs::read(&preview).expect("preview");
    std::fs::remove_file(&preview).expect("remove preview");
    ok(&train);
    assert_eq!(losses(&crashed), expected);
    assert_eq!(std::fs::read(&preview).expect("preview drawn again"), drawn);
    ok(&train);
    assert_eq!(std::fs::read(&preview).expect("preview kept"), drawn);
}

/// A checkpoint carried without its `optimizer.bpk` (`tools/gpu-window.sh` with
/// `PACK_OPTIMIZER=0`) resumes with Adam afresh: the weights, the noise and the data order
/// continue (the next step's loss is the uninterrupted run's), the learning rate warms up again
/// from the resumed step, and the checkpoints after it remember where.
#[test]
fn a_checkpoint_without_the_optimizer_state_resumes_with_adam_afresh_and_warms_up_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 64);
    let tiny = tiny(&data);
    let run = dir.path().join("run");
    let run_s = run.to_str().expect("utf8");
    let fixed = [
        "train",
        run_s,
        "--steps",
        "8",
        "--sample-every",
        "0",
        "--checkpoint-every",
        "4",
    ];
    let train = args(&fixed, &tiny);
    ok(&train);
    // (loss, learning rate) of steps 1..=8.
    let rows = || -> Vec<(f64, f64)> {
        let text = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
        text.lines()
            .skip(1)
            .map(|line| {
                let f: Vec<f64> = line.split(',').map(|v| v.parse().expect("f64")).collect();
                (f[1], f[2])
            })
            .collect()
    };
    let uninterrupted = rows();
    let checkpoints = run.join("checkpoints");
    std::fs::remove_dir_all(checkpoints.join("step-000000008")).expect("remove step 8");
    // Another file under the optimizer's name is refused, not silently taken for a fresh Adam.
    let step_4 = checkpoints.join("step-000000004");
    std::fs::copy(step_4.join("model.bpk"), step_4.join("optimizer.bpk")).expect("copy");
    let err = fails(&train);
    assert!(
        err.contains("optimizer.bpk: not this run's optimizer state (0 of its"),
        "{err}"
    );
    std::fs::remove_file(step_4.join("optimizer.bpk")).expect("remove");
    let stderr = String::from_utf8_lossy(&ok(&train).stderr).into_owned();
    assert!(
        stderr.contains("no optimizer.bpk; Adam starts afresh"),
        "{stderr}"
    );
    let resumed = rows();
    assert_eq!(resumed.len(), 8);
    assert_eq!(resumed[..4], uninterrupted[..4], "steps 1-4");
    assert_eq!(resumed[4].0, uninterrupted[4].0, "step 5's loss");
    // The warm-up (optim.warmup_steps = 10) starts again at step 4.
    for step in 5..=8 {
        let (lr, expected) = (resumed[step - 1].1, uninterrupted[step - 1].1);
        let expected = expected * (step - 4) as f64 / 10.0;
        assert!(
            (lr - expected).abs() <= 1e-9 * expected,
            "step {step}: lr {lr} vs {expected}"
        );
    }
    assert_ne!(
        resumed[5].0, uninterrupted[5].0,
        "step 6 took Adam's old step"
    );
    let state =
        std::fs::read_to_string(checkpoints.join("step-000000008/state.json")).expect("state");
    let state: serde_json::Value = serde_json::from_str(&state).expect("json");
    assert_eq!(state["rewarm_from"], 4, "{state}");
}

#[test]
fn an_export_sampled_in_a_fresh_process_reproduces_the_training_preview() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 32);
    let run = dir.path().join("run");
    let run_s = run.to_str().expect("utf8");
    let tiny = tiny(&data);
    ok(&args(
        &["train", run_s, "--steps", "20", "--sample-every", "0"],
        &tiny,
    ));
    let weights = dir.path().join("bars.bpk");
    let weights_s = weights.to_str().expect("utf8");
    let st = dir.path().join("bars.safetensors");
    ok(&[
        "export",
        run_s,
        "-o",
        weights_s,
        "--safetensors",
        st.to_str().expect("utf8"),
    ]);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bars.json")).expect("card"))
            .expect("json");
    assert_eq!(card["steps_trained"], 20);
    // How the weights were made: the one training session's command and device.
    let sessions = card["training_sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let command: Vec<&str> = sessions[0]["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    // The run folder is outside the working folder: the card keeps its name, not the
    // machine's folders.
    assert_eq!(command[..3], ["ddpm", "train", "…/run"]);
    assert_eq!(sessions[0]["from_step"], 0);
    assert!(
        sessions[0]["device"]
            .as_str()
            .is_some_and(|d| d.contains("cpu")),
        "{sessions:?}"
    );
    assert_eq!(card["class_names"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        card["bytes"].as_u64(),
        Some(std::fs::metadata(&weights).expect("size").len())
    );
    assert_eq!(card["sha256"].as_str().map(str::len), Some(64));
    assert!(std::fs::metadata(&st).expect("safetensors").len() > 1000);

    // The training preview: DDIM-50, seed 0, guidance 3, classes in turn, one column per class.
    let out = dir.path().join("again.png");
    let out_s = out.to_str().expect("utf8");
    let preview = [
        "--seed",
        "0",
        "--steps",
        "50",
        "--guidance",
        "3",
        "-n",
        "8",
        "--columns",
        "2",
    ];
    ok(&[
        &["sample", weights_s, "-o", out_s, "--device", "cpu"][..],
        &preview,
    ]
    .concat());
    assert_eq!(
        pixels(&out),
        pixels(&run.join("samples/step-000000020.png"))
    );
    // The same from the run folder, in batches, with a GIF of the trajectory, single PNGs and
    // raw values.
    let out2 = dir.path().join("from-run.png");
    let gif = dir.path().join("t.gif");
    let singles = dir.path().join("singles");
    let raw = dir.path().join("raw.safetensors");
    ok(&[
        &[
            "sample",
            run_s,
            "-o",
            out2.to_str().expect("utf8"),
            "--device",
            "cpu",
        ][..],
        &preview,
        &[
            // In batches of 3, 3 and 2: the same images, and the GIF's frames joined.
            "--batch",
            "3",
            "--gif",
            gif.to_str().expect("utf8"),
            "--png-dir",
            singles.to_str().expect("utf8"),
            "--raw",
            raw.to_str().expect("utf8"),
        ],
    ]
    .concat());
    assert_eq!(pixels(&out2), pixels(&out));
    // The GIF: every 5th of the 50 steps, each x_t and x̂₀ side by side (a gap of 8 pixels).
    let frames = {
        use image::AnimationDecoder;
        let file = std::io::BufReader::new(std::fs::File::open(&gif).expect("gif"));
        image::codecs::gif::GifDecoder::new(file)
            .expect("a GIF")
            .into_frames()
            .collect_frames()
            .expect("frames")
    };
    assert_eq!(frames.len(), 10);
    let grid = image::open(&out).expect("png");
    for frame in &frames {
        let buffer = frame.buffer();
        assert_eq!(
            (buffer.width(), buffer.height()),
            (2 * grid.width() + 8, grid.height())
        );
    }
    assert_eq!(std::fs::read_dir(&singles).expect("dir").count(), 8);
    // The raw values are the images of the PNGs before rounding to bytes.
    let raw = std::fs::read(&raw).expect("raw");
    let raw = safetensors::SafeTensors::deserialize(&raw).expect("safetensors");
    let images = raw.tensor("images").expect("images");
    assert_eq!(images.shape(), [8, 1, 8, 8]);
    let values: Vec<f32> = images
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let first: Vec<u8> = values[..64]
        .iter()
        .flat_map(|&v| [ddpm::grid::to_byte(v); 3])
        .collect();
    assert_eq!(first, pixels(&singles.join("0000.png")));
    // A different seed gives different images; an existing output is not overwritten.
    let err = fails(
        &[
            &["sample", weights_s, "-o", out_s, "--device", "cpu"][..],
            &preview,
        ]
        .concat(),
    );
    assert!(
        err.contains("again.png") && err.contains("--force"),
        "{err}"
    );
    ok(&[
        "sample", weights_s, "-o", out_s, "--device", "cpu", "--seed", "1", "-n", "8", "--force",
    ]);
    assert_ne!(pixels(&out), pixels(&out2));
    // A class the model does not have is refused by number, and nothing is written.
    let bad_class = dir.path().join("class-9.png");
    let err = fails(&[
        "sample",
        weights_s,
        "-o",
        bad_class.to_str().expect("utf8"),
        "--device",
        "cpu",
        "--class",
        "9",
    ]);
    assert!(
        err.contains("class 9 is out of range: this model has 2 classes, 0 to 1"),
        "{err}"
    );
    assert!(!bad_class.exists());
    let info = ok(&["info", weights_s]);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("parameters") && info.contains("classes     2"),
        "{info}"
    );
}

#[test]
fn bad_input_gets_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("run");
    let run_s = run.to_str().expect("utf8");
    // A configuration key that does not exist.
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[optim]\nlearning_rate = 0.1\n").expect("write");
    let err = fails(&["train", run_s, "--config", config.to_str().expect("utf8")]);
    assert!(
        err.contains("bad.toml") && err.contains("learning_rate"),
        "{err}"
    );
    // A data folder that does not exist, or is empty.
    let err = fails(&[
        "train",
        run_s,
        "--data",
        "/no/such/folder",
        "--device",
        "cpu",
    ]);
    assert!(err.contains("/no/such/folder"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("dir");
    let err = fails(&[
        "train",
        run_s,
        "--data",
        empty.to_str().expect("utf8"),
        "--device",
        "cpu",
    ]);
    assert!(err.contains("no files"), "{err}");
    // A run folder that is a file, or holds someone else's files.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let err = fails(&["train", file.to_str().expect("utf8"), "--device", "cpu"]);
    assert!(err.contains("not a folder"), "{err}");
    let err = fails(&[
        "train",
        dir.path().to_str().expect("utf8"),
        "--device",
        "cpu",
    ]);
    assert!(err.contains("other files"), "{err}");
    // Resuming a folder without checkpoints, or resuming and starting over at once.
    let err = fails(&["train", run_s, "--resume", "--device", "cpu"]);
    assert!(err.contains("no checkpoint"), "{err}");
    let err = fails(&["train", run_s, "--resume", "--force"]);
    assert!(
        err.contains("'--resume' cannot be used with '--force'"),
        "{err}"
    );
    // Flags clap refuses are one line too, with status 1: a missing argument is named on it.
    let err = fails(&["sample", "--device", "cpu"]);
    assert!(err.contains("required") && err.contains("<MODEL>"), "{err}");
    let err = fails(&["eval", run_s, "--samplers", "ddim-0"]);
    assert!(err.contains("ddim-0") && err.contains("ddim-K"), "{err}");
    // Counts that would not fit in memory are refused before anything is allocated.
    let err = fails(&["sample", run_s, "-n", "4611686018427387904"]);
    assert!(
        err.contains("--n") && err.contains("from 1 to 65536"),
        "{err}"
    );
    // Two outputs on one path: the second would overwrite the first.
    let png = dir.path().join("twice.png");
    let png_s = png.to_str().expect("utf8");
    let err = fails(&["sample", run_s, "-o", png_s, "--gif", png_s]);
    assert!(
        err.contains("twice.png: named for two of the outputs"),
        "{err}"
    );
    assert!(!png.exists());
    let err = fails(&["train", run_s, "--image-size", "4294967328"]);
    assert!(
        err.contains("data.image_size must be from 1 to 4096"),
        "{err}"
    );
    let err = fails(&["train", run_s, "--balance", "2"]);
    assert!(
        err.contains("data.balance must be from 0 to 1, got 2"),
        "{err}"
    );
    // Balanced classes of images without classes (the PIL fixtures lie in one folder).
    let unlabelled = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/pil");
    let err = fails(&[
        "train",
        run_s,
        "--data",
        unlabelled,
        "--balance",
        "0.5",
        "--device",
        "cpu",
    ]);
    assert!(
        err.contains("data.balance needs class labels") && err.contains("fixtures/pil has none"),
        "{err}"
    );
    assert!(!run.exists());
    // Weights whose card (same name, `.json`) would overwrite them.
    let card_clash = dir.path().join("m.json");
    let err = fails(&["export", run_s, "-o", card_clash.to_str().expect("utf8")]);
    assert!(
        err.contains("m.json") && err.contains("two of the outputs"),
        "{err}"
    );
    assert!(!card_clash.exists());
    // A truncated or foreign weights file.
    let weights = dir.path().join("w.bpk");
    std::fs::write(&weights, b"BURNPACK? no").expect("write");
    let never = dir.path().join("never.png");
    let err = fails(&[
        "sample",
        weights.to_str().expect("utf8"),
        "-o",
        never.to_str().expect("utf8"),
        "--device",
        "cpu",
    ]);
    assert!(!never.exists());
    assert!(err.contains("w.bpk"), "{err}");
    let err = fails(&["info", "/no/such/weights.bpk"]);
    assert!(err.contains("no such run folder or weights file"), "{err}");
    // On the default device too: the model is checked before a GPU driver (Mesa's, here)
    // can print lines of its own.
    for command in [
        &["sample", "/no/such/weights.bpk", "-o"][..],
        &["eval", "/no/such/weights.bpk", "--out"],
    ] {
        let err = fails(&[command, &[never.to_str().expect("utf8")]].concat());
        assert!(err.contains("no such run folder or weights file"), "{err}");
    }
    let mnist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www/models/mnist.bpk");
    let err = fails_as(
        ddpm()
            .arg("eval")
            .arg(&mnist)
            .args(["--heldout", "/no/such/heldout"]),
    );
    assert!(err.contains("/no/such/heldout"), "{err}");
    let err = fails_as(
        ddpm()
            .arg("eval")
            .arg(&mnist)
            .arg("--classifier")
            .arg(&mnist),
    );
    assert!(err.contains("mnist.bpk: not classifier weights"), "{err}");
    // A switch of the environment with a value that would be ignored.
    let png = dir.path().join("never.png");
    let err = fails_as(
        ddpm()
            .arg("sample")
            .arg(&mnist)
            .args(["--device", "cpu", "-o"])
            .arg(&png)
            .env("DDPM_GPU_KERNELS", "yes"),
    );
    assert!(
        err.contains("DDPM_GPU_KERNELS") && err.contains("\"yes\""),
        "{err}"
    );
    assert!(!png.exists());
    // Outputs that could not be what they are named, refused before any sampling: a grid
    // named .jpg, no columns, a --png-dir that is a file (nothing else is written then).
    let sample = |extra: &[&str]| {
        let mut command = ddpm();
        command
            .arg("sample")
            .arg(&mnist)
            .args(["--device", "cpu", "--steps", "2", "-n", "2"]);
        fails_as(command.args(extra))
    };
    let jpg = dir.path().join("grid.jpg");
    let err = sample(&["-o", jpg.to_str().expect("utf8")]);
    assert!(
        err.contains("grid.jpg: written as PNG; name it .png"),
        "{err}"
    );
    let err = sample(&["-o", png.to_str().expect("utf8"), "--columns", "0"]);
    assert!(
        err.contains("--columns and --batch must be at least 1"),
        "{err}"
    );
    let err = sample(&[
        "-o",
        png.to_str().expect("utf8"),
        "--png-dir",
        file.to_str().expect("utf8"),
    ]);
    assert!(err.contains("file: is a file, not a folder"), "{err}");
    assert!(!png.exists() && !jpg.exists());
    // A default device burn would panic on is refused by the commands that compute.
    let err = fails_as(
        ddpm()
            .arg("sample")
            .arg(&mnist)
            .args(["--device", "cpu", "-o"])
            .arg(&png)
            .env("BURN_DEVICE", "cuda"),
    );
    assert!(
        err.contains("BURN_DEVICE=\"cuda\": this build knows flex, wgpu"),
        "{err}"
    );
    assert!(!png.exists());
}

/// A checkpoint whose model no longer matches the run's configuration, a file that is not an
/// exported weights file, and a run folder that cannot be created are each refused by name.
#[test]
fn weights_of_another_model_and_unwritable_run_folders_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 16);
    let run = dir.path().join("run");
    let run_s = run.to_str().expect("utf8");
    let tiny = tiny(&data);
    ok(&args(
        &["train", run_s, "--steps", "2", "--sample-every", "0"],
        &tiny,
    ));
    // Someone edits the run's configuration by hand: the checkpoint is for another model.
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("dim = 8\n"), "{text}");
    std::fs::write(&config, text.replace("dim = 8\n", "dim = 16\n")).expect("write");
    let err = fails(&["train", run_s, "--steps", "4", "--device", "cpu"]);
    assert!(
        err.contains("step-000000002") && err.contains("dim is 8 there, 16 here"),
        "{err}"
    );
    // A checkpoint's raw record is not an exported weights file (it has no model card).
    let record = run.join("checkpoints/step-000000002/ema.bpk");
    assert!(record.is_file());
    let record_s = record.to_str().expect("utf8");
    let out = dir.path().join("never.png");
    let err = fails(&[
        "sample",
        record_s,
        "-o",
        out.to_str().expect("utf8"),
        "--device",
        "cpu",
    ]);
    assert!(err.contains("ema.bpk"), "{err}");
    assert!(!out.exists());
    let err = fails(&["info", record_s]);
    assert!(err.contains("ema.bpk"), "{err}");
    // A run folder that cannot be created: its parent is a file, or a read-only file system.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let below_file = file.join("run");
    let err = fails(&args(
        &["train", below_file.to_str().expect("utf8"), "--steps", "1"],
        &tiny,
    ));
    assert!(err.contains("file/run"), "{err}");
    let err = fails(&args(&["train", "/proc/ddpm-run", "--steps", "1"], &tiny));
    assert!(err.contains("/proc/ddpm-run"), "{err}");
    // --force starts the run over: its own files (sessions.jsonl too) go, a stranger's stays.
    let restart = [
        "train",
        run_s,
        "--steps",
        "1",
        "--sample-every",
        "0",
        "--force",
    ];
    ok(&args(&restart, &tiny));
    let sessions = std::fs::read_to_string(run.join("sessions.jsonl")).expect("sessions");
    assert_eq!(sessions.lines().count(), 1, "{sessions}");
    assert_eq!(losses(&run).len(), 1);
    assert!(!run.join("checkpoints/step-000000002").exists());
    std::fs::write(run.join("notes.txt"), "mine").expect("write");
    let err = fails(&args(&restart, &tiny));
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).expect("kept"),
        "mine"
    );
    // A folder of someone else's files is refused before anything is written into it.
    let stranger = dir.path().join("stranger");
    std::fs::create_dir(&stranger).expect("mkdir");
    std::fs::write(stranger.join("notes.txt"), "mine").expect("write");
    let stranger_s = stranger.to_str().expect("utf8");
    let err = fails(&args(&["train", stranger_s, "--steps", "1"], &tiny));
    assert!(err.contains("notes.txt"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&stranger)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "nothing added");
}

#[test]
fn ctrl_c_writes_a_checkpoint_at_the_current_step_and_exits_cleanly_and_one_trainer_holds_a_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 32);
    let run = dir.path().join("run");
    let run_s = run.to_str().expect("utf8");
    let tiny = tiny(&data);
    let fixed = [
        "train",
        run_s,
        "--steps",
        "100000",
        "--checkpoint-every",
        "100000",
    ];
    let child = ddpm()
        .args(args(&fixed, &tiny))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while losses_if_any(&run) < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second trainer on the same folder is turned away and leaves the first one's files be.
    let read = |name: &str| std::fs::read_to_string(run.join(name)).unwrap_or_default();
    let (config, metrics, sessions) = (
        read("config.toml"),
        read("metrics.csv"),
        read("sessions.jsonl"),
    );
    let err = fails(&args(&fixed, &tiny));
    assert!(err.contains("another `ddpm train`"), "{err}");
    // The first trainer's files as it left them: its rows only grow, nothing else changed.
    assert!(!config.is_empty());
    assert_eq!(read("config.toml"), config);
    assert!(
        read("metrics.csv").starts_with(&metrics),
        "metrics rewritten"
    );
    assert_eq!(read("sessions.jsonl"), sessions);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("continue with"), "{stderr}");
    let last = losses(&run).last().map(|r| r.0).expect("rows");
    let checkpoints: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(checkpoints, vec![format!("step-{last:09}")]);
}

fn losses_if_any(run: &std::path::Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv"))
        .map_or(0, |t| t.lines().count().saturating_sub(1))
}

/// `--class` takes the names `info` lists (from the model card), `sample` reports its sampler's
/// time, an unreadable card is said, an output that is an input is refused, and `info` piped
/// into a reader that stops early (`| head`) ends quietly.
#[test]
fn a_class_is_picked_by_the_name_info_lists() {
    let dir = tempfile::tempdir().expect("tmp");
    let emoji = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www/models/emoji.bpk");
    let emoji_s = emoji.to_str().expect("utf8");
    let info = ok(&["info", emoji_s]);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("classes     10 (activities, animals-nature, component, flags, food-drink,"),
        "{info}"
    );
    let grid = |class: &str| {
        let out = dir.path().join(format!("{class}.png"));
        let out_s = out.to_str().expect("utf8");
        let args = [
            "sample", emoji_s, "--device", "cpu", "--steps", "2", "-n", "2",
        ];
        let done = ok(&[&args[..], &["--class", class, "-o", out_s]].concat());
        // The sampler's own time, which the GPU benchmark reads.
        let stderr = String::from_utf8_lossy(&done.stderr);
        let line = stderr
            .lines()
            .find(|l| l.starts_with("sampled 2 images in "));
        assert!(
            line.is_some_and(|l| l.ends_with(" s (2 steps)")),
            "{stderr}"
        );
        pixels(&out)
    };
    let flags = grid("flags");
    assert_eq!(flags, grid("3"));
    assert_ne!(flags, grid("people-body"));
    let err = fails(&[
        "sample",
        emoji_s,
        "--device",
        "cpu",
        "--class",
        "food",
        "-o",
        dir.path().join("never.png").to_str().expect("utf8"),
    ]);
    assert!(
        err.contains(
            "--class food: no class of that name (its classes: activities, animals-nature,"
        ),
        "{err}"
    );
    // An unreadable card is said, not dropped in silence; an output never replaces an input.
    let copy = dir.path().join("copy.bpk");
    std::fs::copy(&emoji, &copy).expect("copy");
    std::fs::write(copy.with_extension("json"), b"{\"x\":").expect("card");
    let copy_s = copy.to_str().expect("utf8");
    let info = ok(&["info", copy_s]);
    let stderr = String::from_utf8_lossy(&info.stderr);
    assert!(
        stderr.contains("copy.json: not a readable model card (EOF while parsing"),
        "{stderr}"
    );
    let grid = dir.path().join("grid.png");
    let grid_s = grid.to_str().expect("utf8");
    let raw = ["--raw", copy_s, "--force"];
    let err = fails(
        &[
            &["sample", copy_s, "--device", "cpu", "-o", grid_s],
            &raw[..],
        ]
        .concat(),
    );
    assert!(
        err.ends_with("copy.bpk: is also an input of this command; name another output file"),
        "{err}"
    );
    assert!(!grid.exists());
    let bytes = |p: &std::path::Path| std::fs::read(p).expect("read");
    assert_eq!(bytes(&copy), bytes(&emoji));
    let mut reader = ddpm()
        .args(["info", emoji_s])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(reader.stdout.take());
    let out = reader.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
