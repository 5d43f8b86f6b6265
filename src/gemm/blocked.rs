//! Cache-blocked, packed matrix product around a register-tile micro-kernel.
//!
//! `C ← α·A·B + β·C` is cut into blocks that fit the caches: a `KC × NC` block of B is packed
//! once into column panels of width `NR` (they stay in L3/L2 while every row block of A uses them),
//! an `MC × KC` block of A is packed into row panels of height `MR` (it stays in L2), and the
//! micro-kernel multiplies one A panel by one B panel into an `MR × NR` tile held in registers,
//! reading both panels front to back. Row blocks of C run on all cores.

use ndarray::parallel::prelude::*;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, s};

use super::kernel::{Isa, MicroKernel, Scalar};

/// Depth of a packed panel: `KC` steps of the micro-kernel per tile.
const KC: usize = 256;
/// Rows of A packed together (a multiple of every kernel's `MR`).
const MC: usize = 96;
/// Columns of B packed together (a multiple of every kernel's `NR`).
const NC: usize = 2048;
/// Below this many multiply-adds the product runs on one thread.
const PARALLEL_WORK: usize = 1 << 21;

/// Size `buf` for `panels` panels of `panel` elements; the last panel's padding (the part no
/// row or column fills) is zeroed, the rest is about to be overwritten.
fn prepare<T: Scalar>(buf: &mut Vec<T>, panels: usize, panel: usize, padded: bool) {
    if buf.len() != panels * panel {
        buf.clear();
        buf.resize(panels * panel, T::zero());
    } else if padded {
        let last = (panels - 1) * panel;
        buf[last..].fill(T::zero());
    }
}

/// Copy `A[rows, depth]` into panels of `mr` rows: panel `q` holds, for each `p`, the `mr` values
/// `A[q·mr + i, p]`, zero past the last row. Each row of A is read front to back.
fn pack_a<T: Scalar>(a: ArrayView2<T>, mr: usize, buf: &mut Vec<T>) {
    let (rows, depth) = a.dim();
    prepare(buf, rows.div_ceil(mr), mr * depth, rows % mr != 0);
    for (i, row) in a.outer_iter().enumerate() {
        let dst = buf[(i / mr) * mr * depth + i % mr..].iter_mut().step_by(mr);
        match row.as_slice() {
            Some(row) => dst.zip(row).for_each(|(d, &v)| *d = v),
            None => dst.zip(row.iter()).for_each(|(d, &v)| *d = v),
        }
    }
}

/// Copy `B[depth, cols]` into panels of `nr` columns: panel `q` holds, for each `p`, the `nr`
/// values `B[p, q·nr + j]`, zero past the last column. Each row of B is read front to back and
/// lands as `nr`-long runs, one per panel.
fn pack_b<T: Scalar>(b: ArrayView2<T>, nr: usize, buf: &mut Vec<T>) {
    let (depth, cols) = b.dim();
    prepare(buf, cols.div_ceil(nr), nr * depth, cols % nr != 0);
    for (p, row) in b.outer_iter().enumerate() {
        match row.as_slice() {
            Some(row) => {
                for (q, run) in row.chunks(nr).enumerate() {
                    let start = q * nr * depth + p * nr;
                    buf[start..start + run.len()].copy_from_slice(run);
                }
            }
            None => {
                for (j, &v) in row.iter().enumerate() {
                    buf[(j / nr) * nr * depth + p * nr + j % nr] = v;
                }
            }
        }
    }
}

/// `C ← α·A·B + β·C` with the micro-kernel of `isa`. Shapes must agree ([`super::gemm`] checks).
/// Returns `false` if this processor cannot run `isa`.
pub fn gemm_with<T: Scalar>(
    isa: Isa,
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) -> bool {
    let Some(kernel) = T::micro_kernel(isa) else {
        return false;
    };
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        scale(&mut c, beta);
        return true;
    }
    let parallel = m * n * k >= PARALLEL_WORK;
    // Packing buffers live across blocks; parallel workers keep one A buffer each instead.
    let (mut packed_a, mut packed_b) = (Vec::new(), Vec::new());
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(
                b.slice(s![pc..pc + kc, jc..jc + nc]),
                kernel.nr,
                &mut packed_b,
            );
            // The first depth block applies β; later ones add to what is there.
            let beta_here = if pc == 0 { beta } else { T::one() };
            let a_block = a.slice(s![.., pc..pc + kc]);
            let mut c_block = c.slice_mut(s![.., jc..jc + nc]);
            let packed_b = &packed_b;
            let work =
                |packed_a: &mut Vec<T>, (c_rows, a_rows): (ArrayViewMut2<T>, ArrayView2<T>)| {
                    pack_a(a_rows, kernel.mr, packed_a);
                    macro_kernel(&kernel, kc, packed_a, packed_b, alpha, beta_here, c_rows);
                };
            if parallel {
                c_block
                    .axis_chunks_iter_mut(Axis(0), MC)
                    .into_par_iter()
                    .zip(a_block.axis_chunks_iter(Axis(0), MC).into_par_iter())
                    .for_each_init(Vec::new, work);
            } else {
                c_block
                    .axis_chunks_iter_mut(Axis(0), MC)
                    .zip(a_block.axis_chunks_iter(Axis(0), MC))
                    .for_each(|pair| work(&mut packed_a, pair));
            }
        }
    }
    true
}

/// Multiply the packed `rows × kc` block of A by the packed `kc × cols` block of B, tile by tile,
/// and fold each tile into C: `C ← α·tile + β·C`.
fn macro_kernel<T: Scalar>(
    kernel: &MicroKernel<T>,
    kc: usize,
    packed_a: &[T],
    packed_b: &[T],
    alpha: T,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (rows, cols) = c.dim();
    for (jr, b_panel) in packed_b.chunks_exact(kc * nr).enumerate() {
        let j0 = jr * nr;
        for (ir, a_panel) in packed_a.chunks_exact(kc * mr).enumerate() {
            let i0 = ir * mr;
            let mut block = c.slice_mut(s![i0..(i0 + mr).min(rows), j0..(j0 + nr).min(cols)]);
            kernel.update(kc, a_panel, b_panel, alpha, beta, &mut block);
        }
    }
}

/// `C ← β·C`, writing zeros (not `0·C`) when `β = 0`.
fn scale<T: Scalar>(c: &mut ArrayViewMut2<T>, beta: T) {
    if beta == T::zero() {
        c.fill(T::zero());
    } else {
        c.mapv_inplace(|v| v * beta);
    }
}
