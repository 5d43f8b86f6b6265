//! Seeded random inputs for the checkers and their descriptions.

use ndarray::{Array, ArrayD, Dimension, IntoDimension};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{PRINT_WHOLE, show};

/// The random source of one exercise: the same cases on every run and every machine.
pub(crate) struct Draw(ChaCha8Rng);

impl Draw {
    pub fn new(seed: u64) -> Draw {
        Draw(ChaCha8Rng::seed_from_u64(seed))
    }

    /// An integer in `range` (inclusive).
    pub fn int(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        self.0.random_range(range)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.0.random_bool(p)
    }

    /// Small integers in `−4..=4` as floats: sums are exact, printed arrays read easily, and
    /// equal values (ties) are common.
    pub fn small<D: Dimension>(&mut self, shape: impl IntoDimension<Dim = D>) -> Array<f64, D> {
        Array::from_shape_simple_fn(shape, || self.0.random_range(-4..=4) as f64)
    }

    /// Uniform values in `[−1, 1)`.
    pub fn uniform<D: Dimension>(&mut self, shape: impl IntoDimension<Dim = D>) -> Array<f64, D> {
        Array::from_shape_simple_fn(shape, || self.0.random_range(-1.0..1.0))
    }

    /// Small integers for half of the cases, uniform values for the other half.
    pub fn values<D: Dimension>(&mut self, shape: impl IntoDimension<Dim = D>) -> Array<f64, D> {
        if self.chance(0.5) {
            self.small(shape)
        } else {
            self.uniform(shape)
        }
    }
}

/// `name = value` for a small array (printed whole), `name: shape […]` for a large one.
pub(crate) fn input<D: Dimension>(name: &str, a: &Array<f64, D>) -> String {
    let a: ArrayD<f64> = a.clone().into_dyn();
    if a.len() <= PRINT_WHOLE {
        format!("\n{name} {}", show(&a))
    } else {
        format!("\n{name}: shape {:?}", a.shape())
    }
}
