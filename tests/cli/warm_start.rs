//! `ddpm train --init`: a new run that starts from trained weights, and the history its model
//! cards carry.

use crate::common::*;

/// The tiny flags with another learning rate (`--lr` there would win over a `--set`).
fn tiny_with_lr(data: &std::path::Path, lr: &str) -> Vec<String> {
    tiny(data)
        .into_iter()
        .map(|a| if a == "2e-3" { lr.to_string() } else { a })
        .collect()
}

fn train(run: &str, extra: &[&str], flags: &[String]) -> std::process::Output {
    let mut args = vec!["train", run, "--sample-every", "0"];
    args.extend(extra);
    args.extend(flags.iter().map(String::as_str));
    ok(&args)
}

fn card(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("card")).expect("json")
}

#[test]
fn a_run_started_from_exported_weights_continues_them_and_its_card_keeps_their_history() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 32);
    let path = |name: &str| dir.path().join(name);
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let (run_a, run_b, run_c) = (path("a"), path("b"), path("c"));
    train(&s(&run_a), &["--steps", "20"], &tiny(&data));
    let (a_bpk, a_st) = (path("a.bpk"), path("a.safetensors"));
    ok(&[
        "export",
        &s(&run_a),
        "-o",
        &s(&a_bpk),
        "--safetensors",
        &s(&a_st),
    ]);

    // One step at a learning rate too small to move an f32 weight: the run's weights are the
    // file's, tensor for tensor.
    let still = tiny_with_lr(&data, "1e-20");
    let out = train(&s(&run_b), &["--steps", "1", "--init", &s(&a_bpk)], &still);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("starting from the weights of") && stderr.contains("(20 steps trained)"),
        "{stderr}"
    );
    let (b_bpk, b_st) = (path("b.bpk"), path("b.safetensors"));
    ok(&[
        "export",
        &s(&run_b),
        "-o",
        &s(&b_bpk),
        "--weights",
        "raw",
        "--safetensors",
        &s(&b_st),
    ]);
    let same = std::fs::read(&b_st).expect("b") == std::fs::read(&a_st).expect("a");
    assert!(same, "the warm-started weights differ from the file's");
    let (a_card, b_card) = (card(&path("a.json")), card(&path("b.json")));
    assert_eq!(b_card["steps_trained"], 1);
    let from = &b_card["initialised_from"];
    assert_eq!(from["sha256"], a_card["sha256"]);
    assert_eq!(from["steps_trained"], 20);
    assert_eq!(from["averaging"], "ema");
    assert_eq!(from["training_sessions"], a_card["training_sessions"]);
    let command = b_card["training_sessions"][0]["command"].to_string();
    assert!(command.contains("--init"), "{command}");

    // A run folder is a source too (its newest EMA weights), and the history chains; a
    // re-export of a weights file keeps it.
    train(
        &s(&run_c),
        &[
            "--steps",
            "3",
            "--checkpoint-every",
            "1",
            "--init",
            &s(&run_b),
        ],
        &tiny(&data),
    );
    let (c_bpk, c_st, c_raw_st) = (path("c.bpk"), path("c.st"), path("c-raw.st"));
    ok(&[
        "export",
        &s(&run_c),
        "-o",
        &s(&c_bpk),
        "--safetensors",
        &s(&c_st),
    ]);
    let (c_raw, raw_args) = (path("c-raw.bpk"), ["--weights", "raw", "--safetensors"]);
    ok(&[
        &["export", &s(&run_c), "-o", &s(&c_raw)][..],
        &raw_args,
        &[&s(&c_raw_st)],
    ]
    .concat());
    // The weights moved (a real learning rate); the average's first update (after step 1, as
    // ema-pytorch's) copied them, and the next comes after step 11 (every 10 by default).
    let read = |p: &std::path::Path| std::fs::read(p).expect("safetensors");
    assert!(
        read(&c_raw_st) != read(&a_st),
        "the raw weights did not move"
    );
    let record = |step, name| checkpoint_file(&run_c, step, name);
    assert!(
        record(3, "ema.bpk") == record(1, "model.bpk") && read(&c_st) != read(&a_st),
        "the average is not the weights after the first step"
    );
    let c16 = path("c16.bpk");
    ok(&["export", &s(&c_bpk), "-o", &s(&c16), "--f16"]);
    let c_card = card(&path("c16.json"));
    assert_eq!(c_card["steps_trained"], 3);
    let from = &c_card["initialised_from"];
    assert!(
        from["from"]
            .as_str()
            .is_some_and(|f| f.ends_with("step-000000001")),
        "{from}"
    );
    assert_eq!(from["sha256"], serde_json::Value::Null);
    assert_eq!(from["steps_trained"], 1);
    assert_eq!(from["initialised_from"]["steps_trained"], 20);
    assert_eq!(from["initialised_from"]["sha256"], a_card["sha256"]);

    // eval says the run's steps and those in all (3 + 1 + 20), of the folder and of the file.
    let heldout = bars_dataset(&path("heldout"), 4);
    for (model, name) in [(&run_c, "c-eval.json"), (&c16, "c16-eval.json")] {
        let report = path(name);
        let out = ok(&[
            "eval",
            &s(model),
            "--device",
            "cpu",
            "--heldout",
            &s(&heldout),
            "--nll-images",
            "2",
            "--nll-stride",
            "20",
            "--weights",
            "ema",
            "--out",
            &s(&report),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("at step 3 (24 in all, "), "{stdout}");
        let r = card(&report);
        assert_eq!(
            (r["step"].as_u64(), r["steps_in_all"].as_u64()),
            (Some(3), Some(24))
        );
    }
}

#[test]
fn init_refuses_a_run_with_checkpoints_another_model_other_classes_and_missing_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = bars_dataset(dir.path(), 16);
    let path = |name: &str| dir.path().join(name);
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let run = path("run");
    train(&s(&run), &["--steps", "2"], &tiny(&data));
    let weights = path("w.bpk");
    ok(&["export", &s(&run), "-o", &s(&weights)]);
    let attempt = |run: &str, init: &str, flags: &[String]| {
        let mut args = vec!["train", run, "--steps", "1", "--init", init];
        args.extend(flags.iter().map(String::as_str));
        fails(&args)
    };
    // The run folder already holds a run: --init would throw its checkpoints away.
    let err = attempt(&s(&run), &s(&weights), &tiny(&data));
    assert!(err.contains("--init starts a new one"), "{err}");
    let new = path("new");
    // Another model size.
    let wide: Vec<String> = tiny(&data)
        .into_iter()
        .map(|a| {
            if a == "model.dim=8" {
                "model.dim=16".into()
            } else {
                a
            }
        })
        .collect();
    let err = attempt(&s(&new), &s(&weights), &wide);
    assert!(err.contains("dim is 8 there, 16 here"), "{err}");
    // Weights whose card names other classes than the data's.
    let other = path("other.bpk");
    std::fs::copy(&weights, &other).expect("copy");
    let mut c = card(&path("w.json"));
    c["class_names"] = serde_json::json!(["cats", "dogs"]);
    std::fs::write(path("other.json"), c.to_string()).expect("write");
    let err = attempt(&s(&new), &s(&other), &tiny(&data));
    assert!(err.contains("other classes (cats, dogs there"), "{err}");
    // A file that is not there.
    let err = attempt(&s(&new), &s(&path("missing.bpk")), &tiny(&data));
    assert!(err.contains("missing.bpk: --init: no such"), "{err}");
    // None of them touched a folder.
    assert!(!new.exists());
    assert_eq!(losses(&run).len(), 2);
}
