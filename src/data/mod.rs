#![doc = include_str!("../../chapters/10-training.md")]

pub mod batch;
pub mod cifar;
pub mod idx;

pub use batch::{Augment, Batch, BatchParams, Batches, Transform};
pub use cifar::{CIFAR10_CLASSES, cifar10, read_cifar_batch};
pub use idx::{Idx, read_idx};

use crate::error::{Error, Result};
use crate::gemm::Scalar;
use ndarray::{Array4, Axis, s};
use std::ffi::OsStr;
use std::ops::{Bound, Range, RangeBounds};
use std::path::{Path, PathBuf};

/// Fashion-MNIST's classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST's classes: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The four files of MNIST and Fashion-MNIST; each may also be found with a `.gz` suffix.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The environment variable naming a directory that holds the data sets.
pub const DATA_ENV: &str = "CONVLAB_DATA";

/// Where Debian's `dataset-fashion-mnist` package installs the data set.
pub const SYSTEM_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The subfolder of a data directory searched for Fashion-MNIST.
const FASHION_MNIST_FOLDER: &str = "fashion-mnist";

/// Which part of a data set: the training images or the held-out test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training part (60,000 images for MNIST and Fashion-MNIST, 50,000 for CIFAR-10).
    Train,
    /// The test part (10,000 images for all three).
    Test,
}

impl Split {
    /// The prefix of MNIST's file names: `train` or `t10k`.
    fn mnist_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Labelled images kept as bytes: `images` of shape `(N, C, H, W)`, one label per image, and
/// the class names the labels index.
///
/// The fields are public, like torchvision's `data` and `targets`; every function that consumes
/// a data set checks that `labels.len() == N` and that each label indexes `classes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The pixels, `(N, C, H, W)`, 0 to 255.
    pub images: Array4<u8>,
    /// The class of each image, an index into `classes`.
    pub labels: Vec<u8>,
    /// The name of each class.
    pub classes: Vec<String>,
}

/// `range` resolved against a length, or an error naming both.
fn resolve(range: impl RangeBounds<usize>, len: usize) -> Result<Range<usize>> {
    let start = match range.start_bound() {
        Bound::Included(&a) => Some(a),
        Bound::Excluded(&a) => a.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&b) => b.checked_add(1),
        Bound::Excluded(&b) => Some(b),
        Bound::Unbounded => Some(len),
    };
    match (start, end) {
        (Some(a), Some(b)) if a <= b && b <= len => Ok(a..b),
        _ => {
            let from = match range.start_bound() {
                Bound::Included(a) => a.to_string(),
                Bound::Excluded(a) => format!("{a} (excluded)"),
                Bound::Unbounded => String::new(),
            };
            let to = match range.end_bound() {
                Bound::Included(b) => format!("..={b}"),
                Bound::Excluded(b) => format!("..{b}"),
                Bound::Unbounded => "..".to_string(),
            };
            Err(Error::param(
                "range",
                format!("{from}{to} does not lie within the {len} images of the data set"),
            ))
        }
    }
}

impl Dataset {
    /// A data set of `images` `(N, C, H, W)` with one label per image, each below
    /// `classes.len()`.
    pub fn new(images: Array4<u8>, labels: Vec<u8>, classes: Vec<String>) -> Result<Self> {
        let data = Self {
            images,
            labels,
            classes,
        };
        data.check()?;
        Ok(data)
    }

    /// Check that there is one label per image and that each label names a class.
    pub fn check(&self) -> Result<()> {
        const OP: &str = "Dataset";
        if self.labels.len() != self.len() {
            return Err(Error::shape(
                OP,
                format!(
                    "{} labels for {} images: expected one label per image",
                    self.labels.len(),
                    self.len()
                ),
            ));
        }
        if let Some(i) = self
            .labels
            .iter()
            .position(|&l| usize::from(l) >= self.classes.len())
        {
            return Err(Error::shape(
                OP,
                format!(
                    "label {} of image {i} is not a class: there are {} classes",
                    self.labels[i],
                    self.classes.len()
                ),
            ));
        }
        Ok(())
    }

