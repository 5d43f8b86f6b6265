//! Chapter 8, backpropagation (`chapters/08-backprop.md`).
//!
//! **Exercise 8.1 — `conv2d_backward`.** Given the forward's `x`, `w`, `params` and
//! `g = ∂L/∂out` of the output's shape, write the three gradients of [`conv2d`](crate::ch03::conv2d):
//!
//! `∂L/∂b[c_out] = Σ_{n,i,j} g[n, c_out, i, j]`
//!
//! `∂L/∂w[c_out, c, k_i, k_j] = Σ_{n,i,j} g[n, c_out, i, j] · x̃[n, g(c_out)·C_in/g + c,
//! i·s_h + k_i·d_h, j·s_w + k_j·d_w]`
//!
//! `∂L/∂x[n, c_in, h, w] = Σ g[n, c_out, i, j] · w[c_out, c, k_i, k_j]` over every output and tap
//! that read pixel `(h, w)` of channel `c_in`.
//!
//! Each product `x̃ · w` of the forward sends `g` times the other factor back to each factor.
//!
//! **Exercise 8.2 — `max_pool2d_backward`.** Given `g = ∂L/∂out` and the indices of
//! [`max_pool2d_with_indices`](crate::ch05::max_pool2d_with_indices), send each output's
//! gradient to the input position that won: `∂L/∂x[n, c, h, w] = Σ g[n, c, i, j]` over the
//! outputs whose index is `h·W + w`; `input_size` is `(H, W)`. Refuse `g` and indices of
//! different shapes.
//!
//! Run `cargo run -- 8` to check both. The references are `convlab::conv2d::naive::conv2d_backward`
//! and `convlab::pool::naive::max_pool2d_backward`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::conv2d::naive::Conv2dGrads;
use convlab::error::Result;
use convlab::shape::Conv2dParams;
use ndarray::{Array4, ArrayView4, NdFloat};

/// The gradients of `conv2d` with respect to its input, weight and bias.
pub fn conv2d_backward<T: NdFloat>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<Conv2dGrads<T>> {
    Err(Error::NotImplemented)
}

/// The gradient of max pooling: each output's `g` to the position that won.
pub fn max_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    indices: ArrayView4<usize>,
    input_size: [usize; 2],
) -> Result<Array4<T>> {
    Err(Error::NotImplemented)
}
