//! The layers of chapter 9, each a thin owner of parameters around the chapters' kernels.

use ndarray::{Array2, ArrayD, Ix1, Ix2, Ix4, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Init, Kernels, Layer, LayerKind, Mode, Tensor};
use crate::activation;
use crate::buffers::recycle;
use crate::conv2d::{fast as conv_fast, naive as conv_naive};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::linear::{linear, linear_backward};
use crate::pool::{fast as pool_fast, naive as pool_naive};
use crate::shape::{Conv2dParams, Padding, Pool2dParams, Window};

/// The batch shape `(N, …)` of `x` as rank 4, or an error naming the layer.
fn rank4<T: Scalar>(layer: &str, x: ArrayD<T>) -> Result<ndarray::Array4<T>> {
    let shape = x.shape().to_vec();
    x.into_dimensionality::<Ix4>().map_err(|_| {
        Error::shape(
            "forward",
            format!("{layer} takes a batch (N, C, H, W), got shape {shape:?}"),
        )
    })
}

fn rank2<T: Scalar>(layer: &str, x: ArrayD<T>) -> Result<Array2<T>> {
    let shape = x.shape().to_vec();
    x.into_dimensionality::<Ix2>().map_err(|_| {
        Error::shape(
            "forward",
            format!("{layer} takes a batch (N, features), got shape {shape:?}"),
        )
    })
}

/// The cached input of the last training forward, or an error if there was none (or a
/// backward pass has used it already).
fn cached<'a, U>(layer: &str, cache: &'a Option<U>) -> Result<&'a U> {
    cache.as_ref().ok_or_else(|| {
        Error::shape(
            "backward",
            format!(
                "{layer}: backward needs a forward pass in training mode first \
                 (one backward pass per forward pass)"
            ),
        )
    })
}

/// Hand back what a backward pass has used: a training forward pass is good for one backward
/// pass, as in PyTorch, which frees a graph's saved tensors once its backward pass has run.
fn release<T: Send + 'static, D: ndarray::Dimension>(cache: &mut Option<ndarray::Array<T, D>>) {
    if let Some(old) = cache.take() {
        recycle(old);
    }
}

/// Keep `value` for the backward pass when training, else hand it back; what was kept before is
/// handed back either way (see [`crate::buffers`]).
fn keep<T: Send + 'static, D: ndarray::Dimension>(
    slot: &mut Option<ndarray::Array<T, D>>,
    mode: Mode,
    value: ndarray::Array<T, D>,
) {
    release(slot);
    if matches!(mode, Mode::Train { .. }) {
        *slot = Some(value);
    } else {
        recycle(value);
    }
}

/// A bias as the kernels take it.
fn bias_view<T: Scalar>(bias: &Option<Tensor<T>>) -> Option<ndarray::ArrayView1<'_, T>> {
    bias.as_ref().map(|b| {
        b.value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("a bias has rank 1")
    })
}

/// A weight and an optional bias by their local names.
fn weight_and_bias<'a, T>(
    weight: &'a Tensor<T>,
    bias: &'a Option<Tensor<T>>,
) -> Vec<(&'static str, &'a Tensor<T>)> {
    let mut p = vec![("weight", weight)];
    p.extend(bias.as_ref().map(|b| ("bias", b)));
    p
}

/// A weight and an optional bias, mutable, by their local names.
fn weight_and_bias_mut<'a, T>(
    weight: &'a mut Tensor<T>,
    bias: &'a mut Option<Tensor<T>>,
) -> Vec<(&'static str, &'a mut Tensor<T>)> {
    let mut p = vec![("weight", weight)];
    p.extend(bias.as_mut().map(|b| ("bias", b)));
    p
}

