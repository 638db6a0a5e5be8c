//! Tensors read back to the host, a device's failure as a one-line error: burn's `into_data`
//! panics when the device failed (lost, or a kernel that could not be compiled for it), and its
//! errors span several lines with a backtrace.

use anyhow::{Result, anyhow};
use burn::tensor::Tensor;

/// `t`'s values as `f32`, row-major; `what` names them in the error.
pub fn values<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>().map_err(|e| {
        anyhow!(
            "cannot read {what} back from the device: {}",
            one_line(&e.to_string())
        )
    })
}

/// A multi-line device error as one line: its "Caused by" chain joined with ": ", without the
/// backtrace that follows it.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Backtrace:") && !l.starts_with("stack backtrace:"))
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn a_device_error_is_one_line_without_its_backtrace() {
        let message = "An execution error happened during profiling\nCaused by:\n  A launch error \
                       happened\nCaused by:\n  Compilation error: verification failed.\nExpected \
                       operand type cube.ptr, but found cube.f32\nBacktrace:\nNo backtrace available";
        assert_eq!(
            one_line(message),
            "An execution error happened during profiling: A launch error happened: Compilation \
             error: verification failed.: Expected operand type cube.ptr, but found cube.f32"
        );
    }

    #[test]
    fn values_come_back_in_row_major_order() {
        let device = Device::flex();
        let t = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &device,
        );
        assert_eq!(
            values(t.transpose(), "x").expect("flex reads"),
            [1.0, 3.0, 2.0, 4.0]
        );
    }
}
