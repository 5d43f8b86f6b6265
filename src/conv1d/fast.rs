//! Fast kernels of chapter 1, with the same names and signatures as [`super::naive`].
//!
//! * [`convolve`] / [`correlate`]: the signal is copied once into a zero-padded buffer so the
//!   inner loops never test bounds; with stride 1 each kernel tap adds `w[k]·x̃[k·d + i]` to a
//!   block of outputs that stays in L1, a loop the compiler turns into SIMD; long signals are
//!   split into blocks over all cores.
//! * [`conv1d`]: im2col + GEMM. For each image and group the patches are unrolled into a
//!   `(C_in/g · K) × L_out` matrix (one column per output position), and one matrix product with
//!   the `(C_out/g) × (C_in/g · K)` weight matrix gives every output channel at once. Images run
//!   in parallel; each thread reuses its column buffer.

use ndarray::linalg::general_mat_mul;
use ndarray::parallel::prelude::*;
use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView3, Axis, NdFloat, s};
use rayon::slice::ParallelSliceMut;

use crate::error::Result;
use crate::im2col::{Patches, im2col_1d};
use crate::shape::{Conv1dGeometry, ConvParams, SignalOp, SignalParams};

/// Outputs computed together by one pass over the kernel taps: small enough that the block and
/// the signal it reads stay in L1.
const BLOCK: usize = 2048;
/// Below this many multiply-adds a signal convolution runs on one thread.
const PARALLEL_WORK: usize = 1 << 17;

fn signal<T: NdFloat>(
    x: ArrayView1<T>,
    w: ArrayView1<T>,
    params: SignalParams,
    op: SignalOp,
) -> Result<Array1<T>> {
    let frame = params.frame(x.len(), w.len(), op)?;
    let (s, d, m) = (params.stride, params.dilation, w.len());
    let taps: Vec<T> = match op {
        SignalOp::Convolve => w.iter().rev().copied().collect(),
        SignalOp::Correlate => w.iter().copied().collect(),
    };
    // x̃: exactly the positions the outputs read, zeros where the signal is not.
    let needed = (frame.len - 1) * s + d * (m - 1) + 1;
    let mut xp = vec![T::zero(); needed];
    for (dst, &src) in xp.iter_mut().skip(frame.pad_left).zip(x.iter()) {
        *dst = src;
    }
    let mut y = vec![T::zero(); frame.len];
    let block = |(b, out): (usize, &mut [T])| {
        let i0 = b * BLOCK;
        if s == 1 {
            for (k, &tap) in taps.iter().enumerate() {
                let xs = &xp[i0 + k * d..i0 + k * d + out.len()];
                for (o, &xv) in out.iter_mut().zip(xs) {
                    *o += tap * xv;
                }
            }
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                let start = (i0 + j) * s;
                *o = taps
                    .iter()
                    .zip(xp[start..].iter().step_by(d))
                    .fold(T::zero(), |acc, (&tap, &xv)| acc + tap * xv);
            }
        }
    };
    if frame.len * m >= PARALLEL_WORK {
        y.par_chunks_mut(BLOCK).enumerate().for_each(block);
    } else {
        y.chunks_mut(BLOCK).enumerate().for_each(block);
    }
    Ok(Array1::from_vec(y))
}

/// Signal convolution `y = x * w` (kernel flipped), exactly as NumPy's `np.convolve`; the twin of
/// [`super::naive::convolve`].
pub fn convolve<T: NdFloat>(
    x: ArrayView1<T>,
    w: ArrayView1<T>,
    params: impl Into<SignalParams>,
) -> Result<Array1<T>> {
    signal(x, w, params.into(), SignalOp::Convolve)
}

/// Signal cross-correlation `y = x ⋆ w`, exactly as NumPy's `np.correlate`; the twin of
/// [`super::naive::correlate`].
pub fn correlate<T: NdFloat>(
    x: ArrayView1<T>,
    w: ArrayView1<T>,
    params: impl Into<SignalParams>,
) -> Result<Array1<T>> {
    signal(x, w, params.into(), SignalOp::Correlate)
}