/// Add a backward pass's gradients to a weight's and a bias's.
fn accumulate<T: Scalar>(
    weight: &mut Tensor<T>,
    bias: &mut Option<Tensor<T>>,
    grad_weight: ArrayD<T>,
    grad_bias: ArrayD<T>,
) {
    weight.grad += &grad_weight;
    if let Some(b) = bias {
        b.grad += &grad_bias;
    }
    recycle(grad_weight);
    recycle(grad_bias);
}

fn padding_repr(p: Padding) -> String {
    match p {
        Padding::Explicit(p) => p.to_string(),
        Padding::Valid => "'valid'".into(),
        Padding::Same => "'same'".into(),
        Padding::KerasSame => "'keras-same'".into(),
        Padding::Full => "'full'".into(),
    }
}

fn pair<U: std::fmt::Display>(v: [U; 2]) -> String {
    format!("({}, {})", v[0], v[1])
}

// ---------------------------------------------------------------- Conv2d

/// A 2-D convolution layer, PyTorch's `nn.Conv2d`: weight `(C_out, C_in/groups, kH, kW)`,
/// optional bias `(C_out)`, forward [`crate::conv2d::conv2d`], backward
/// [`crate::conv2d::fast::conv2d_backward`].
#[derive(Debug, Clone)]
pub struct Conv2d<T> {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Output channels (filters) `C_out`.
    pub out_channels: usize,
    /// `(kH, kW)`.
    pub kernel_size: [usize; 2],
    /// Stride, padding, dilation, groups.
    pub params: Conv2dParams,
    weight: Tensor<T>,
    bias: Option<Tensor<T>>,
    input: Option<ndarray::Array4<T>>,
}

impl<T: Scalar> Conv2d<T> {
    /// A convolution from `in_channels` to `out_channels` with a `kernel_size` kernel, with a
    /// bias. Weights are zero until the model initialises them ([`super::Sequential::new`]).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: [usize; 2],
        params: Conv2dParams,
    ) -> Result<Self> {
        let g = params.groups;
        if g == 0
            || !in_channels.is_multiple_of(g)
            || !out_channels.is_multiple_of(g)
            || out_channels == 0
        {
            return Err(Error::param(
                "groups",
                format!(
                    "Conv2d needs groups ≥ 1 dividing in_channels = {in_channels} and \
                     out_channels = {out_channels} (≥ 1), got groups = {g}"
                ),
            ));
        }
        if kernel_size.contains(&0) {
            return Err(Error::param(
                "kernel_size",
                format!("Conv2d needs a kernel of at least 1×1, got {kernel_size:?}"),
            ));
        }
        let shape = [
            out_channels,
            in_channels / g,
            kernel_size[0],
            kernel_size[1],
        ];
        Ok(Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            params,
            weight: Tensor::new(ArrayD::zeros(IxDyn(&shape))),
            bias: Some(Tensor::new(ArrayD::zeros(IxDyn(&[out_channels])))),
            input: None,
        })
    }

    /// The same layer without a bias (PyTorch's `bias=False`).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    fn weight4(&self) -> ndarray::ArrayView4<'_, T> {
        self.weight
            .value
            .view()
            .into_dimensionality()
            .expect("a Conv2d weight has rank 4")
    }

    /// The backward pass of the last training forward: the parameters' gradients are increased,
    /// and `∂L/∂in` is given back where `input` asks for it (the naive kernels always compute
    /// it).
    fn backward_pass(
        &mut self,
        grad_out: ArrayD<T>,
        kernels: Kernels,
        input: bool,
    ) -> Result<Option<ArrayD<T>>> {
        let x = cached("Conv2d", &self.input)?;
        let g = rank4("Conv2d backward", grad_out)?;
        let (w, params) = (self.weight4(), self.params);
        let (grad_in, weight, bias) = match (kernels, input) {
            (Kernels::Fast, false) => {
                let (weight, bias) =
                    conv_fast::conv2d_parameter_grads(x.view(), w, g.view(), params)?;
                (None, weight, bias)
            }
            (Kernels::Fast, true) => {
                let grads = conv_fast::conv2d_backward(x.view(), w, g.view(), params)?;
                (Some(grads.input), grads.weight, grads.bias)
            }
            (Kernels::Naive, _) => {
                let grads = conv_naive::conv2d_backward(x.view(), w, g.view(), params)?;
                (Some(grads.input), grads.weight, grads.bias)
            }
        };
        recycle(g);
        release(&mut self.input);
        accumulate(
            &mut self.weight,
            &mut self.bias,
            weight.into_dyn(),
            bias.into_dyn(),
        );
        Ok(grad_in.map(|g| g.into_dyn()))
    }
}

