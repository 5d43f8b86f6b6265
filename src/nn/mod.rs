#![doc = include_str!("../../chapters/09-cnn-model.md")]

pub mod init;
pub mod layers;
pub mod models;
pub mod optim;
pub mod sequential;

pub use init::Init;
pub use layers::{
    AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, Linear, LogSoftmax, MaxPool2d, ReLU,
    Sigmoid, Softmax,
};
pub use models::Architecture;
pub use sequential::{Sequential, Summary, SummaryRow};

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};

use crate::error::Result;
use crate::gemm::Scalar;
use crate::shape::Window;

/// Tensors by name, in order: a `state_dict`, an optimizer's state.
pub type NamedTensors<T> = Vec<(String, ArrayD<T>)>;

/// One named parameter and its gradient, as a model lends them to an optimizer.
pub struct Param<'a, T> {
    /// The parameter's `state_dict` name, e.g. `"0.weight"`.
    pub name: &'a str,
    /// The parameter's values, updated in place.
    pub value: ArrayViewMutD<'a, T>,
    /// `∂L/∂value`, accumulated by the last backward pass.
    pub grad: ArrayViewD<'a, T>,
}

/// What a forward pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: layers keep what their backward pass needs, dropout drops. `step` numbers the
    /// pass, so that dropout's masks depend only on the model's seed and the step.
    Train {
        /// The training step this forward pass belongs to.
        step: u64,
    },
    /// Evaluation: nothing is kept, dropout passes everything through.
    Eval,
}

/// What a layer is, for code that walks a model and picks layers by their role (the figures of
/// chapter 11 look for the convolutions and the poolings, and leave dropout out of a gradient
/// ascent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A convolution: [`Conv2d`].
    Convolution,
    /// A pooling: [`MaxPool2d`], [`AvgPool2d`], [`AdaptiveAvgPool2d`].
    Pooling,
    /// A fully connected layer: [`Linear`].
    Linear,
    /// An element-wise or per-sample activation: [`ReLU`], [`Sigmoid`], [`Softmax`],
    /// [`LogSoftmax`].
    Activation,
    /// A reshape: [`Flatten`].
    Flatten,
    /// [`Dropout`]: random in training, the identity in evaluation.
    Dropout,
}

/// Which kernels the layers call: the chapters' `fast` ones (the default) or their `naive`
/// twins, so that a whole model can be run both ways and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// im2col + GEMM convolution, separable pooling, threads.
    #[default]
    Fast,
    /// The loops of the formulas.
    Naive,
}

/// A parameter as a layer keeps it: its values and the gradient its backward passes add to.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    /// The values.
    pub value: ArrayD<T>,
    /// `∂L/∂value`, summed over backward passes until [`Sequential::zero_grad`].
    pub grad: ArrayD<T>,
}

impl<T: Scalar> Tensor<T> {
    /// A parameter with these values and a zero gradient.
    pub fn new(value: ArrayD<T>) -> Self {
        let grad = ArrayD::zeros(value.raw_dim());
        Tensor { value, grad }
    }
}

/// One layer of a [`Sequential`] model. A layer keeps its parameters and their gradients; its
/// forward pass in [`Mode::Train`] caches what its backward pass needs, and its backward pass
/// takes `∂L/∂out`, adds to its parameters' gradients, returns `∂L/∂in` and gives the cache
/// back (one backward pass per training forward pass). The arithmetic is the chapters' kernels:
/// a layer adds none of its own.
pub trait Layer<T: Scalar>: Send + Sync {
    /// The layer as PyTorch prints it, e.g. `Conv2d(1, 32, kernel_size=(5, 5), padding=(2, 2))`.
    fn describe(&self) -> String;

    /// What kind of layer this is.
    fn kind(&self) -> LayerKind;

    /// The output shape of one sample (no batch axis) for an input of shape `input`, or an
    /// error saying why the layer cannot take it.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// The forward pass of a batch `(N, …)`.
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, kernels: Kernels) -> Result<ArrayD<T>>;

    /// The backward pass of the last training forward: `∂L/∂out` in, `∂L/∂in` out.
    fn backward(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<ArrayD<T>>;

    /// [`Layer::backward`] where nothing needs `∂L/∂in` (a model's first layer in a training
    /// step): only the parameters' gradients are increased, by the same values. A layer may
    /// then skip computing `∂L/∂in`; by default it computes it and lets it go.
    fn backward_parameters(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<()> {
        let grad_in = self.backward(grad_out, kernels)?;
        crate::buffers::recycle(grad_in);
        Ok(())
    }

    /// The layer's parameters by their local names (`"weight"`, `"bias"`), in PyTorch's order.
    fn parameters(&self) -> Vec<(&'static str, &Tensor<T>)> {
        Vec::new()
    }

    /// [`Layer::parameters`], mutable.
    fn parameters_mut(&mut self) -> Vec<(&'static str, &mut Tensor<T>)> {
        Vec::new()
    }

    /// The window the layer slides over the height axis, for receptive fields; `None` for a
    /// layer that works element by element, and for one that connects to everything.
    fn window(&self) -> Option<Window> {
        None
    }

    /// Whether every output sees the whole input (flatten, linear, global pooling).
    fn connects_everything(&self) -> bool {
        false
    }

    /// Re-draw the parameters with `init` from `rng`.
    fn reset_parameters(&mut self, _init: Init, _rng: &mut rand_chacha::ChaCha8Rng) {}
}
