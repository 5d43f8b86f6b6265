//! Fast kernels of chapter 3, with the same names and signatures as [`super::naive`].
//!
//! [`conv2d`] is im2col + GEMM: for each image and group the windows are unrolled into a
//! `(C_in/g · kH · kW) × (H_out · W_out)` matrix ([`im2col_2d`]) and one matrix product with the
//! `(C_out/g) × (C_in/g · kH · kW)` weight matrix gives every output channel at every position.
//! Images run in parallel, each thread reusing its column buffer, so the columns of one image
//! stay in cache while the product reads them. [`conv3d`] sums 2-D products over the depth taps:
//! depth slice `t` of the output is `Σ_{k_t} W[:, :, k_t] · im2col(x[:, t·s_t + k_t·d_t − p_t])`.
//! [`convolve2d`] / [`correlate2d`] are one im2col and one matrix–vector product.
//! The `_with` variants take the GEMM engine, so tests can hold every engine to the same answer.

use ndarray::parallel::prelude::*;
use ndarray::{
    Array1, Array2, Array4, Array5, ArrayView1, ArrayView2, ArrayView4, ArrayView5, ArrayViewMut2,
    Axis, Zip, s,
};

use crate::error::Result;
use crate::gemm::{Engine, Scalar, gemm};
use crate::im2col::{Patches, col2im_2d, im2col_2d};
use crate::shape::{Conv2dParams, Conv3dParams, ConvGeometry, Mode, Pads, SignalFrame, SignalOp};

/// The GEMM engine the convolutions use by default: on the per-image im2col products of the
/// course's CNN, matrixmultiply measured fastest (chapter 4's table).
pub const DEFAULT_ENGINE: Engine = Engine::MatrixMultiply;

/// Images per block in the backward pass's weight-gradient sum (see [`conv2d_backward_with`]).
const IMAGES_PER_BLOCK: usize = 8;

/// `y ← b` broadcast along the rows (each output channel starts at its bias), or `y ← 0`.
fn start_with_bias<T: Scalar>(mut y: ArrayViewMut2<T>, b: Option<ArrayView1<T>>) {
    match b {
        Some(b) => y.assign(&b.insert_axis(Axis(1))),
        None => y.fill(T::zero()),
    }
}

/// A weight `(C_out, C_in/g, k…)` as the `C_out × (C_in/g · Π k)` matrix of im2col's rows.
fn weight_matrix<T: Scalar, D: ndarray::Dimension>(w: ndarray::ArrayView<T, D>) -> Array2<T> {
    let c_out = w.shape()[0];
    let rows = w.len().checked_div(c_out).unwrap_or(0);
    w.as_standard_layout()
        .into_owned()
        .into_shape_with_order((c_out, rows))
        .expect("a standard-layout array reshapes to its own element count")
}

/// `y[group g] += W[group g] · im2col(x[group g])` for every group of one image (or depth
/// slice): `x` is `(C_in, H, W)`, `y` is `(C_out, H_out·W_out)`.
fn groups_product<T: Scalar>(
    engine: Engine,
    x: ndarray::ArrayView3<T>,
    weights: ArrayView2<T>,
    patches: &Patches<2>,
    groups: usize,
    cols: &mut Array2<T>,
    mut y: ArrayViewMut2<T>,
) -> Result<()> {
    let c_in_per_group = x.dim().0 / groups;
    let c_out_per_group = weights.nrows() / groups;
    for g in 0..groups {
        let channels = x.slice(s![g * c_in_per_group..(g + 1) * c_in_per_group, .., ..]);
        im2col_2d(channels, patches, cols.view_mut());
        let outputs = s![g * c_out_per_group..(g + 1) * c_out_per_group, ..];
        gemm(
            engine,
            T::one(),
            weights.slice(outputs),
            cols.view(),
            T::one(),
            y.slice_mut(outputs),
        )?;
    }
    Ok(())
}

