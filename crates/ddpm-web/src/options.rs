//! The options of a run as JavaScript passes them, checked with the CLI's rules.

use burn::tensor::Device;
use ddpm::steer::{self, Kept, Steer};
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
    /// Start from this image (values in [−1, 1], channel-major: `c·h·w` for every image, or
    /// `n·c·h·w`, one per image): with `strength`, finish it (SDEdit); with `mask`, fill in
    /// what the mask does not keep (RePaint). The CLI's `--init`.
    pub init: Option<Vec<f32>>,
    /// How much of `init` to redo, in [0, 1] (default 0.6): 0 returns it, 1 ignores it.
    pub strength: Option<f64>,
    /// Inpainting mask for `init`: `h·w` values (or `n·h·w`), 1 keeps, 0 is generated.
    pub mask: Option<Vec<f32>>,
    /// RePaint's jump length (with `mask`).
    pub resample_jump: usize,
    /// RePaint's repeats (with `mask`; 1: plain replacement).
    pub resample_repeats: usize,
    /// `[seedA, seedB]`: images whose starting noise is the spherical interpolation of the two
    /// seeds' (DDIM with η = 0); replaces `seed`.
    pub interpolate: Option<[u64; 2]>,
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
            init: None,
            strength: None,
            mask: None,
            resample_jump: 1,
            resample_repeats: 1,
            interpolate: None,
        }
    }
}

impl RunOptions {
    /// The keys a JavaScript options object may have.
    pub const KEYS: [&'static str; 15] = [
        "sampler",
        "steps",
        "eta",
        "seed",
        "n",
        "class",
        "guidance",
        "columns",
        "part",
        "init",
        "strength",
        "mask",
        "resampleJump",
        "resampleRepeats",
        "interpolate",
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

impl RunOptions {
    /// How the run is steered, for images `[c, h, w]`, and its seed (interpolation's first
    /// seed replaces `seed`), with the CLI's rules for combining the options.
    pub fn steer(&self, image: [usize; 3], device: &Device) -> Result<(Steer, u64), String> {
        let needs_init = |key: &str| format!("{key} needs an init image to work on");
        if let Some([a, b]) = self.interpolate {
            if self.init.is_some() {
                return Err("interpolate starts from noise: it cannot take an init image".into());
            }
            return Ok((Steer::Interpolate { other: b }, a));
        }
        let Some(init) = &self.init else {
            return match (self.strength, &self.mask) {
                (Some(_), _) => Err(needs_init("strength")),
                (_, Some(_)) => Err(needs_init("mask")),
                _ => Ok((Steer::None, self.seed)),
            };
        };
        if let Some(bad) = init.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
            return Err(format!("init values must be in [−1, 1], got {bad}"));
        }
        let [c, h, w] = image;
        let batch = |what: &str, values: &[f32], c: usize| {
            steer::batch(values, self.n, [c, h, w], device).ok_or_else(|| {
                format!(
                    "{what} has {} values; the model's images need {} ({c}×{h}×{w}), or {} for all {} images",
                    values.len(),
                    c * h * w,
                    self.n * c * h * w,
                    self.n
                )
            })
        };
        let image = batch("init", init, c)?;
        let steer = match &self.mask {
            Some(mask) => {
                if self.strength.is_some() {
                    return Err("strength is for finishing an image; a mask fills one in".into());
                }
                let keep: Vec<f32> = mask
                    .iter()
                    .map(|&v| if v >= 0.5 { 1.0 } else { 0.0 })
                    .collect();
                match Kept::of(&keep) {
                    Kept::Part => {}
                    whole => {
                        return Err(format!(
                            "the mask keeps {} of the image; it needs 1 to keep and 0 to fill",
                            if whole == Kept::All { "all" } else { "nothing" }
                        ));
                    }
                }
                Steer::Inpaint {
                    image,
                    mask: batch("mask", &keep, 1)?,
                    jump: self.resample_jump,
                    repeats: self.resample_repeats,
                }
            }
            None => Steer::Edit {
                image,
                strength: self.strength.unwrap_or(0.6),
            },
        };
        Ok((steer, self.seed))
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

    /// The steering a JSON options object asks for, for 2 images of 1×2×2.
    fn steer_of(json: &str) -> Result<(Steer, u64), String> {
        options(json)?.steer([1, 2, 2], &burn::tensor::Device::flex())
    }

    #[test]
    fn steering_options_become_the_cores_steer() {
        let image = "[-1, 0.5, 1, 0]";
        match steer_of(&format!(r#"{{"n":2,"init":{image}}}"#)) {
            Ok((Steer::Edit { image, strength }, 0)) => {
                assert_eq!(image.dims(), [2, 1, 2, 2]);
                assert_eq!(strength, 0.6);
            }
            other => panic!("{other:?}"),
        }
        let json = format!(
            r#"{{"n":2,"init":{image},"mask":[1,1,0,0,1,0,1,0],"resampleJump":2,"resampleRepeats":3}}"#
        );
        match steer_of(&json) {
            Ok((
                Steer::Inpaint {
                    mask,
                    jump: 2,
                    repeats: 3,
                    ..
                },
                _,
            )) => {
                assert_eq!(mask.dims(), [2, 1, 2, 2]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            steer_of(r#"{"seed":5,"interpolate":[3,9]}"#),
            Ok((Steer::Interpolate { other: 9 }, 3))
        ));
        assert!(matches!(steer_of(r#"{"seed":5}"#), Ok((Steer::None, 5))));
    }

    #[test]
    fn bad_steering_is_named() {
        let err = |json: &str| steer_of(json).expect_err(json);
        assert!(err(r#"{"strength":0.5}"#).contains("strength needs an init image"));
        assert!(err(r#"{"mask":[1,0,0,0]}"#).contains("mask needs an init image"));
        assert!(err(r#"{"init":[0,0,0]}"#).contains("init has 3 values"));
        assert!(err(r#"{"init":[0,0,0,2]}"#).contains("in [−1, 1], got 2"));
        assert!(err(r#"{"init":[0,0,0,0],"mask":[1,1,1,1]}"#).contains("keeps all"));
        assert!(err(r#"{"init":[0,0,0,0],"mask":[0,0,0,0]}"#).contains("keeps nothing"));
        assert!(err(r#"{"init":[0,0,0,0],"mask":[1,0]}"#).contains("mask has 2 values"));
        assert!(
            err(r#"{"init":[0,0,0,0],"mask":[1,0,0,0],"strength":0.3}"#)
                .contains("strength is for")
        );
        assert!(err(r#"{"init":[0,0,0,0],"interpolate":[1,2]}"#).contains("cannot take an init"));
    }
}
