#![doc = include_str!("../../chapters/01-convolution-1d.md")]

pub mod fast;
pub mod naive;

pub use fast::{conv1d, convolve, correlate};