/// The 2-D convolution layer, exactly as PyTorch's `conv2d`; the twin of
/// [`super::naive::conv2d`]. It takes [`super::winograd`] where that applies, else
/// [`super::direct`], else im2col + GEMM ([`conv2d_with`]).
pub fn conv2d<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    b: Option<ArrayView1<T>>,
    params: Conv2dParams,
) -> Result<Array4<T>> {
    if let Some(y) = super::winograd::conv2d(x, w, b, params)? {
        return Ok(y);
    }
    match super::direct::conv2d(x, w, b, params)? {
        Some(y) => Ok(y),
        None => conv2d_with(DEFAULT_ENGINE, x, w, b, params),
    }
}

/// [`conv2d`] with the matrix products computed by `engine`.
pub fn conv2d_with<T: Scalar>(
    engine: Engine,
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    b: Option<ArrayView1<T>>,
    params: Conv2dParams,
) -> Result<Array4<T>> {
    let ((n, c_in, h, wd), (c_out, c_in_per_group, kh, kw)) = (x.dim(), w.dim());
    let geo = ConvGeometry::new(
        (n, c_in, [h, wd]),
        (c_out, c_in_per_group, [kh, kw]),
        b.map(|b| b.len()),
        params,
    )?;
    let patches = Patches::from(&geo);
    let weights = weight_matrix(w);
    let mut out = crate::buffers::zeros::<T, _>((n, c_out, geo.output[0], geo.output[1]));
    out.outer_iter_mut()
        .into_par_iter()
        .zip(x.outer_iter().into_par_iter())
        .try_for_each_init(
            || Array2::<T>::zeros((c_in_per_group * patches.taps(), patches.windows())),
            |cols, (out_n, x_n)| {
                let mut y = out_n
                    .into_shape_with_order((c_out, patches.windows()))
                    .expect("an image of a standard-layout output is contiguous");
                start_with_bias(y.view_mut(), b);
                groups_product(engine, x_n, weights.view(), &patches, geo.groups, cols, y)
            },
        )?;
    Ok(out)
}

/// The 3-D convolution layer, exactly as PyTorch's `conv3d`, as a sum of 2-D im2col products
/// over the depth taps; the twin of [`super::naive::conv3d`].
pub fn conv3d<T: Scalar>(
    x: ArrayView5<T>,
    w: ArrayView5<T>,
    b: Option<ArrayView1<T>>,
    params: Conv3dParams,
) -> Result<Array5<T>> {
    conv3d_with(DEFAULT_ENGINE, x, w, b, params)
}

