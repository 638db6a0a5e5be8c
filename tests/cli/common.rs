//! Running the real `ddpm` binary on small fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn ddpm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ddpm"))
}

/// Runs `ddpm ARGS`, returning its output.
pub fn run(args: &[&str]) -> Output {
    ddpm().args(args).output().expect("the ddpm binary runs")
}

/// Runs `ddpm ARGS` and insists that it succeeds.
pub fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "ddpm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `ddpm ARGS`, insists that it fails with one line on stderr, and returns that line.
pub fn fails(args: &[&str]) -> String {
    fails_as(ddpm().args(args))
}

/// [`fails`] for a prepared command (e.g. with environment variables).
pub fn fails_as(command: &mut Command) -> String {
    let out = command.output().expect("the ddpm binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{command:?} should fail: {stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

/// An IDX dataset of `n` 8×8 images in two classes, horizontal and vertical bars at random
/// positions, gzipped, in `dir`; returns the folder.
pub fn bars_dataset(dir: &Path, n: usize) -> PathBuf {
    use std::io::Write;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut state = 12345u64;
    for i in 0..n {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = ((state >> 33) % 6) as usize + 1;
        let class = i % 2;
        for y in 0..8 {
            for x in 0..8 {
                let on = if class == 0 { y == pos } else { x == pos };
                pixels.push(if on { 255u8 } else { 0 });
            }
        }
        labels.push(class as u8);
    }
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    };
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 8, 8] {
        images.extend(d.to_be_bytes());
    }
    images.extend(pixels);
    let mut label_file = vec![0, 0, 8, 1];
    label_file.extend((n as u32).to_be_bytes());
    label_file.extend(labels);
    let data = dir.join("bars");
    std::fs::create_dir_all(&data).expect("dir");
    std::fs::write(data.join("bars-images-idx3-ubyte.gz"), gz(&images)).expect("write");
    std::fs::write(data.join("bars-labels-idx1-ubyte.gz"), gz(&label_file)).expect("write");
    data
}

/// The U-Net of every CLI test: two levels of 8 and 16 channels, two heads of 8.
pub const TINY_UNET: [&str; 8] = [
    "--set",
    "model.dim=8",
    "--set",
    "model.dim_mults=[1, 2]",
    "--set",
    "model.attn_dim_head=8",
    "--set",
    "model.attn_heads=2",
];

/// Flags for a tiny, fast model on the bars.
pub fn tiny(data: &Path) -> Vec<String> {
    let bars = [
        "--device",
        "cpu",
        "--data",
        data.to_str().expect("utf8 path"),
        "--image-size",
        "8",
        "--batch-size",
        "16",
        "--lr",
        "2e-3",
    ];
    let process = [
        "--set",
        "diffusion.timesteps=100",
        "--set",
        "optim.warmup_steps=10",
    ];
    [&bars[..], &TINY_UNET, &process]
        .concat()
        .into_iter()
        .map(String::from)
        .collect()
}

/// `(step, loss)` of each row of a run's metrics.csv, the last row of a step winning.
pub fn losses(run: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    let mut rows: Vec<(usize, String)> = Vec::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split(',');
        let step: usize = fields.next().and_then(|s| s.parse().ok()).expect("step");
        let loss = fields.next().expect("loss").to_string();
        rows.retain(|(s, _)| *s != step);
        rows.push((step, loss));
    }
    rows
}

/// The bytes of `name` (`model.bpk`, `ema.bpk`, …) in a run's checkpoint of `step`.
pub fn checkpoint_file(run: &Path, step: usize, name: &str) -> Vec<u8> {
    let path = run.join(format!("checkpoints/step-{step:09}/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decoded RGB pixels of a PNG.
pub fn pixels(path: &Path) -> Vec<u8> {
    image::open(path).expect("png").to_rgb8().into_raw()
}
