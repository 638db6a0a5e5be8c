//! safetensors files of f32 tensors: what `export --safetensors` and `export --lucidrains`
//! write and `import` reads.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow};
use burn::store::burn_pack;
use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};

/// One tensor of a safetensors file.
pub struct Stored {
    /// Its dtype (`Err`: the name of one that is no float).
    pub dtype: Result<DType, String>,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its little-endian bytes.
    pub bytes: Vec<u8>,
}

/// A safetensors file's contents.
pub struct SafetensorsFile {
    /// The tensors by name.
    pub tensors: BTreeMap<String, Stored>,
    /// The header's `__metadata__`.
    pub metadata: HashMap<String, String>,
}

/// Parses a safetensors file.
pub fn read(bytes: Vec<u8>) -> Result<SafetensorsFile> {
    let bad = |e: safetensors::SafeTensorError| anyhow!("not a readable safetensors file ({e})");
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let file = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = match view.dtype() {
                Dtype::F64 => Ok(DType::F64),
                Dtype::F32 => Ok(DType::F32),
                Dtype::F16 => Ok(DType::F16),
                Dtype::BF16 => Ok(DType::BF16),
                other => Err(format!("{other:?}")),
            };
            let (shape, bytes) = (view.shape().to_vec(), view.data().to_vec());
            (
                name,
                Stored {
                    dtype,
                    shape,
                    bytes,
                },
            )
        })
        .collect();
    Ok(SafetensorsFile {
        tensors,
        metadata: header.metadata().clone().unwrap_or_default(),
    })
}

/// A safetensors file of f32 `tensors` (name, shape, row-major values) with `metadata`.
pub fn write(
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| anyhow!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow!("safetensors: {e}"))
}

/// The values of one of a model's tensors (as `Module::collect` gives them), as f32.
pub fn f32_values(tensor: &burn_pack::Tensor) -> Result<Vec<f32>> {
    let name = &tensor.name;
    let bytes = tensor.to_bytes().map_err(|e| anyhow!("{name}: {e}"))?;
    TensorData::try_from_bytes(bytes, tensor.shape.clone(), tensor.dtype)
        .and_then(|data| data.try_cast_as::<f32>())
        .and_then(|data| data.try_into_vec::<f32>())
        .map_err(|e| anyhow!("{name}: {e:?}"))
}