/// [`conv3d`] with the matrix products computed by `engine`.
pub fn conv3d_with<T: Scalar>(
    engine: Engine,
    x: ArrayView5<T>,
    w: ArrayView5<T>,
    b: Option<ArrayView1<T>>,
    params: Conv3dParams,
) -> Result<Array5<T>> {
    let ((n, c_in, dp, h, wd), (c_out, c_in_per_group, kd, kh, kw)) = (x.dim(), w.dim());
    let geo = ConvGeometry::new(
        (n, c_in, [dp, h, wd]),
        (c_out, c_in_per_group, [kd, kh, kw]),
        b.map(|b| b.len()),
        params,
    )?;
    // The height and width axes of every depth slice.
    let patches = Patches {
        input: [h, wd],
        kernel: [kh, kw],
        output: [geo.output[1], geo.output[2]],
        pads: [geo.pads[1], geo.pads[2]],
        stride: [geo.stride[1], geo.stride[2]],
        dilation: [geo.dilation[1], geo.dilation[2]],
    };
    let weights: Vec<Array2<T>> = (0..kd)
        .map(|k_t| weight_matrix(w.slice(s![.., .., k_t, .., ..])))
        .collect();
    let [d_out, h_out, w_out] = geo.output;
    let (s_t, d_t, p_t) = (geo.stride[0], geo.dilation[0], geo.pads[0].left);
    let mut out = Array5::<T>::zeros((n, c_out, d_out, h_out, w_out));
    out.outer_iter_mut()
        .into_par_iter()
        .zip(x.outer_iter().into_par_iter())
        .try_for_each_init(
            || Array2::<T>::zeros((c_in_per_group * patches.taps(), patches.windows())),
            |cols, (out_n, x_n)| {
                let mut y = out_n
                    .into_shape_with_order((c_out, d_out, h_out * w_out))
                    .expect("an image of a standard-layout output is contiguous");
                for t in 0..d_out {
                    let mut y_t = y.index_axis_mut(Axis(1), t);
                    start_with_bias(y_t.view_mut(), b);
                    for (k_t, weights) in weights.iter().enumerate() {
                        let Some(slice) =
                            (t * s_t + k_t * d_t).checked_sub(p_t).filter(|&z| z < dp)
                        else {
                            continue;
                        };
                        let x_t = x_n.index_axis(Axis(1), slice);
                        let groups = geo.groups;
                        groups_product(
                            engine,
                            x_t,
                            weights.view(),
                            &patches,
                            groups,
                            cols,
                            y_t.view_mut(),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
    Ok(out)
}

fn signal2d<T: Scalar>(
    x: ArrayView2<T>,
    w: ArrayView2<T>,
    mode: Mode,
    op: SignalOp,
) -> Result<Array2<T>> {
    let [fh, fw] = SignalFrame::scipy_2d(x.dim(), w.dim(), mode, op)?;
    let ((h, wd), (kh, kw)) = (x.dim(), w.dim());
    let taps = match op {
        SignalOp::Convolve => w.slice(s![..;-1, ..;-1]),
        SignalOp::Correlate => w.view(),
    };
    let taps = taps
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((1, kh * kw))
        .expect("a standard-layout array reshapes to its own element count");
    let pads = |f: SignalFrame, n: usize, m: usize| Pads {
        left: f.pad_left,
        right: (f.len - 1 + m).saturating_sub(f.pad_left + n),
    };
    let patches = Patches {
        input: [h, wd],
        kernel: [kh, kw],
        output: [fh.len, fw.len],
        pads: [pads(fh, h, kh), pads(fw, wd, kw)],
        stride: [1, 1],
        dilation: [1, 1],
    };
    let mut cols = Array2::zeros((patches.taps(), patches.windows()));
    im2col_2d(x.insert_axis(Axis(0)), &patches, cols.view_mut());
    let mut y = Array2::zeros((1, patches.windows()));
    gemm(
        DEFAULT_ENGINE,
        T::one(),
        taps.view(),
        cols.view(),
        T::zero(),
        y.view_mut(),
    )?;
    Ok(y.into_shape_with_order((fh.len, fw.len))
        .expect("one row of H_out·W_out outputs reshapes to H_out × W_out"))
}

/// SciPy's `convolve2d` (zero fill) by im2col and one matrix–vector product; the twin of
/// [`super::naive::convolve2d`].
pub fn convolve2d<T: Scalar>(x: ArrayView2<T>, w: ArrayView2<T>, mode: Mode) -> Result<Array2<T>> {
    signal2d(x, w, mode, SignalOp::Convolve)
}

/// SciPy's `correlate2d` (zero fill) by im2col and one matrix–vector product; the twin of
/// [`super::naive::correlate2d`].
pub fn correlate2d<T: Scalar>(x: ArrayView2<T>, w: ArrayView2<T>, mode: Mode) -> Result<Array2<T>> {
    signal2d(x, w, mode, SignalOp::Correlate)
}

/// Backpropagation through [`conv2d`] by matrix products, the twin of
/// [`super::naive::conv2d_backward`]. Per image and group, with `X_col = im2col(x)`,
/// `W_row` the weight matrix and `G` the output gradient as a `C_out/g × H_out·W_out` matrix:
///
/// `∂L/∂W_row += G · X_colᵀ`,  `∂L/∂X_col = W_rowᵀ · G`,  `∂L/∂x = col2im(∂L/∂X_col)`,
///
/// the forward `H_col = W_row · X_col` differentiated like any matrix product; col2im adds each
/// column entry back to the pixel it was copied from. Images run in parallel, each thread summing
/// its own weight gradient.
pub fn conv2d_backward<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<super::naive::Conv2dGrads<T>> {
    match super::direct::conv2d_backward(x, w, grad_out, params)? {
        Some(grads) => Ok(grads),
        None => conv2d_backward_with(DEFAULT_ENGINE, x, w, grad_out, params),
    }
}

/// The weight and bias gradients of [`conv2d_backward`], bit for bit, without the input's: for
/// a first layer, whose input needs no gradient (PyTorch skips it for an input that does not
/// require one).
pub(crate) fn conv2d_parameter_grads<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<(Array4<T>, Array1<T>)> {
    let (_, weight, bias) = match super::direct::backward(x, w, grad_out, params, false)? {
        Some(grads) => grads,
        None => backward_with(DEFAULT_ENGINE, x, w, grad_out, params, false)?,
    };
    Ok((weight, bias))
}

/// [`conv2d_backward`] with the matrix products computed by `engine`.
pub fn conv2d_backward_with<T: Scalar>(
    engine: Engine,
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<super::naive::Conv2dGrads<T>> {
    let (input, weight, bias) = backward_with(engine, x, w, grad_out, params, true)?;
    Ok(super::naive::Conv2dGrads {
        input: input.expect("the input's gradient was asked for"),
        weight,
        bias,
    })
}

/// [`conv2d_backward_with`], with the input's gradient only where `input` asks for it.
fn backward_with<T: Scalar>(
    engine: Engine,
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
    input: bool,
) -> Result<super::direct::Grads<T>> {
    let ((n, c_in, h, wd), (c_out, c_in_per_group, kh, kw)) = (x.dim(), w.dim());
    let geo = ConvGeometry::new(
        (n, c_in, [h, wd]),
        (c_out, c_in_per_group, [kh, kw]),
        None,
        params,
    )?;
    super::naive::check_grad_shape(grad_out.shape(), &[n, c_out, geo.output[0], geo.output[1]])?;
    let patches = Patches::from(&geo);
    let (groups, windows) = (geo.groups, patches.windows());
    let rows = c_in_per_group * patches.taps();
    let c_out_per_group = c_out / groups;
    let weights = weight_matrix(w);
    // Without the input's gradient, an array of no pixels stands in for it.
    let [h_x, w_x] = if input { [h, wd] } else { [0, 0] };
    let mut grad_x = crate::buffers::zeros::<T, _>((n, c_in, h_x, w_x));
    // The weight gradient sums over images. Each fixed block of images sums its own in order
    // and the blocks' sums are added in order, so the result does not depend on how the work
    // was shared between threads: the same inputs give the same bits on any number of threads.
    let partial_sums = grad_x
        .axis_chunks_iter_mut(Axis(0), IMAGES_PER_BLOCK)
        .into_par_iter()
        .zip(
            x.axis_chunks_iter(Axis(0), IMAGES_PER_BLOCK)
                .into_par_iter(),
        )
        .zip(
            grad_out
                .axis_chunks_iter(Axis(0), IMAGES_PER_BLOCK)
                .into_par_iter(),
        )
        .map(|((mut gx_block, x_block), g_block)| {
            let mut grad_w = Array2::<T>::zeros((c_out, rows));
            let mut cols = crate::buffers::zeros::<T, _>((rows, windows));
            for ((mut gx_n, x_n), g_n) in gx_block
                .outer_iter_mut()
                .zip(x_block.outer_iter())
                .zip(g_block.outer_iter())
            {
                let g_n = g_n.as_standard_layout();
                let g_n = g_n
                    .view()
                    .into_shape_with_order((c_out, windows))
                    .expect("a standard-layout array reshapes to its own element count");
                for g in 0..groups {
                    let inputs = g * c_in_per_group..(g + 1) * c_in_per_group;
                    let outputs = g * c_out_per_group..(g + 1) * c_out_per_group;
                    let g_rows = g_n.slice(s![outputs.clone(), ..]);
                    im2col_2d(
                        x_n.slice(s![inputs.clone(), .., ..]),
                        &patches,
                        cols.view_mut(),
                    );
                    gemm(
                        engine,
                        T::one(),
                        g_rows,
                        cols.t(),
                        T::one(),
                        grad_w.slice_mut(s![outputs.clone(), ..]),
                    )?;
                    if !input {
                        continue;
                    }
                    // cols is free again: reuse it for ∂L/∂X_col.
                    gemm(
                        engine,
                        T::one(),
                        weights.slice(s![outputs, ..]).t(),
                        g_rows,
                        T::zero(),
                        cols.view_mut(),
                    )?;
                    col2im_2d(cols.view(), &patches, gx_n.slice_mut(s![inputs, .., ..]));
                }
            }
            crate::buffers::recycle(cols);
            Ok::<_, crate::error::Error>(grad_w)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut grad_w = Array2::<T>::zeros((c_out, rows));
    for partial in &partial_sums {
        grad_w += partial;
    }
    let bias = bias_grad(grad_out);
    let weight = grad_w
        .into_shape_with_order((c_out, c_in_per_group, kh, kw))
        .expect("one gradient per weight");
    Ok((input.then_some(grad_x), weight, bias))
}

/// `∂L/∂b[o] = Σ_{n,i,j} G[n, o, i, j]`: each row of `G` summed first, then the rows of each
/// image, then the images, in that order (the order of `ndarray`'s `sum_axis` over axes 3, 2
/// and 0, so the bits match it).
pub(crate) fn bias_grad<T: Scalar>(g: ArrayView4<T>) -> Array1<T> {
    let (n, c, h, w) = g.dim();
    if !g.is_standard_layout() || w < 2 {
        return g.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0));
    }
    let mut rows = crate::buffers::for_overwrite::<T, _>((n, c, h));
    Zip::from(&mut rows)
        .and(g.lanes(Axis(3)))
        .par_for_each(|r, lane| *r = lane.sum());
    let bias = rows.sum_axis(Axis(2)).sum_axis(Axis(0));
    crate::buffers::recycle(rows);
    bias
}

/// Backpropagation through [`conv3d`], the twin of [`super::naive::conv3d_backward`]: for every
/// output depth slice `t` and depth tap `k_t` that reads input slice `z`, the 2-D products of
/// [`conv2d_backward`] — `∂L/∂W[k_t] += G_t · X_col(z)ᵀ` and
/// `∂L/∂x[z] += col2im(W[k_t]ᵀ · G_t)`. Images run in parallel.
pub fn conv3d_backward<T: Scalar>(
    x: ArrayView5<T>,
    w: ArrayView5<T>,
    grad_out: ArrayView5<T>,
    params: Conv3dParams,
) -> Result<super::naive::Conv3dGrads<T>> {
    let ((n, c_in, dp, h, wd), (c_out, c_in_per_group, kd, kh, kw)) = (x.dim(), w.dim());
    let geo = ConvGeometry::new(
        (n, c_in, [dp, h, wd]),
        (c_out, c_in_per_group, [kd, kh, kw]),
        None,
        params,
    )?;
    let [d_out, h_out, w_out] = geo.output;
    super::naive::check_grad_shape(grad_out.shape(), &[n, c_out, d_out, h_out, w_out])?;
    let patches = Patches {
        input: [h, wd],
        kernel: [kh, kw],
        output: [h_out, w_out],
        pads: [geo.pads[1], geo.pads[2]],
        stride: [geo.stride[1], geo.stride[2]],
        dilation: [geo.dilation[1], geo.dilation[2]],
    };
    let (groups, windows) = (geo.groups, patches.windows());
    let rows = c_in_per_group * patches.taps();
    let c_out_per_group = c_out / groups;
    let weights: Vec<Array2<T>> = (0..kd)
        .map(|k_t| weight_matrix(w.slice(s![.., .., k_t, .., ..])))
        .collect();
    let (s_t, d_t, p_t) = (geo.stride[0], geo.dilation[0], geo.pads[0].left);
    let engine = DEFAULT_ENGINE;
    let mut grad_x = Array5::<T>::zeros((n, c_in, dp, h, wd));
    let grad_w = grad_x
        .outer_iter_mut()
        .into_par_iter()
        .zip(x.outer_iter().into_par_iter())
        .zip(grad_out.outer_iter().into_par_iter())
        .try_fold(
            || {
                (
                    vec![Array2::<T>::zeros((c_out, rows)); kd],
                    Array2::<T>::zeros((rows, windows)),
                )
            },
            |(mut grad_w, mut cols), ((mut gx_n, x_n), g_n)| {
                let g_n = g_n.as_standard_layout();
                let g_n = g_n
                    .view()
                    .into_shape_with_order((c_out, d_out, windows))
                    .expect("a standard-layout array reshapes to its own element count");
                for t in 0..d_out {
                    let g_t = g_n.index_axis(Axis(1), t);
                    for k_t in 0..kd {
                        let Some(z) = (t * s_t + k_t * d_t).checked_sub(p_t).filter(|&z| z < dp)
                        else {
                            continue;
                        };
                        for g in 0..groups {
                            let inputs = g * c_in_per_group..(g + 1) * c_in_per_group;
                            let outputs = g * c_out_per_group..(g + 1) * c_out_per_group;
                            let g_rows = g_t.slice(s![outputs.clone(), ..]);
                            let x_z = x_n.slice(s![inputs.clone(), z, .., ..]);
                            im2col_2d(x_z, &patches, cols.view_mut());
                            let dw = grad_w[k_t].slice_mut(s![outputs.clone(), ..]);
                            gemm(engine, T::one(), g_rows, cols.t(), T::one(), dw)?;
                            let w_rows = weights[k_t].slice(s![outputs, ..]);
                            gemm(
                                engine,
                                T::one(),
                                w_rows.t(),
                                g_rows,
                                T::zero(),
                                cols.view_mut(),
                            )?;
                            let mut gx_z = gx_n.slice_mut(s![inputs, z, .., ..]);
                            let mut slab = gx_z.to_owned();
                            col2im_2d(cols.view(), &patches, slab.view_mut());
                            gx_z.assign(&slab);
                        }
                    }
                }
                Ok::<_, crate::error::Error>((grad_w, cols))
            },
        )
        .map(|state| state.map(|(grad_w, _)| grad_w))
        .try_reduce(
            || vec![Array2::zeros((c_out, rows)); kd],
            |a, b| Ok(a.into_iter().zip(b).map(|(a, b)| a + b).collect()),
        )?;
    // Assemble (C_out, C_in/g · kH · kW) per depth tap into (C_out, C_in/g, kD, kH, kW).
    let mut weight = Array5::<T>::zeros((c_out, c_in_per_group, kd, kh, kw));
    for (k_t, dw) in grad_w.into_iter().enumerate() {
        let dw = dw
            .into_shape_with_order((c_out, c_in_per_group, kh, kw))
            .expect("one gradient per weight");
        weight.slice_mut(s![.., .., k_t, .., ..]).assign(&dw);
    }
    let bias = grad_out
        .sum_axis(Axis(4))
        .sum_axis(Axis(3))
        .sum_axis(Axis(2))
        .sum_axis(Axis(0));
    Ok(super::naive::Conv3dGrads {
        input: grad_x,
        weight,
        bias,
    })
}
