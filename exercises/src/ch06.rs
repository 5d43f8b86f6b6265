//! Chapter 6, activations (`chapters/06-activations.md`).
//!
//! **Exercise 6.1 — `softmax`.** Write the softmax along `axis`:
//!
//! `softmax(x)_i = e^(x_i − m) / Σ_j e^(x_j − m)`, with `m = max_j x_j` along the axis.
//!
//! Subtracting `m` changes nothing mathematically and keeps every exponential at most 1: logits
//! of ±1000 must give exact 0s and 1s, not NaN. Refuse an axis the array does not have.
//!
//! Run `cargo run -- 6` to check it (on matrices, along either axis). The reference is
//! `convlab::activation::softmax`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use ndarray::{Array, ArrayView, Dimension, NdFloat};

/// The softmax of `x` along `axis`.
pub fn softmax<T: NdFloat, D: Dimension>(x: ArrayView<T, D>, axis: usize) -> Result<Array<T, D>> {
    Err(Error::NotImplemented)
}
