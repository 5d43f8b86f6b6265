//! Chapter 5, pooling (`chapters/05-pooling.md`).
//!
//! **Exercise 5.1 — `max_pool2d_with_indices`.** Write PyTorch's max pooling with
//! `return_indices=True` on `(N, C, H, W)`:
//!
//! `out[n, c, i, j] = max_{k_i, k_j} x[n, c, i·s_h + k_i·d_h − p_h, j·s_w + k_j·d_w − p_w]`
//!
//! over the positions inside the image (the padding never wins), and `index[n, c, i, j] = h·W + w`
//! of the maximum, the first one in row-major order on ties. The stride defaults to the window
//! size; the padding is at most half the window; with `ceil_mode` the output size rounds up, but
//! a window must start inside the image or its left padding. `convlab::pool::naive::windows`
//! resolves all of that if you want it to.
//!
//! **Exercise 5.2 — `avg_pool2d`.** Write PyTorch's average pooling:
//!
//! `out[n, c, i, j] = (1/D) · Σ_{k_i, k_j} x[n, c, i·s_h + k_i − p_h, j·s_w + k_j − p_w]`
//!
//! over the positions inside the image, where the divisor `D` is `divisor_override` if given,
//! else the window clipped to the padded image when `count_include_pad` (the default), else the
//! positions inside the image only.
//!
//! Run `cargo run -- 5` to check both. The references are in `convlab::pool::naive`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use convlab::shape::Pool2dParams;
use ndarray::{Array4, ArrayView4, NdFloat};

/// Max pooling and the position `h·W + w` of each maximum.
pub fn max_pool2d_with_indices<T: NdFloat>(
    x: ArrayView4<T>,
    params: Pool2dParams,
) -> Result<(Array4<T>, Array4<usize>)> {
    Err(Error::NotImplemented)
}

/// Average pooling, PyTorch's `avg_pool2d`.
pub fn avg_pool2d<T: NdFloat>(x: ArrayView4<T>, params: Pool2dParams) -> Result<Array4<T>> {
    Err(Error::NotImplemented)
}