impl<T: Scalar> Layer<T> for Conv2d<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Convolution
    }

    fn describe(&self) -> String {
        let p = &self.params;
        let mut s = format!(
            "Conv2d({}, {}, kernel_size={}, stride={}",
            self.in_channels,
            self.out_channels,
            pair(self.kernel_size),
            pair(p.strides)
        );
        if p.paddings != [Padding::Explicit(0); 2] {
            s += &format!(
                ", padding=({}, {})",
                padding_repr(p.paddings[0]),
                padding_repr(p.paddings[1])
            );
        }
        if p.dilations != [1, 1] {
            s += &format!(", dilation={}", pair(p.dilations));
        }
        if p.groups != 1 {
            s += &format!(", groups={}", p.groups);
        }
        if self.bias.is_none() {
            s += ", bias=False";
        }
        s + ")"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match *input {
            [c, h, w] if c == self.in_channels => Ok(vec![
                self.out_channels,
                self.params.axis(0).output_len(h, self.kernel_size[0])?,
                self.params.axis(1).output_len(w, self.kernel_size[1])?,
            ]),
            _ => Err(Error::shape(
                "Conv2d",
                format!(
                    "{} takes images ({}, H, W), got {input:?}",
                    self.describe(),
                    self.in_channels
                ),
            )),
        }
    }

    fn forward(&mut self, x: ArrayD<T>, mode: Mode, kernels: Kernels) -> Result<ArrayD<T>> {
        let x = rank4("Conv2d", x)?;
        let b = bias_view(&self.bias);
        let y = match kernels {
            Kernels::Fast => conv_fast::conv2d(x.view(), self.weight4(), b, self.params)?,
            Kernels::Naive => conv_naive::conv2d(x.view(), self.weight4(), b, self.params)?,
        };
        keep(&mut self.input, mode, x);
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<ArrayD<T>> {
        let grad_in = self.backward_pass(grad_out, kernels, true)?;
        Ok(grad_in.expect("the input's gradient was asked for"))
    }

    fn backward_parameters(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<()> {
        if let Some(grad_in) = self.backward_pass(grad_out, kernels, false)? {
            recycle(grad_in);
        }
        Ok(())
    }

    fn parameters(&self) -> Vec<(&'static str, &Tensor<T>)> {
        weight_and_bias(&self.weight, &self.bias)
    }

    fn parameters_mut(&mut self) -> Vec<(&'static str, &mut Tensor<T>)> {
        weight_and_bias_mut(&mut self.weight, &mut self.bias)
    }

    fn window(&self) -> Option<Window> {
        Some(Window {
            kernel: self.kernel_size[0],
            stride: self.params.strides[0],
            dilation: self.params.dilations[0],
        })
    }

    fn reset_parameters(&mut self, init: Init, rng: &mut ChaCha8Rng) {
        let shape = self.weight.value.shape().to_vec();
        self.weight = Tensor::new(init.weight(&shape, rng));
        if self.bias.is_some() {
            self.bias = Some(Tensor::new(init.bias(self.out_channels, &shape, rng)));
        }
    }
}

// ---------------------------------------------------------------- Linear

/// A fully connected layer, PyTorch's `nn.Linear`: `y = x·Wᵀ + b` with weight
/// `(out_features, in_features)`; forward [`crate::linear::linear`], backward
/// [`crate::linear::linear_backward`].
#[derive(Debug, Clone)]
pub struct Linear<T> {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    weight: Tensor<T>,
    bias: Option<Tensor<T>>,
    input: Option<Array2<T>>,
}

impl<T: Scalar> Linear<T> {
    /// A layer from `in_features` to `out_features` with a bias, zero until initialised.
    pub fn new(in_features: usize, out_features: usize) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::param(
                "features",
                format!(
                    "Linear needs ≥ 1 input and output features, got {in_features} → {out_features}"
                ),
            ));
        }
        Ok(Linear {
            in_features,
            out_features,
            weight: Tensor::new(ArrayD::zeros(IxDyn(&[out_features, in_features]))),
            bias: Some(Tensor::new(ArrayD::zeros(IxDyn(&[out_features])))),
            input: None,
        })
    }

    /// The same layer without a bias.
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    fn weight2(&self) -> ndarray::ArrayView2<'_, T> {
        self.weight
            .value
            .view()
            .into_dimensionality()
            .expect("a Linear weight has rank 2")
    }
}

