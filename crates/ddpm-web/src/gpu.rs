//! The WebGPU device, in a module built with the `webgpu` feature; without it there is none
//! (an uninhabited type), and the CPU module carries no wgpu code at all.

use serde::Serialize;

#[cfg(feature = "webgpu")]
pub(crate) use webgpu::{Gpu, check_kernels};

#[cfg(not(feature = "webgpu"))]
pub(crate) use none::{Gpu, check_kernels};

/// What wgpu reports of the adapter it got. In a browser wgpu fills only these (the rest of
/// `GPUAdapterInfo`, e.g. vendor and architecture, it leaves empty); the page keys its cache of
/// passed kernel checks on them (web/loading.js).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(not(feature = "webgpu"), allow(dead_code))] // never made without WebGPU
pub(crate) struct AdapterInfo {
    description: String,
    /// A software or fallback adapter (wgpu's `DeviceType::Cpu`).
    fallback: bool,
    subgroup_min_size: u32,
    subgroup_max_size: u32,
    backend: String,
}

#[cfg(feature = "webgpu")]
mod webgpu {
    use std::sync::{Arc, OnceLock};

    use burn::tensor::Device;
    use burn::tensor::wgpu::wgpu;
    use ddpm::Unet;

    use super::AdapterInfo;

    /// The WebGPU device burn runs on.
    pub(crate) struct Gpu {
        device: wgpu::Device,
        adapter: String,
        info: AdapterInfo,
        /// Why the device was lost, once it is.
        lost: Arc<OnceLock<String>>,
    }

    impl Gpu {
        /// burn's device on the browser's adapter, or why there is none; the core's fused GPU
        /// kernels (`ddpm::gpu`) run on it if `kernels`. Their switch is the whole module's,
        /// which holds one backend (the page gives each backend its own worker).
        pub(crate) async fn init(kernels: bool) -> Result<(Device, Gpu), String> {
            ddpm::gpu::set_enabled(kernels);
            let (device, setup) = Device::wgpu_options()
                .init_with_setup_async()
                .await
                .map_err(|e| e.to_string())?;
            // Browsers may hide the adapter's description; the page adds vendor and
            // architecture from `GPUAdapterInfo` when it has them.
            let got = setup.adapter.get_info();
            let info = AdapterInfo {
                description: got.name.clone(),
                fallback: got.device_type == wgpu::DeviceType::Cpu,
                subgroup_min_size: got.subgroup_min_size,
                subgroup_max_size: got.subgroup_max_size,
                backend: got.backend.to_string(),
            };
            let adapter = if got.name.is_empty() {
                "adapter".to_string()
            } else {
                got.name
            };
            let lost = Arc::new(OnceLock::new());
            watch(&setup.device, &lost);
            let gpu = Gpu {
                device: setup.device,
                adapter,
                info,
                lost,
            };
            Ok((device, gpu))
        }

        pub(crate) fn adapter(&self) -> &str {
            &self.adapter
        }

        pub(crate) fn info(&self) -> &AdapterInfo {
            &self.info
        }

        pub(crate) fn lost(&self) -> Option<String> {
            self.lost.get().cloned()
        }

        pub(crate) fn kernels(&self) -> bool {
            ddpm::gpu::enabled()
        }

        pub(crate) fn destroy(&self) {
            self.device.destroy();
        }
    }

    /// The core's fused kernels checked against burn's on `unet` (`ddpm::gpu::verify`), and
    /// turned off for the module where they fail: `Some(why)` then. Passes where they do not
    /// run (the CPU, or turned off).
    pub(crate) async fn check_kernels(
        unet: &Unet,
        device: &Device,
        image_size: [usize; 2],
    ) -> Option<String> {
        let why = ddpm::gpu::verify::check_sampling_async(unet, device, image_size)
            .await
            .err()?;
        ddpm::gpu::set_enabled(false);
        Some(why)
    }

    /// Records the reason when the browser reports the device lost. Browsers resolve the
    /// device's `lost` promise for every listener, so this runs beside burn's own watch of the
    /// device (which then fails every later read-back). Natively wgpu keeps one callback per
    /// device, which burn's must stay, so there the loss is only seen through burn's errors.
    fn watch(device: &wgpu::Device, lost: &Arc<OnceLock<String>>) {
        if cfg!(target_family = "wasm") {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                let _ = lost.set(format!("{reason:?}: {message}"));
            });
        }
    }
}

#[cfg(not(feature = "webgpu"))]
mod none {
    use burn::tensor::Device;
    use ddpm::Unet;

    use super::AdapterInfo;

    /// No kernels to check without WebGPU.
    pub(crate) async fn check_kernels(
        _unet: &Unet,
        _device: &Device,
        _image_size: [usize; 2],
    ) -> Option<String> {
        None
    }

    /// No WebGPU in this module: no value of this type exists.
    pub(crate) enum Gpu {}

    impl Gpu {
        pub(crate) async fn init(_kernels: bool) -> Result<(Device, Gpu), String> {
            Err("this module is built without WebGPU".into())
        }

        pub(crate) fn adapter(&self) -> &str {
            match *self {}
        }

        pub(crate) fn info(&self) -> &AdapterInfo {
            match *self {}
        }

        pub(crate) fn lost(&self) -> Option<String> {
            match *self {}
        }

        pub(crate) fn kernels(&self) -> bool {
            match *self {}
        }

        pub(crate) fn destroy(&self) {
            match *self {}
        }
    }
}