    /// The number of images, `N`.
    pub fn len(&self) -> usize {
        self.images.len_of(Axis(0))
    }

    /// Whether the data set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one image, `[C, H, W]`.
    pub fn image_shape(&self) -> [usize; 3] {
        let (_, c, h, w) = self.images.dim();
        [c, h, w]
    }

    /// The images `range` (e.g. `..1000` or `500..600`) and their labels, as a new data set.
    pub fn subset(&self, range: impl RangeBounds<usize>) -> Result<Dataset> {
        let r = resolve(range, self.len())?;
        self.check()?;
        Ok(Dataset {
            images: self.images.slice(s![r.clone(), .., .., ..]).to_owned(),
            labels: self.labels[r].to_vec(),
            classes: self.classes.clone(),
        })
    }

    /// The first `n` images and the rest, as two data sets: the course's validation split is
    /// `split_at(10_000)` of the 60,000 training images. An error if `n > len()`.
    pub fn split_at(&self, n: usize) -> Result<(Dataset, Dataset)> {
        if n > self.len() {
            return Err(Error::param(
                "split_at",
                format!(
                    "cannot take the first {n} images of a data set of {}",
                    self.len()
                ),
            ));
        }
        Ok((self.subset(..n)?, self.subset(n..)?))
    }

    /// The images `range`, in storage order, scaled to `x / 255` as `(N, C, H, W)` — what
    /// torchvision's `ToTensor` gives. For evaluation; training uses [`Batches`].
    pub fn to_tensor<T: Scalar>(&self, range: impl RangeBounds<usize>) -> Result<Array4<T>> {
        let r = resolve(range, self.len())?;
        Ok(batch::to_tensor(self, r))
    }
}

/// The path of `name` in `dir`, plain or with `.gz` (plain first), if either is a file.
fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The MNIST-format files `dir` lacks, by name.
fn missing_files(dir: &Path) -> Vec<&'static str> {
    MNIST_FILES
        .iter()
        .copied()
        .filter(|name| locate(dir, name).is_none())
        .collect()
}

/// One split of a data set in MNIST's format in `dir`.
fn idx_dataset(dir: &Path, split: Split, classes: &[&str]) -> Result<Dataset> {
    let find = |kind: &str| {
        let name = format!("{}-{kind}", split.mnist_prefix());
        locate(dir, &name)
            .ok_or_else(|| Error::file(dir.join(&name), format!("not found, nor is {name}.gz")))
    };
    let images_path = find("images-idx3-ubyte")?;
    let labels_path = find("labels-idx1-ubyte")?;
    let labels = read_idx(&labels_path)?;
    if labels.dims.len() != 1 {
        return Err(Error::file(
            &labels_path,
            format!(
                "a label file must have rank 1, this one has dimensions {:?}",
                labels.dims
            ),
        ));
    }
    if let Some(i) = labels
        .data
        .iter()
        .position(|&l| usize::from(l) >= classes.len())
    {
        return Err(Error::file(
            &labels_path,
            format!(
                "label {} at index {i} is not a class: expected 0 to {}",
                labels.data[i],
                classes.len() - 1
            ),
        ));
    }
    let images = read_idx(&images_path)?;
    let &[n, h, w] = images.dims.as_slice() else {
        return Err(Error::file(
            &images_path,
            format!(
                "an image file must have rank 3 (count, height, width), this one has dimensions \
                 {:?}",
                images.dims
            ),
        ));
    };
    if labels.data.len() != n {
        return Err(Error::file(
            &labels_path,
            format!(
                "holds {} labels, but {} holds {n} images",
                labels.data.len(),
                images_path.display()
            ),
        ));
    }
    let images = Array4::from_shape_vec((n, 1, h, w), images.data)
        .expect("an IDX file holds the product of its dimensions");
    Ok(Dataset {
        images,
        labels: labels.data,
        classes: classes.iter().map(|c| c.to_string()).collect(),
    })
}

