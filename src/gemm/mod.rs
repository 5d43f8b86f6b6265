//! Matrix multiplication, the engine under im2col convolution: `C ← α·A·B + β·C`.
//!
//! Three engines compute the same product behind one call, [`gemm`]:
//!
//! * [`Engine::Naive`] — [`naive::gemm`], three loops, the definition.
//! * [`Engine::Blocked`] — [`blocked::gemm_with`], cache blocking, packing of A and B panels and a
//!   register-tile micro-kernel ([`Isa::Portable`] Rust everywhere, [`Isa::Avx2Fma`] on x86_64
//!   processors that have it, chosen at run time by [`Isa::best`]).
//! * [`Engine::MatrixMultiply`] — the `matrixmultiply` crate (through `ndarray`'s
//!   `general_mat_mul`).
//!
//! ```
//! use convlab::gemm::{gemm, Engine, Isa};
//! use ndarray::{array, Array2};
//!
//! let a = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]; // 3 × 2
//! let b = array![[1.0, 0.0, -1.0], [0.0, 1.0, 2.0]]; // 2 × 3
//! for engine in [Engine::Naive, Engine::Blocked(Isa::best()), Engine::MatrixMultiply] {
//!     let mut c = Array2::<f64>::zeros((3, 3));
//!     gemm(engine, 1.0, a.view(), b.view(), 0.0, c.view_mut())?;
//!     assert_eq!(c, array![[1.0, 2.0, 3.0], [3.0, 4.0, 5.0], [5.0, 6.0, 7.0]]);
//! }
//! # Ok::<(), convlab::Error>(())
//! ```

pub mod blocked;
pub mod kernel;
pub mod naive;

pub use kernel::{Isa, Scalar};

use crate::error::{Error, Result};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Which implementation computes the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Three loops.
    Naive,
    /// Blocked and packed, with the micro-kernel of the given instruction set.
    Blocked(Isa),
    /// The `matrixmultiply` crate.
    MatrixMultiply,
}

/// `C ← α·A·B + β·C` for `A` (m × k), `B` (k × n), `C` (m × n), any strides. With `β = 0`, `C` is
/// only written, never read.
///
/// Errors if the shapes do not agree, or if `engine` needs instructions this processor lacks.
pub fn gemm<T: Scalar>(
    engine: Engine,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) -> Result<()> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 || c.dim() != (m, n) {
        return Err(Error::shape(
            "gemm",
            format!(
                "A {:?} · B {:?} needs A's columns = B's rows and C of shape ({m}, {n}), got C {:?}",
                a.dim(),
                b.dim(),
                c.dim()
            ),
        ));
    }
    match engine {
        Engine::Naive => naive::gemm(alpha, a, b, beta, c),
        Engine::Blocked(isa) => {
            if !blocked::gemm_with(isa, alpha, a, b, beta, c) {
                return Err(Error::param(
                    "engine",
                    format!("{isa:?} instructions are not available on this processor"),
                ));
            }
        }
        Engine::MatrixMultiply => ndarray::linalg::general_mat_mul(alpha, &a, &b, beta, &mut c),
    }
    Ok(())
}
