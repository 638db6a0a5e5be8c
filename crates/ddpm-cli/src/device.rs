//! Where the tensors live: a GPU through burn's wgpu backend (Vulkan, Metal, DX12) or, when built
//! with the `cuda` feature, burn's CUDA backend; else burn's CPU backend (flex). `auto` prefers a
//! real GPU (CUDA first when built in) and falls back to the CPU with a notice.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// A GPU (CUDA when built in, then wgpu) when there is one, else the CPU.
    Auto,
    /// wgpu, whatever adapter it finds (also a software one such as lavapipe).
    Wgpu,
    /// burn's CUDA backend, first device (needs the `cuda` cargo feature and NVIDIA's driver).
    Cuda,
    /// burn's CPU backend.
    Cpu,
}

/// The chosen device and a line saying what it is.
pub struct Selected {
    /// Where tensors go.
    pub device: Device,
    /// e.g. `wgpu: NVIDIA H200 (Vulkan)` or `cpu (flex)`.
    pub description: String,
}

/// The names `BURN_DEVICE` may take in this build.
const BURN_DEVICES: &[&str] = &[
    "flex",
    "wgpu",
    #[cfg(feature = "vulkan")]
    "vulkan",
];

/// Sets burn's default device before any thread starts. burn makes one wherever a caller
/// names no device (loading Adam's state is such a place): for a command asked to run on the
/// CPU that is the CPU, not a GPU started beside it; and a `BURN_DEVICE` this build lacks,
/// which burn would panic on there, is refused at once.
// `set_var` is unsafe since other threads may read the environment at the same time; there
// are none yet when `main` calls this, and burn offers no other way to set its default.
#[allow(unsafe_code)]
pub fn pin_default(choice: Option<DeviceChoice>) -> Result<()> {
    // Commands without `--device` (export, import, info) compute nowhere but on the CPU's
    // named device, so the variable is theirs to ignore.
    if choice.is_none() {
        return Ok(());
    }
    match std::env::var("BURN_DEVICE") {
        Ok(name) if !BURN_DEVICES.contains(&name.to_lowercase().as_str()) => bail!(
            "BURN_DEVICE={name:?}: this build knows {}",
            BURN_DEVICES.join(", ")
        ),
        Ok(_) => Ok(()),
        Err(_) => {
            if choice == Some(DeviceChoice::Cpu) {
                // SAFETY: called first thing in `main`, while this is the only thread.
                unsafe { std::env::set_var("BURN_DEVICE", "flex") };
            }
            Ok(())
        }
    }
}

/// Picks the device; prints a notice when `auto` falls back to the CPU.
pub fn select(choice: DeviceChoice) -> Result<Selected> {
    // The core reads DDPM_GPU_KERNELS itself and takes only "1" for on: a value it would
    // ignore is refused here rather than silently measured as "off".
    for variable in ["DDPM_GPU_KERNELS", "DDPM_HALF_CONVS"] {
        if let Ok(value) = std::env::var(variable)
            && value != "0"
            && value != "1"
        {
            bail!("{variable} must be 0 or 1, not {value:?}");
        }
    }
    let cpu = || Selected {
        device: Device::flex(),
        description: "cpu (flex)".into(),
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Wgpu => gpu::init(true),
        DeviceChoice::Cuda => cuda::init(),
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda")
                && let Ok(selected) = cuda::init()
            {
                return Ok(selected);
            }
            match gpu::init(false) {
                Ok(selected) => Ok(selected),
                Err(why) => {
                    eprintln!("notice: no GPU ({why:#}); running on the CPU");
                    Ok(cpu())
                }
            }
        }
    }
}

#[cfg(feature = "wgpu")]
mod gpu {
    use anyhow::{Result, bail};
    use burn::tensor::Device;
    use burn::tensor::wgpu::wgpu::DeviceType;

    use super::Selected;

    /// Initialises wgpu; unless `accept_software`, a CPU adapter (lavapipe, SwiftShader) counts
    /// as no GPU, since burn's CPU backend is faster than a rasteriser on the same cores.
    pub(super) fn init(accept_software: bool) -> Result<Selected> {
        let (device, setup) = Device::wgpu_options().init_with_setup()?;
        let info = setup.adapter.get_info();
        if info.device_type == DeviceType::Cpu && !accept_software {
            bail!("only the software adapter `{}`", info.name);
        }
        // The core's GPU kernels are an experiment until measured: say when they run.
        let kernels = if ddpm::gpu::enabled() {
            ", the core's GPU kernels (DDPM_GPU_KERNELS=1)"
        } else {
            ""
        };
        Ok(Selected {
            device,
            description: format!("wgpu: {} ({:?}){kernels}", info.name, info.backend),
        })
    }
}

#[cfg(not(feature = "wgpu"))]
mod gpu {
    use anyhow::{Result, bail};

    use super::Selected;

    pub(super) fn init(_accept_software: bool) -> Result<Selected> {
        bail!("this build has no wgpu backend (build with `--features wgpu`)")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use anyhow::{Result, bail};
    use burn::tensor::{Device, Tensor};

    use super::Selected;

    /// Opens CUDA device 0 and runs one tiny op on it. burn's CUDA backend panics when NVIDIA's
    /// driver library is missing, so the probe runs under `catch_unwind` with a silent hook.
    pub(super) fn init() -> Result<Selected> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let probe = std::panic::catch_unwind(|| {
            let device = Device::cuda(0);
            let sum: f32 = Tensor::<1>::ones([4], &device).sum().into_scalar();
            (device, sum)
        });
        std::panic::set_hook(previous);
        let Ok((device, sum)) = probe else {
            bail!("no usable CUDA device (is NVIDIA's driver installed?)");
        };
        if sum != 4.0 {
            bail!("CUDA device 0 computed 1+1+1+1 = {sum}");
        }
        Ok(Selected {
            device,
            description: "cuda:0".into(),
        })
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use anyhow::{Result, bail};

    use super::Selected;

    pub(super) fn init() -> Result<Selected> {
        bail!("this build has no CUDA backend (build with `--features cuda`)")
    }
}