/// Fashion-MNIST from `dir`: `(N, 1, 28, 28)` images and labels 0 to 9 with
/// [`FASHION_MNIST_CLASSES`]. Reads `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` for
/// [`Split::Train`], `t10k-…` for [`Split::Test`], each plain or with `.gz`.
///
/// Errors name the file: missing, not a valid IDX file ([`read_idx`]), images not of rank 3,
/// labels not of rank 1, counts that differ, or a label above 9.
pub fn fashion_mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    idx_dataset(dir.as_ref(), split, &FASHION_MNIST_CLASSES)
}

/// MNIST's handwritten digits from `dir`, read exactly as [`fashion_mnist`] reads its files;
/// the classes are the digits `"0"` to `"9"`.
pub fn mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    idx_dataset(dir.as_ref(), split, &MNIST_CLASSES)
}

/// The directories [`find_fashion_mnist`] tries when given none, in order: `$CONVLAB_DATA`
/// (`env`, when set and not empty; relative to `cwd` if relative), `cwd/data`, and
/// [`SYSTEM_FASHION_MNIST`].
pub fn fashion_mnist_places(env: Option<&OsStr>, cwd: &Path) -> Vec<PathBuf> {
    let mut places = Vec::with_capacity(3);
    if let Some(dir) = env.filter(|v| !v.is_empty()) {
        places.push(cwd.join(dir));
    }
    places.push(cwd.join("data"));
    places.push(PathBuf::from(SYSTEM_FASHION_MNIST));
    places
}

/// The first directory that holds the four Fashion-MNIST files ([`MNIST_FILES`], plain or
/// `.gz`): `explicit` if given — and then only it — else the first of `places`. For each
/// candidate `D`, `D` itself is tried, then `D/fashion-mnist`.
///
/// The process-independent core of [`find_fashion_mnist`]. An `explicit` directory without the
/// files is an error that lists the files missing; when no place holds them, the error lists
/// every directory looked at.
pub fn find_fashion_mnist_among(explicit: Option<&Path>, places: &[PathBuf]) -> Result<PathBuf> {
    let both = |d: &Path| [d.to_path_buf(), d.join(FASHION_MNIST_FOLDER)];
    if let Some(dir) = explicit {
        return both(dir)
            .into_iter()
            .find(|d| missing_files(d).is_empty())
            .ok_or_else(|| {
                Error::file(
                    dir,
                    format!(
                        "does not hold Fashion-MNIST (missing {}, each plain or .gz), nor does \
                         {}",
                        missing_files(dir).join(", "),
                        dir.join(FASHION_MNIST_FOLDER).display()
                    ),
                )
            });
    }
    let looked: Vec<PathBuf> = places.iter().flat_map(|d| both(d)).collect();
    if let Some(found) = looked.iter().find(|d| missing_files(d).is_empty()) {
        return Ok(found.clone());
    }
    let list: Vec<String> = looked.iter().map(|d| d.display().to_string()).collect();
    Err(Error::file(
        list.join(", "),
        format!(
            "none of these directories holds the Fashion-MNIST files ({}, each plain or .gz); \
             pass the directory or set {DATA_ENV}",
            MNIST_FILES.join(", ")
        ),
    ))
}

/// Where Fashion-MNIST is: the first of `explicit`, `$CONVLAB_DATA`, `./data` and
/// `/usr/share/datasets/fashion-mnist` that holds its four files, each directory `D` tried as
/// `D` and as `D/fashion-mnist` (see [`find_fashion_mnist_among`]).
pub fn find_fashion_mnist(explicit: Option<&Path>) -> Result<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let env = std::env::var_os(DATA_ENV);
    find_fashion_mnist_among(explicit, &fashion_mnist_places(env.as_deref(), &cwd))
}
