//! Mini-batches: a seeded order per epoch, optional augmentation, and scaling of the stored bytes
//! to `[0, 1]`.

use super::Dataset;
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use ndarray::{Array3, Array4, ArrayView3, CowArray, Ix4};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random augmentation applied to each image of a batch as it is assembled.
///
/// `hflip` mirrors an image left to right with probability 1/2; `max_shift = s` moves its content
/// by `dy` rows and `dx` columns, each uniform in `−s..=s`, filling what is uncovered with zeros.
/// A shift is the same as padding the image with `s` zeros on every side and cropping a window of
/// the original size at a random place (torchvision's `RandomCrop(size, padding=s)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Augment {
    /// Mirror left to right with probability 1/2.
    pub hflip: bool,
    /// The largest shift, in pixels, along each axis; 0 for none.
    pub max_shift: usize,
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Self {
        Self::default()
    }

    /// Set random horizontal flips on or off.
    pub fn hflip(mut self, on: bool) -> Self {
        self.hflip = on;
        self
    }

    /// Set the largest shift along each axis.
    pub fn max_shift(mut self, pixels: usize) -> Self {
        self.max_shift = pixels;
        self
    }

    /// Whether this augments anything.
    pub fn is_none(&self) -> bool {
        !self.hflip && self.max_shift == 0
    }
}

/// One draw of the augmentation for one image: mirror it left to right if `flip`, then move its
/// content `dy` rows down and `dx` columns right, zeros filling the uncovered pixels.
///
/// For an image `x` of width `W`, with `x'[c, i, j] = x[c, i, W − 1 − j]` when flipped and
/// `x' = x` otherwise, the result is `y[c, i, j] = x'[c, i − dy, j − dx]`, or 0 where that
/// position is outside the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Mirror left to right first.
    pub flip: bool,
    /// Rows the content moves down (up when negative).
    pub dy: isize,
    /// Columns the content moves right (left when negative).
    pub dx: isize,
}

impl Transform {
    /// The identity: no flip, no shift.
    pub fn identity() -> Self {
        Self::default()
    }

    /// This transform applied to one `(C, H, W)` image.
    pub fn apply(self, image: ArrayView3<u8>) -> Array3<u8> {
        let (c, h, w) = image.dim();
        let image = image.as_standard_layout();
        let src = image
            .as_slice()
            .expect("a standard-layout array is one slice");
        let mut out = vec![0u8; c * h * w];
        place(src, [c, h, w], self, |v| v, 0, &mut out);
        Array3::from_shape_vec((c, h, w), out).expect("the output has the image's shape")
    }
}

/// Write `map` of the transformed `(C, H, W)` image `src` into `out`.
fn place<S: Copy>(
    src: &[u8],
    [c, h, w]: [usize; 3],
    t: Transform,
    map: impl Fn(u8) -> S,
    zero: S,
    out: &mut [S],
) {
    if h * w == 0 {
        return;
    }
    // The columns j whose source column j − dx lies inside 0..w.
    let (j0, j1) = (
        t.dx.clamp(0, w as isize),
        (w as isize).saturating_add(t.dx).clamp(0, w as isize),
    );
    let (j0, j1) = (j0 as usize, j1 as usize);
    for (plane, out_plane) in src
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(h * w))
        .take(c)
    {
        for (i, row) in out_plane.chunks_exact_mut(w).enumerate() {
            let r = (i as isize).saturating_sub(t.dy);
            if r < 0 || r >= h as isize || j0 >= j1 {
                row.fill(zero);
                continue;
            }
            let src_row = &plane[r as usize * w..(r as usize + 1) * w];
            row[..j0].fill(zero);
            row[j1..].fill(zero);
            // Output column j reads flipped column j − dx, i.e. source column j − dx, or
            // w − 1 − (j − dx) when mirrored.
            let from = (j0 as isize - t.dx) as usize;
            let count = j1 - j0;
            if t.flip {
                let first = w - 1 - from;
                for (k, o) in row[j0..j1].iter_mut().enumerate() {
                    *o = map(src_row[first - k]);
                }
            } else {
                for (o, &v) in row[j0..j1].iter_mut().zip(&src_row[from..from + count]) {
                    *o = map(v);
                }
            }
        }
    }
}

/// How the batches of an epoch are drawn.
///
/// The default is PyTorch's usual training loader: batches of 64, shuffled, seed 0, no
/// augmentation. The order and the augmentation of epoch `e` depend only on `(seed, e)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchParams {
    /// Images per batch (the last batch of an epoch may hold fewer). At least 1.
    pub batch_size: usize,
    /// Visit the images in a random order each epoch, or in storage order.
    pub shuffle: bool,
    /// The seed of every epoch's random stream.
    pub seed: u64,
    /// Augmentation applied to every image.
    pub augment: Augment,
}

impl Default for BatchParams {
    fn default() -> Self {
        Self {
            batch_size: 64,
            shuffle: true,
            seed: 0,
            augment: Augment::none(),
        }
    }
}

impl BatchParams {
    /// Batches of `batch_size`, shuffled, seed 0, no augmentation.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            ..Self::default()
        }
    }

    /// Set the batch size.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Set shuffling on or off.
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the augmentation.
    pub fn augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }
}

