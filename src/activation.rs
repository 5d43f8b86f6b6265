#![doc = include_str!("../chapters/06-activations.md")]

use ndarray::{Array, ArrayView, Axis, Dimension, NdFloat, Zip};

use crate::error::{Error, Result};

/// `relu(x) = max(x, 0)` element-wise (NaN stays NaN, as in PyTorch).
pub fn relu<T: NdFloat, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    x.mapv(|v| if v < T::zero() { T::zero() } else { v })
}

/// `leaky_relu(x) = x` for `x > 0`, `negative_slope · x` otherwise (PyTorch's default slope is
/// 0.01).
pub fn leaky_relu<T: NdFloat, D: Dimension>(x: ArrayView<T, D>, negative_slope: T) -> Array<T, D> {
    x.mapv(|v| if v > T::zero() { v } else { v * negative_slope })
}

/// `σ(x) = 1 / (1 + e^(−x))`, computed as `e^x / (1 + e^x)` for negative `x` so that no
/// exponential overflows: `σ(−1e4) = 0`, `σ(1e4) = 1`, never NaN.
pub fn sigmoid<T: NdFloat, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    x.mapv(|v| {
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
    x.mapv(T::tanh)
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
