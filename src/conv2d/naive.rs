//! Reference kernels of chapter 3: loops in the order of the formulas, nothing else.
//!
//! Each function here has a twin of the same name in [`super::fast`]; property tests hold the two
//! equal. This file depends only on `ndarray` and the crate's `shape` and `error` modules, so it
//! can be copied into an exercise.

use ndarray::{Array2, Array4, Array5, ArrayView1, ArrayView2, ArrayView4, ArrayView5, NdFloat};

use crate::error::Result;
use crate::shape::{Conv2dParams, Conv3dParams, ConvGeometry, Mode, SignalFrame, SignalOp};

/// Position `pos` of a padded axis with `pad` zeros in front, as an index into the unpadded
/// axis of length `len`, or `None` where it falls on padding.
fn unpad(pos: usize, pad: usize, len: usize) -> Option<usize> {
    pos.checked_sub(pad).filter(|&t| t < len)
}

/// The 2-D convolution layer, exactly as PyTorch's `torch.nn.functional.conv2d`:
///
/// `out[n, c_out, i, j] = b[c_out] + Σ_{c=0}^{C_in/g − 1} Σ_{k_i=0}^{kH−1} Σ_{k_j=0}^{kW−1}
///     x̃[n, g(c_out)·C_in/g + c, i·s_h + k_i·d_h, j·s_w + k_j·d_w] · w[c_out, c, k_i, k_j]`
///
/// with input `x` of shape `(N, C_in, H, W)`, weight `w` of shape `(C_out, C_in/g, kH, kW)`,
/// optional bias `b` of length `C_out`, `x̃` the input padded with zeros, and
/// `g(c_out) = c_out / (C_out/g)` the group of output channel `c_out`. Output
/// `(N, C_out, H_out, W_out)`, each size given by the formula of chapter 2.
pub fn conv2d<T: NdFloat>(
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
    let c_out_per_group = c_out / geo.groups;
    let ([s_h, s_w], [d_h, d_w]) = (geo.stride, geo.dilation);
    let (p_h, p_w) = (geo.pads[0].left, geo.pads[1].left);
    Ok(Array4::from_shape_fn(
        (n, c_out, geo.output[0], geo.output[1]),
        |(n, c_out, i, j)| {
            let group = c_out / c_out_per_group;
            let mut y = b.map_or(T::zero(), |b| b[c_out]);
            for c in 0..c_in_per_group {
                for k_i in 0..kh {
                    let Some(row) = unpad(i * s_h + k_i * d_h, p_h, h) else {
                        continue;
                    };
                    for k_j in 0..kw {
                        if let Some(col) = unpad(j * s_w + k_j * d_w, p_w, wd) {
                            let pixel = x[[n, group * c_in_per_group + c, row, col]];
                            y += pixel * w[[c_out, c, k_i, k_j]];
                        }
                    }
                }
            }
            y
        },
    ))
}

/// The 3-D convolution layer, exactly as PyTorch's `torch.nn.functional.conv3d`: the formula of
/// [`conv2d`] with a third spatial axis (depth) in front,
///
/// `out[n, c_out, t, i, j] = b[c_out] + Σ_c Σ_{k_t} Σ_{k_i} Σ_{k_j}
///     x̃[n, g(c_out)·C_in/g + c, t·s_t + k_t·d_t, i·s_h + k_i·d_h, j·s_w + k_j·d_w]
///     · w[c_out, c, k_t, k_i, k_j]`
///
/// on input `(N, C_in, D, H, W)` and weight `(C_out, C_in/g, kD, kH, kW)`.
pub fn conv3d<T: NdFloat>(
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
    let c_out_per_group = c_out / geo.groups;
    let ([s_t, s_h, s_w], [d_t, d_h, d_w]) = (geo.stride, geo.dilation);
    let (p_t, p_h, p_w) = (geo.pads[0].left, geo.pads[1].left, geo.pads[2].left);
    let [d_out, h_out, w_out] = geo.output;
    Ok(Array5::from_shape_fn(
        (n, c_out, d_out, h_out, w_out),
        |(n, c_out, t, i, j)| {
            let group = c_out / c_out_per_group;
            let mut y = b.map_or(T::zero(), |b| b[c_out]);
            for c in 0..c_in_per_group {
                for k_t in 0..kd {
                    let Some(slice) = unpad(t * s_t + k_t * d_t, p_t, dp) else {
                        continue;
                    };
                    for k_i in 0..kh {
                        let Some(row) = unpad(i * s_h + k_i * d_h, p_h, h) else {
                            continue;
                        };
                        for k_j in 0..kw {
                            if let Some(col) = unpad(j * s_w + k_j * d_w, p_w, wd) {
                                let voxel = x[[n, group * c_in_per_group + c, slice, row, col]];
                                y += voxel * w[[c_out, c, k_t, k_i, k_j]];
                            }
                        }
                    }
                }
            }
            y
        },
    ))
}

