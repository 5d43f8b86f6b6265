#![doc = include_str!("../../chapters/05-pooling.md")]

pub mod fast;
pub mod naive;

pub use fast::{
    adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool1d,
    adaptive_max_pool1d_with_indices, adaptive_max_pool2d, adaptive_max_pool2d_with_indices,
    avg_pool1d, avg_pool2d, avg_pool2d_backward, global_avg_pool2d, max_pool1d,
    max_pool1d_with_indices, max_pool2d, max_pool2d_backward, max_pool2d_with_indices,
};
