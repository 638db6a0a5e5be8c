//! One reverse process in the browser: the core crate's [`Sampler`] driven one step per call,
//! each step's image read back asynchronously as an RGBA grid.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use ddpm::{
    ClassChoice, DdpmVariance, GaussianDiffusion, ModelConfig, SampleRequest, Sampler,
    SamplerConfig, SamplerKind, Unet,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::js_error;

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
        }
    }
}

impl RunOptions {
    /// The keys a JavaScript options object may have.
    pub const KEYS: [&'static str; 8] = [
        "sampler", "steps", "eta", "seed", "n", "class", "guidance", "columns",
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

/// One denoising step's picture.
#[wasm_bindgen]
pub struct Frame {
    /// 1-based number of steps done.
    #[wasm_bindgen(readonly)]
    pub step: usize,
    /// The diffusion time t the network was evaluated at.
    #[wasm_bindgen(readonly)]
    pub t: usize,
    /// Grid width in pixels.
    #[wasm_bindgen(readonly)]
    pub width: usize,
    /// Grid height in pixels.
    #[wasm_bindgen(readonly)]
    pub height: usize,
    pixels: Vec<u8>,
}

#[wasm_bindgen]
impl Frame {
    /// RGBA bytes, row after row (for `ImageData`).
    #[wasm_bindgen(getter)]
    pub fn pixels(&self) -> js_sys::Uint8ClampedArray {
        js_sys::Uint8ClampedArray::from(self.pixels.as_slice())
    }
}

struct State {
    sampler: Sampler,
    unet: Unet,
    shape: [usize; 4],
    columns: usize,
}

/// A reverse process in progress.
#[wasm_bindgen]
pub struct Run {
    state: Rc<RefCell<State>>,
    total: usize,
}

impl Run {
    pub(crate) fn new(
        unet: &Unet,
        config: &ModelConfig,
        options: &RunOptions,
        device: &Device,
    ) -> Result<Run, String> {
        let (sampler_config, classes) = options.resolve(config.unet.num_classes)?;
        let [h, w] = config.image_size;
        let shape = [options.n, config.unet.channels, h, w];
        let diffusion = GaussianDiffusion::new(config.diffusion.clone());
        let request = SampleRequest {
            seed: options.seed,
            shape,
            classes,
        };
        let sampler = Sampler::new(&diffusion, sampler_config, request, unet, device)
            .map_err(|e| e.to_string())?;
        let total = sampler.total_steps();
        let columns = options
            .columns
            .unwrap_or_else(|| ddpm::grid::square_columns(options.n));
        let state = State {
            sampler,
            unet: unet.clone(),
            shape,
            columns,
        };
        Ok(Run {
            state: Rc::new(RefCell::new(state)),
            total,
        })
    }
}

async fn read(tensor: Tensor<4>) -> Result<Vec<f32>, JsError> {
    let data = tensor.into_data_async().await.map_err(js_error)?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| js_error(format!("{e:?}")))
}

#[wasm_bindgen]
impl Run {
    /// Steps in all.
    #[wasm_bindgen(getter)]
    pub fn total(&self) -> usize {
        self.total
    }

    /// Steps done so far.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> usize {
        self.state.borrow().sampler.steps_done()
    }

    /// Runs one denoising step and resolves to the [`Frame`] of x_t (`view = "x"`) or of the
    /// predicted x₀ (`view = "x0"`), or to the number of steps done without reading anything
    /// back (`view = "none"`); resolves to `undefined` when the run is over. Only the viewed
    /// tensor is read back, asynchronously.
    pub fn step(&self, view: String) -> Result<js_sys::Promise, JsError> {
        if !matches!(view.as_str(), "x" | "x0" | "none") {
            return Err(js_error(format!(
                "view must be \"x\", \"x0\" or \"none\", got {view:?}"
            )));
        }
        let (tensor, step, t, shape, columns) = {
            let mut state = self.state.borrow_mut();
            let State { sampler, unet, .. } = &mut *state;
            let Some(step) = sampler.step(unet) else {
                return Ok(js_sys::Promise::resolve(&JsValue::UNDEFINED));
            };
            if view == "none" {
                let done = JsValue::from(step.index + 1);
                return Ok(js_sys::Promise::resolve(&done));
            }
            let tensor = if view == "x" { step.x } else { step.x_start };
            (tensor, step.index + 1, step.t, state.shape, state.columns)
        };
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let values = read(tensor).await?;
            let grid = ddpm::grid::grid(&values, shape, columns);
            Ok(Frame {
                step,
                t,
                width: grid.width,
                height: grid.height,
                pixels: grid.pixels,
            }
            .into())
        }))
    }

    /// The current sample x_t (the final images once the run is over) as raw values in
    /// [−1, 1], `[n, c, h, w]` in row-major order: resolves to a `Float32Array`.
    pub fn values(&self) -> js_sys::Promise {
        let tensor = self.state.borrow().sampler.sample().clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let values = read(tensor).await?;
            Ok(js_sys::Float32Array::from(values.as_slice()).into())
        })
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
