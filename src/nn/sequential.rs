//! A model as a list of layers, with PyTorch's `state_dict` names.

use std::fmt;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Init, Kernels, Layer, Mode, Param, Tensor};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::shape::Field;

/// Layers applied one after the other, PyTorch's `nn.Sequential`. Layer `i`'s parameters are
/// named `"{i}.weight"`, `"{i}.bias"`, as in PyTorch's `state_dict` of the same
/// `nn.Sequential`; optimizers, checkpoints and summaries all use these names.
pub struct Sequential<T> {
    /// What the model is, for summaries and checkpoints.
    pub name: String,
    /// The shape of one input sample, `[C, H, W]`.
    pub input_shape: Vec<usize>,
    /// Fast (default) or naive kernels in every layer.
    pub kernels: Kernels,
    layers: Vec<Box<dyn Layer<T>>>,
    names: Vec<Vec<String>>,
}

impl<T: Scalar> fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Sequential(")?;
        for (i, layer) in self.layers.iter().enumerate() {
            writeln!(f, "  ({i}): {}", layer.describe())?;
        }
        write!(f, ")")
    }
}

impl<T: Scalar> Sequential<T> {
    /// A model taking samples of `input_shape`, its layers' parameters drawn by `init` from a
    /// generator seeded with `seed`. Errors if some layer cannot take what the previous one
    /// gives.
    pub fn new(
        name: impl Into<String>,
        input_shape: &[usize],
        layers: Vec<Box<dyn Layer<T>>>,
        init: Init,
        seed: u64,
    ) -> Result<Self> {
        let names = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.parameters()
                    .iter()
                    .map(|(n, _)| format!("{i}.{n}"))
                    .collect()
            })
            .collect();
        let mut model = Sequential {
            name: name.into(),
            input_shape: input_shape.to_vec(),
            kernels: Kernels::Fast,
            layers,
            names,
        };
        model.output_shapes()?;
        model.reset_parameters(init, seed);
        Ok(model)
    }

    /// Draw every parameter again: layer `i` from ChaCha8 seeded with `seed` on stream `i`, so
    /// that what one layer draws (its weights, a dropout layer's seed) does not depend on the
    /// layers before it.
    pub fn reset_parameters(&mut self, init: Init, seed: u64) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            layer.reset_parameters(init, &mut rng);
        }
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }

    /// Layer `i`, to run its own forward and backward passes (a gradient ascent on the input
    /// that passes over dropout, say); `None` past the last layer.
    pub fn layer_mut(&mut self, i: usize) -> Option<&mut dyn Layer<T>> {
        self.layers
            .get_mut(i)
            .map(|l| l.as_mut() as &mut dyn Layer<T>)
    }

    /// The output shape of one sample after each layer.
    pub fn output_shapes(&self) -> Result<Vec<Vec<usize>>> {
        let mut shape = self.input_shape.clone();
        self.layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                shape = layer.output_shape(&shape).map_err(|e| {
                    Error::shape(
                        "Sequential",
                        format!("layer {i} cannot take its input: {e}"),
                    )
                })?;
                Ok(shape.clone())
            })
            .collect()
    }

    /// The forward pass of a batch `(N, *input_shape)`.
    pub fn forward(&mut self, x: ArrayD<T>, mode: Mode) -> Result<ArrayD<T>> {
        let end = self.layers.len();
        self.forward_layers(x, mode, end)
    }

    /// The forward pass through the first `end` layers only (e.g. up to the logits, before a
    /// final softmax).
    pub fn forward_layers(&mut self, x: ArrayD<T>, mode: Mode, end: usize) -> Result<ArrayD<T>> {
        if x.ndim() != self.input_shape.len() + 1 || x.shape()[1..] != self.input_shape[..] {
            return Err(self.wrong_input(x.shape()));
        }
        let kernels = self.kernels;
        self.layers
            .iter_mut()
            .take(end)
            .try_fold(x, |x, layer| layer.forward(x, mode, kernels))
    }

    /// The backward pass of the last training forward: `∂L/∂out` in, `∂L/∂x` out; every
    /// parameter's gradient is increased by its share (call [`Sequential::zero_grad`] between
    /// steps, as in PyTorch).
    pub fn backward(&mut self, grad_out: ArrayD<T>) -> Result<ArrayD<T>> {
        let end = self.layers.len();
        self.backward_layers(grad_out, end)
    }

    /// The backward pass through the first `end` layers, from the gradient of their output.
    pub fn backward_layers(&mut self, grad_out: ArrayD<T>, end: usize) -> Result<ArrayD<T>> {
        let kernels = self.kernels;
        self.layers
            .iter_mut()
            .take(end)
            .rev()
            .try_fold(grad_out, |g, layer| layer.backward(g, kernels))
    }

    /// [`Sequential::backward_layers`] for a training step, which needs no `∂L/∂x`: the first
    /// layer only adds its parameters' gradients ([`Layer::backward_parameters`]), as PyTorch
    /// skips the gradient of an input that does not require one. Every parameter's gradient
    /// is the same as by [`Sequential::backward_layers`], bit for bit.
    pub fn backward_parameters(&mut self, grad_out: ArrayD<T>, end: usize) -> Result<()> {
        let kernels = self.kernels;
        let end = end.min(self.layers.len());
        let Some((first, rest)) = self.layers[..end].split_first_mut() else {
            crate::buffers::recycle(grad_out);
            return Ok(());
        };
        let grad = rest
            .iter_mut()
            .rev()
            .try_fold(grad_out, |g, layer| layer.backward(g, kernels))?;
        first.backward_parameters(grad, kernels)
    }

    fn wrong_input(&self, shape: &[usize]) -> Error {
        Error::shape(
            "Sequential",
            format!(
                "{} takes a batch (N, {}), got shape {shape:?}",
                self.name,
                self.input_shape
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        )
    }

    /// Set every parameter's gradient to zero.
    pub fn zero_grad(&mut self) {
        for layer in &mut self.layers {
            for (_, t) in layer.parameters_mut() {
                t.grad.fill(T::zero());
            }
        }
    }

    /// Every parameter with its name and gradient, in `state_dict` order, for an optimizer.
    pub fn params_mut(&mut self) -> Vec<Param<'_, T>> {
        let Sequential { layers, names, .. } = self;
        layers
            .iter_mut()
            .zip(names.iter())
            .flat_map(|(layer, names)| {
                layer
                    .parameters_mut()
                    .into_iter()
                    .zip(names)
                    .map(|((_, t), name)| Param {
                        name,
                        value: t.value.view_mut(),
                        grad: t.grad.view(),
                    })
            })
            .collect()
    }

    /// Every parameter by its `state_dict` name, in order.
    pub fn state_dict(&self) -> Vec<(&str, ArrayViewD<'_, T>)> {
        self.named(|t| &t.value)
    }

    /// The gradient of every parameter by its `state_dict` name, in order.
    pub fn gradients(&self) -> Vec<(&str, ArrayViewD<'_, T>)> {
        self.named(|t| &t.grad)
    }

    /// One array of every parameter, by the parameter's name, in order.
    fn named(&self, pick: fn(&Tensor<T>) -> &ArrayD<T>) -> Vec<(&str, ArrayViewD<'_, T>)> {
        self.layers
            .iter()
            .zip(&self.names)
            .flat_map(|(layer, names)| {
                layer
                    .parameters()
                    .into_iter()
                    .zip(names)
                    .map(move |((_, t), name)| (name.as_str(), pick(t).view()))
            })
            .collect()
    }

    /// Replace every parameter with the tensor of the same name, like PyTorch's
    /// `load_state_dict(strict=True)`: a missing or unexpected name, or a shape that differs,
    /// is an error that lists them, and then nothing is changed.
    pub fn load_state_dict(&mut self, tensors: super::NamedTensors<T>) -> Result<()> {
        let mut by_name: std::collections::BTreeMap<String, ArrayD<T>> =
            tensors.into_iter().collect();
        let mut problems = Vec::new();
        for (name, value) in self.state_dict() {
            match by_name.get(name) {
                None => problems.push(format!("missing {name}")),
                Some(t) if t.shape() != value.shape() => problems.push(format!(
                    "{name} has shape {:?}, the model's is {:?}",
                    t.shape(),
                    value.shape()
                )),
                Some(_) => {}
            }
        }
        let expected: std::collections::BTreeSet<&str> =
            self.names.iter().flatten().map(String::as_str).collect();
        problems.extend(
            by_name
                .keys()
                .filter(|k| !expected.contains(k.as_str()))
                .map(|k| format!("unexpected {k}")),
        );
        if !problems.is_empty() {
            return Err(Error::shape(
                "load_state_dict",
                format!(
                    "the tensors do not fit {}: {}",
                    self.name,
                    problems.join("; ")
                ),
            ));
        }
        let Sequential { layers, names, .. } = self;
        for (layer, names) in layers.iter_mut().zip(names.iter()) {
            for ((_, t), name) in layer.parameters_mut().into_iter().zip(names) {
                t.value = by_name
                    .remove(name)
                    .expect("every name was checked above")
                    .into_dimensionality::<IxDyn>()
                    .expect("a dynamic array");
            }
        }
        Ok(())
    }

    /// The number of learnable parameters.
    pub fn num_parameters(&self) -> usize {
        self.state_dict().iter().map(|(_, v)| v.len()).sum()
    }

    /// A Keras-style table: every layer with its output shape, parameter count and receptive
    /// field (along the height axis), and the totals.
    pub fn summary(&self) -> Result<Summary> {
        let shapes = self.output_shapes()?;
        let mut field = Some(Field::INPUT);
        let mut rows = Vec::with_capacity(self.layers.len());
        for (i, (layer, output)) in self.layers.iter().zip(shapes).enumerate() {
            field = match (field, layer.window()) {
                (Some(f), Some(w)) => Some(f.then(w)?),
                (f, None) if !layer.connects_everything() => f,
                _ => None,
            };
            rows.push(SummaryRow {
                index: i,
                layer: layer.describe(),
                output,
                params: layer.parameters().iter().map(|(_, t)| t.value.len()).sum(),
                field,
            });
        }
        Ok(Summary {
            name: self.name.clone(),
            input: self.input_shape.clone(),
            rows,
        })
    }
}

