//! One reverse process in the browser: the core crate's [`Sampler`] driven one step per call,
//! each step's image read back asynchronously as an RGBA grid.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use ddpm::{GaussianDiffusion, ModelConfig, SampleRequest, Sampler, Unet};
use wasm_bindgen::prelude::*;

use crate::js_error;
use crate::options::RunOptions;

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
    /// This run's images (its part of the batch).
    shape: [usize; 4],
    columns: usize,
}

/// A reverse process in progress.
#[wasm_bindgen]
pub struct Run {
    state: Rc<RefCell<State>>,
    total: usize,
    /// The whole batch `[n, c, h, w]`, of which this run may be a part.
    batch_shape: [usize; 4],
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
        let batch_shape = [options.n, config.unet.channels, h, w];
        let part = options.part.map_or(0..options.n, |[start, end]| start..end);
        let shape = [part.len(), config.unet.channels, h, w];
        let diffusion = GaussianDiffusion::new(config.diffusion.clone());
        let (steer, seed) = options.steer([config.unet.channels, h, w], device)?;
        let request = SampleRequest {
            seed,
            shape: batch_shape,
            classes,
        };
        let sampler = Sampler::new_steered(
            &diffusion,
            sampler_config,
            request,
            steer,
            part,
            unet,
            device,
        )
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
            batch_shape,
        })
    }
}

/// A step taken and the tensor to read back: x_t or x̂₀, the 1-based step number, its t.
type Viewed = (Tensor<4>, usize, usize);

impl Run {
    /// Takes one step; `view` is "x", "x0" or "none". The tensor to read back, or the promise
    /// [`Run::step`] resolves to without reading anything: `undefined` when the run was already
    /// over, the number of steps done for view "none".
    fn advance(&self, view: &str) -> Result<Result<Viewed, js_sys::Promise>, JsError> {
        if !matches!(view, "x" | "x0" | "none") {
            return Err(js_error(format!(
                "view must be \"x\", \"x0\" or \"none\", got {view:?}"
            )));
        }
        let mut state = self.state.borrow_mut();
        let State { sampler, unet, .. } = &mut *state;
        let Some(step) = sampler.step(unet) else {
            return Ok(Err(js_sys::Promise::resolve(&JsValue::UNDEFINED)));
        };
        let done = step.index + 1;
        Ok(match view {
            "none" => Err(js_sys::Promise::resolve(&JsValue::from(done))),
            "x" => Ok((step.x, done, step.t)),
            _ => Ok((step.x_start, done, step.t)),
        })
    }
}

impl Frame {
    fn of(step: usize, t: usize, values: &[f32], shape: [usize; 4], columns: usize) -> Frame {
        let grid = ddpm::grid::grid(values, shape, columns);
        Frame {
            step,
            t,
            width: grid.width,
            height: grid.height,
            pixels: grid.pixels,
        }
    }
}

/// The RGBA grid of a whole batch whose parts a pool of workers sampled: `values` are the
/// parts' values joined in order (`shape = [n, c, h, w]`), laid out as one run's [`Frame`].
#[wasm_bindgen]
pub fn grid(
    step: usize,
    t: usize,
    values: &[f32],
    shape: Vec<usize>,
    columns: usize,
) -> Result<Frame, JsError> {
    let [n, c, h, w] = shape[..] else {
        return Err(js_error(format!(
            "shape must be [n, c, h, w], got {shape:?}"
        )));
    };
    if values.len() != n * c * h * w || !(c == 1 || c == 3) {
        return Err(js_error(format!(
            "{} values do not make a batch of shape {shape:?} (1 or 3 channels)",
            values.len()
        )));
    }
    Ok(Frame::of(step, t, values, [n, c, h, w], columns))
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

    /// The whole batch's shape `[n, c, h, w]` (also when this run is a part of it).
    #[wasm_bindgen(getter)]
    pub fn shape(&self) -> Vec<usize> {
        self.batch_shape.to_vec()
    }

    /// Columns of the whole batch's grid.
    #[wasm_bindgen(getter)]
    pub fn columns(&self) -> usize {
        self.state.borrow().columns
    }

    /// Runs one denoising step and resolves to the [`Frame`] of x_t (`view = "x"`) or of the
    /// predicted x₀ (`view = "x0"`), or to the number of steps done without reading anything
    /// back (`view = "none"`); resolves to `undefined` when the run is over. Only the viewed
    /// tensor is read back, asynchronously.
    pub fn step(&self, view: String) -> Result<js_sys::Promise, JsError> {
        let (tensor, step, t) = match self.advance(&view)? {
            Ok(viewed) => viewed,
            Err(resolved) => return Ok(resolved),
        };
        let (shape, columns) = {
            let state = self.state.borrow();
            (state.shape, state.columns)
        };
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let values = read(tensor).await?;
            Ok(Frame::of(step, t, &values, shape, columns).into())
        }))
    }

    /// As [`Run::step`], but resolves to `{ step, t, values }`: the viewed tensor's raw values
    /// (a `Float32Array`, `[part, c, h, w]`) for a pool to join into the whole batch's grid
    /// ([`grid`]).
    #[wasm_bindgen(js_name = stepValues)]
    pub fn step_values(&self, view: String) -> Result<js_sys::Promise, JsError> {
        let (tensor, step, t) = match self.advance(&view)? {
            Ok(viewed) => viewed,
            Err(resolved) => return Ok(resolved),
        };
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let values = read(tensor).await?;
            let object = js_sys::Object::new();
            for (key, value) in [
                ("step", JsValue::from(step)),
                ("t", JsValue::from(t)),
                (
                    "values",
                    js_sys::Float32Array::from(values.as_slice()).into(),
                ),
            ] {
                js_sys::Reflect::set(&object, &key.into(), &value)?;
            }
            Ok(object.into())
        }))
    }

    /// The current sample x_t (the final images once the run is over) as raw values in
    /// [−1, 1], `[n, c, h, w]` (this run's images: its part of the batch when it is one) in
    /// row-major order: resolves to a `Float32Array`.
    pub fn values(&self) -> js_sys::Promise {
        let tensor = self.state.borrow().sampler.sample().clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let values = read(tensor).await?;
            Ok(js_sys::Float32Array::from(values.as_slice()).into())
        })
    }
}
