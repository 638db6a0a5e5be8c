//! `ddpm sample --init/--strength` (SDEdit), `--mask` (RePaint) and `--interpolate`, on the
//! small lucidrains fixture model (8×8 gray, T = 20), imported.

use std::path::{Path, PathBuf};

use crate::common::*;

fn s(path: &Path) -> &str {
    path.to_str().expect("utf8")
}

/// The imported fixture model, an 8×8 drawing (a bar) and a mask keeping its top half.
fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lucidrains");
    let model = dir.join("model.bpk");
    let checkpoint = fixture.join("model-2.pt");
    ok(&[
        "import",
        s(&checkpoint),
        "--image-size",
        "8",
        "-o",
        s(&model),
    ]);
    let drawing =
        image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x == 3 { 255 } else { 0 }]));
    let mask = image::GrayImage::from_fn(8, 8, |_, y| image::Luma([if y < 4 { 255 } else { 0 }]));
    let (d, m) = (dir.join("drawing.png"), dir.join("mask.png"));
    drawing.save(&d).expect("png");
    mask.save(&m).expect("png");
    (model, d, m)
}

/// `ddpm sample MODEL ARGS --raw`: the final images' values.
fn raw(dir: &Path, model: &Path, args: &[&str]) -> Vec<f32> {
    let out = dir.join("raw.safetensors");
    let png = dir.join("grid.png");
    let base = [
        "sample",
        s(model),
        "--device",
        "cpu",
        "--steps",
        "10",
        "-o",
        s(&png),
    ];
    ok(&[&base[..], args, &["--raw", s(&out), "--force"]].concat());
    let bytes = std::fs::read(&out).expect("raw");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let data = tensors.tensor("images").expect("images").data().to_vec();
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn drawing_values() -> Vec<f32> {
    (0..64)
        .map(|i| if i % 8 == 3 { 1.0 } else { -1.0 })
        .collect()
}

#[test]
fn sdedit_inpainting_and_interpolation_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let (model, drawing, mask) = setup(dir.path());
    let init = ["--init", s(&drawing)];
    // Strength 0 returns the drawing; strength 1 is plain sampling with the same seed.
    let kept = raw(
        dir.path(),
        &model,
        &[&init[..], &["--strength", "0", "-n", "2"]].concat(),
    );
    assert_eq!(kept, [drawing_values(), drawing_values()].concat());
    let plain = raw(dir.path(), &model, &["-n", "2", "--seed", "5"]);
    let redone = raw(
        dir.path(),
        &model,
        &[&init[..], &["--strength", "1", "-n", "2", "--seed", "5"]].concat(),
    );
    assert_eq!(redone, plain);
    let half = raw(
        dir.path(),
        &model,
        &[&init[..], &["--strength", "0.5", "-n", "2"]].concat(),
    );
    assert!(half != kept && half != plain);

    // Inpainting keeps the white half of the mask exactly.
    let painted = raw(
        dir.path(),
        &model,
        &[
            &init[..],
            &[
                "--mask",
                s(&mask),
                "--resample-jump",
                "2",
                "--resample-repeats",
                "2",
            ],
        ]
        .concat(),
    );
    let known = drawing_values();
    for (i, v) in painted.iter().enumerate().take(64) {
        if (i % 64) / 8 < 4 {
            assert_eq!(*v, known[i % 64], "kept pixel {i}");
        }
    }
    assert!(
        painted[32..64] != known[32..64],
        "the bottom half is generated"
    );

    // Interpolation's ends are the two seeds' images.
    let strip = raw(dir.path(), &model, &["--interpolate", "3,4", "-n", "3"]);
    let a = raw(dir.path(), &model, &["--seed", "3", "-n", "1"]);
    let b = raw(dir.path(), &model, &["--seed", "4", "-n", "1"]);
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
    assert!(close(&strip[..64], &a) && close(&strip[128..], &b));
}

#[test]
fn bad_steering_flags_get_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let (model, drawing, mask) = setup(dir.path());
    let out = dir.path().join("x.png");
    let base = [
        "sample",
        s(&model),
        "--device",
        "cpu",
        "--steps",
        "5",
        "-o",
        s(&out),
    ];
    let with = |extra: &[&str]| fails(&[&base[..], extra].concat());
    let err = with(&["--init", s(&drawing), "--strength", "1.5"]);
    assert!(
        err.contains("strength must be between 0 and 1, got 1.5"),
        "{err}"
    );
    let white = dir.path().join("white.png");
    image::GrayImage::from_pixel(8, 8, image::Luma([255]))
        .save(&white)
        .expect("png");
    let err = with(&["--init", s(&drawing), "--mask", s(&white)]);
    assert!(
        err.contains("white.png: the mask keeps all of the image"),
        "{err}"
    );
    let err = with(&[
        "--init",
        s(&drawing),
        "--mask",
        s(&mask),
        "--strength",
        "0.5",
    ]);
    assert!(
        err.contains("--strength") && err.contains("--mask"),
        "{err}"
    );
    let err = with(&[
        "--init",
        s(&drawing),
        "--mask",
        s(&mask),
        "--resample-repeats",
        "1000000",
    ]);
    assert!(
        err.contains("--resample-repeats 1 to 100, got 1 and 1000000"),
        "{err}"
    );
    let err = with(&["--interpolate", "1,2", "--sampler", "ddpm"]);
    assert!(
        err.contains("--interpolate needs DDIM with eta = 0"),
        "{err}"
    );
    let err = with(&["--interpolate", "1"]);
    assert!(err.contains("is not two seeds"), "{err}");
    let err = with(&["--init", s(&dir.path().join("none.png"))]);
    assert!(err.contains("none.png: not a readable image"), "{err}");
    // The decoder's reason, said once.
    let text = dir.path().join("text.png");
    std::fs::write(&text, b"not a picture").expect("write");
    let err = with(&["--init", s(&text)]);
    assert!(err.contains("text.png: not a readable image ("), "{err}");
    assert_eq!(err.matches("Invalid PNG signature").count(), 1, "{err}");
    let err = with(&["--strength", "0.5"]);
    assert!(err.contains("--init"), "{err}");
    assert!(!out.exists());
}
