//! The fully connected layer, PyTorch's `torch.nn.functional.linear`, and its backward pass
//! (chapter 8): every output is a weighted sum of every input.

use ndarray::linalg::general_mat_mul;
use ndarray::parallel::prelude::*;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, NdFloat};

use crate::error::{Error, Result};

/// `y = x · Wᵀ + b`: input `x` of shape `(N, in)`, weight `W` of shape `(out, in)`, optional bias
/// of length `out`; output `(N, out)`. A layer of `out·(in + 1)` parameters.
pub fn linear<T: NdFloat>(
    x: ArrayView2<T>,
    w: ArrayView2<T>,
    b: Option<ArrayView1<T>>,
) -> Result<Array2<T>> {
    check(x.dim(), w.dim(), b.map(|b| b.len()))?;
    let mut y = dot(x, w.t());
    if let Some(b) = b {
        y += &b;
    }
    Ok(y)
}

/// The gradients of [`linear`]'s loss with respect to its input, weight and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads<T> {
    /// `∂L/∂x = G · W`, shape `(N, in)`.
    pub input: Array2<T>,
    /// `∂L/∂W = Gᵀ · x`, shape `(out, in)`.
    pub weight: Array2<T>,
    /// `∂L/∂b = Σ_n G[n, :]`, length `out`.
    pub bias: Array1<T>,
}

/// Backward of [`linear`] for `G = ∂L/∂y` of shape `(N, out)`: the rules of a matrix product
/// `Y = X·Wᵀ`, `∂L/∂X = G·W` and `∂L/∂W = Gᵀ·X`, and the bias's gradient summed over the batch.
pub fn linear_backward<T: NdFloat>(
    x: ArrayView2<T>,
    w: ArrayView2<T>,
    grad_out: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    check(x.dim(), w.dim(), None)?;
    if grad_out.dim() != (x.nrows(), w.nrows()) {
        return Err(Error::shape(
            "linear_backward",
            format!(
                "grad_out has shape {:?}, the forward output's shape is {:?}",
                grad_out.dim(),
                (x.nrows(), w.nrows())
            ),
        ));
    }
    Ok(LinearGrads {
        input: dot(grad_out, w),
        weight: dot(grad_out.t(), x),
        bias: grad_out.sum_axis(Axis(0)),
    })
}

/// Column blocks of the product are multiples of this many columns (a few of the matrix
/// product's register tiles).
const COLUMN_STEP: usize = 64;

/// `a · b`, its columns in one block per thread of the rayon pool: each block packs `a` once,
/// so fewer blocks pack it fewer times. A column's elements are computed alone, in the same
/// order whatever block holds the column, so the result has the same bits on any number of
/// threads.
fn dot<T: NdFloat>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    // β = 0: the product writes C without reading it (matrixmultiply's contract).
    let mut c = crate::buffers::for_overwrite((a.nrows(), b.ncols()));
    let threads = rayon::current_num_threads().max(1);
    let block = b
        .ncols()
        .div_ceil(threads)
        .next_multiple_of(COLUMN_STEP)
        .max(COLUMN_STEP);
    c.axis_chunks_iter_mut(Axis(1), block)
        .into_par_iter()
        .zip(b.axis_chunks_iter(Axis(1), block))
        .for_each(|(mut c, b)| general_mat_mul(T::one(), &a, &b, T::zero(), &mut c));
    c
}

fn check(x: (usize, usize), w: (usize, usize), bias: Option<usize>) -> Result<()> {
    if x.1 != w.1 {
        return Err(Error::shape(
            "linear",
            format!(
                "input {x:?} has {} features but the weight {w:?} expects {}",
                x.1, w.1
            ),
        ));
    }
    if let Some(len) = bias.filter(|&len| len != w.0) {
        return Err(Error::shape(
            "linear",
            format!("bias has {len} elements, expected out = {}", w.0),
        ));
    }
    Ok(())
}
