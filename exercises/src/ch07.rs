//! Chapter 7, losses (`chapters/07-losses.md`).
//!
//! **Exercise 7.1 — `cross_entropy`.** Write the cross-entropy of logits `(N, C)` against one
//! class index per sample, `target = Target::Classes(t)` with `t` of shape `(N)`:
//!
//! `ℓ_n = −log softmax(x_n)[t_n] = −x_n[t_n] + m_n + log Σ_c e^(x_n[c] − m_n)`
//!
//! with `m_n` the largest logit of sample `n`, then reduced as `options.reduction` asks: `Mean`
//! (the default) `Σ_n ℓ_n / N`, `Sum`, or `None` (the `N` losses, `LossOutput::PerElement`).
//! The checker leaves the other options at their defaults (no class weights, no label
//! smoothing); refuse a class index outside `0..C` and a target that is not one per sample.
//! The chapter's example: logits `[1.5, 0.8, 2.1]`, class 2, loss 0.5996.
//!
//! Run `cargo run -- 7` to check it. The reference is `convlab::loss::cross_entropy`.

// The fresh exercises do not read their arguments yet.
#![allow(unused_variables)]

use convlab::Error;
use convlab::error::Result;
use convlab::loss::{LossOptions, LossOutput, Target};
use ndarray::{ArrayViewD, NdFloat};

/// Cross-entropy of logits and class indices, PyTorch's `cross_entropy`.
pub fn cross_entropy<T: NdFloat>(
    logits: ArrayViewD<T>,
    target: Target<T>,
    options: &LossOptions<T>,
) -> Result<LossOutput<T>> {
    Err(Error::NotImplemented)
}
