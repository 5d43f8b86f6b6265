//! Output and scratch buffers: kept for the next batch instead of freed, and cleared by every
//! thread of the pool.
//!
//! A training step needs the same buffers every batch: each layer's output and its gradient, the
//! packed weights, the kernels' scratch rows. The layers hand back the arrays they are done with
//! (a cached input once the backward pass has used it, a gradient once the layer below has it)
//! and the kernels take their outputs from the kept ones before they ask the allocator. The first
//! two steps fill the kept buffers; from the third on, no batch allocates its tensors anew.
//! [`stats`] counts both:
//!
//! ```
//! use convlab::nn::optim::{Adam, AdamOptions};
//! use convlab::nn::{Architecture, Init};
//! use convlab::train::train_step;
//! use ndarray::{ArrayD, IxDyn};
//!
//! let mut model = Architecture::FashionMnistCnn.build(Init::PyTorch, 1)?;
//! let mut adam = Adam::new(AdamOptions::default())?;
//! let images = ArrayD::<f32>::from_elem(IxDyn(&[8, 1, 28, 28]), 0.5);
//! let labels = [0, 1, 2, 3, 4, 5, 6, 7];
//! // One thread, so that the kernels' scratch buffers are the same every step.
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
//! pool.install(|| -> convlab::Result<()> {
//!     for step in 1..=2 {
//!         train_step(&mut model, &mut adam, images.clone(), &labels, step)?;
//!     }
//!     let before = convlab::buffers::stats();
//!     train_step(&mut model, &mut adam, images.clone(), &labels, 3)?;
//!     let step = convlab::buffers::stats().since(before);
//!     assert_eq!(step.fresh, 0, "the third step allocates no buffer anew");
//!     assert!(step.reused > 0);
//!     Ok(())
//! })?;
//! # Ok::<(), convlab::Error>(())
//! ```
//!
//! Buffers under 16 KiB are left to the allocator, which keeps small blocks itself. The matrix
//! products of the fully connected layers and of the im2col route go through `matrixmultiply`,
//! which allocates its own packing buffer on every call.

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use ndarray::{Array, ArrayView, Dimension, IntoDimension, NdFloat, Zip, s};
use rayon::prelude::*;

/// Elements below which one thread fills an array alone (a few pages: handing work out would
/// cost more than it saves). One thread alone uses `calloc`'s own clearing for a new buffer,
/// which is faster than writing the zeros one by one.
const SERIAL_LEN: usize = 1 << 16;

/// Buffers smaller than this are left to the allocator, which serves them from its own caches.
const KEEP_MIN_BYTES: usize = 16 << 10;

/// At most this many bytes are kept; beyond it the longest-kept buffers are freed first. The
/// course's CNN at batch 64 keeps about 40 MB between steps.
const KEEP_MAX_BYTES: usize = 256 << 20;

/// Buffers handed back, each a `Vec<T>` of some element type with its size in bytes, newest
/// last.
struct Kept {
    buffers: Vec<(usize, Box<dyn Any + Send>)>,
    bytes: usize,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    buffers: Vec::new(),
    bytes: 0,
});

static REUSED: AtomicU64 = AtomicU64::new(0);
static FRESH: AtomicU64 = AtomicU64::new(0);

/// How many buffers the kernels asked for, since the program started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Served from the kept buffers.
    pub reused: u64,
    /// Allocated anew (none of the right length was kept).
    pub fresh: u64,
}

impl Stats {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Stats) -> Stats {
        Stats {
            reused: self.reused - earlier.reused,
            fresh: self.fresh - earlier.fresh,
        }
    }
}

/// The counts so far (buffers of 16 KiB or more; smaller ones are not counted).
pub fn stats() -> Stats {
    Stats {
        reused: REUSED.load(Ordering::Relaxed),
        fresh: FRESH.load(Ordering::Relaxed),
    }
}

/// The bytes of the buffers kept now.
pub fn kept_bytes() -> usize {
    kept().bytes
}

/// Free every kept buffer (after training, say: a later step allocates what it needs again).
pub fn release() {
    let freed = {
        let mut kept = kept();
        kept.bytes = 0;
        std::mem::take(&mut kept.buffers)
    };
    drop(freed);
}