impl<T: Scalar> Layer<T> for Linear<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Linear
    }

    fn describe(&self) -> String {
        format!(
            "Linear(in_features={}, out_features={}, bias={})",
            self.in_features,
            self.out_features,
            if self.bias.is_some() { "True" } else { "False" }
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match *input {
            [f] if f == self.in_features => Ok(vec![self.out_features]),
            _ => Err(Error::shape(
                "Linear",
                format!(
                    "{} takes ({},) features per sample, got {input:?}",
                    self.describe(),
                    self.in_features
                ),
            )),
        }
    }

    fn forward(&mut self, x: ArrayD<T>, mode: Mode, _kernels: Kernels) -> Result<ArrayD<T>> {
        let x = rank2("Linear", x)?;
        let b = bias_view(&self.bias);
        let y = linear(x.view(), self.weight2(), b)?;
        keep(&mut self.input, mode, x);
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad_out: ArrayD<T>, _kernels: Kernels) -> Result<ArrayD<T>> {
        let x = cached("Linear", &self.input)?;
        let g = rank2("Linear backward", grad_out)?;
        let grads = linear_backward(x.view(), self.weight2(), g.view())?;
        recycle(g);
        release(&mut self.input);
        accumulate(
            &mut self.weight,
            &mut self.bias,
            grads.weight.into_dyn(),
            grads.bias.into_dyn(),
        );
        Ok(grads.input.into_dyn())
    }

    fn parameters(&self) -> Vec<(&'static str, &Tensor<T>)> {
        weight_and_bias(&self.weight, &self.bias)
    }

    fn parameters_mut(&mut self) -> Vec<(&'static str, &mut Tensor<T>)> {
        weight_and_bias_mut(&mut self.weight, &mut self.bias)
    }

    fn connects_everything(&self) -> bool {
        true
    }

    fn reset_parameters(&mut self, init: Init, rng: &mut ChaCha8Rng) {
        let shape = [self.out_features, self.in_features];
        self.weight = Tensor::new(init.weight(&shape, rng));
        if self.bias.is_some() {
            self.bias = Some(Tensor::new(init.bias(self.out_features, &shape, rng)));
        }
    }
}

// ---------------------------------------------------------------- element-wise activations

/// `max(x, 0)` element-wise ([`crate::activation::relu`]).
#[derive(Debug, Clone, Default)]
pub struct ReLU<T> {
    input: Option<ArrayD<T>>,
}

impl<T: Scalar> ReLU<T> {
    /// The layer.
    pub fn new() -> Self {
        ReLU { input: None }
    }
}

