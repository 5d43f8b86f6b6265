//! # convlab
//!
//! Convolutional neural networks from scratch, for learning and for real use. Every operation
//! exists twice: a `naive` kernel that reads like the formula of its chapter, and a `fast` one
//! checked against it. The chapters are the module docs:
//!
//! 1. [`conv1d`](mod@conv1d): 1-D discrete convolution, cross-correlation and the `conv1d` layer.
//! 2. [`shape`]: output sizes, padding rules and receptive fields.
//!
//! [`gemm`] holds the matrix-multiplication engines that im2col convolution runs on: the naive
//! triple loop, a blocked and packed product with SIMD micro-kernels, and `matrixmultiply`.
//!
//! The glossary that maps the course's Spanish terms to these names is `chapters/README.md`.

pub mod conv1d;
pub mod error;
pub mod gemm;
pub mod shape;

pub use conv1d::{conv1d, convolve, correlate};
pub use error::{Error, Result};
pub use shape::{ConvParams, Mode, Padding, PoolParams, SignalParams};
