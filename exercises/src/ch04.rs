//! Chapter 4, im2col (`chapters/04-im2col-gemm.md`).
//!
//! **Exercise 4.1 — `unfold`.** Write PyTorch's `unfold`: the windows a `kernel = [kH, kW]`
//! convolution with `params` (strides, padding, dilations; groups must be 1) would read, one
//! column per window. Input `(N, C, H, W)`, output `(N, C·kH·kW, L)` with `L = H_out·W_out`:
//!
//! `cols[n, (c·kH + k_i)·kW + k_j, i·W_out + j] = x̃[n, c, i·s_h + k_i·d_h, j·s_w + k_j·d_w]`
//!
//! so a column is its window flattened channel by channel, then row by row, and the windows
//! come in the row-major order of the output. Padding shows as zeros. With these columns the
//! convolution is one matrix product, `W_row · cols` (the chapter's worked example).
//!
//! Run `cargo run -- 4` to check it. The reference is `convlab::im2col::unfold`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use convlab::shape::Conv2dParams;
use ndarray::{Array3, ArrayView4, NdFloat};

/// Sliding windows as columns, PyTorch's `unfold`.
pub fn unfold<T: NdFloat>(
    x: ArrayView4<T>,
    kernel: [usize; 2],
    params: Conv2dParams,
) -> Result<Array3<T>> {
    Err(Error::NotImplemented)
}
