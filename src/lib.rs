//! # convlab
//!
//! Convolutional neural networks from scratch, for learning and for real use. Every operation
//! exists twice: a `naive` kernel that reads like the formula of its chapter, and a `fast` one
//! checked against it. The chapters are the module docs:
//!
//! 1. [`conv1d`](mod@conv1d): 1-D discrete convolution, cross-correlation and the `conv1d` layer.
//! 2. [`shape`]: output sizes, padding rules and receptive fields.
//! 3. [`conv2d`](mod@conv2d): 2-D and 3-D convolution layers, SciPy's `convolve2d` / `correlate2d`.
//! 4. [`im2col`]: unfold / fold, convolution as one matrix product, and the [`gemm`] engines.
//! 5. [`pool`]: max, average and adaptive pooling, PyTorch's and Keras's.
//! 6. [`activation`]: ReLU, leaky ReLU, sigmoid, tanh, softmax and log-softmax.
//! 7. [`loss`]: binary and categorical cross-entropy, from probabilities and from logits.
//! 8. [`grad`]: backpropagation derived by hand, checked by central differences; [`linear`],
//!    the fully connected layer.
//! 9. [`nn`]: layers, `Sequential` models with PyTorch's parameter names, initialisation, the
//!    course's networks; [`nn::optim`], PyTorch's optimizers.
//! 10. [`data`]: Fashion-MNIST, CIFAR-10 and mini-batches; [`train`], the training loop and its
//!     checkpoints.
//! 11. [`plot`]: seeing what a network learned — training curves, filters, feature maps, input
//!     patterns by gradient ascent, confusion matrix and predictions, drawn to PNG.
//! 12. [`filters`]: classic image kernels (edges, sharpening, blur, emboss, Sobel), PNG images,
//!     grayscale, and the montage [`plot::kernel_montage`].
//!
//! The glossary that maps the course's Spanish terms to these names is `chapters/README.md`.

pub mod activation;
pub mod buffers;
pub mod conv1d;
pub mod conv2d;
pub mod data;
pub mod error;
pub mod exercise;
pub mod filters;
pub mod gemm;
pub mod grad;
pub mod im2col;
pub mod linear;
pub mod loss;
pub mod nn;
pub mod plot;
pub mod pool;
pub mod shape;
pub mod train;

pub use activation::{leaky_relu, log_softmax, relu, sigmoid, softmax, tanh};
pub use conv1d::{conv1d, convolve, correlate};
pub use conv2d::{conv2d, conv3d, convolve2d, correlate2d};
pub use error::{Error, Result};
pub use im2col::{fold, unfold};
pub use loss::{
    LossOptions, Reduction, binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
    nll_loss,
};
pub use pool::{
    adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d,
    avg_pool2d, max_pool1d, max_pool2d,
};
pub use shape::{
    Conv2dParams, Conv3dParams, ConvParams, Mode, Padding, Pool1dParams, Pool2dParams, PoolParams,
    SignalParams,
};
