//! Where the model runs: WebGPU when the browser has an adapter, else the CPU.

use burn::tensor::Device;
use ddpm::{ModelConfig, Unet};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::gpu::Gpu;
use crate::js_error;
use crate::options::RunOptions;
use crate::run::Run;

/// The device every model of a page (or worker) shares: one WebGPU device for all widgets.
#[wasm_bindgen]
pub struct Backend {
    device: Device,
    name: String,
    /// The WebGPU device burn runs on (`None` on the CPU), kept to watch it and for
    /// [`Backend::lose_device`].
    gpu: Option<Gpu>,
}

#[wasm_bindgen]
impl Backend {
    /// WebGPU when `prefer_gpu` and the browser returns an adapter, else burn's CPU backend;
    /// `name` says which (the adapter's name, or `CPU` with the reason for falling back). A
    /// module built without one of the two (the page loads one module per backend, see the
    /// crate's features) fails with the reason instead of falling back to it. On WebGPU the
    /// core's fused GPU kernels (a `Block`'s norm, FiLM and SiLU, the attentions' norms and
    /// softmaxes) run instead of burn's chains of small ones unless `gpu_kernels` is `false`.
    pub async fn create(prefer_gpu: bool, gpu_kernels: Option<bool>) -> Result<Backend, JsError> {
        let mut reason = None;
        if prefer_gpu {
            match Gpu::init(gpu_kernels != Some(false)).await {
                Ok((device, gpu)) => {
                    return Ok(Backend {
                        device,
                        name: format!("WebGPU ({})", gpu.adapter()),
                        gpu: Some(gpu),
                    });
                }
                Err(e) => reason = Some(e),
            }
        }
        Self::cpu(reason).map_err(js_error)
    }

    #[cfg(feature = "cpu")]
    fn cpu(no_gpu: Option<String>) -> Result<Backend, String> {
        Ok(Backend {
            device: Device::flex(),
            name: no_gpu.map_or_else(|| "CPU".into(), |e| format!("CPU (no WebGPU: {e})")),
            gpu: None,
        })
    }

    #[cfg(not(feature = "cpu"))]
    fn cpu(no_gpu: Option<String>) -> Result<Backend, String> {
        Err(no_gpu.unwrap_or_else(|| "this module is built without the CPU backend".into()))
    }

    /// Why the WebGPU device was lost (e.g. `Destroyed: …` or `Unknown: …` after a driver
    /// reset), or `undefined` while it works. Once lost it stays lost: the page moves its models
    /// to a CPU backend.
    #[wasm_bindgen(getter)]
    pub fn lost(&self) -> Option<String> {
        self.gpu.as_ref().and_then(Gpu::lost)
    }

    /// Destroys the WebGPU device, as a driver reset would lose it; what
    /// `WEBGL_lose_context.loseContext()` is for WebGL: a way to test the fallback. The loss is
    /// reported asynchronously through [`Backend::lost`]. Does nothing on the CPU.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        if let Some(gpu) = &self.gpu {
            gpu.destroy();
        }
    }

    /// What wgpu reports of the WebGPU adapter it got (`{ description, fallback,
    /// subgroupMinSize, subgroupMaxSize, backend }`), or `undefined` on the CPU.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> Result<JsValue, JsError> {
        match &self.gpu {
            Some(gpu) => serde_wasm_bindgen::to_value(gpu.info()).map_err(js_error),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// `WebGPU (adapter)` or `CPU (…)`.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Whether the model runs on WebGPU.
    #[wasm_bindgen(getter)]
    pub fn gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Whether the core's fused GPU kernels run (on WebGPU, unless `create` turned them off).
    #[wasm_bindgen(getter, js_name = gpuKernels)]
    pub fn gpu_kernels(&self) -> bool {
        self.gpu.as_ref().is_some_and(Gpu::kernels)
    }

    /// Loads the bytes of a weights file (`ddpm export`) onto this backend.
    pub fn load(&self, bytes: &[u8]) -> Result<Model, JsError> {
        let loaded = ddpm::weights::from_bytes(bytes, &self.device).map_err(js_error)?;
        Ok(Model {
            unet: loaded.model.for_sampling(),
            config: loaded.config,
            device: self.device.clone(),
        })
    }
}

/// A loaded model.
#[wasm_bindgen]
pub struct Model {
    unet: Unet,
    config: ModelConfig,
    device: Device,
}

/// What the page needs to know about a model to offer its controls.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfo {
    image_size: [usize; 2],
    channels: usize,
    num_classes: Option<usize>,
    timesteps: usize,
    parameters: usize,
}

#[wasm_bindgen]
impl Model {
    /// `{ imageSize: [h, w], channels, numClasses (null when unconditional), timesteps,
    /// parameters }`.
    pub fn info(&self) -> Result<JsValue, JsError> {
        use burn::module::Module;
        let info = ModelInfo {
            image_size: self.config.image_size,
            channels: self.config.unet.channels,
            num_classes: self.config.unet.num_classes,
            timesteps: self.config.diffusion.timesteps,
            parameters: self.unet.num_params(),
        };
        serde_wasm_bindgen::to_value(&info).map_err(js_error)
    }

    /// Checks the core's fused GPU kernels against burn's on this model and adapter (one
    /// small forward pass each way, read back asynchronously) and turns them off for the module
    /// where they fail or disagree: a kernel the adapter refuses, or runs wrong, would
    /// otherwise draw wrong images without an error. Resolves to `undefined` when they passed
    /// or do not run (the CPU, or turned off), else to why they failed (over several lines
    /// where it is burn's error).
    #[wasm_bindgen(js_name = checkKernels)]
    pub fn check_kernels(&self) -> js_sys::Promise {
        let (unet, device) = (self.unet.clone(), self.device.clone());
        let size = self.config.image_size;
        wasm_bindgen_futures::future_to_promise(async move {
            let why = crate::gpu::check_kernels(&unet, &device, size).await;
            Ok(why.map_or(JsValue::UNDEFINED, JsValue::from))
        })
    }

    /// Starts a reverse process; `options` is a [`RunOptions`] object (every key optional).
    pub fn run(&self, options: JsValue) -> Result<Run, JsError> {
        let options: RunOptions = if options.is_undefined() || options.is_null() {
            RunOptions::default()
        } else {
            // serde-wasm-bindgen reads only the fields it knows, so a misspelt key would be
            // ignored silently; name it instead.
            let object: &js_sys::Object = options.unchecked_ref();
            for key in js_sys::Object::keys(object) {
                let key = key.as_string().unwrap_or_default();
                if !RunOptions::KEYS.contains(&key.as_str()) {
                    return Err(js_error(format!(
                        "unknown option `{key}` (known: {})",
                        RunOptions::KEYS.join(", ")
                    )));
                }
            }
            serde_wasm_bindgen::from_value(options).map_err(js_error)?
        };
        Run::new(&self.unet, &self.config, &options, &self.device).map_err(js_error)
    }
}
