//! The options of a run as JavaScript passes them, checked with the CLI's rules.

use ddpm::{ClassChoice, DdpmVariance, SamplerConfig, SamplerKind};
use serde::{Deserialize, Serialize};

/// How to sample; every key is optional (JavaScript names in camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RunOptions {
    /// `"ddim"` (default) or `"ddpm"`.
    pub sampler: String,
    /// DDIM steps (DDPM always takes T).
    pub steps: usize,
    /// DDIM's η (0 = deterministic).
    pub eta: f64,
    /// Fixes x_T and every injected noise: the CLI's `--seed`.
    pub seed: u64,
    /// Number of images.
    pub n: usize,
    /// For class-conditional models: a class index for every image, `"mixed"` (default: the
    /// images cycle through the classes) or `"none"` (the null class, unconditional).
    pub class: ClassOption,
    /// Classifier-free guidance scale (1 = none).
    pub guidance: f64,
    /// Grid columns (default: a square).
    pub columns: Option<usize>,
    /// Only images `[start, end)` of the `n`, with exactly the noise and labels they get in
    /// the whole run (default: all of them): each worker of a pool runs one part.
    pub part: Option<[usize; 2]>,
}

/// Which class each image gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassOption {
    /// The same class for every image.
    Index(usize),
    /// `"mixed"` or `"none"`.
    Named(String),
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            sampler: "ddim".into(),
            steps: 50,
            eta: 0.0,
            seed: 0,
            n: 16,
            class: ClassOption::Named("mixed".into()),
            guidance: 1.0,
            columns: None,
            part: None,
        }
    }
}

impl RunOptions {
    /// The keys a JavaScript options object may have.
    pub const KEYS: [&'static str; 9] = [
        "sampler", "steps", "eta", "seed", "n", "class", "guidance", "columns", "part",
    ];

    /// The sampler configuration and the labels, checked against the model (the same rules as
    /// the CLI's `sample`).
    pub fn resolve(
        &self,
        num_classes: Option<usize>,
    ) -> Result<(SamplerConfig, Option<Vec<usize>>), String> {
        let kind = match self.sampler.as_str() {
            "ddpm" => SamplerKind::Ddpm {
                variance: DdpmVariance::Posterior,
            },
            "ddim" => SamplerKind::Ddim {
                steps: self.steps,
                eta: self.eta,
            },
            other => {
                return Err(format!(
                    "sampler must be \"ddpm\" or \"ddim\", got {other:?}"
                ));
            }
        };
        if !(1..=256).contains(&self.n) {
            return Err(format!("n must be between 1 and 256, got {}", self.n));
        }
        let choice = match &self.class {
            ClassOption::Index(k) => ClassChoice::Fixed(*k),
            ClassOption::Named(name) if name == "mixed" => ClassChoice::Mixed,
            ClassOption::Named(name) if name == "none" => ClassChoice::Null,
            ClassOption::Named(name) => {
                return Err(format!(
                    "class must be a class index, \"mixed\" or \"none\", got {name:?}"
                ));
            }
        };
        let classes = choice
            .labels(num_classes, self.n)
            .map_err(|e| e.to_string())?;
        let config = SamplerConfig {
            kind,
            guidance_scale: self.guidance,
            ..SamplerConfig::default()
        };
        Ok((config, classes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Result<RunOptions, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn options_resolve_like_the_cli() {
        let o = options(r#"{"sampler":"ddim","steps":10,"class":3,"n":4,"guidance":2}"#)
            .expect("parse");
        let (config, classes) = o.resolve(Some(10)).expect("resolve");
        assert_eq!(
            config.kind,
            SamplerKind::Ddim {
                steps: 10,
                eta: 0.0
            }
        );
        assert_eq!(config.guidance_scale, 2.0);
        assert_eq!(classes, Some(vec![3; 4]));
        let (_, classes) = options(r#"{"n":12}"#)
            .expect("parse")
            .resolve(Some(10))
            .expect("mixed");
        assert_eq!(classes, Some((0..12).map(|i| i % 10).collect()));
        let (_, classes) = options(r#"{"class":"none"}"#)
            .expect("parse")
            .resolve(Some(10))
            .expect("none");
        assert_eq!(classes, None);
        let (config, _) = options(r#"{"sampler":"ddpm"}"#)
            .expect("parse")
            .resolve(None)
            .expect("ddpm");
        assert!(matches!(config.kind, SamplerKind::Ddpm { .. }));
    }

    #[test]
    fn the_known_keys_are_the_fields() {
        let json = serde_json::to_value(RunOptions::default()).expect("json");
        let mut fields: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = RunOptions::KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    #[test]
    fn bad_options_are_named() {
        let err = |json: &str, classes| options(json).and_then(|o| o.resolve(classes).map(|_| ()));
        assert!(
            err(r#"{"sampler":"euler"}"#, None)
                .expect_err("sampler")
                .contains("euler")
        );
        assert!(
            err(r#"{"class":10}"#, Some(10))
                .expect_err("range")
                .contains("10 classes, 0 to 9")
        );
        assert!(
            err(r#"{"class":1}"#, None)
                .expect_err("uncond")
                .contains("not class-conditional")
        );
        assert!(
            err(r#"{"class":"cats"}"#, Some(2))
                .expect_err("name")
                .contains("cats")
        );
        assert!(
            err(r#"{"n":0}"#, None)
                .expect_err("n")
                .contains("n must be")
        );
        assert!(
            err(r#"{"stepz":3}"#, None)
                .expect_err("unknown")
                .contains("stepz")
        );
    }
}