/// SciPy's `scipy.signal.convolve2d(x, w, mode)` with zero fill: the kernel flipped along both
/// axes,
///
/// `y[i, j] = Σ_{k_i} Σ_{k_j} x̃[i + k_i, j + k_j] · w[kH − 1 − k_i, kW − 1 − k_j]`
///
/// where `x̃` has `pad_left` zeros in front along each axis (set by the mode).
pub fn convolve2d<T: NdFloat>(x: ArrayView2<T>, w: ArrayView2<T>, mode: Mode) -> Result<Array2<T>> {
    let [fh, fw] = SignalFrame::scipy_2d(x.dim(), w.dim(), mode, SignalOp::Convolve)?;
    let ((h, wd), (kh, kw)) = (x.dim(), w.dim());
    Ok(Array2::from_shape_fn((fh.len, fw.len), |(i, j)| {
        let mut y = T::zero();
        for k_i in 0..kh {
            for k_j in 0..kw {
                if let (Some(r), Some(c)) = (
                    unpad(i + k_i, fh.pad_left, h),
                    unpad(j + k_j, fw.pad_left, wd),
                ) {
                    y += x[[r, c]] * w[[kh - 1 - k_i, kw - 1 - k_j]];
                }
            }
        }
        y
    }))
}

/// SciPy's `scipy.signal.correlate2d(x, w, mode)` with zero fill: the kernel as is,
///
/// `y[i, j] = Σ_{k_i} Σ_{k_j} x̃[i + k_i, j + k_j] · w[k_i, k_j]`.
pub fn correlate2d<T: NdFloat>(
    x: ArrayView2<T>,
    w: ArrayView2<T>,
    mode: Mode,
) -> Result<Array2<T>> {
    let [fh, fw] = SignalFrame::scipy_2d(x.dim(), w.dim(), mode, SignalOp::Correlate)?;
    let ((h, wd), (kh, kw)) = (x.dim(), w.dim());
    Ok(Array2::from_shape_fn((fh.len, fw.len), |(i, j)| {
        let mut y = T::zero();
        for k_i in 0..kh {
            for k_j in 0..kw {
                if let (Some(r), Some(c)) = (
                    unpad(i + k_i, fh.pad_left, h),
                    unpad(j + k_j, fw.pad_left, wd),
                ) {
                    y += x[[r, c]] * w[[k_i, k_j]];
                }
            }
        }
        y
    }))
}

/// The gradients of [`conv2d`]'s loss with respect to its input, weight and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dGrads<T> {
    /// `∂L/∂x`, the input's shape `(N, C_in, H, W)`.
    pub input: Array4<T>,
    /// `∂L/∂w`, the weight's shape `(C_out, C_in/g, kH, kW)`.
    pub weight: Array4<T>,
    /// `∂L/∂b`, one value per output channel.
    pub bias: ndarray::Array1<T>,
}

/// Backpropagation through [`conv2d`]: given `g = ∂L/∂out` of shape `(N, C_out, H_out, W_out)`,
///
/// `∂L/∂b[c_out] = Σ_{n,i,j} g[n, c_out, i, j]`
///
/// `∂L/∂w[c_out, c, k_i, k_j] = Σ_{n,i,j} g[n, c_out, i, j] · x̃[n, g(c_out)·C_in/g + c, i·s_h + k_i·d_h, j·s_w + k_j·d_w]`
///
/// `∂L/∂x[n, c_in, h, w] = Σ g[n, c_out, i, j] · w[c_out, c, k_i, k_j]` over every output
/// `(c_out, i, j)` and tap `(k_i, k_j)` that read pixel `(h, w)` of channel `c_in`.
///
/// Each term is the forward formula read backwards: every product `x̃ · w` in an output sends
/// `g` times the other factor back to each factor.
pub fn conv2d_backward<T: NdFloat>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<Conv2dGrads<T>> {
    let ((n, c_in, h, wd), (c_out, c_in_per_group, kh, kw)) = (x.dim(), w.dim());
    let geo = ConvGeometry::new(
        (n, c_in, [h, wd]),
        (c_out, c_in_per_group, [kh, kw]),
        None,
        params,
    )?;
    check_grad_shape(grad_out.shape(), &[n, c_out, geo.output[0], geo.output[1]])?;
    let c_out_per_group = c_out / geo.groups;
    let ([s_h, s_w], [d_h, d_w]) = (geo.stride, geo.dilation);
    let (p_h, p_w) = (geo.pads[0].left, geo.pads[1].left);
    let mut grads = Conv2dGrads {
        input: Array4::zeros(x.raw_dim()),
        weight: Array4::zeros(w.raw_dim()),
        bias: ndarray::Array1::zeros(c_out),
    };
    for ((n, c_out, i, j), &g) in grad_out.indexed_iter() {
        let group = c_out / c_out_per_group;
        grads.bias[c_out] += g;
        for c in 0..c_in_per_group {
            let channel = group * c_in_per_group + c;
            for k_i in 0..kh {
                let Some(row) = unpad(i * s_h + k_i * d_h, p_h, h) else {
                    continue;
                };
                for k_j in 0..kw {
                    if let Some(col) = unpad(j * s_w + k_j * d_w, p_w, wd) {
                        grads.weight[[c_out, c, k_i, k_j]] += g * x[[n, channel, row, col]];
                        grads.input[[n, channel, row, col]] += g * w[[c_out, c, k_i, k_j]];
                    }
                }
            }
        }
    }
    Ok(grads)
}

