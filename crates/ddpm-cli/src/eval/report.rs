//! What `ddpm eval` measured: a JSON report (kept in the model card) and a Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::args::{DEFAULT_BATCH, SamplerSpec};
use super::likelihood::{Blocks, Bound};

/// Everything one `ddpm eval` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run folder or weights file evaluated.
    pub model: String,
    /// Its training step, when known.
    pub step: Option<usize>,
    /// Its steps with those of the weights its run started from (`train --init`), where that
    /// differs from `step` (reports before 2026-12-08 lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_in_all: Option<usize>,
    /// SHA-256 of each weights file read, by weights (`ema`, `raw`): `export --eval` and
    /// `--extend` check that a report is of their weights (reports before 2026-12-07 lack it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights_sha256: BTreeMap<String, String>,
    /// The command that produced this report (program named `ddpm`).
    pub command: Vec<String>,
    /// The `ddpm eval --extend` commands that added rows to it since, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended_by: Vec<Vec<String>>,
    /// Where it ran.
    pub device: String,
    /// The held-out images (`mnist-test`: MNIST's test set, never trained on).
    pub heldout: String,
    /// The classifier's accuracy on all held-out images (none for a model it cannot judge).
    pub classifier_accuracy: Option<f64>,
    /// SHA-256 of the classifier's weights (judged models; reports before 2026-11-30 lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_sha256: Option<String>,
    /// The classifier's classes with their held-out images and its accuracy on them (judged
    /// models; reports before 2026-12-08 lack it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassReference>,
    /// Generated images per measure (judged models only).
    pub images: Option<usize>,
    /// Guidance scale of the class-conditional samples (judged models only).
    pub guidance: Option<f64>,
    /// Images per network call, which also decides each image's noise (reports before
    /// 2026-11-30 lack it: see [`Report::batch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// The sampling seed.
    pub seed: u64,
    /// Real against real: the distance a perfect model would reach (judged models only).
    pub floor: Option<Floor>,
    /// One row per weights and sampler (judged models only).
    pub samples: Vec<Row>,
    /// Bits/dim per weights.
    pub likelihood: Vec<Likelihood>,
    /// Wall time of the whole evaluation (of all its commands).
    pub seconds: f64,
}

/// The Fréchet distance between real images and the reference half of the held-out set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// Real images taken from the other half, as many as generated ones (FD depends on n).
    pub images: usize,
    /// Their distance to the reference half.
    pub fd: f64,
    /// Images in each half.
    pub halves: usize,
    /// The distance between the two whole halves.
    pub fd_halves: f64,
}

/// The measures of one weights × sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `ema` or `raw`.
    pub weights: String,
    /// `ddpm` or `ddim-K`.
    pub sampler: String,
    /// Fréchet distance of the class-conditional samples (classes in turn, with guidance).
    pub fd: Option<f64>,
    /// The fraction of class-conditional samples classified as the class asked for.
    pub accuracy: Option<f64>,
    /// The same per class of [`Report::classes`] (none for a class without samples).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accuracy_by_class: Vec<Option<f64>>,
    /// Fréchet distance of the unconditional samples (null class, no guidance).
    pub fd_unconditional: f64,
    /// Entropy of the classes predicted for the unconditional samples, in bits (log₂ 10 ≈
    /// 3.32 is each of ten classes equally often).
    pub class_entropy_bits: f64,
    /// Wall time of this row.
    pub seconds: f64,
}

impl Row {
    /// A row with nothing measured yet.
    pub fn new(weights: &str, sampler: SamplerSpec) -> Self {
        Self {
            weights: weights.into(),
            sampler: sampler.to_string(),
            fd: None,
            accuracy: None,
            accuracy_by_class: Vec::new(),
            fd_unconditional: f64::NAN,
            class_entropy_bits: f64::NAN,
            seconds: 0.0,
        }
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        format!(
            "{} {}: FD {} accuracy {} | unconditional FD {:.2} entropy {:.3} bits ({:.0} s)",
            self.weights,
            self.sampler,
            opt(self.fd, 2),
            percent(self.accuracy),
            self.fd_unconditional,
            self.class_entropy_bits,
            self.seconds
        )
    }
}

/// One of the classifier's classes in the held-out set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReference {
    /// Its name.
    pub class: String,
    /// Its held-out images.
    pub images: usize,
    /// The fraction of them the classifier names right (none without images).
    pub accuracy: Option<f64>,
}

/// The bound of one set of weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    /// `ema` or `raw`.
    pub weights: String,
    /// Its parts.
    #[serde(flatten)]
    pub bound: Bound,
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

fn percent(fraction: Option<f64>) -> String {
    fraction.map_or("–".into(), |a| format!("{:.1}%", 100.0 * a))
}

