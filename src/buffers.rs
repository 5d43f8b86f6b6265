//! Output arrays cleared by every thread of the pool.

use ndarray::{Array, Dimension, IntoDimension, NdFloat};
use rayon::prelude::*;

/// Elements below which one thread clears the array alone (a few pages: handing work out would
/// cost more than it saves). One thread alone uses `calloc`'s own clearing, which is faster than
/// writing the zeros one by one.
const SERIAL_LEN: usize = 1 << 16;

/// An array of zeros, written by the threads of the rayon pool a piece each: a large output
/// cleared by one thread (as `Array::zeros` does) keeps the other threads waiting.
pub(crate) fn zeros<T: NdFloat, D: Dimension>(shape: impl IntoDimension<Dim = D>) -> Array<T, D> {
    let dim = shape.into_dimension();
    let len = dim.size();
    if len < SERIAL_LEN || rayon::current_num_threads() == 1 {
        return Array::zeros(dim);
    }
    let mut values = Vec::with_capacity(len);
    values.par_extend(rayon::iter::repeat_n(T::zero(), len));
    Array::from_shape_vec(dim, values).expect("one value per element of the shape")
}