/// `grad_out` must have the forward output's shape.
pub(crate) fn check_grad_shape(got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(crate::error::Error::shape(
            "conv2d_backward",
            format!("grad_out has shape {got:?}, the forward output's shape is {expected:?}"),
        ));
    }
    Ok(())
}

/// The gradients of [`conv3d`]'s loss with respect to its input, weight and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv3dGrads<T> {
    /// `∂L/∂x`, the input's shape `(N, C_in, D, H, W)`.
    pub input: Array5<T>,
    /// `∂L/∂w`, the weight's shape `(C_out, C_in/g, kD, kH, kW)`.
    pub weight: Array5<T>,
    /// `∂L/∂b`, one value per output channel.
    pub bias: ndarray::Array1<T>,
}

/// Backpropagation through [`conv3d`]: [`conv2d_backward`]'s sums with a depth axis — each
/// product `x̃[…, t·s_t + k_t·d_t, i·s_h + k_i·d_h, j·s_w + k_j·d_w] · w[c_out, c, k_t, k_i, k_j]`
/// sends `g[n, c_out, t, i, j]` times the other factor to each factor, and `g` to the bias.
pub fn conv3d_backward<T: NdFloat>(
    x: ArrayView5<T>,
    w: ArrayView5<T>,
    grad_out: ArrayView5<T>,
    params: Conv3dParams,
) -> Result<Conv3dGrads<T>> {
    let ((n, c_in, dp, h, wd), (c_out, c_in_per_group, kd, kh, kw)) = (x.dim(), w.dim());
    let geo = ConvGeometry::new(
        (n, c_in, [dp, h, wd]),
        (c_out, c_in_per_group, [kd, kh, kw]),
        None,
        params,
    )?;
    let [d_out, h_out, w_out] = geo.output;
    check_grad_shape(grad_out.shape(), &[n, c_out, d_out, h_out, w_out])?;
    let c_out_per_group = c_out / geo.groups;
    let ([s_t, s_h, s_w], [d_t, d_h, d_w]) = (geo.stride, geo.dilation);
    let (p_t, p_h, p_w) = (geo.pads[0].left, geo.pads[1].left, geo.pads[2].left);
    let mut grads = Conv3dGrads {
        input: Array5::zeros(x.raw_dim()),
        weight: Array5::zeros(w.raw_dim()),
        bias: ndarray::Array1::zeros(c_out),
    };
    for ((n, c_out, t, i, j), &g) in grad_out.indexed_iter() {
        let group = c_out / c_out_per_group;
        grads.bias[c_out] += g;
        for c in 0..c_in_per_group {
            let channel = group * c_in_per_group + c;
            for k_t in 0..kd {
                let Some(slice) = unpad(t * s_t + k_t * d_t, p_t, dp) else {
                    continue;
                };
                for k_i in 0..kh {
                    let Some(row) = unpad(i * s_h + k_i * d_h, p_h, h) else {
                        continue;
                    };
                    for k_j in 0..kw {
                        if let Some(col) = unpad(j * s_w + k_j * d_w, p_w, wd) {
                            let at = [n, channel, slice, row, col];
                            grads.weight[[c_out, c, k_t, k_i, k_j]] += g * x[at];
                            grads.input[at] += g * w[[c_out, c, k_t, k_i, k_j]];
                        }
                    }
                }
            }
        }
    }
    Ok(grads)
}