impl<T: Scalar> Layer<T> for ReLU<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Activation
    }

    fn describe(&self) -> String {
        "ReLU()".into()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, _kernels: Kernels) -> Result<ArrayD<T>> {
        let y = activation::relu(x.view());
        keep(&mut self.input, mode, x);
        Ok(y)
    }
    fn backward(&mut self, grad_out: ArrayD<T>, _kernels: Kernels) -> Result<ArrayD<T>> {
        let grad = activation::relu_backward(cached("ReLU", &self.input)?.view(), grad_out.view())?;
        recycle(grad_out);
        release(&mut self.input);
        Ok(grad)
    }
}

/// A layer that applies an activation and keeps its output, from which its backward pass
/// computes the gradient.
macro_rules! output_activation {
    ($(#[$doc:meta])* $name:ident, $repr:literal,
     |$x:ident| $forward:expr, |$y:ident, $g:ident| $backward:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name<T> {
            output: Option<ArrayD<T>>,
        }

        impl<T: Scalar> $name<T> {
            /// The layer.
            pub fn new() -> Self {
                $name { output: None }
            }
        }

        impl<T: Scalar> Layer<T> for $name<T> {
            fn kind(&self) -> LayerKind {
                LayerKind::Activation
            }
            fn describe(&self) -> String {
                $repr.into()
            }
            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                Ok(input.to_vec())
            }
            fn forward(&mut self, $x: ArrayD<T>, mode: Mode, _kernels: Kernels) -> Result<ArrayD<T>> {
                let y: ArrayD<T> = $forward;
                self.output = matches!(mode, Mode::Train { .. }).then(|| y.clone());
                Ok(y)
            }
            fn backward(&mut self, $g: ArrayD<T>, _kernels: Kernels) -> Result<ArrayD<T>> {
                let $y = cached(stringify!($name), &self.output)?;
                let grad = $backward?;
                release(&mut self.output);
                Ok(grad)
            }
        }
    };
}

output_activation!(
    /// `σ(x) = 1 / (1 + e^(−x))` element-wise ([`crate::activation::sigmoid`]), the last layer of
    /// a Keras binary classifier.
    Sigmoid,
    "Sigmoid()",
    |x| activation::sigmoid(x.view()),
    |y, g| activation::sigmoid_backward(y.view(), g.view())
);

output_activation!(
    /// Softmax over the class axis (`dim=1`), the last layer of a Keras classifier
    /// ([`crate::activation::softmax`]).
    Softmax,
    "Softmax(dim=1)",
    |x| activation::softmax(x.view(), 1)?,
    |y, g| activation::softmax_backward(y.view(), g.view(), 1)
);

output_activation!(
    /// Log-softmax over the class axis (`dim=1`), for a model trained with the negative
    /// log-likelihood ([`crate::activation::log_softmax`]).
    LogSoftmax,
    "LogSoftmax(dim=1)",
    |x| activation::log_softmax(x.view(), 1)?,
    |y, g| activation::log_softmax_backward(y.view(), g.view(), 1)
);

// ---------------------------------------------------------------- pooling

/// Max pooling, PyTorch's `nn.MaxPool2d` ([`crate::pool::max_pool2d_with_indices`]); the
/// backward pass sends each gradient to the position that won its window.
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    /// Window, stride, padding, dilation, ceil mode.
    pub params: Pool2dParams,
    /// The winners' indices of the last training forward.
    indices: Option<ndarray::Array4<usize>>,
    /// The input's `(H, W)` of the last forward.
    size: [usize; 2],
}

impl MaxPool2d {
    /// Max pooling with these parameters (`Pool2dParams::new([2, 2])`: PyTorch's
    /// `MaxPool2d(kernel_size=2)`).
    pub fn new(params: Pool2dParams) -> Self {
        MaxPool2d {
            params,
            indices: None,
            size: [0, 0],
        }
    }
}

