#![doc = include_str!("../../chapters/03-convolution-2d.md")]

pub mod direct;
pub mod fast;
pub mod naive;
pub mod winograd;

pub use fast::{conv2d, conv3d, convolve2d, correlate2d};
