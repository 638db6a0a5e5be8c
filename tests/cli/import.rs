//! `ddpm import` and `ddpm export --lucidrains` on the lucidrains fixtures
//! (`tests/fixtures/lucidrains`, made by lucidrains' own Trainer).

use std::path::{Path, PathBuf};

use crate::common::*;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/lucidrains")
        .join(name)
        .to_str()
        .expect("utf8")
        .to_string()
}

fn card(weights: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(weights.with_extension("json")).expect("card");
    serde_json::from_str(&text).expect("json")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf8")
}

#[test]
fn a_trainer_checkpoint_imports_samples_and_comes_back_identical_through_export() {
    let dir = tempfile::tempdir().expect("tmp");
    let at = |name: &str| dir.path().join(name);
    let checkpoint = fixture("model-2.pt");
    let err = fails(&["import", &checkpoint, "-o", s(&at("a.bpk"))]);
    assert!(err.contains("give --image-size"), "{err}");
    assert!(!at("a.bpk").exists());

    ok(&[
        "import",
        &checkpoint,
        "--image-size",
        "8",
        "-o",
        s(&at("a.bpk")),
    ]);
    let a = card(&at("a.bpk"));
    let imported = &a["imported_from"];
    assert_eq!(imported["file"], "model-2.pt", "the card names no folder");
    let source = std::fs::read(&checkpoint).expect("fixture");
    assert_eq!(imported["sha256"], sha256(&source));
    assert_eq!(imported["keys"], "ema.ema_model.model.");
    assert_eq!(imported["lucidrains_version"], "2.3.1");
    assert_eq!(
        (&a["steps_trained"], &a["averaging"]),
        (&2.into(), &"ema".into())
    );
    let diffusion = &a["config"]["diffusion"];
    assert_eq!(diffusion["timesteps"], 20);
    assert_eq!(diffusion["beta_schedule"]["kind"], "sigmoid");
    assert_eq!(diffusion["objective"], "pred_v");
    assert_eq!(a["config"]["image_size"], serde_json::json!([8, 8]));

    let raw = at("raw.bpk");
    ok(&[
        "import",
        &checkpoint,
        "--image-size",
        "8",
        "--weights",
        "raw",
        "-o",
        s(&raw),
    ]);
    assert_eq!(card(&raw)["averaging"], "raw");
    assert_ne!(
        std::fs::read(&raw).expect("raw"),
        std::fs::read(at("a.bpk")).expect("ema")
    );

    // The imported model samples like any exported one.
    let png = at("samples.png");
    ok(&[
        "sample",
        s(&at("a.bpk")),
        "-n",
        "4",
        "--steps",
        "5",
        "--device",
        "cpu",
        "-o",
        s(&png),
    ]);
    // A 2×2 grid of 8×8 images with 2-pixel gaps, and images that are not one flat colour
    // (weights read wrongly give NaNs, drawn as one value).
    let grid = image::open(&png).expect("png");
    assert_eq!((grid.width(), grid.height()), (22, 22));
    let first_image: Vec<u8> = pixels(&png)
        .chunks(3)
        .enumerate()
        .filter(|(i, _)| (2..10).contains(&(i % 22)) && (2..10).contains(&(i / 22)))
        .map(|(_, rgb)| rgb[0])
        .collect();
    assert_eq!(first_image.len(), 64);
    let (lo, hi) = (first_image.iter().min(), first_image.iter().max());
    assert!(lo < hi, "a flat image: {first_image:?}");

    // import → export --lucidrains → import: the same weights file, byte for byte.
    let lucid = at("lucid.safetensors");
    ok(&[
        "export",
        s(&at("a.bpk")),
        "-o",
        s(&at("b.bpk")),
        "--lucidrains",
        s(&lucid),
    ]);
    ok(&["import", s(&lucid), "-o", s(&at("c.bpk"))]);
    assert!(std::fs::read(at("a.bpk")).expect("a") == std::fs::read(at("c.bpk")).expect("c"));
    assert_eq!(card(&at("c.bpk"))["imported_from"]["format"], "safetensors");
    // A flag that contradicts the file's metadata is refused, as one against its buffers is.
    let err = fails(&[
        "import",
        s(&lucid),
        "--timesteps",
        "50",
        "-o",
        s(&at("d.bpk")),
    ]);
    assert!(
        err.contains("--timesteps 50 contradicts the file, whose buffers or metadata say 20"),
        "{err}"
    );
    assert!(!at("d.bpk").exists());

    ok(&[
        "import",
        &checkpoint,
        "--image-size",
        "8",
        "--f16",
        "-o",
        s(&at("h.bpk")),
    ]);
    assert_eq!(card(&at("h.bpk"))["precision"], "f16");
}

