//! Checkpoints in safetensors, with PyTorch's `state_dict` names, written atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::NamedTensors;

/// Write `bytes` to `path` so that no reader ever sees a half-written file: into a temporary
/// file beside it, flushed to disk, then renamed over `path`. On failure the temporary file is
/// removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })
}

/// [`write_atomically`] for a writer that creates the temporary file itself: `write` makes the
/// file at the path it is given, which is then flushed to disk and renamed over `path`.
fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
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
    let written = write(&tmp)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
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

/// Save named tensors to `path` atomically. The file is written a tensor at a time, so saving
/// needs no more memory than the largest tensor's bytes.
pub fn save<T: Scalar>(
    path: &Path,
    tensors: &[(String, ArrayViewD<T>)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let views: Vec<(&str, Tensor<'_, T>)> = tensors
        .iter()
        .map(|(name, t)| (name.as_str(), Tensor(t.view())))
        .collect();
    let metadata = (!metadata.is_empty()).then_some(metadata);
    write_atomically_with(path, |tmp| {
        safetensors::serialize_to_file(views, metadata, tmp).map_err(std::io::Error::other)
    })
}

/// A tensor as safetensors sees it: its bytes are made when the file is written.
struct Tensor<'a, T>(ArrayViewD<'a, T>);

impl<T: Scalar> safetensors::View for Tensor<'_, T> {
    fn dtype(&self) -> Dtype {
        dtype_of::<T>()
    }

    fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(bytes_of(&self.0))
    }

    fn data_len(&self) -> usize {
        self.0.len() * std::mem::size_of::<T>()
    }
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
