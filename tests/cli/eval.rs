//! `ddpm eval` and `ddpm classifier` on real files: a tiny digit model trained for two steps
//! through the CLI, measured against the embedded held-out MNIST test set.

use crate::common::*;

/// Flags for a tiny digit model (28×28, ten classes, T = 20) on the embedded training digits.
fn tiny_digits() -> Vec<&'static str> {
    let digits = [
        "--device",
        "cpu",
        "--data",
        "mnist",
        "--batch-size",
        "16",
        "--sample-every",
        "0",
    ];
    [
        &digits[..],
        &TINY_UNET,
        &["--set", "diffusion.timesteps=20"],
    ]
    .concat()
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn eval_measures_a_digit_model_on_held_out_mnist_and_export_keeps_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("digits");
    let run_s = run.to_str().expect("utf8");
    ok(&[&["train", run_s, "--steps", "2"][..], &tiny_digits()].concat());
    let report = dir.path().join("eval.json");
    let report_s = report.to_str().expect("utf8");
    let eval = [
        "eval",
        run_s,
        "--device",
        "cpu",
        "-n",
        "20",
        "--samplers",
        "ddim-2,ddpm",
        "--nll-images",
        "6",
        "--nll-stride",
        "10",
        "--batch",
        "20",
        "--out",
        report_s,
    ];
    let out = ok(&eval);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| ema | ddim-2 |") && table.contains("| raw | ddpm |"),
        "{table}"
    );

    let r = json(&report);
    assert_eq!(r["step"], 2);
    assert_eq!(r["command"][0], "ddpm");
    // The flags given, and the default guidance.
    assert_eq!(
        (r["images"].as_u64(), r["guidance"].as_f64()),
        (Some(20), Some(3.0))
    );
    // The embedded classifier on the 10,000 held-out digits.
    assert!(
        f(&r["classifier_accuracy"]) > 0.95,
        "{}",
        r["classifier_accuracy"]
    );
    let floor = &r["floor"];
    assert_eq!(floor["images"], 20);
    assert_eq!(floor["halves"], 5000);
    // More real images, less small-sample bias: the whole halves are closer than 20 images.
    assert!(f(&floor["fd_halves"]) < f(&floor["fd"]), "{floor}");
    let rows = r["samples"].as_array().expect("rows");
    let names: Vec<String> = rows
        .iter()
        .map(|row| format!("{} {}", row["weights"], row["sampler"]).replace('"', ""))
        .collect();
    assert_eq!(names, ["ema ddim-2", "ema ddpm", "raw ddim-2", "raw ddpm"]);
    for row in rows {
        // Two training steps draw noise, nothing like digits.
        assert!(f(&row["fd"]) > 2.0 * f(&floor["fd"]), "{row} vs {floor}");
        assert!(f(&row["fd_unconditional"]) > 2.0 * f(&floor["fd"]), "{row}");
        // Noise is no digit: about chance (0.1) among ten classes, far from the floor's.
        let accuracy = f(&row["accuracy"]);
        assert!((0.0..0.35).contains(&accuracy), "{row}");
        let entropy = f(&row["class_entropy_bits"]);
        assert!((0.0..=10f64.log2() + 1e-9).contains(&entropy), "{row}");
    }
    let bounds = r["likelihood"].as_array().expect("likelihood");
    assert_eq!(bounds.len(), 2);
    for b in bounds {
        let parts = f(&b["prior"]) + f(&b["diffusion"]) + f(&b["decoder"]);
        assert!((f(&b["bits_per_dim"]) - parts).abs() < 1e-9, "{b}");
        // An untrained model is far from the ~1 bit/dim of a good MNIST model.
        assert!(f(&b["bits_per_dim"]) > 2.0, "{b}");
        assert_eq!(b["images"], 6);
        assert_eq!(b["stride"], 10);
    }

    // The same rows measured in two runs, the second extending the first's report, are the
    // same numbers (seconds aside); the extension takes -n and the guidance from the report.
    let part = dir.path().join("part.json");
    let whole = dir.path().join("whole.json");
    let (part_s, whole_s) = (part.to_str().expect("utf8"), whole.to_str().expect("utf8"));
    let flags = ["--device", "cpu", "--nll-stride", "10", "--batch", "20"];
    ok(&[
        &[
            "eval",
            run_s,
            "-n",
            "20",
            "--samplers",
            "ddim-2",
            "--weights",
            "ema",
        ][..],
        &["--nll-images", "6", "-o", part_s],
        &flags,
    ]
    .concat());
    let more = [
        &[
            "eval",
            run_s,
            "--extend",
            part_s,
            "--samplers",
            "ddpm,ddim-2",
        ][..],
        &["--nll-images", "6", "-o", whole_s],
        &flags,
    ]
    .concat();
    ok(&more);
    let w = json(&whole);
    let without_seconds = |rows: &serde_json::Value| {
        let mut rows = rows.clone();
        for row in rows.as_array_mut().expect("rows") {
            row.as_object_mut().expect("row").remove("seconds");
        }
        rows
    };
    assert_eq!(
        without_seconds(&w["samples"]),
        without_seconds(&r["samples"])
    );
    assert_eq!(w["likelihood"], r["likelihood"]);
    assert_eq!(
        (&w["images"], &w["guidance"]),
        (&r["images"], &r["guidance"])
    );
    assert_eq!(w["floor"], r["floor"]);
    assert_eq!(w["command"], json(&part)["command"]);
    assert_eq!(w["extended_by"][0][3], "--extend");
    // A report without bits/dim (`--nll-images 0`) is extended without them too: only the
    // rows asked for are added, not the default bound on 1,000 digits.
    let bare = dir.path().join("bare.json");
    let bare_more = dir.path().join("bare-more.json");
    let (bare_s, bare_more_s) = (
        bare.to_str().expect("utf8"),
        bare_more.to_str().expect("utf8"),
    );
    ok(&[
        &["eval", run_s, "-n", "20", "--samplers", "ddim-2"][..],
        &["--weights", "ema", "--nll-images", "0", "-o", bare_s],
        &flags,
    ]
    .concat());
    let out = ok(&[
        "eval",
        run_s,
        "--device",
        "cpu",
        "--extend",
        bare_s,
        "--weights",
        "raw",
        "-o",
        bare_more_s,
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("bits/dim"), "{log}");
    let b = json(&bare_more);
    assert_eq!(b["likelihood"], serde_json::json!([]));
    assert_eq!(
        without_seconds(&b["samples"]),
        without_seconds(&serde_json::json!([r["samples"][0], r["samples"][2]]))
    );
    // Nothing left to measure, no --out, or settings the report was not measured with
    // (they would change the numbers): refused by name, before anything is measured.
    let never = dir.path().join("never.json");
    let refused = |report: &str, more: &[&str]| {
        let out = ["-o", never.to_str().expect("utf8")];
        // Without `flags`: an extension takes the report's batch and bound settings.
        let device = ["--device", "cpu"];
        fails(
            &[
                &["eval", run_s, "--extend", report][..],
                more,
                &out,
                &device,
            ]
            .concat(),
        )
    };
    let err = refused(whole_s, &[]);
    assert!(
        err.contains("whole.json") && err.contains("already has"),
        "{err}"
    );
    let err = fails(&["eval", run_s, "--extend", part_s, "--samplers", "ddpm"]);
    assert!(err.contains("--extend needs --out"), "{err}");
    for (flag, value, theirs) in [
        ("-n", "30", "20"),
        ("--batch", "10", "20"),
        ("--nll-stride", "5", "10"),
        ("--guidance", "2", "3"),
    ] {
        let err = refused(part_s, &["--samplers", "ddpm", flag, value]);
        assert!(
            err.contains(&format!("{flag} {value}")) && err.contains(&format!("with {theirs}")),
            "{err}"
        );
    }
    let err = refused(part_s, &["--seed", "4"]);
    assert!(err.contains("part.json") && err.contains("seed 0"), "{err}");
    assert!(!never.exists());

    // The report goes into the model card of the same step, and so do more reports of it
    // (here the one made in parts), in the order given...
    let weights = dir.path().join("digits.bpk");
    let weights_s = weights.to_str().expect("utf8");
    let err = fails(&[
        "export", run_s, "-o", weights_s, "--eval", report_s, "--eval", report_s,
    ]);
    assert!(err.contains("eval.json") && err.contains("twice"), "{err}");
    assert!(!weights.exists());
    ok(&[
        "export", run_s, "-o", weights_s, "--eval", report_s, "--eval", whole_s,
    ]);
    let card = json(&dir.path().join("digits.json"));
    assert_eq!(card["evaluation"], r);
    assert_eq!(card["more_evaluations"], serde_json::json!([w]));
    assert_eq!(card["averaging"], "ema");
    // The raw weights, which the report also measured, can be exported instead.
    let raw = dir.path().join("digits-raw.bpk");
    let raw_s = raw.to_str().expect("utf8");
    ok(&[
        "export",
        run_s,
        "-o",
        raw_s,
        "--weights",
        "raw",
        "--eval",
        report_s,
    ]);
    let raw_card = json(&dir.path().join("digits-raw.json"));
    assert_eq!(raw_card["averaging"], "raw");
    assert_ne!(raw_card["sha256"], card["sha256"]);
    assert!(raw_card.get("more_evaluations").is_none(), "{raw_card}");
    // Evaluated as a file, the raw weights are called raw (their card says so) and measure
    // as they did in the run folder; the EMA ones are not in that file.
    let from_file = dir.path().join("raw-file.json");
    let from_file_s = from_file.to_str().expect("utf8");
    let file_eval = [
        &[
            "eval",
            raw_s,
            "-n",
            "20",
            "--samplers",
            "ddim-2",
            "-o",
            from_file_s,
        ][..],
        &["--nll-images", "0"],
        &flags,
    ]
    .concat();
    ok(&file_eval);
    let rows = without_seconds(&json(&from_file)["samples"]);
    let from_run = without_seconds(&r["samples"]);
    let raw_ddim2: Vec<_> = from_run
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| row["weights"] == "raw" && row["sampler"] == "ddim-2")
        .cloned()
        .collect();
    assert_eq!(rows.as_array().expect("rows"), &raw_ddim2);
    let err = fails(&[&file_eval[..], &["--weights", "ema", "--force"]].concat());
    assert!(
        err.contains("digits-raw.bpk") && err.contains("raw here"),
        "{err}"
    );
    // Re-exported (to f16), a weights file keeps what its card knew.
    let half = dir.path().join("digits-raw16.bpk");
    ok(&[
        "export",
        raw_s,
        "-o",
        half.to_str().expect("utf8"),
        "--f16",
        "--weights",
        "raw",
    ]);
    let half_card = json(&dir.path().join("digits-raw16.json"));
    for key in [
        "averaging",
        "steps_trained",
        "class_names",
        "dataset",
        "training_seconds",
        "training_sessions",
    ] {
        assert_eq!(half_card[key], raw_card[key], "{key}");
    }
    assert_eq!(half_card["precision"], "f16");
    assert_eq!(
        half_card["training_sessions"].as_array().map(Vec::len),
        Some(1)
    );
    let err = fails(&[
        "export",
        weights_s,
        "-o",
        raw_s,
        "--weights",
        "raw",
        "--force",
    ]);
    assert!(
        err.contains("digits.bpk") && err.contains("run folder"),
        "{err}"
    );
    // ...and not a report of another model at the same step (it records what it read)...
    let other = dir.path().join("other");
    let other_s = other.to_str().expect("utf8");
    ok(&[
        &["train", other_s, "--steps", "2", "--seed", "1"][..],
        &tiny_digits(),
    ]
    .concat());
    let never_bpk = dir.path().join("never.bpk");
    let never_bpk_s = never_bpk.to_str().expect("utf8");
    let err = fails(&["export", other_s, "-o", never_bpk_s, "--eval", report_s]);
    assert!(
        err.contains("eval.json: evaluates other weights than those exported"),
        "{err}"
    );
    assert!(!never_bpk.exists());
    let err = fails(
        &[
            &["eval", other_s, "--extend", part_s, "--samplers", "ddpm"][..],
            &["-o", never.to_str().expect("utf8"), "--device", "cpu"],
        ]
        .concat(),
    );
    assert!(
        err.contains("--extend: the report evaluated other ema weights"),
        "{err}"
    );
    // ...while a report of an export goes into the card of the same export made again.
    let of_file = dir.path().join("of-file.json");
    let of_file_s = of_file.to_str().expect("utf8");
    ok(&[
        &[
            "eval",
            weights_s,
            "-n",
            "20",
            "--samplers",
            "ddim-2",
            "--nll-images",
            "0",
        ][..],
        &["-o", of_file_s],
        &flags,
    ]
    .concat());
    ok(&[
        "export", run_s, "-o", weights_s, "--eval", of_file_s, "--force",
    ]);
    // No output of eval, sample or export may replace what it reads: the model, its card,
    // a checkpoint's files; and a bad output path is refused before any measuring.
    let ckpt = run.join("checkpoints/step-000000002");
    let in_ckpt = |name: &str| ckpt.join(name).to_str().expect("utf8").to_string();
    let before = std::fs::read(ckpt.join("ema.bpk")).expect("ema");
    let card_s = dir.path().join("digits.json");
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, b"x").expect("write");
    let under_file = a_file.join("r.json");
    let eval_to = |model: &str, out: &str, more: &[&str]| {
        fails(
            &[
                &[
                    "eval",
                    model,
                    "-n",
                    "20",
                    "--samplers",
                    "ddim-2",
                    "--force",
                    "-o",
                    out,
                ][..],
                more,
                &flags,
            ]
            .concat(),
        )
    };
    let err = eval_to(run_s, &in_ckpt("ema.bpk"), &[]);
    assert!(
        err.contains("ema.bpk: is inside") && err.contains("which this command reads"),
        "{err}"
    );
    let err = eval_to(weights_s, card_s.to_str().expect("utf8"), &[]);
    assert!(
        err.contains("digits.json: is also an input of this command"),
        "{err}"
    );
    let err = eval_to(run_s, under_file.to_str().expect("utf8"), &[]);
    assert!(err.contains("a-file: is a file, not a folder"), "{err}");
    let err = eval_to(
        run_s,
        never.to_str().expect("utf8"),
        &["--weights", "ema,ema"],
    );
    assert!(err.contains("--weights names ema twice"), "{err}");
    let png = dir.path().join("s.png");
    let png_s = png.to_str().expect("utf8");
    let err = fails(&[
        "sample",
        run_s,
        "--device",
        "cpu",
        "-n",
        "1",
        "-o",
        png_s,
        "--raw",
        &in_ckpt("state.json"),
        "--force",
    ]);
    assert!(err.contains("state.json: is inside"), "{err}");
    let err = fails(&["export", run_s, "-o", &in_ckpt("state.bpk"), "--force"]);
    assert!(err.contains("state.bpk: is inside"), "{err}");
    assert_eq!(std::fs::read(ckpt.join("ema.bpk")).expect("ema"), before);
    assert!(!png.exists());
    // The default DDIM-50 of `sample` is all T steps of a model with fewer (T = 20 here).
    let out = ok(&["sample", run_s, "--device", "cpu", "-n", "1", "-o", png_s]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("(20 steps)"), "{log}");

    // ...and no other: one more step, and the old report is refused.
    ok(&[&["train", run_s, "--steps", "3"][..], &tiny_digits()].concat());
    let err = fails(&[
        "export", run_s, "-o", weights_s, "--eval", report_s, "--force",
    ]);
    assert!(
        err.contains("eval.json") && err.contains("step 2") && err.contains("step 3"),
        "{err}"
    );
    // A report of step 2 is not extended with step 3's weights.
    let err = refused(whole_s, &["--samplers", "ddim-3"]);
    assert!(
        err.contains("whole.json") && err.contains("step 2") && err.contains("step 3"),
        "{err}"
    );
    // An existing report is not overwritten.
    let err = fails(&eval);
    assert!(
        err.contains("eval.json") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(json(&report), r);
}

