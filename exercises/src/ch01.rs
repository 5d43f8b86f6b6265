//! Chapter 1, one-dimensional convolution (`chapters/01-convolution-1d.md`).
//!
//! **Exercise 1.1 — `convolve`.** Write NumPy's `np.convolve` with the course's stride and
//! dilation: the kernel is flipped,
//!
//! `y[i] = Σ_{k=0}^{m−1} x̃[i·s + k·d] · w[m − 1 − k]`
//!
//! where `x̃` is `x` with zeros in front, as many as the mode asks: `Mode::Full` keeps every
//! position where the (dilated) kernel and the signal overlap, `d·(m − 1)` zeros on each side;
//! `Mode::Valid` only the positions of full overlap; `Mode::Same` the centre of the full result,
//! as long as the longer input. Then keep every `s`-th output, starting with the first. Refuse a
//! zero stride or dilation and an empty input with an `Err`.
//!
//! Run `cargo run -- 1` to check it. The reference is `convlab::conv1d::naive::convolve`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use convlab::shape::SignalParams;
use ndarray::{Array1, ArrayView1, NdFloat};

/// Signal convolution `y = x * w`, the kernel flipped, as NumPy's `np.convolve`.
pub fn convolve<T: NdFloat>(
    x: ArrayView1<T>,
    w: ArrayView1<T>,
    params: impl Into<SignalParams>,
) -> Result<Array1<T>> {
    Err(Error::NotImplemented)
}