fn pool_repr(kind: &str, p: &Pool2dParams, max: bool) -> String {
    let stride = [p.stride_of(0), p.stride_of(1)];
    let mut s = format!(
        "{kind}(kernel_size={}, stride={}, padding=({}, {})",
        pair(p.kernel),
        pair(stride),
        padding_repr(p.paddings[0]),
        padding_repr(p.paddings[1])
    );
    if max && p.dilations != [1, 1] {
        s += &format!(", dilation={}", pair(p.dilations));
    }
    if p.ceil_mode {
        s += ", ceil_mode=True";
    }
    s + ")"
}

fn pool_output(kind: &str, p: &Pool2dParams, input: &[usize]) -> Result<Vec<usize>> {
    match *input {
        [c, h, w] => {
            let [oh, ow] = p.output_size([h, w])?;
            Ok(vec![c, oh, ow])
        }
        _ => Err(Error::shape(
            "pooling",
            format!("{kind} takes images (C, H, W), got {input:?}"),
        )),
    }
}

fn pool_window(p: &Pool2dParams) -> Window {
    Window {
        kernel: p.kernel[0],
        stride: p.stride_of(0),
        dilation: p.dilations[0],
    }
}

impl<T: Scalar> Layer<T> for MaxPool2d {
    fn kind(&self) -> LayerKind {
        LayerKind::Pooling
    }

    fn describe(&self) -> String {
        pool_repr("MaxPool2d", &self.params, true)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        pool_output("MaxPool2d", &self.params, input)
    }
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, kernels: Kernels) -> Result<ArrayD<T>> {
        let x = rank4("MaxPool2d", x)?;
        let (y, at) = match kernels {
            Kernels::Fast => pool_fast::max_pool2d_with_indices(x.view(), self.params)?,
            Kernels::Naive => pool_naive::max_pool2d_with_indices(x.view(), self.params)?,
        };
        let (_, _, h, w) = x.dim();
        recycle(x);
        self.size = [h, w];
        keep(&mut self.indices, mode, at);
        Ok(y.into_dyn())
    }
    fn backward(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<ArrayD<T>> {
        let at = cached("MaxPool2d", &self.indices)?;
        let g = rank4("MaxPool2d backward", grad_out)?;
        let grad = match kernels {
            Kernels::Fast => pool_fast::max_pool2d_backward(g.view(), at.view(), self.size)?,
            Kernels::Naive => pool_naive::max_pool2d_backward(g.view(), at.view(), self.size)?,
        };
        recycle(g);
        release(&mut self.indices);
        Ok(grad.into_dyn())
    }
    fn window(&self) -> Option<Window> {
        Some(pool_window(&self.params))
    }
}

/// Average pooling, PyTorch's `nn.AvgPool2d` ([`crate::pool::avg_pool2d`]).
#[derive(Debug, Clone)]
pub struct AvgPool2d {
    /// Window, stride, padding, ceil mode, divisor rules.
    pub params: Pool2dParams,
    size: Option<[usize; 2]>,
}

impl AvgPool2d {
    /// Average pooling with these parameters.
    pub fn new(params: Pool2dParams) -> Self {
        AvgPool2d { params, size: None }
    }
}

impl<T: Scalar> Layer<T> for AvgPool2d {
    fn kind(&self) -> LayerKind {
        LayerKind::Pooling
    }

    fn describe(&self) -> String {
        pool_repr("AvgPool2d", &self.params, false)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        pool_output("AvgPool2d", &self.params, input)
    }
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, kernels: Kernels) -> Result<ArrayD<T>> {
        let x = rank4("AvgPool2d", x)?;
        let y = match kernels {
            Kernels::Fast => pool_fast::avg_pool2d(x.view(), self.params)?,
            Kernels::Naive => pool_naive::avg_pool2d(x.view(), self.params)?,
        };
        let (_, _, h, w) = x.dim();
        recycle(x);
        self.size = matches!(mode, Mode::Train { .. }).then_some([h, w]);
        Ok(y.into_dyn())
    }
    fn backward(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<ArrayD<T>> {
        let size = *cached("AvgPool2d", &self.size)?;
        let g = rank4("AvgPool2d backward", grad_out)?;
        let grad = match kernels {
            Kernels::Fast => pool_fast::avg_pool2d_backward(g.view(), size, self.params)?,
            Kernels::Naive => pool_naive::avg_pool2d_backward(g.view(), size, self.params)?,
        };
        recycle(g);
        self.size = None;
        Ok(grad.into_dyn())
    }
    fn window(&self) -> Option<Window> {
        Some(pool_window(&self.params))
    }
}