impl Report {
    /// Reads a `ddpm eval --out` report.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a `ddpm eval --out` report", path.display()))
    }

    /// Images per network call: recorded, else the `--batch` of its command, else the default
    /// of the time.
    pub fn batch(&self) -> usize {
        let flag = self.command.iter().enumerate().find_map(|(i, arg)| {
            match arg.strip_prefix("--batch") {
                Some("") => self.command.get(i + 1)?.parse().ok(),
                Some(value) => value.strip_prefix('=')?.parse().ok(),
                None => None,
            }
        });
        self.batch.or(flag).unwrap_or(DEFAULT_BATCH)
    }

    /// The samplers of its rows, in the order they first appear.
    pub fn samplers(&self) -> Vec<SamplerSpec> {
        let mut found = Vec::new();
        for spec in self.samples.iter().filter_map(|r| r.sampler.parse().ok()) {
            if !found.contains(&spec) {
                found.push(spec);
            }
        }
        found
    }

    /// Whether this report already measured `sampler` with `weights`.
    pub fn has_row(&self, weights: &str, sampler: &str) -> bool {
        self.samples
            .iter()
            .any(|r| r.weights == weights && r.sampler == sampler)
    }

    /// Whether this report already has the bits/dim of `weights`.
    pub fn has_bound(&self, weights: &str) -> bool {
        self.likelihood.iter().any(|l| l.weights == weights)
    }

    /// This report with the rows of `newer`, a `--extend` run on the same model, step, held-out
    /// set, seed and sampling settings, added: rows sorted by weights, then sampler (DDIM by
    /// steps, then `ddpm`); its command recorded in `extended_by`, its time added.
    pub fn extended(mut self, newer: Report) -> Self {
        self.extended_by.push(newer.command);
        self.extended_by.extend(newer.extended_by);
        if newer.device != self.device && !self.device.contains(&newer.device) {
            self.device = format!("{} + {}", self.device, newer.device);
        }
        self.weights_sha256.extend(newer.weights_sha256);
        if self.classes.is_empty() {
            self.classes = newer.classes;
        }
        self.samples.extend(newer.samples);
        let order = |r: &Row| {
            let steps = match r.sampler.parse::<SamplerSpec>() {
                Ok(SamplerSpec::Ddim(k)) => k,
                // All T steps: after every DDIM.
                Ok(SamplerSpec::Ddpm) => usize::MAX - 1,
                Err(_) => usize::MAX,
            };
            (r.weights.clone(), steps, r.sampler.clone())
        };
        self.samples.sort_by_cached_key(order);
        self.likelihood.extend(newer.likelihood);
        self.likelihood.sort_by(|a, b| a.weights.cmp(&b.weights));
        self.seconds += newer.seconds;
        self
    }

    /// The results as Markdown: the sample table, the floor and the bits/dim.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let mut step = self.step.map_or("?".into(), |s| s.to_string());
        if let Some(all) = self.steps_in_all {
            step += &format!(" ({all} in all, with the weights its run started from)");
        }
        if let Some(f) = &self.floor {
            let _ = writeln!(
                s,
                "{} at step {step}: {} generated images per cell, held-out `{}`, guidance {} for the class-conditional columns, seed {}\n",
                self.model,
                self.images.unwrap_or_default(),
                self.heldout,
                opt(self.guidance, 1),
                self.seed
            );
            self.sample_table(&mut s, f);
            self.accuracy_table(&mut s);
        } else {
            let _ = writeln!(
                s,
                "{} at step {step}: held-out `{}`, seed {} (not a model the classifier judges: bits/dim only)",
                self.model, self.heldout, self.seed
            );
        }
        for l in &self.likelihood {
            let b = &l.bound;
            let how = match (b.stride, b.blocks) {
                (1, _) => "all T terms".to_string(),
                (k, Blocks::Growing) => {
                    format!(
                        "one step per block of up to {k}, shorter near t = 1, unbiased estimate"
                    )
                }
                (k, Blocks::Even) => format!(
                    "one step per even block of {k}: unbiased, but the step drawn near t = 1 moves it, by about ±1 bit/dim at stride 20"
                ),
            };
            let _ = writeln!(
                s,
                "\nBits/dim ({} weights, {} held-out images, {how}): **{:.3}** = prior {:.4} + diffusion {:.3} + decoder {:.3}",
                l.weights, b.images, b.bits_per_dim, b.prior, b.diffusion, b.decoder
            );
        }
        self.class_table(&mut s);
        s
    }

    /// Bits/dim by class, one column per weights: where a model is weak.
    fn class_table(&self, s: &mut String) {
        let mut classes: Vec<(&str, usize)> = Vec::new();
        for c in self.likelihood.iter().flat_map(|l| &l.bound.by_class) {
            if !classes.iter().any(|(name, _)| *name == c.class) {
                classes.push((&c.class, c.images));
            }
        }
        if classes.is_empty() {
            return;
        }
        let weights: Vec<&str> = self.likelihood.iter().map(|l| l.weights.as_str()).collect();
        let _ = writeln!(
            s,
            "\n| class | held-out images | {} |",
            weights.join(" bits/dim | ") + " bits/dim"
        );
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(weights.len()));
        for (class, images) in classes {
            let cells: Vec<String> = self
                .likelihood
                .iter()
                .map(|l| {
                    let found = l.bound.by_class.iter().find(|c| c.class == class);
                    opt(found.map(|c| c.bits_per_dim), 3)
                })
                .collect();
            let _ = writeln!(s, "| {class} | {images} | {} |", cells.join(" | "));
        }
    }

    /// Class accuracy per class, one column per weights × sampler: which classes a model
    /// draws recognisably, beside how well the classifier knows the real ones.
    fn accuracy_table(&self, s: &mut String) {
        let rows: Vec<&Row> = self
            .samples
            .iter()
            .filter(|r| !r.accuracy_by_class.is_empty())
            .collect();
        if self.classes.is_empty() || rows.is_empty() {
            return;
        }
        let heads: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.weights, r.sampler))
            .collect();
        let _ = writeln!(
            s,
            "\n| class | held-out images | classifier on them | {} |",
            heads.join(" | ")
        );
        let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(rows.len()));
        for (k, c) in self.classes.iter().enumerate() {
            let cells: Vec<String> = rows
                .iter()
                .map(|r| percent(r.accuracy_by_class.get(k).copied().flatten()))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.class,
                c.images,
                percent(c.accuracy),
                cells.join(" | ")
            );
        }
    }

    fn sample_table(&self, s: &mut String, f: &Floor) {
        let _ = writeln!(
            s,
            "| weights | sampler | FD, class-conditional | class accuracy | FD, unconditional | class entropy (bits) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for r in &self.samples {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {:.3} |",
                r.weights,
                r.sampler,
                opt(r.fd, 2),
                percent(r.accuracy),
                r.fd_unconditional,
                r.class_entropy_bits
            );
        }
        let _ = writeln!(
            s,
            "| real images (floor) | – | {:.2} | {} | {:.2} | – |",
            f.fd,
            percent(self.classifier_accuracy),
            f.fd
        );
        let _ = writeln!(
            s,
            "\nFloor: {} real held-out images against the reference half; the two whole halves ({} each) are {:.2} apart. Class accuracy of the floor row: the classifier on all held-out images.",
            f.images, f.halves, f.fd_halves
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::likelihood::ClassBound;

    fn report(command: &str, device: &str, rows: &[(&str, &str)], bounds: &[&str]) -> Report {
        Report {
            model: "run".into(),
            step: Some(7),
            steps_in_all: None,
            weights_sha256: BTreeMap::new(),
            command: vec!["ddpm".into(), command.into()],
            extended_by: Vec::new(),
            device: device.into(),
            heldout: "mnist-test".into(),
            classifier_accuracy: Some(0.97),
            classifier_sha256: None,
            classes: Vec::new(),
            images: Some(20),
            guidance: Some(3.0),
            batch: None,
            seed: 0,
            floor: None,
            samples: rows
                .iter()
                .map(|&(w, s)| Row {
                    fd_unconditional: 30.0,
                    class_entropy_bits: 3.0,
                    ..Row::new(w, s.parse().expect("sampler"))
                })
                .collect(),
            likelihood: bounds
                .iter()
                .map(|&w| Likelihood {
                    weights: w.into(),
                    bound: Bound {
                        bits_per_dim: 1.0,
                        prior: 0.0,
                        diffusion: 0.5,
                        decoder: 0.5,
                        images: 6,
                        stride: 10,
                        blocks: Blocks::Growing,
                        by_class: Vec::new(),
                    },
                })
                .collect(),
            seconds: 2.0,
        }
    }

    #[test]
    fn an_extension_adds_its_rows_in_order_and_records_its_command() {
        let first = report(
            "a",
            "cpu (flex)",
            &[("raw", "ddim-10"), ("ema", "ddpm")],
            &["raw"],
        );
        let second = report(
            "b",
            "cpu (flex)",
            &[("ema", "ddim-100"), ("raw", "ddim-2")],
            &["ema"],
        );
        let third = report("c", "wgpu", &[("ema", "ddim-20")], &[]);
        let both = first.extended(second).extended(third);
        let rows: Vec<String> = both
            .samples
            .iter()
            .map(|r| format!("{} {}", r.weights, r.sampler))
            .collect();
        // By weights, then steps: ddim-100 before ddim-20 would be a string sort.
        assert_eq!(
            rows,
            [
                "ema ddim-20",
                "ema ddim-100",
                "ema ddpm",
                "raw ddim-2",
                "raw ddim-10"
            ]
        );
        let bounds: Vec<&str> = both.likelihood.iter().map(|l| l.weights.as_str()).collect();
        assert_eq!(bounds, ["ema", "raw"]);
        assert_eq!(both.command, ["ddpm", "a"]);
        assert_eq!(both.extended_by, [["ddpm", "b"], ["ddpm", "c"]]);
        assert_eq!(both.device, "cpu (flex) + wgpu");
        assert_eq!(both.seconds, 6.0);
        // A report from before `extended_by` existed still reads, and writes without it.
        let mut json = serde_json::to_value(&both).expect("json");
        json.as_object_mut().expect("object").remove("extended_by");
        let old: Report = serde_json::from_value(json).expect("old report");
        assert!(old.extended_by.is_empty());
        assert!(
            !serde_json::to_string(&old)
                .expect("json")
                .contains("extended_by")
        );
    }

    #[test]
    fn bits_per_dim_by_class_is_a_table_with_a_column_per_weights() {
        let mut both = report("a", "cpu (flex)", &[], &["ema", "raw"]);
        let class = |name: &str, images, bits_per_dim| ClassBound {
            class: name.into(),
            images,
            bits_per_dim,
        };
        both.likelihood[0].bound.by_class = vec![class("cat", 4, 2.5), class("dog", 2, 1.25)];
        both.likelihood[1].bound.by_class = vec![class("cat", 4, 3.0)];
        let table = both.markdown();
        let table = &table[table.find("| class").expect("a class table")..];
        assert_eq!(
            table,
            "| class | held-out images | ema bits/dim | raw bits/dim |\n|---|---|---|---|\n\
             | cat | 4 | 2.500 | 3.000 |\n| dog | 2 | 1.250 | – |\n"
        );
        let none = report("a", "cpu (flex)", &[], &["ema"]);
        assert!(!none.markdown().contains("| class"));
    }

    #[test]
    fn a_report_from_before_growing_blocks_reads_as_even_and_writes_as_it_was() {
        let mut old = serde_json::to_value(report("a", "cpu (flex)", &[], &["ema"])).expect("json");
        old["likelihood"][0]
            .as_object_mut()
            .expect("bound")
            .remove("blocks");
        let read: Report = serde_json::from_value(old.clone()).expect("an old report");
        assert_eq!(read.likelihood[0].bound.blocks, Blocks::Even);
        assert!(read.markdown().contains("even block of 10"));
        assert_eq!(serde_json::to_value(&read).expect("json"), old);
        let new = report("a", "cpu (flex)", &[], &["ema"]);
        let json = serde_json::to_value(&new).expect("json");
        assert_eq!(json["likelihood"][0]["blocks"], "growing");
        assert!(
            new.markdown()
                .contains("block of up to 10, shorter near t = 1")
        );
    }

    #[test]
    fn class_accuracy_is_a_table_with_a_column_per_row() {
        let mut r = report(
            "a",
            "cpu (flex)",
            &[("ema", "ddim-10"), ("raw", "ddpm")],
            &[],
        );
        r.floor = Some(Floor {
            images: 20,
            fd: 1.0,
            halves: 50,
            fd_halves: 0.5,
        });
        r.classes = vec![
            ClassReference {
                class: "cat".into(),
                images: 4,
                accuracy: Some(0.75),
            },
            ClassReference {
                class: "dog".into(),
                images: 0,
                accuracy: None,
            },
        ];
        r.samples[0].accuracy_by_class = vec![Some(0.5), Some(1.0)];
        r.samples[1].accuracy_by_class = vec![None, Some(0.25)];
        let markdown = r.markdown();
        let table = &markdown[markdown.find("| class |").expect("a class table")..];
        assert_eq!(
            table,
            "| class | held-out images | classifier on them | ema ddim-10 | raw ddpm |\n\
             |---|---|---|---|---|\n\
             | cat | 4 | 75.0% | 50.0% | – |\n| dog | 0 | – | 100.0% | 25.0% |\n"
        );
        // A report from before per-class accuracy reads without them and writes as it was.
        let mut old = serde_json::to_value(&r).expect("json");
        old.as_object_mut().expect("report").remove("classes");
        for row in old["samples"].as_array_mut().expect("rows") {
            row.as_object_mut()
                .expect("row")
                .remove("accuracy_by_class");
        }
        let read: Report = serde_json::from_value(old.clone()).expect("an old report");
        assert!(read.classes.is_empty() && !read.markdown().contains("| class |"));
        assert_eq!(serde_json::to_value(&read).expect("json"), old);
        // A warm-started model says its steps in all beside its run's.
        assert!(markdown.starts_with("run at step 7: "), "{markdown}");
        r.steps_in_all = Some(12);
        assert!(
            r.markdown()
                .starts_with("run at step 7 (12 in all, with the weights its run started from): "),
            "{}",
            r.markdown()
        );
    }
}