/// The 1-D convolution layer by im2col + GEMM, exactly as PyTorch's `conv1d`; the twin of
/// [`super::naive::conv1d`].
pub fn conv1d<T: NdFloat>(
    x: ArrayView3<T>,
    w: ArrayView3<T>,
    b: Option<ArrayView1<T>>,
    params: ConvParams,
) -> Result<Array3<T>> {
    let ((n, c_in, l), (c_out, c_in_per_group, k_len)) = (x.dim(), w.dim());
    let geo = Conv1dGeometry::new(
        (n, c_in, [l]),
        (c_out, c_in_per_group, [k_len]),
        b.map(|b| b.len()),
        params,
    )?;
    let patches = Patches::from(&geo);
    let c_out_per_group = c_out / geo.groups;
    let rows = c_in_per_group * k_len;
    let l_out = geo.output[0];
    // The weight as a (C_out) × (C_in/g · K) matrix: row c_out holds w[c_out, c, k] at c·K + k.
    let w = w.as_standard_layout();
    let w_rows = w
        .view()
        .into_shape_with_order((c_out, rows))
        .expect("a standard-layout array reshapes to its own element count");
    let mut out = Array3::<T>::zeros((n, c_out, l_out));
    out.outer_iter_mut()
        .into_par_iter()
        .zip(x.outer_iter().into_par_iter())
        .for_each_init(
            || Array2::<T>::zeros((rows, l_out)),
            |cols, (mut out_n, x_n)| {
                for g in 0..geo.groups {
                    let channels = x_n.slice(s![g * c_in_per_group..(g + 1) * c_in_per_group, ..]);
                    im2col_1d(channels, &patches, cols.view_mut());
                    let group_out = s![g * c_out_per_group..(g + 1) * c_out_per_group, ..];
                    let mut y = out_n.slice_mut(group_out);
                    if let Some(b) = b {
                        let b = b.slice(s![g * c_out_per_group..(g + 1) * c_out_per_group]);
                        y.assign(&b.insert_axis(Axis(1)));
                    }
                    let w_g = w_rows.slice(group_out);
                    general_mat_mul(T::one(), &w_g, &*cols, T::one(), &mut y);
                }
            },
        );
    Ok(out)
}

/// Backpropagation through [`conv1d`] by im2col, two matrix products and col2im: the 2-D
/// kernel [`crate::conv2d::fast::conv2d_backward`] on signals of height 1. The twin of
/// [`super::naive::conv1d_backward`].
pub fn conv1d_backward<T: crate::gemm::Scalar>(
    x: ArrayView3<T>,
    w: ArrayView3<T>,
    grad_out: ArrayView3<T>,
    params: ConvParams,
) -> Result<super::naive::Conv1dGrads<T>> {
    // Height 1: a 1-row kernel, no padding, stride or dilation along it.
    let axis = crate::shape::Conv2dParams::default()
        .groups(params.groups)
        .strides([1, params.stride])
        .paddings([crate::shape::Padding::Explicit(0), params.padding])
        .dilations([1, params.dilation]);
    let ((n, c_in, l), (c_out, c_in_per_group, k_len)) = (x.dim(), w.dim());
    // Check with the 1-D rules first, so errors name conv1d's shapes.
    let geo = Conv1dGeometry::new(
        (n, c_in, [l]),
        (c_out, c_in_per_group, [k_len]),
        None,
        params,
    )?;
    super::naive::check_grad_out(grad_out.dim(), (n, c_out, geo.output[0]))?;
    let grads = crate::conv2d::fast::conv2d_backward(
        x.insert_axis(Axis(2)),
        w.insert_axis(Axis(2)),
        grad_out.insert_axis(Axis(2)),
        axis,
    )?;
    Ok(super::naive::Conv1dGrads {
        input: grads.input.index_axis_move(Axis(2), 0),
        weight: grads.weight.index_axis_move(Axis(2), 0),
        bias: grads.bias,
    })
}
