#![doc = include_str!("../chapters/08-backprop.md")]

use ndarray::{ArrayD, ArrayViewD};

/// The gradient of a scalar function `f` at `x` by central differences, in f64:
///
/// `∂f/∂x_i ≈ (f(x + ε·e_i) − f(x − ε·e_i)) / (2ε)`
///
/// The error of this estimate is `O(ε²)` from the Taylor series plus `O(δ/ε)` from rounding
/// (`δ` ≈ 1e-16 times the sum of the magnitudes of the terms that make up `f`): `ε = 1e-6`,
/// PyTorch's `gradcheck` default, balances the two at about 1e-10 relative to that size. Where
/// `f` is affine in `x` the Taylor term vanishes and a larger `ε` only shrinks the rounding.
pub fn numerical_gradient(
    f: impl Fn(ArrayViewD<f64>) -> f64,
    x: ArrayViewD<f64>,
    eps: f64,
) -> ArrayD<f64> {
    let mut probe = x.to_owned();
    let mut grad = ArrayD::zeros(x.raw_dim());
    for (index, g) in grad.indexed_iter_mut() {
        let original = probe[&index];
        probe[&index] = original + eps;
        let up = f(probe.view());
        probe[&index] = original - eps;
        let down = f(probe.view());
        probe[&index] = original;
        *g = (up - down) / (2.0 * eps);
    }
    grad
}

/// Compare an analytic gradient with a numerical one the way PyTorch's `gradcheck` does:
/// every element must satisfy `|analytic − numerical| ≤ atol + rtol·|numerical|`. Returns the
/// first element that does not, with both values.
pub fn check_gradient(
    analytic: ArrayViewD<f64>,
    numerical: ArrayViewD<f64>,
    atol: f64,
    rtol: f64,
) -> Result<(), String> {
    if analytic.shape() != numerical.shape() {
        return Err(format!(
            "analytic gradient has shape {:?}, numerical {:?}",
            analytic.shape(),
            numerical.shape()
        ));
    }
    match analytic
        .indexed_iter()
        .zip(numerical.iter())
        .find(|((_, a), n)| {
            // NaN anywhere counts as a mismatch.
            let gap = (**a - **n).abs();
            gap.is_nan() || gap > atol + rtol * n.abs()
        }) {
        Some(((index, a), n)) => Err(format!(
            "gradient differs at {index:?}: analytic {a}, numerical {n} (atol {atol}, rtol {rtol})"
        )),
        None => Ok(()),
    }
}