/// One line of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// The layer's index, the prefix of its parameters' names.
    pub index: usize,
    /// The layer as PyTorch prints it.
    pub layer: String,
    /// Output shape of one sample.
    pub output: Vec<usize>,
    /// Learnable parameters.
    pub params: usize,
    /// Receptive field size and jump along the height axis; `None` once every unit sees the
    /// whole input.
    pub field: Option<Field>,
}

/// The table [`Sequential::summary`] computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The model's name.
    pub name: String,
    /// The input shape of one sample.
    pub input: Vec<usize>,
    /// One row per layer.
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    /// The total number of learnable parameters.
    pub fn total_params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }
}

fn shape_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("×")
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.layer.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        writeln!(f, "{}", self.name)?;
        writeln!(
            f,
            "{:<4} {:<width$} {:>12} {:>11} {:>10}",
            "#", "layer", "output", "params", "field/jump"
        )?;
        writeln!(
            f,
            "{:<4} {:<width$} {:>12} {:>11} {:>10}",
            "",
            "input",
            shape_text(&self.input),
            "",
            "1/1"
        )?;
        for r in &self.rows {
            let field = r
                .field
                .map_or_else(|| "all".to_string(), |f| format!("{}/{}", f.size, f.jump));
            writeln!(
                f,
                "{:<4} {:<width$} {:>12} {:>11} {:>10}",
                r.index,
                r.layer,
                shape_text(&r.output),
                thousands(r.params),
                field
            )?;
        }
        write!(
            f,
            "{:<4} {:<width$} {:>12} {:>11}",
            "",
            "total",
            "",
            thousands(self.total_params())
        )
    }
}