/// Adaptive average pooling to a fixed output size, PyTorch's `nn.AdaptiveAvgPool2d`
/// ([`crate::pool::adaptive_avg_pool2d`]); `[1, 1]` is global average pooling.
#[derive(Debug, Clone)]
pub struct AdaptiveAvgPool2d {
    /// `(H_out, W_out)`.
    pub output_size: [usize; 2],
    size: Option<[usize; 2]>,
}

impl AdaptiveAvgPool2d {
    /// Pooling to `output_size` bins.
    pub fn new(output_size: [usize; 2]) -> Self {
        AdaptiveAvgPool2d {
            output_size,
            size: None,
        }
    }
}

impl<T: Scalar> Layer<T> for AdaptiveAvgPool2d {
    fn kind(&self) -> LayerKind {
        LayerKind::Pooling
    }

    fn describe(&self) -> String {
        format!("AdaptiveAvgPool2d(output_size={})", pair(self.output_size))
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match *input {
            [c, h, w] if h > 0 && w > 0 && !self.output_size.contains(&0) => {
                Ok(vec![c, self.output_size[0], self.output_size[1]])
            }
            _ => Err(Error::shape(
                "AdaptiveAvgPool2d",
                format!(
                    "{} takes non-empty images (C, H, W), got {input:?}",
                    <Self as Layer<T>>::describe(self)
                ),
            )),
        }
    }
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, kernels: Kernels) -> Result<ArrayD<T>> {
        let x = rank4("AdaptiveAvgPool2d", x)?;
        let y = match kernels {
            Kernels::Fast => pool_fast::adaptive_avg_pool2d(x.view(), self.output_size)?,
            Kernels::Naive => pool_naive::adaptive_avg_pool2d(x.view(), self.output_size)?,
        };
        let (_, _, h, w) = x.dim();
        recycle(x);
        self.size = matches!(mode, Mode::Train { .. }).then_some([h, w]);
        Ok(y.into_dyn())
    }
    fn backward(&mut self, grad_out: ArrayD<T>, kernels: Kernels) -> Result<ArrayD<T>> {
        let size = *cached("AdaptiveAvgPool2d", &self.size)?;
        let g = rank4("AdaptiveAvgPool2d backward", grad_out)?;
        let grad = match kernels {
            Kernels::Fast => pool_fast::adaptive_avg_pool2d_backward(g.view(), size)?,
            Kernels::Naive => pool_naive::adaptive_avg_pool2d_backward(g.view(), size)?,
        };
        recycle(g);
        self.size = None;
        Ok(grad.into_dyn())
    }
    fn connects_everything(&self) -> bool {
        self.output_size == [1, 1]
    }
}

// ---------------------------------------------------------------- shape and regularisation

/// `(N, C, H, W)` → `(N, C·H·W)`, PyTorch's `nn.Flatten` (row-major: channel, row, column).
#[derive(Debug, Clone, Default)]
pub struct Flatten {
    shape: Option<Vec<usize>>,
}

impl Flatten {
    /// The layer.
    pub fn new() -> Self {
        Flatten { shape: None }
    }
}

impl<T: Scalar> Layer<T> for Flatten {
    fn kind(&self) -> LayerKind {
        LayerKind::Flatten
    }