fn kept() -> MutexGuard<'static, Kept> {
    // The list is consistent between any two statements, so a panic elsewhere leaves it usable.
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A kept buffer that holds `len` elements, at its whole length (its values are whatever its
/// earlier users left): the smallest kept one that holds `len`. A batch of another size (the
/// last one of an epoch, an evaluation batch) can so use the buffers of the usual one and the
/// other way round. Its users see only its first `len` elements ([`prefix`], [`Scratch`]) and
/// hand it all back, so that a buffer is lengthened (with `pad`) at most once: a longer user
/// after a shorter one finds the elements it needs already there.
fn take<T: Copy + Send + 'static>(len: usize, pad: T) -> Option<Vec<T>> {
    if len.saturating_mul(size_of::<T>()) < KEEP_MIN_BYTES {
        return None;
    }
    let mut kept = kept();
    let fits = |v: &Vec<T>| v.capacity() >= len;
    let best = kept
        .buffers
        .iter()
        .enumerate()
        .filter_map(|(i, (_, b))| {
            let v = b.downcast_ref::<Vec<T>>()?;
            fits(v).then_some((v.capacity(), i))
        })
        // The smallest; of equal ones the last kept, whose pages are likeliest in the cache.
        .min_by_key(|&(capacity, i)| (capacity, std::cmp::Reverse(i)));
    let Some((_, at)) = best else {
        FRESH.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    REUSED.fetch_add(1, Ordering::Relaxed);
    let (bytes, buffer) = kept.buffers.remove(at);
    kept.bytes -= bytes;
    drop(kept);
    let mut values = *buffer
        .downcast::<Vec<T>>()
        .expect("the buffer was found by its type");
    if values.len() < len {
        let capacity = values.capacity();
        values.resize(capacity, pad);
    }
    Some(values)
}

/// The first `dim.size()` elements of `values` as an array of `dim`. The array owns all of
/// `values`, so that [`recycle`] hands the whole buffer back.
fn prefix<T, D: Dimension>(values: Vec<T>, dim: D) -> Array<T, D> {
    let len = dim.size();
    assert!(len <= values.len(), "a buffer holds its array's elements");
    Array::from_vec(values)
        .slice_move(s![..len])
        .into_shape_with_order(dim)
        .expect("a prefix of a vector is contiguous")
}

/// Keep `buffer` for a later [`take`] of up to its capacity.
fn give<T: Send + 'static>(buffer: Vec<T>) {
    let bytes = buffer.capacity() * size_of::<T>();
    if !(KEEP_MIN_BYTES..=KEEP_MAX_BYTES).contains(&bytes) {
        return;
    }
    let mut freed = Vec::new();
    {
        let mut kept = kept();
        while kept.bytes + bytes > KEEP_MAX_BYTES {
            let (oldest_bytes, oldest) = kept.buffers.remove(0);
            kept.bytes -= oldest_bytes;
            freed.push(oldest);
        }
        kept.buffers.push((bytes, Box::new(buffer)));
        kept.bytes += bytes;
    }
    // Freed after the lock is released: other threads need not wait for the allocator.
    drop(freed);
}

/// Hand an array you are done with to the kept buffers (the layers do it with theirs): a later
/// output or scratch buffer of a kernel may take its memory, and clears it or writes every
/// element before it is read.
pub fn recycle<T: Send + 'static, D: Dimension>(array: Array<T, D>) {
    let (values, _) = array.into_raw_vec_and_offset();
    give(values);
}

/// Set every element to `value`, a piece per thread when the array is large.
fn fill<T: Copy + Send + Sync>(values: &mut [T], value: T) {
    if values.len() < SERIAL_LEN || rayon::current_num_threads() == 1 {
        values.fill(value);
    } else {
        let piece = values.len().div_ceil(rayon::current_num_threads());
        values.par_chunks_mut(piece).for_each(|c| c.fill(value));
    }
}

/// An array of `value`s in standard layout: a kept buffer if there is one, filled by the
/// threads of the rayon pool a piece each (a large output filled by one thread keeps the
/// others waiting).
pub(crate) fn full<T, D>(shape: impl IntoDimension<Dim = D>, value: T) -> Array<T, D>
where
    T: Copy + Send + Sync + 'static,
    D: Dimension,
{
    let dim = shape.into_dimension();
    let values = filled(dim.size(), value);
    prefix(values, dim)
}

/// A buffer whose first `len` elements are `value`: a kept one if there is one, else a new one
/// of `len`, written a piece per thread when it is large.
fn filled<T: Copy + Send + Sync + 'static>(len: usize, value: T) -> Vec<T> {
    match take::<T>(len, value) {
        Some(mut values) => {
            fill(&mut values[..len], value);
            values
        }
        None => new_filled(len, value),
    }
}

/// A new buffer of `len` copies of `value`, written a piece per thread when it is large.
fn new_filled<T: Copy + Send + Sync>(len: usize, value: T) -> Vec<T> {
    if len < SERIAL_LEN || rayon::current_num_threads() == 1 {
        vec![value; len]
    } else {
        let mut values = Vec::with_capacity(len);
        values.par_extend(rayon::iter::repeat_n(value, len));
        values
    }
}

/// An array of zeros ([`full`] of zero).
pub(crate) fn zeros<T: NdFloat, D: Dimension>(shape: impl IntoDimension<Dim = D>) -> Array<T, D> {
    full(shape, T::zero())
}

