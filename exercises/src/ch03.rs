//! Chapter 3, two-dimensional convolution (`chapters/03-convolution-2d.md`).
//!
//! **Exercise 3.1 — `conv2d`.** Write PyTorch's `conv2d` on `(N, C_in, H, W)` inputs and
//! `(C_out, C_in/g, kH, kW)` weights, a cross-correlation (the kernel is not flipped):
//!
//! `out[n, c_out, i, j] = b[c_out] + Σ_{c} Σ_{k_i} Σ_{k_j}
//!     x̃[n, g(c_out)·C_in/g + c, i·s_h + k_i·d_h, j·s_w + k_j·d_w] · w[c_out, c, k_i, k_j]`
//!
//! with `x̃` the input padded with zeros, `g(c_out) = c_out / (C_out/g)` the group of the output
//! channel, and each output size from chapter 2. `params` carries the strides, the padding of
//! each axis (`Padding::Explicit(p)`, `Padding::Same`, …; `ConvParams::pads` resolves one), the
//! dilations and the groups. The bias is optional. The input may be a view that is not
//! contiguous: index it, do not take its raw slice.
//!
//! Run `cargo run -- 3` to check it. The reference is `convlab::conv2d::naive::conv2d`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use convlab::shape::Conv2dParams;
use ndarray::{Array4, ArrayView1, ArrayView4, NdFloat};

/// The 2-D convolution layer, PyTorch's `conv2d`.
pub fn conv2d<T: NdFloat>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    b: Option<ArrayView1<T>>,
    params: Conv2dParams,
) -> Result<Array4<T>> {
    Err(Error::NotImplemented)
}
