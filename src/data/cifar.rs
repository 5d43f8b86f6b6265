//! CIFAR-10 in its binary version: files of 3073-byte records, one label byte then a 32×32
//! colour image stored plane by plane (1024 red bytes, 1024 green, 1024 blue), each plane row by
//! row.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use ndarray::{Array4, ArrayView4, Axis};
use std::io::Read;
use std::path::Path;

/// CIFAR-10's classes, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Channels, height and width of a CIFAR-10 image.
pub const CIFAR10_IMAGE: [usize; 3] = [3, 32, 32];

/// Bytes per record: the label, then `3·32·32` pixels.
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// The training files of the binary version, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test file of the binary version.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";

/// The folder the binary archive unpacks into.
const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

/// Read one CIFAR-10 binary file (`data_batch_1.bin`, `test_batch.bin`, …) as a data set of
/// `(N, 3, 32, 32)` images with CIFAR-10's class names.
///
/// The file must hold a whole, non-zero number of 3073-byte records, and every label must be
/// below 10; each error is an [`Error::File`] naming `path`.
pub fn read_cifar_batch(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(CIFAR10_RECORD) {
        return Err(Error::file(
            path,
            format!(
                "holds {} bytes, which is not a non-zero whole number of {CIFAR10_RECORD}-byte \
                 records (1 label byte + 3×32×32 pixels): {} records and {} bytes left over",
                bytes.len(),
                bytes.len() / CIFAR10_RECORD,
                bytes.len() % CIFAR10_RECORD
            ),
        ));
    }
    let n = bytes.len() / CIFAR10_RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (CIFAR10_RECORD - 1));
    for (i, record) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= CIFAR10_CLASSES.len() {
            return Err(Error::file(
                path,
                format!(
                    "record {i} (byte offset {}) has label {label}: expected 0 to 9",
                    i * CIFAR10_RECORD
                ),
            ));
        }
        labels.push(label);
        pixels.extend_from_slice(&record[1..]);
    }
    let [c, h, w] = CIFAR10_IMAGE;
    let images =
        Array4::from_shape_vec((n, c, h, w), pixels).expect("n records hold n·3·32·32 pixels");
    Ok(Dataset {
        images,
        labels,
        classes: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// CIFAR-10 from the binary version's files in `dir` (or in `dir/cifar-10-batches-bin`, where
/// the archive unpacks): the 50,000 images of `data_batch_1.bin` … `data_batch_5.bin` in that
/// order for [`Split::Train`], the 10,000 of `test_batch.bin` for [`Split::Test`], as
/// `(N, 3, 32, 32)` bytes.
pub fn cifar10(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let dir = dir.as_ref();
    let names: &[&str] = match split {
        Split::Train => &CIFAR10_TRAIN_FILES,
        Split::Test => &[CIFAR10_TEST_FILE],
    };
    let folder = [dir.to_path_buf(), dir.join(ARCHIVE_FOLDER)]
        .into_iter()
        .find(|d| names.iter().all(|name| d.join(name).is_file()))
        .ok_or_else(|| {
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|name| !dir.join(name).is_file())
                .collect();
            Error::file(
                dir,
                format!(
                    "does not hold CIFAR-10's binary files (missing {}), nor does {}",
                    missing.join(", "),
                    dir.join(ARCHIVE_FOLDER).display()
                ),
            )
        })?;
    let parts = names
        .iter()
        .map(|name| read_cifar_batch(folder.join(name)))
        .collect::<Result<Vec<Dataset>>>()?;
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let views: Vec<ArrayView4<u8>> = parts.iter().map(|p| p.images.view()).collect();
    let images =
        ndarray::concatenate(Axis(0), &views).expect("CIFAR-10 batches share the image shape");
    Ok(Dataset {
        images,
        labels: parts
            .iter()
            .flat_map(|p| p.labels.iter().copied())
            .collect(),
        classes: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}