/// `f` of every element of `x`, in a new array of `x`'s shape (standard layout), a piece per
/// thread when it is large.
pub(crate) fn map<T, D>(x: ArrayView<T, D>, f: impl Fn(T) -> T + Sync + Send) -> Array<T, D>
where
    T: NdFloat,
    D: Dimension,
{
    let mut y = for_overwrite(x.raw_dim());
    let zip = Zip::from(&mut y).and(&x);
    if x.len() < SERIAL_LEN || rayon::current_num_threads() == 1 {
        zip.for_each(|y, &x| *y = f(x));
    } else {
        zip.par_for_each(|y, &x| *y = f(x));
    }
    y
}

/// `f(a, b)` of every pair of elements of `a` and `b` (the same shape), in a new array, a
/// piece per thread when it is large.
pub(crate) fn zip_map<T, D>(
    a: ArrayView<T, D>,
    b: ArrayView<T, D>,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Array<T, D>
where
    T: NdFloat,
    D: Dimension,
{
    let mut y = for_overwrite(a.raw_dim());
    let zip = Zip::from(&mut y).and(&a).and(&b);
    if a.len() < SERIAL_LEN || rayon::current_num_threads() == 1 {
        zip.for_each(|y, &a, &b| *y = f(a, b));
    } else {
        zip.par_for_each(|y, &a, &b| *y = f(a, b));
    }
    y
}

/// An array of `shape` for a caller that writes every element before reading it: a kept buffer
/// as its last user left it, or a new one of zeros.
pub(crate) fn for_overwrite<T: NdFloat, D: Dimension>(
    shape: impl IntoDimension<Dim = D>,
) -> Array<T, D> {
    let dim = shape.into_dimension();
    let len = dim.size();
    let values = take::<T>(len, T::zero()).unwrap_or_else(|| new_filled(len, T::zero()));
    prefix(values, dim)
}

/// A scratch buffer of a kernel: the first `len` elements of `values`, all of which are kept
/// for the next call when it is dropped.
pub(crate) struct Scratch<T: Send + 'static> {
    values: Vec<T>,
    len: usize,
}

impl<T: Copy + Send + Sync + 'static> Scratch<T> {
    /// `len` copies of `value`.
    pub(crate) fn full(len: usize, value: T) -> Self {
        Scratch {
            values: filled(len, value),
            len,
        }
    }

    /// `len` values for a caller that writes each before it reads it: a kept buffer as its last
    /// user left it, or a new one of zeros.
    pub(crate) fn for_overwrite(len: usize) -> Self
    where
        T: Default,
    {
        let values = take::<T>(len, T::default()).unwrap_or_else(|| vec![T::default(); len]);
        Scratch { values, len }
    }
}

impl<T: Send + 'static> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.values[..self.len]
    }
}

impl<T: Send + 'static> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.values[..self.len]
    }
}

impl<T: Send + 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.values));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_comes_back_cleared() {
        // A length no other test of this binary uses, so the buffer found is this one.
        let len = 12_345 * 3;
        let a = full((len,), 7.5f64);
        let ptr = a.as_ptr();
        recycle(a);
        let b = zeros::<f64, _>((3, 12_345));
        assert_eq!(b.as_ptr(), ptr, "the kept buffer is reused");
        assert!(b.iter().all(|&v| v == 0.0));
        assert_eq!(b.shape(), &[3, 12_345]);
    }

    #[test]
    fn a_buffer_comes_back_whole() {
        // u32: no other test of this binary keeps buffers of it.
        let long = 50_000;
        let first = Scratch::full(long, 7u32);
        let ptr = first.as_ptr();
        drop(first);
        let short = Scratch::<u32>::for_overwrite(long / 5);
        assert_eq!((short.as_ptr(), short.len()), (ptr, long / 5));
        drop(short);
        // A longer user after a shorter one finds what the first user left past the shorter
        // length: nothing was written to lengthen the buffer.
        let again = Scratch::<u32>::for_overwrite(long);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.iter().all(|&v| v == 7));
    }

    #[test]
    fn small_buffers_are_left_to_the_allocator() {
        let a = full((16,), 1.0f32);
        recycle(a);
        assert!(take::<f32>(16, 0.0).is_none());
    }

    #[test]
    fn map_and_zip_map_give_every_element() {
        let x = Array::from_shape_fn((300, 301), |(i, j)| i as f64 - j as f64);
        let y = map(x.view(), |v| v * 2.0);
        assert_eq!(y, x.mapv(|v| v * 2.0));
        let t = x.t();
        let z = zip_map(t, t, |a, b| a - 3.0 * b);
        assert_eq!(z, t.mapv(|v| -2.0 * v));
    }
}