/// A mini-batch: images scaled to `[0, 1]` as `(B, C, H, W)`, their class labels, and the
/// indices in the data set they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<T> {
    /// `x / 255` for every stored byte `x`, after augmentation.
    pub images: Array4<T>,
    /// The class of each image.
    pub labels: Vec<usize>,
    /// Where each image sits in the data set.
    pub indices: Vec<usize>,
}

impl<T> Batch<T> {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The batches of one epoch over a [`Dataset`], in order; an [`Iterator`] of [`Batch`].
///
/// The random stream of epoch `e` is ChaCha8 seeded with `seed` (`seed_from_u64`) on stream `e`:
/// it first shuffles the indices (Fisher–Yates, last position first), then draws each image's
/// augmentation as its batch is assembled (flip, then `dy`, then `dx`, each only if enabled).
/// Bounded draws are made here, by Lemire's unbiased multiply-and-reject, rather than by `rand`'s
/// helpers, so that a seed keeps giving the same epochs when dependencies are upgraded.
#[derive(Debug)]
pub struct Batches<'a, T> {
    images: CowArray<'a, u8, Ix4>,
    labels: &'a [u8],
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    augment: Augment,
    rng: ChaCha8Rng,
    scale: [T; 256],
}

/// A uniform integer in `0..n` (`n ≥ 1`).
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let reject_under = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if m as u64 >= reject_under {
            return (m >> 64) as u64;
        }
    }
}

/// The table `v ↦ v / 255` in `T`, computed as torchvision's `ToTensor` does: divide in `T`.
fn scale_table<T: Scalar>() -> [T; 256] {
    let max = T::from(255u8).expect("255 is a float");
    std::array::from_fn(|v| T::from(v).expect("a byte is a float") / max)
}

impl<'a, T: Scalar> Batches<'a, T> {
    /// The batches of epoch `epoch` over `data`.
    ///
    /// Errors when `batch_size` is 0, when a shift would move an image wholly out of view
    /// (`max_shift` ≥ its height or width), or when `data`'s labels do not match its images.
    pub fn new(data: &'a Dataset, params: BatchParams, epoch: u64) -> Result<Self> {
        if params.batch_size == 0 {
            return Err(Error::param(
                "batch_size",
                "0: a batch must hold at least 1 image",
            ));
        }
        data.check()?;
        let [_, h, w] = data.image_shape();
        let s = params.augment.max_shift;
        if s > 0 && (s >= h || s >= w) {
            return Err(Error::param(
                "max_shift",
                format!(
                    "{s} would move a {h}×{w} image wholly out of view: it must be below \
                     {}",
                    h.min(w)
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(epoch);
        let mut order: Vec<usize> = (0..data.len()).collect();
        if params.shuffle {
            for i in (1..order.len()).rev() {
                let j = below(&mut rng, i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        Ok(Self {
            images: data.images.as_standard_layout(),
            labels: &data.labels,
            order,
            next: 0,
            batch_size: params.batch_size,
            augment: params.augment,
            rng,
            scale: scale_table(),
        })
    }

    /// The order in which this epoch visits the data set, batch after batch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    fn draw(&mut self) -> Transform {
        let mut t = Transform::identity();
        if self.augment.hflip {
            t.flip = self.rng.next_u32() & 1 == 1;
        }
        let s = self.augment.max_shift as u64;
        if s > 0 {
            t.dy = below(&mut self.rng, 2 * s + 1) as isize - s as isize;
            t.dx = below(&mut self.rng, 2 * s + 1) as isize - s as isize;
        }
        t
    }
}

impl<T: Scalar> Iterator for Batches<'_, T> {
    type Item = Batch<T>;

    fn next(&mut self) -> Option<Batch<T>> {
        let n = self.order.len();
        if self.next >= n {
            return None;
        }
        let end = n.min(self.next + self.batch_size);
        let indices = self.order[self.next..end].to_vec();
        self.next = end;

        let (_, c, h, w) = self.images.dim();
        let size = c * h * w;
        let mut images = crate::buffers::zeros::<T, _>((indices.len(), c, h, w));
        let out = images.as_slice_mut().expect("a new array is contiguous");
        for (k, &i) in indices.iter().enumerate() {
            let t = self.draw();
            let all = self
                .images
                .as_slice()
                .expect("images are kept in standard layout");
            let src = &all[i * size..(i + 1) * size];
            let dst = &mut out[k * size..(k + 1) * size];
            if t == Transform::identity() {
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = self.scale[usize::from(v)];
                }
            } else {
                let scale = &self.scale;
                place(src, [c, h, w], t, |v| scale[usize::from(v)], T::zero(), dst);
            }
        }
        let labels = indices
            .iter()
            .map(|&i| usize::from(self.labels[i]))
            .collect();
        Some(Batch {
            images,
            labels,
            indices,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl<T: Scalar> ExactSizeIterator for Batches<'_, T> {}

/// `x / 255` for every byte of the images `range` of `data`, in storage order, as `(N, C, H, W)`:
/// the tensor for evaluating a model without shuffling or augmentation.
pub(super) fn to_tensor<T: Scalar>(data: &Dataset, range: std::ops::Range<usize>) -> Array4<T> {
    let table = scale_table::<T>();
    data.images
        .slice(ndarray::s![range, .., .., ..])
        .mapv(|v| table[usize::from(v)])
}
