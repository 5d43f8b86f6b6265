#![doc = include_str!("../chapters/06-activations.md")]

use ndarray::{Array, ArrayView, Axis, Dimension, NdFloat, Zip};

use crate::buffers::{map, zip_map};
use crate::error::{Error, Result};

/// `relu(x) = max(x, 0)` element-wise (NaN stays NaN, as in PyTorch).
pub fn relu<T: NdFloat, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    map(x, |v| if v < T::zero() { T::zero() } else { v })
}

/// `leaky_relu(x) = x` for `x > 0`, `negative_slope · x` otherwise (PyTorch's default slope is
/// 0.01).
pub fn leaky_relu<T: NdFloat, D: Dimension>(x: ArrayView<T, D>, negative_slope: T) -> Array<T, D> {
    map(x, |v| if v > T::zero() { v } else { v * negative_slope })
}

/// `σ(x) = 1 / (1 + e^(−x))`, computed as `e^x / (1 + e^x)` for negative `x` so that no
/// exponential overflows: `σ(−1e4) = 0`, `σ(1e4) = 1`, never NaN.
pub fn sigmoid<T: NdFloat, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    map(x, |v| {
        if v >= T::zero() {
            T::one() / (T::one() + (-v).exp())
        } else {
            let e = v.exp();
            e / (T::one() + e)
        }
    })
}

/// `tanh(x) = (e^x − e^(−x)) / (e^x + e^(−x))`, via the standard library's stable `tanh`.
pub fn tanh<T: NdFloat, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    map(x, T::tanh)
}

fn check_axis(op: &'static str, ndim: usize, axis: usize) -> Result<()> {
    if axis >= ndim {
        return Err(Error::shape(
            op,
            format!("axis {axis} is out of range for an array with {ndim} axes"),
        ));
    }
    Ok(())
}

/// `softmax(x)_i = e^(x_i − m) / Σ_j e^(x_j − m)` along `axis`, with `m = max_j x_j`: subtracting
/// the maximum changes nothing mathematically and keeps every exponential ≤ 1, so logits of
/// ±1e4 give exact 0s and 1s instead of `inf / inf`.
pub fn softmax<T: NdFloat, D: Dimension>(x: ArrayView<T, D>, axis: usize) -> Result<Array<T, D>> {
    check_axis("softmax", x.ndim(), axis)?;
    let mut y = x.to_owned();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
        lane.mapv_inplace(|v| (v - m).exp());
        let sum = lane.sum();
        lane.mapv_inplace(|v| v / sum);
    }
    Ok(y)
}

/// `log_softmax(x)_i = x_i − m − log Σ_j e^(x_j − m)` along `axis` (`m = max_j x_j`): the
/// logarithm of [`softmax`] without ever forming a probability that could round to 0.
pub fn log_softmax<T: NdFloat, D: Dimension>(
    x: ArrayView<T, D>,
    axis: usize,
) -> Result<Array<T, D>> {
    check_axis("log_softmax", x.ndim(), axis)?;
    let mut y = x.to_owned();
    for mut lane in y.lanes_mut(Axis(axis)) {
        let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
        let log_sum = lane.fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
        Zip::from(&mut lane).for_each(|v| *v = *v - m - log_sum);
    }
    Ok(y)
}

fn check_same(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::shape(
            op,
            format!("grad_out of shape {b:?} must have the forward's shape {a:?}"),
        ));
    }
    Ok(())
}

/// Backward of [`relu`]: `∂L/∂x = g` where `x > 0`, else 0.
pub fn relu_backward<T: NdFloat, D: Dimension>(
    x: ArrayView<T, D>,
    grad_out: ArrayView<T, D>,
) -> Result<Array<T, D>> {
    check_same("relu_backward", x.shape(), grad_out.shape())?;
    Ok(zip_map(x, grad_out, |x, g| {
        if x > T::zero() { g } else { T::zero() }
    }))
}

/// Backward of [`leaky_relu`]: `∂L/∂x = g` where `x > 0`, else `negative_slope · g`.
pub fn leaky_relu_backward<T: NdFloat, D: Dimension>(
    x: ArrayView<T, D>,
    grad_out: ArrayView<T, D>,
    negative_slope: T,
) -> Result<Array<T, D>> {
    check_same("leaky_relu_backward", x.shape(), grad_out.shape())?;
    Ok(zip_map(x, grad_out, |x, g| {
        if x > T::zero() { g } else { g * negative_slope }
    }))
}

/// Backward of [`sigmoid`] from its output `y = σ(x)`: `∂L/∂x = g · y · (1 − y)`.
pub fn sigmoid_backward<T: NdFloat, D: Dimension>(
    y: ArrayView<T, D>,
    grad_out: ArrayView<T, D>,
) -> Result<Array<T, D>> {
    check_same("sigmoid_backward", y.shape(), grad_out.shape())?;
    Ok(zip_map(y, grad_out, |y, g| g * y * (T::one() - y)))
}

/// Backward of [`tanh`] from its output `y = tanh(x)`: `∂L/∂x = g · (1 − y²)`.
pub fn tanh_backward<T: NdFloat, D: Dimension>(
    y: ArrayView<T, D>,
    grad_out: ArrayView<T, D>,
) -> Result<Array<T, D>> {
    check_same("tanh_backward", y.shape(), grad_out.shape())?;
    Ok(zip_map(y, grad_out, |y, g| g * (T::one() - y * y)))
}

/// Backward of [`softmax`] from its output `y`: `∂y_i/∂x_j = y_i·(δ_ij − y_j)`, so
/// `∂L/∂x_j = y_j · (g_j − Σ_i g_i·y_i)` along `axis`.
pub fn softmax_backward<T: NdFloat, D: Dimension>(
    y: ArrayView<T, D>,
    grad_out: ArrayView<T, D>,
    axis: usize,
) -> Result<Array<T, D>> {
    check_axis("softmax_backward", y.ndim(), axis)?;
    check_same("softmax_backward", y.shape(), grad_out.shape())?;
    let mut dx = grad_out.to_owned();
    for (mut d, y) in dx
        .lanes_mut(Axis(axis))
        .into_iter()
        .zip(y.lanes(Axis(axis)))
    {
        let dot = Zip::from(&d).and(&y).fold(T::zero(), |s, &g, &y| s + g * y);
        Zip::from(&mut d)
            .and(&y)
            .for_each(|d, &y| *d = y * (*d - dot));
    }
    Ok(dx)
}

/// Backward of [`log_softmax`] from its output `y`: `∂y_i/∂x_j = δ_ij − e^(y_j)`, so
/// `∂L/∂x_j = g_j − e^(y_j) · Σ_i g_i` along `axis`.
pub fn log_softmax_backward<T: NdFloat, D: Dimension>(
    y: ArrayView<T, D>,
    grad_out: ArrayView<T, D>,
    axis: usize,
) -> Result<Array<T, D>> {
    check_axis("log_softmax_backward", y.ndim(), axis)?;
    check_same("log_softmax_backward", y.shape(), grad_out.shape())?;
    let mut dx = grad_out.to_owned();
    for (mut d, y) in dx
        .lanes_mut(Axis(axis))
        .into_iter()
        .zip(y.lanes(Axis(axis)))
    {
        let total = d.sum();
        Zip::from(&mut d)
            .and(&y)
            .for_each(|d, &y| *d -= y.exp() * total);
    }
    Ok(dx)
}
