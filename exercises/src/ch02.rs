//! Chapter 2, output sizes (`chapters/02-output-size.md`).
//!
//! **Exercise 2.1 — `conv_output_len`.** Write the length of a convolution's (or a pooling's)
//! output along one axis, PyTorch's formula:
//!
//! `L_out = ⌊(L_in + p_left + p_right − d·(k − 1) − 1) / s⌋ + 1`
//!
//! for an input of `n` elements, a kernel of `kernel` taps with dilation `d`, stride `s`, and
//! `pads.left` / `pads.right` zeros on each side. Refuse with an `Err` a stride, kernel or
//! dilation of 0, and a dilated kernel (`d·(k − 1) + 1` elements) longer than the padded input.
//!
//! Run `cargo run -- 2` to check it. The reference is `convlab::shape::conv_output_len`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use convlab::shape::Pads;

/// The output length `⌊(n + p_left + p_right − d·(k − 1) − 1) / s⌋ + 1`.
pub fn conv_output_len(
    n: usize,
    kernel: usize,
    stride: usize,
    pads: Pads,
    dilation: usize,
) -> Result<usize> {
    Err(Error::NotImplemented)
}
