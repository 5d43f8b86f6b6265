//! The reference matrix product: three loops, in the order of the formula.

use ndarray::{ArrayView2, ArrayViewMut2, NdFloat};

/// `C ← α·A·B + β·C` with `A` (m × k), `B` (k × n), `C` (m × n):
///
/// `C[i, j] = α · Σ_{p=0}^{k−1} A[i, p] · B[p, j] + β · C[i, j]`
///
/// With `β = 0`, `C` is only written, never read (so NaNs in it do not propagate), as in BLAS.
/// The shapes must already agree; [`super::gemm`] checks them.
pub fn gemm<T: NdFloat>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    for i in 0..m {
        for j in 0..n {
            let mut sum = T::zero();
            for p in 0..k {
                sum += a[[i, p]] * b[[p, j]];
            }
            c[[i, j]] = if beta == T::zero() {
                alpha * sum
            } else {
                alpha * sum + beta * c[[i, j]]
            };
        }
    }
}
