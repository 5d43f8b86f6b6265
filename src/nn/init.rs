//! Initialisation of weights and biases, seeded.

use ndarray::ArrayD;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::gemm::Scalar;

/// How a layer's weights and biases are first drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's defaults for `Conv2d` and `Linear`: weights from Kaiming-uniform with
    /// `a = √5`, i.e. `U(−b, b)` with `b = gain·√(3 / fan_in)`, `gain = √(2 / (1 + a²))`, which is
    /// `b = 1/√fan_in`; biases from `U(−1/√fan_in, 1/√fan_in)`.
    #[default]
    PyTorch,
    /// Keras's defaults: weights from Glorot-uniform, `U(−b, b)` with
    /// `b = √(6 / (fan_in + fan_out))`; biases zero.
    Glorot,
}

/// `fan_in = in_channels · kH · kW` (or `in_features`), `fan_out = out_channels · kH · kW` (or
/// `out_features`), for a weight of shape `(out, in, k…)`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let field: usize = shape.iter().skip(2).product();
    (shape[1] * field, shape[0] * field)
}

fn uniform<T: Scalar>(shape: &[usize], bound: f64, rng: &mut ChaCha8Rng) -> ArrayD<T> {
    ArrayD::from_shape_simple_fn(shape, || {
        let u: f64 = rng.random_range(-bound..=bound);
        T::from(u).expect("f64 converts to the float type")
    })
}

impl Init {
    /// A weight of `shape` `(out, in, k…)`.
    pub fn weight<T: Scalar>(self, shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<T> {
        let (fan_in, fan_out) = fans(shape);
        let bound = match self {
            Init::PyTorch => {
                let a = 5f64.sqrt();
                let gain = (2.0 / (1.0 + a * a)).sqrt();
                gain * (3.0 / fan_in.max(1) as f64).sqrt()
            }
            Init::Glorot => (6.0 / (fan_in + fan_out).max(1) as f64).sqrt(),
        };
        uniform(shape, bound, rng)
    }

    /// A bias of length `out` for a weight of `weight_shape`.
    pub fn bias<T: Scalar>(
        self,
        out: usize,
        weight_shape: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> ArrayD<T> {
        match self {
            Init::PyTorch => {
                let (fan_in, _) = fans(weight_shape);
                let bound = if fan_in > 0 {
                    1.0 / (fan_in as f64).sqrt()
                } else {
                    0.0
                };
                uniform(&[out], bound, rng)
            }
            Init::Glorot => ArrayD::zeros(vec![out]),
        }
    }
}