#[test]
fn eval_measures_other_models_by_bits_per_dim_and_refuses_what_it_cannot_measure() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 32);
    let folder = dir.path().join("bars-run");
    let run_s = folder.to_str().expect("utf8");
    let tiny = tiny(&data);
    let train: Vec<&str> = ["train", run_s, "--steps", "1", "--sample-every", "0"]
        .into_iter()
        .chain(tiny.iter().map(String::as_str))
        .collect();
    ok(&train);
    let err = fails(&["eval", run_s, "--device", "cpu"]);
    assert!(
        err.contains("bars") && err.contains("8×8") && err.contains("--heldout"),
        "{err}"
    );
    // With held-out images of its own kind, an 8×8 bars model gets its bits/dim (all T = 100
    // terms) and none of the digit classifier's measures.
    let heldout = bars_dataset(&dir.path().join("heldout"), 6);
    let heldout_s = heldout.to_str().expect("utf8");
    let report = dir.path().join("bars-eval.json");
    let report_s = report.to_str().expect("utf8");
    let own = ["eval", run_s, "--device", "cpu", "--heldout", heldout_s];
    let out = ok(&[&own[..], &["--out", report_s]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bits/dim only"), "{stdout}");
    let r = json(&report);
    assert!(
        r["floor"].is_null() && r["classifier_accuracy"].is_null(),
        "{r}"
    );
    assert_eq!(r["samples"].as_array().map(Vec::len), Some(0), "{r}");
    let bounds = r["likelihood"].as_array().expect("likelihood");
    let weights: Vec<&str> = bounds
        .iter()
        .filter_map(|b| b["weights"].as_str())
        .collect();
    assert_eq!(weights, ["ema", "raw"]);
    for b in bounds {
        assert_eq!(b["images"], 6);
        assert_eq!(b["stride"], 1);
        let parts = f(&b["prior"]) + f(&b["diffusion"]) + f(&b["decoder"]);
        assert!((f(&b["bits_per_dim"]) - parts).abs() < 1e-9, "{b}");
        assert!(
            f(&b["bits_per_dim"]) > 0.0 && f(&b["diffusion"]) > 0.0,
            "{b}"
        );
        // Each class's bits/dim is over its own images (the bars alternate: 3 and 3), and
        // together they are the whole mean.
        let classes = b["by_class"].as_array().expect("by_class");
        let images: Vec<u64> = classes
            .iter()
            .filter_map(|c| c["images"].as_u64())
            .collect();
        assert_eq!(images, [3, 3], "{b}");
        let weighted: f64 = classes.iter().map(|c| 3.0 * f(&c["bits_per_dim"])).sum();
        assert!((weighted / 6.0 - f(&b["bits_per_dim"])).abs() < 1e-9, "{b}");
    }
    assert!(stdout.contains("| class | held-out images | ema bits/dim | raw bits/dim |"));
    assert!(r["images"].is_null() && r["guidance"].is_null(), "{r}");

    // A strided bound says how its blocks were cut. A report from before growing blocks (no
    // `blocks`) gets no bits/dim of another estimate added.
    let ema = dir.path().join("ema.json");
    let ema_s = ema.to_str().expect("utf8");
    let strided = [&own[..], &["--nll-stride", "10", "--weights", "ema"]].concat();
    ok(&[&strided[..], &["--out", ema_s]].concat());
    let mut r = json(&ema);
    assert_eq!(r["likelihood"][0]["blocks"], "growing", "{r}");
    r["likelihood"][0]
        .as_object_mut()
        .expect("bound")
        .remove("blocks");
    let old = dir.path().join("old.json");
    std::fs::write(&old, r.to_string()).expect("write");
    let old_s = old.to_str().expect("utf8");
    let raw = [
        &own[..],
        &["--weights", "raw", "--out", report_s, "--force"],
    ]
    .concat();
    let err = fails(&[&raw[..], &["--extend", old_s]].concat());
    assert!(
        err.contains("old.json") && err.contains("even block of 10") && err.contains("anew"),
        "{err}"
    );
    ok(&[&raw[..], &["--extend", ema_s]].concat());
    let both = json(&report);
    let blocks: Vec<&str> = both["likelihood"]
        .as_array()
        .expect("likelihood")
        .iter()
        .filter_map(|b| b["blocks"].as_str())
        .collect();
    assert_eq!(blocks, ["growing", "growing"], "{both}");
    let err = fails(&[&own[..], &["--nll-images", "0"]].concat());
    assert!(
        err.contains("--nll-images") && err.contains("nothing"),
        "{err}"
    );
    // The flags of the digit measures are refused by name, not silently ignored.
    for flag in [
        &["-n", "50"][..],
        &["--samplers", "ddim-10"],
        &["--guidance", "2"],
    ] {
        let err = fails(&[&own[..], flag].concat());
        assert!(
            err.contains(flag[0]) && err.contains("bits/dim only"),
            "{flag:?}: {err}"
        );
    }
    let err = fails(&["eval", run_s, "--device", "cpu", "--heldout", "/nope"]);
    assert!(
        err.contains("/nope") && err.contains("does not exist"),
        "{err}"
    );
    let junk = dir.path().join("junk.bpk");
    std::fs::write(&junk, b"not weights").expect("write");
    let junk_s = junk.to_str().expect("utf8");
    let err = fails(&[&own[..], &["--classifier", junk_s]].concat());
    assert!(
        err.contains("junk.bpk") && err.contains("not classifier weights"),
        "{err}"
    );
    for bad in ["ddim-0", "ddim", "plms"] {
        let err = fails(&["eval", run_s, "--samplers", bad]);
        assert!(err.contains(bad) && err.contains("ddim-K"), "{err}");
    }
    let err = fails(&["eval", run_s, "-n", "1"]);
    assert!(err.contains("--n"), "{err}");
}

#[test]
fn the_classifier_command_trains_one_that_eval_loads() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = dir.path().join("classifier.bpk");
    let weights_s = weights.to_str().expect("utf8");
    let out = ok(&["classifier", "-o", weights_s, "--epochs", "1"]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let accuracy: f64 = line
        .strip_prefix("held-out accuracy ")
        .and_then(|rest| rest.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // One pass over the 10,000 training digits already recognises most held-out ones.
    assert!(accuracy > 80.0, "{line}");
    let err = fails(&["classifier", "-o", weights_s]);
    assert!(
        err.contains("classifier.bpk") && err.contains("--force"),
        "{err}"
    );
    for lr in ["nan", "-1", "0"] {
        let other = dir.path().join(format!("lr{lr}.bpk"));
        let err = fails(&[
            "classifier",
            "-o",
            other.to_str().expect("utf8"),
            &format!("--lr={lr}"),
        ]);
        assert!(err.contains("--lr must be a positive number"), "{err}");
        assert!(!other.exists());
    }
    // A count whose steps overflow, a batch larger than the training digits.
    for (flag, value) in [
        ("--epochs", "18446744073709551615"),
        ("--batch-size", "10001"),
    ] {
        let other = dir.path().join("huge.bpk");
        let err = fails(&[
            "classifier",
            "-o",
            other.to_str().expect("utf8"),
            flag,
            value,
        ]);
        assert!(
            err.contains("--epochs must be 1 to 1000 and --batch-size 1 to 10000"),
            "{err}"
        );
        assert!(!other.exists());
    }
    // eval measures with it: its report names this file's SHA-256 and the accuracy it printed.
    let run = dir.path().join("digits");
    let run_s = run.to_str().expect("utf8");
    ok(&[&["train", run_s, "--steps", "2"][..], &tiny_digits()].concat());
    let report = dir.path().join("eval.json");
    ok(&[
        "eval",
        run_s,
        "--device",
        "cpu",
        "--classifier",
        weights_s,
        "-n",
        "2",
        "--samplers",
        "ddim-2",
        "--nll-images",
        "1",
        "--out",
        report.to_str().expect("utf8"),
    ]);
    let r = json(&report);
    use sha2::Digest;
    let sha = sha2::Sha256::digest(std::fs::read(&weights).expect("weights"));
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["classifier_sha256"], hex.as_str());
    let reported = 100.0 * f(&r["classifier_accuracy"]);
    assert!((reported - accuracy).abs() < 0.006, "{reported} vs {line}");
}

#[test]
fn a_classifier_trained_on_other_images_judges_their_model_class_by_class() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 64);
    let data_s = data.to_str().expect("utf8");
    let heldout = bars_dataset(&dir.path().join("heldout"), 8);
    let heldout_s = heldout.to_str().expect("utf8");
    let weights = dir.path().join("bars-classifier.bpk");
    let weights_s = weights.to_str().expect("utf8");
    let train = [
        "classifier",
        "-o",
        weights_s,
        "--data",
        data_s,
        "--heldout",
        heldout_s,
        "--image-size",
        "8",
        "--batch-size",
        "16",
        "--epochs",
        "30",
        "--flip",
        "--balance",
        "1",
    ];
    let out = ok(&train);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    // Rows and columns of lit pixels (mirrored, still rows and columns): told apart after 120
    // steps, each of 4 + 4 held-out bars.
    assert!(
        stdout.starts_with("held-out accuracy 100.00% (8 images of")
            && stdout.contains("\n  0: 100.0% of 4\n  1: 100.0% of 4\n"),
        "{stdout}"
    );
    let err = fails(&[&train[..train.len() - 1], &["2", "--force"]].concat());
    assert!(err.contains("--balance must be from 0 to 1"), "{err}");
    let mut huge = train.to_vec();
    let side = huge
        .iter()
        .position(|a| *a == "--image-size")
        .expect("flag")
        + 1;
    huge[side] = "100000";
    let err = fails(&[&huge[..], &["--force"]].concat());
    assert!(err.contains("--image-size must be 4 to 512"), "{err}");
    // A classifier needs classes: a folder of images without class folders has none.
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).expect("dir");
    for i in 0..2u8 {
        image::GrayImage::from_pixel(8, 8, image::Luma([100 * i]))
            .save(flat.join(format!("{i}.png")))
            .expect("png");
    }
    let other = dir.path().join("other.bpk");
    let err = fails(&[
        "classifier",
        "-o",
        other.to_str().expect("utf8"),
        "--data",
        flat.to_str().expect("utf8"),
        "--image-size",
        "8",
    ]);
    assert!(err.contains("flat") && err.contains("two classes"), "{err}");
    assert!(!other.exists());

    // A two-class bars model is judged by it: its samples get every measure, per class too.
    let run = dir.path().join("bars-run");
    let run_s = run.to_str().expect("utf8");
    let tiny = tiny(&data);
    let steps = ["train", run_s, "--steps", "1", "--sample-every", "0"];
    ok(&[
        &steps[..],
        &tiny.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat());
    let report = dir.path().join("eval.json");
    let eval = [
        "eval",
        run_s,
        "--device",
        "cpu",
        "--classifier",
        weights_s,
        "--heldout",
        heldout_s,
        "-n",
        "4",
        "--samplers",
        "ddim-2",
        "--nll-images",
        "0",
        "--out",
        report.to_str().expect("utf8"),
    ];
    let out = ok(&eval);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("| class | held-out images | classifier on them | ema ddim-2 | raw ddim-2 |")
            && stdout.contains("| 0 | 4 | 100.0% |"),
        "{stdout}"
    );
    let r = json(&report);
    assert_eq!(f(&r["classifier_accuracy"]), 1.0, "{r}");
    let images: Vec<u64> = r["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter_map(|c| c["images"].as_u64())
        .collect();
    assert_eq!(images, [4, 4], "{r}");
    for row in r["samples"].as_array().expect("rows") {
        // Two samples of each class: the whole accuracy is the mean of the two.
        let by_class: Vec<f64> = row["accuracy_by_class"]
            .as_array()
            .expect("by class")
            .iter()
            .map(f)
            .collect();
        assert_eq!(by_class.len(), 2, "{row}");
        let mean = (by_class[0] + by_class[1]) / 2.0;
        assert!((mean - f(&row["accuracy"])).abs() < 1e-12, "{row}");
        assert!(f(&row["class_entropy_bits"]) <= 1.0, "{row}");
    }
    // Held-out images of a class it does not know are refused by name.
    let digits = ["eval", run_s, "--classifier", weights_s, "--device", "cpu"];
    let err = fails(&[&digits[..], &["--heldout", "mnist"]].concat());
    assert!(
        err.contains("mnist: class `2` is not one of the classifier's (0, 1)"),
        "{err}"
    );
    // Without --heldout (MNIST's test digits), it says which images it needs.
    let err = fails(&digits);
    assert!(
        err.contains("8×8 grayscale images of 2 classes (0, 1)") && err.contains("--heldout"),
        "{err}"
    );
}
