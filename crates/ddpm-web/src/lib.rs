//! The DDPM sampler in the browser. The page (or its Web Worker) talks to three small types:
//!
//! - [`Backend`]: WebGPU through burn's wgpu backend, initialised asynchronously, or burn's CPU
//!   backend (flex, compiled to wasm) when there is no usable adapter. The features `webgpu`
//!   and `cpu` (both by default) choose which the module carries: the page loads a module of
//!   each alone, so that a browser without WebGPU never downloads the GPU code.
//! - [`Model`]: a weights file exported by `ddpm export`, loaded onto the backend's device.
//! - [`Run`]: one reverse process ([`ddpm::Sampler`], DDPM or DDIM, with classifier-free
//!   guidance), advanced one denoising step per call; each step resolves to a [`Frame`], the
//!   RGBA grid of x_t or of the predicted x₀, read back asynchronously.
//!
//! No tensor is ever read back synchronously here (a browser cannot block on the GPU); clippy's
//! `disallowed-methods` (this crate's `clippy.toml`) enforces it.

mod backend;
mod gpu;
mod options;
mod run;

pub use backend::{Backend, Model};
pub use options::{ClassOption, RunOptions};
pub use run::{Frame, Run, grid};

use wasm_bindgen::prelude::*;

#[cfg(not(any(feature = "webgpu", feature = "cpu")))]
compile_error!("ddpm-web needs a backend: the `webgpu` feature, the `cpu` feature or both");

/// Panics show up in the browser console with their message, and are kept for the page.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        keep_panic(info);
        console_error_panic_hook::hook(info);
    }));
}

/// The module is built with `panic = "abort"`: a panic traps, leaves the instance unusable and,
/// inside a promise, leaves that promise pending. The message goes to the global `ddpmPanic`
/// (a JS value, readable without this instance's memory), so that the worker can say why it
/// stopped (web/ddpm-worker.js).
fn keep_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info.payload_as_str().unwrap_or("a panic");
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let line = format!("{message}{at}").replace('\n', " ");
    let _ = js_sys::Reflect::set(&js_sys::global(), &"ddpmPanic".into(), &line.into());
}

/// Turns any error into a JavaScript `Error` with its message.
pub(crate) fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}
