//! Reference kernels of chapter 1: loops in the order of the formulas, nothing else.
//!
//! Each function here has a twin of the same name in [`super::fast`]; property tests hold the two
//! equal. This file depends only on `ndarray` and the crate's `shape` and `error` modules, so it
//! can be copied into an exercise.

use ndarray::{Array1, Array3, ArrayView1, ArrayView3, NdFloat};

use crate::error::Result;
use crate::shape::{Conv1dGeometry, ConvParams, SignalOp, SignalParams};

/// The element of `x` at position `pos` of its zero-padded version, where `pad_left` zeros come
/// first: `x̃[pos] = x[pos − pad_left]` inside the signal, `0` outside.
fn padded<T: NdFloat>(x: &ArrayView1<T>, pos: usize, pad_left: usize) -> T {
    match pos.checked_sub(pad_left) {
        Some(t) if t < x.len() => x[t],
        _ => T::zero(),
    }
}

/// Signal convolution `y = x * w`, the kernel flipped, exactly as NumPy's `np.convolve`:
///
/// `y[i] = Σ_{k=0}^{m−1} x̃[i·s + k·d] · w[m − 1 − k]`
///
/// where `x̃` is `x` with `pad_left` zeros in front (set by the mode), `s` the stride and `d` the
/// dilation. Lengths: full `n + m' − 1`, same `max(n, m')`, valid `max(n, m') − min(n, m') + 1`,
/// then `⌈len / s⌉` with a stride, where `m' = d·(m − 1) + 1`.
pub fn convolve<T: NdFloat>(
    x: ArrayView1<T>,
    w: ArrayView1<T>,
    params: impl Into<SignalParams>,
) -> Result<Array1<T>> {
    let params = params.into();
    let frame = params.frame(x.len(), w.len(), SignalOp::Convolve)?;
    let (s, d, m) = (params.stride, params.dilation, w.len());
    Ok(Array1::from_shape_fn(frame.len, |i| {
        let mut y = T::zero();
        for k in 0..m {
            y += padded(&x, i * s + k * d, frame.pad_left) * w[m - 1 - k];
        }
        y
    }))
}

/// Signal cross-correlation `y = x ⋆ w`, the kernel as is, exactly as NumPy's `np.correlate`:
///
/// `y[i] = Σ_{k=0}^{m−1} x̃[i·s + k·d] · w[k]`
///
/// with the same lengths as [`convolve`]. This is what ML "convolution" layers compute.
pub fn correlate<T: NdFloat>(
    x: ArrayView1<T>,
    w: ArrayView1<T>,
    params: impl Into<SignalParams>,
) -> Result<Array1<T>> {
    let params = params.into();
    let frame = params.frame(x.len(), w.len(), SignalOp::Correlate)?;
    let (s, d, m) = (params.stride, params.dilation, w.len());
    Ok(Array1::from_shape_fn(frame.len, |i| {
        let mut y = T::zero();
        for k in 0..m {
            y += padded(&x, i * s + k * d, frame.pad_left) * w[k];
        }
        y
    }))
}

/// The 1-D convolution layer, exactly as PyTorch's `torch.nn.functional.conv1d`:
///
/// `out[n, c_out, i] = b[c_out] + Σ_{c=0}^{C_in/g − 1} Σ_{k=0}^{K−1}
///     x̃[n, g(c_out)·C_in/g + c, i·s + k·d] · w[c_out, c, k]`
///
/// with input `x` of shape `(N, C_in, L_in)`, weight `w` of shape `(C_out, C_in/groups, K)`,
/// optional bias `b` of length `C_out`, `x̃` the input padded with zeros, and
/// `g(c_out) = c_out / (C_out/groups)` the group of output channel `c_out`. Output
/// `(N, C_out, L_out)` with `L_out = ⌊(L_in + p_left + p_right − d·(K − 1) − 1)/s⌋ + 1`.
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
    let c_out_per_group = c_out / geo.groups;
    let (s, d, pad_left) = (geo.stride[0], geo.dilation[0], geo.pads[0].left);
    Ok(Array3::from_shape_fn(
        (n, c_out, geo.output[0]),
        |(n, c_out, i)| {
            let group = c_out / c_out_per_group;
            let mut y = b.map_or(T::zero(), |b| b[c_out]);
            for c in 0..c_in_per_group {
                let row = x.slice(ndarray::s![n, group * c_in_per_group + c, ..]);
                for k in 0..k_len {
                    y += padded(&row, i * s + k * d, pad_left) * w[[c_out, c, k]];
                }
            }
            y
        },
    ))
}

/// The gradients of [`conv1d`]'s loss with respect to its input, weight and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1dGrads<T> {
    /// `∂L/∂x`, shape `(N, C_in, L_in)`.
    pub input: Array3<T>,
    /// `∂L/∂w`, shape `(C_out, C_in/g, K)`.
    pub weight: Array3<T>,
    /// `∂L/∂b`, one value per output channel.
    pub bias: Array1<T>,
}

/// Backpropagation through [`conv1d`] for `g = ∂L/∂out` of shape `(N, C_out, L_out)`: every
/// product `x̃[n, c, i·s + k·d] · w[c_out, c, k]` of the forward sends `g[n, c_out, i]` times the
/// other factor to each factor, and `g` to the bias:
///
/// `∂L/∂b[c_out] = Σ_{n,i} g[n, c_out, i]`,
/// `∂L/∂w[c_out, c, k] = Σ_{n,i} g[n, c_out, i] · x̃[n, c, i·s + k·d]`,
/// `∂L/∂x[n, c, l] = Σ g[n, c_out, i] · w[c_out, c, k]` over the `(c_out, i, k)` that read `l`.
pub fn conv1d_backward<T: NdFloat>(
    x: ArrayView3<T>,
    w: ArrayView3<T>,
    grad_out: ArrayView3<T>,
    params: ConvParams,
) -> Result<Conv1dGrads<T>> {
    let ((n, c_in, l), (c_out, c_in_per_group, k_len)) = (x.dim(), w.dim());
    let geo = Conv1dGeometry::new(
        (n, c_in, [l]),
        (c_out, c_in_per_group, [k_len]),
        None,
        params,
    )?;
    check_grad_out(grad_out.dim(), (n, c_out, geo.output[0]))?;
    let c_out_per_group = c_out / geo.groups;
    let (s, d, pad_left) = (geo.stride[0], geo.dilation[0], geo.pads[0].left);
    let mut grads = Conv1dGrads {
        input: Array3::zeros(x.raw_dim()),
        weight: Array3::zeros(w.raw_dim()),
        bias: Array1::zeros(c_out),
    };
    for ((n, c_out, i), &g) in grad_out.indexed_iter() {
        let group = c_out / c_out_per_group;
        grads.bias[c_out] += g;
        for c in 0..c_in_per_group {
            let channel = group * c_in_per_group + c;
            for k in 0..k_len {
                if let Some(pos) = (i * s + k * d).checked_sub(pad_left).filter(|&p| p < l) {
                    grads.weight[[c_out, c, k]] += g * x[[n, channel, pos]];
                    grads.input[[n, channel, pos]] += g * w[[c_out, c, k]];
                }
            }
        }
    }
    Ok(grads)
}

/// `grad_out` must have the forward output's shape.
pub(crate) fn check_grad_out(
    got: (usize, usize, usize),
    expected: (usize, usize, usize),
) -> Result<()> {
    if got != expected {
        return Err(crate::error::Error::shape(
            "conv1d_backward",
            format!("grad_out has shape {got:?}, the forward output's shape is {expected:?}"),
        ));
    }
    Ok(())
}