    fn describe(&self) -> String {
        "Flatten(start_dim=1, end_dim=-1)".into()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, _kernels: Kernels) -> Result<ArrayD<T>> {
        let shape = x.shape().to_vec();
        let Some(&n) = shape.first() else {
            return Err(Error::shape(
                "Flatten",
                "takes a batch (N, …), got a 0-d array",
            ));
        };
        let features = shape[1..].iter().product::<usize>();
        // Copies only an input that is not in standard layout.
        let y = x
            .into_shape_clone(IxDyn(&[n, features]))
            .expect("the same element count");
        self.shape = matches!(mode, Mode::Train { .. }).then_some(shape);
        Ok(y)
    }
    fn backward(&mut self, grad_out: ArrayD<T>, _kernels: Kernels) -> Result<ArrayD<T>> {
        let shape = cached("Flatten", &self.shape)?;
        if grad_out.len() != shape.iter().product::<usize>() {
            return Err(Error::shape(
                "Flatten backward",
                format!(
                    "grad_out has shape {:?}, the input was {shape:?}",
                    grad_out.shape()
                ),
            ));
        }
        let grad = grad_out
            .into_shape_clone(IxDyn(shape))
            .expect("the element counts were checked");
        self.shape = None;
        Ok(grad)
    }
    fn connects_everything(&self) -> bool {
        true
    }
}

/// Inverted dropout, PyTorch's `nn.Dropout(p)`: in training each element is zeroed with
/// probability `p` and the survivors are scaled by `1/(1 − p)`, so that the expected output
/// equals the input and evaluation needs no rescaling; in evaluation it passes everything
/// through. The mask of training step `t` is drawn from a generator seeded by `(seed, t)`, so
/// a run is repeatable and a resumed run draws the masks the uninterrupted one would have.
#[derive(Debug, Clone)]
pub struct Dropout<T> {
    /// The probability of dropping an element.
    pub p: f64,
    seed: u64,
    mask: Option<ArrayD<T>>,
}

impl<T: Scalar> Dropout<T> {
    /// Dropout with probability `p` in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::param(
                "p",
                format!("dropout probability has to be between 0 and 1, but got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            seed: 0,
            mask: None,
        })
    }
}

impl<T: Scalar> Layer<T> for Dropout<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Dropout
    }

    fn describe(&self) -> String {
        format!("Dropout(p={}, inplace=False)", self.p)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, x: ArrayD<T>, mode: Mode, _kernels: Kernels) -> Result<ArrayD<T>> {
        let Mode::Train { step } = mode else {
            release(&mut self.mask);
            return Ok(x);
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(step);
        // p = 1 drops everything (PyTorch returns zeros rather than 0·∞).
        let scale = if self.p < 1.0 {
            T::from(1.0 / (1.0 - self.p)).expect("f64 converts to the float type")
        } else {
            T::zero()
        };
        // Drawn in the elements' logical order, over whatever the buffer held before.
        let mut mask = crate::buffers::for_overwrite(x.raw_dim());
        mask.iter_mut().for_each(|m| {
            *m = if rng.random::<f64>() < self.p {
                T::zero()
            } else {
                scale
            }
        });
        let y = x * &mask;
        keep(&mut self.mask, mode, mask);
        Ok(y)
    }
    fn backward(&mut self, grad_out: ArrayD<T>, _kernels: Kernels) -> Result<ArrayD<T>> {
        let mask = cached("Dropout", &self.mask)?;
        if mask.shape() != grad_out.shape() {
            return Err(Error::shape(
                "Dropout backward",
                format!(
                    "grad_out has shape {:?}, the forward output's shape is {:?}",
                    grad_out.shape(),
                    mask.shape()
                ),
            ));
        }
        let grad = grad_out * mask;
        release(&mut self.mask);
        Ok(grad)
    }
    fn reset_parameters(&mut self, _init: Init, rng: &mut ChaCha8Rng) {
        self.seed = rng.random();
    }
}
