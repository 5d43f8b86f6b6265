//! Checkpoints in safetensors, with PyTorch's `state_dict` names, written atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::NamedTensors;

/// Write `bytes` to `path` so that no reader ever sees a half-written file: into a temporary
/// file beside it, flushed to disk, then renamed over `path`. On failure the temporary file is
/// removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "is not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}

fn dtype_of<T: Scalar>() -> Dtype {
    if std::mem::size_of::<T>() == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

/// The little-endian bytes of `values` in `T`'s own width.
fn bytes_of<T: Scalar>(values: &ArrayViewD<T>) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * std::mem::size_of::<T>());
    for v in values.iter() {
        if std::mem::size_of::<T>() == 4 {
            out.extend(v.to_f32().expect("f32 is f32").to_le_bytes());
        } else {
            out.extend(v.to_f64().expect("f64 is f64").to_le_bytes());
        }
    }
    out
}

/// Serialise named tensors and string metadata as safetensors, the format of
/// `safetensors.torch.save_file`.
pub fn to_safetensors<T: Scalar>(
    tensors: &[(String, ArrayViewD<T>)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let data: Vec<(Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(_, t)| (bytes_of(t), t.shape().to_vec()))
        .collect();
    let views = tensors
        .iter()
        .zip(&data)
        .map(|((name, _), (bytes, shape))| {
            TensorView::new(dtype_of::<T>(), shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::shape("safetensors", format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = (!metadata.is_empty()).then_some(metadata);
    safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::shape("safetensors", e.to_string()))
}

/// Save named tensors to `path` atomically.
pub fn save<T: Scalar>(
    path: &Path,
    tensors: &[(String, ArrayViewD<T>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomically(path, &to_safetensors(tensors, metadata)?)
}

/// The tensors of a safetensors file in `T` (F32 and F64 are read; an F64 file read as f32 is
/// rounded), in the file's order, and its metadata. A missing, truncated or corrupt file, or
/// one with another element type, is an error naming the file.
pub fn load<T: Scalar>(path: &Path) -> Result<(NamedTensors<T>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    from_safetensors(&bytes).map_err(|reason| Error::file(path, reason))
}

fn from_safetensors<T: Scalar>(
    bytes: &[u8],
) -> std::result::Result<(NamedTensors<T>, HashMap<String, String>), String> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("not a valid safetensors file: {e}"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let mut tensors = file.tensors();
    // The file stores tensors sorted by alignment and name; keep a stable order by name.
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let tensors = tensors
        .into_iter()
        .map(|(name, view)| {
            let values: Vec<T> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| {
                        T::from(f32::from_le_bytes(c.try_into().expect("4 bytes")))
                            .expect("f32 converts")
                    })
                    .collect(),
                Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| {
                        T::from(f64::from_le_bytes(c.try_into().expect("8 bytes")))
                            .expect("f64 converts")
                    })
                    .collect(),
                other => {
                    return Err(format!(
                        "tensor {name} has element type {other:?}; convlab reads F32 and F64"
                    ));
                }
            };
            let array = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
                .map_err(|e| format!("tensor {name}: {e}"))?;
            Ok((name, array))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok((tensors, metadata))
}