#[test]
fn a_bare_state_dict_takes_what_it_cannot_tell_from_flags_and_says_what_it_assumed() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("u.bpk");
    let run = ddpm()
        .args([
            "import",
            &fixture("unet.safetensors"),
            "--image-size",
            "16",
            "-o",
            s(&out),
        ])
        .args(["--objective", "pred_noise"])
        .output()
        .expect("runs");
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("assumed T = 1000"), "{stderr}");
    assert!(stderr.contains("assumed the sigmoid schedule"), "{stderr}");
    assert!(
        stderr.contains("assumed the time embedding's θ = 10000"),
        "{stderr}"
    );
    let c = card(&out);
    assert_eq!(c["config"]["diffusion"]["objective"], "pred_noise");
    assert_eq!(c["config"]["unet"]["self_condition"], true);
    assert!(
        stderr.contains("assumed self-conditioning with a learned variance (6 channels"),
        "{stderr}"
    );
    assert_eq!(
        c["imported_from"]["assumed"].as_array().map(Vec::len),
        Some(5)
    );
}

/// A learned variance comes from lucidrains' `LearnedGaussianDiffusion`, whose buffers keep the
/// default objective (pred_v) while its network predicts ε: imported as ε, said so.
#[test]
fn a_learned_variance_diffusion_is_imported_as_predicting_noise() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("l.bpk");
    let learned = fixture("learned.pt");
    let run = ddpm()
        .args(["import", &learned, "--image-size", "8", "-o", s(&out)])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("assumed ε for its objective, not the buffers' pred_v"),
        "{stderr}"
    );
    let c = card(&out);
    assert_eq!(c["config"]["diffusion"]["objective"], "pred_noise");
    assert_eq!(c["config"]["diffusion"]["timesteps"], 20);
    assert_eq!(c["config"]["unet"]["learned_variance"], true);
    let other = dir.path().join("v.bpk");
    let err = fails(&[
        "import",
        &learned,
        "--image-size",
        "8",
        "--objective",
        "pred_v",
        "-o",
        s(&other),
    ]);
    assert!(
        err.contains("--objective pred_v: a U-Net with a learned variance predicts ε"),
        "{err}"
    );
    assert!(!other.exists());
}

#[test]
fn bad_files_and_flags_get_one_line_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let at = |name: &str| dir.path().join(name);
    let out: PathBuf = at("out.bpk");
    let checkpoint = std::fs::read(fixture("model-2.pt")).expect("fixture");
    std::fs::write(at("cut.pt"), &checkpoint[..checkpoint.len() / 2]).expect("write");
    std::fs::write(at("notes.pt"), b"{\"not\": \"a checkpoint\"}").expect("write");
    let size = ["--image-size", "8", "-o", s(&out)];
    for (file, expected) in [
        (
            s(&at("cut.pt")),
            "cut.pt: neither safetensors nor a readable PyTorch file",
        ),
        (
            s(&at("notes.pt")),
            "notes.pt: neither safetensors nor a readable PyTorch file",
        ),
        (s(&at("missing.pt")), "missing.pt: cannot read"),
    ] {
        let err = fails(&[&["import", file][..], &size].concat());
        assert!(err.contains(expected), "{err}");
        assert!(!out.exists());
    }
    let checkpoint = fixture("model-2.pt");
    let err = fails(&[&["import", &checkpoint, "--schedule", "linear"][..], &size].concat());
    assert!(
        err.contains("--schedule linear contradicts the file, whose buffers"),
        "{err}"
    );
    let err = fails(
        &[
            &["import", &checkpoint, "--image-size", "7"][..],
            &["-o", s(&out)],
        ]
        .concat(),
    );
    assert!(
        err.contains("image size 7×7 must be divisible by 2"),
        "{err}"
    );
    assert!(!out.exists());

    std::fs::write(&out, b"keep me").expect("write");
    let err = fails(&[&["import", &checkpoint][..], &size].concat());
    assert!(
        err.ends_with("exists; pass --force to overwrite it"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).expect("kept"), b"keep me");

    // The shipped digit model is class-conditional: lucidrains has no Unet for it.
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www/models/mnist.bpk");
    let (bpk, lucid) = (at("m.bpk"), at("m.safetensors"));
    let err = fails(&[
        "export",
        s(&mnist),
        "-o",
        s(&bpk),
        "--lucidrains",
        s(&lucid),
    ]);
    assert!(
        err.contains("class-conditional model has no lucidrains counterpart"),
        "{err}"
    );
    assert!(!bpk.exists() && !lucid.exists());
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
