//! # Optimizers
//!
//! Backpropagation (chapter 8) gives the gradient `g = ∂L/∂θ` of the loss with respect to every
//! parameter `θ`. An optimizer turns that gradient into a step: it moves each parameter a little
//! downhill, and most optimizers remember something of the gradients they saw before (a running
//! average, a velocity) to choose a better step than the gradient alone. This module has the four
//! most used for CNNs — [`Sgd`], [`Adam`], [`AdamW`] and [`RmsProp`] — each an exact
//! copy of its PyTorch namesake in `torch.optim`: the same defaults, the same checks, the same
//! state, and the same arithmetic in the same order, so that a run here and a run in PyTorch agree
//! to the last bit or nearly so (see *Floating point* below).
//!
//! An optimizer sees a model only as a list of [`Param`]s: a name (the model's `state_dict` name,
//! `"0.weight"`), the values to update in place and their gradient. It keeps its memory by that
//! name, so [`Optimizer::state`] can write it into a checkpoint and [`Optimizer::load_state`] can
//! restore it to resume training exactly where it stopped.
//!
//! The formulas below use the names of the code: `θ` is the parameter (`param.value`), `g` its
//! gradient (`param.grad`), `t` the step count (`step`), and every hyper-parameter is spelled as
//! its options field (`lr`, `momentum`, `weight_decay`, …). Each line is one update of whole
//! tensors, element by element.
//!
//! ## Stochastic gradient descent
//!
//! Plain gradient descent steps against the gradient, `θ ← θ − lr·g`. With `momentum`, the step
//! follows a running sum of past gradients, the momentum buffer `b`, which keeps the direction the
//! gradients agree on and averages away the ones that flip from batch to batch:
//!
//! ```text
//! g ← g + weight_decay·θ                      (only if weight_decay ≠ 0: the L2 penalty's gradient)
//! b ← g                                       (first step: the buffer starts as the gradient)
//! b ← momentum·b + (1 − dampening)·g          (later steps)
//! g ← g + momentum·b                          (nesterov: look one step ahead)
//! g ← b                                       (otherwise)
//! θ ← θ − lr·g
//! ```
//!
//! With `momentum = 0` the buffer is not kept and the rule is plain descent. Nesterov momentum
//! needs `momentum > 0` and `dampening = 0`, as in PyTorch. Keras folds the learning rate into its
//! velocity (`v ← momentum·v − lr·g`, `θ ← θ + v`): the same steps while `lr` is fixed, different
//! ones after the rate changes.
//!
//! ```
//! use convlab::nn::Param;
//! use convlab::nn::optim::{Optimizer, Sgd, SgdOptions};
//! use ndarray::arr1;
//!
//! let mut theta = arr1(&[1.0f64]).into_dyn();
//! let g = arr1(&[0.5]).into_dyn();
//! let mut sgd = Sgd::new(SgdOptions::default().lr(0.1).momentum(0.9))?;
//! for _ in 0..2 {
//!     sgd.step(&mut [Param { name: "w", value: theta.view_mut(), grad: g.view() }])?;
//! }
//! // Step 1: b = g = 0.5, θ = 1 − 0.1·0.5 = 0.95.
//! // Step 2: b = 0.9·0.5 + 0.5 = 0.95, θ = 0.95 − 0.1·0.95 = 0.855.
//! assert!((theta[0] - 0.855).abs() < 1e-15);
//! assert_eq!(sgd.state()[0].0, "w.momentum_buffer");
//! # Ok::<(), convlab::Error>(())
//! ```
//!
//! ## Adam
//!
//! Adam keeps two running averages per parameter, of the gradient (`exp_avg`, `m`) and of its
//! square (`exp_avg_sq`, `v`), and divides one by the root of the other, so every coordinate takes
//! a step of about `lr` whatever the scale of its gradient:
//!
//! ```text
//! t ← t + 1
//! g ← g + weight_decay·θ                          (only if weight_decay ≠ 0)
//! m ← m + (1 − β1)·(g − m)                        (= β1·m + (1 − β1)·g)
//! v ← β2·v + (1 − β2)·g²
//! v_max ← max(v_max, v)                           (amsgrad only; v_max replaces v below)
//! bias_correction1 = 1 − β1^t
//! bias_correction2 = 1 − β2^t
//! step_size = lr / bias_correction1
//! denom = √v / √bias_correction2 + eps
//! θ ← θ − step_size · m / denom
//! ```
//!
//! with `(β1, β2) = betas`. Both averages start at zero, so early on they are too small: after `t`
//! steps of a constant gradient `g`, `m = (1 − β1^t)·g`. Dividing by the bias corrections undoes
//! that, and the first step is exactly `m/bias_correction1 = g`, `v/bias_correction2 = g²`,
//! `θ ← θ − lr·g/(|g| + eps)`: every coordinate moves by almost exactly `lr` against the sign of
//! its gradient. AMSGrad divides by the largest second moment seen so far instead of the current
//! one, so the step of a coordinate never grows back after a burst of large gradients.
//!
//! `eps` is added after the correction, to `√v/√bias_correction2`. Keras adds its `epsilon` to
//! `√v` before the correction (its documentation calls it "epsilon hat"), which is PyTorch's rule
//! with `eps = epsilon/√bias_correction2`, an `eps` that shrinks as `t` grows; its default is
//! `1e-7` against PyTorch's `1e-8`.
//!
//! ## AdamW: decoupled weight decay
//!
//! In [`Adam`], `weight_decay` adds `weight_decay·θ` to the gradient, the gradient of the penalty
//! `½·weight_decay·‖θ‖²`. That term is then divided by `denom` like the rest of the gradient, so
//! parameters with large gradients are barely decayed at all. [`AdamW`] decays the parameter
//! itself, apart from the gradient, before Adam's update:
//!
//! ```text
//! θ ← θ·(1 − lr·weight_decay)
//! (then Adam's rule above, without the weight_decay term in g)
//! ```
//!
//! so every parameter shrinks by the same fraction each step. PyTorch's AdamW decays by default,
//! `weight_decay = 0.01`; Keras's AdamW by `0.004`.
//!
//! ## RMSprop
//!
//! RMSprop keeps only the running average of the squared gradient (`square_avg`) and divides the
//! gradient by its root:
//!
//! ```text
//! t ← t + 1
//! g ← g + weight_decay·θ                              (only if weight_decay ≠ 0)
//! square_avg ← alpha·square_avg + (1 − alpha)·g²
//! avg = √square_avg + eps                             (plain)
//! grad_avg ← grad_avg + (1 − alpha)·(g − grad_avg)    (centered: also average the gradient …)
//! avg = √(square_avg − grad_avg²) + eps               (… and divide by its standard deviation)
//! b ← momentum·b + g / avg;   θ ← θ − lr·b            (momentum > 0)
//! θ ← θ − lr·g / avg                                  (momentum = 0)
//! ```
//!
//! There is no bias correction: `square_avg` starts at zero, so the first steps are larger than
//! `lr` (the first is `lr·g/(√(1 − alpha)·|g| + eps)`, ten times `lr` for `alpha = 0.99`).
//! Keras's RMSprop calls `alpha` `rho` and differs in its defaults — `rho = 0.9` against
//! `alpha = 0.99`, `epsilon = 1e-7` against `eps = 1e-8`, `learning_rate = 1e-3` against `lr =
//! 1e-2` — and puts its `epsilon` inside the root, `√(square_avg + epsilon)`, and the learning rate
//! inside its momentum buffer. The course's Keras notebooks train with `RMSprop` at `lr = 1e-4`
//! (smaller still for fine-tuning) or with Keras's default `'adam'`; its PyTorch notebook with
//! `Adam(lr=0.001)`.
//!
//! ## Defaults: PyTorch and Keras
//!
//! Every options struct's [`Default`] is PyTorch's. Keras's, for a model ported from Keras:
//!
//! | | convlab and PyTorch | Keras |
//! |---|---|---|
//! | SGD | `lr = 1e-3` (older PyTorch releases had no default) | `learning_rate = 0.01` |
//! | Adam | `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8` | `learning_rate = 1e-3`, `beta_1 = 0.9`, `beta_2 = 0.999`, `epsilon = 1e-7` |
//! | AdamW | as Adam, `weight_decay = 0.01` | as Adam, `weight_decay = 0.004` |
//! | RMSprop | `lr = 1e-2`, `alpha = 0.99`, `eps = 1e-8` | `learning_rate = 1e-3`, `rho = 0.9`, `epsilon = 1e-7` |
//!
//! ## Training with an optimizer
//!
//! One training step is: forward, loss, backward (which fills the gradients), then
//! [`Optimizer::step`]. Here Adam minimises the quadratic `L(w) = ½·‖w − target‖²`, whose gradient
//! is `w − target`; the loss falls at every step and the first step moves each coordinate by `lr`.
//!
//! ```
//! use convlab::nn::Param;
//! use convlab::nn::optim::{Adam, AdamOptions, Optimizer};
//! use ndarray::{arr1, ArrayD};
//!
//! let target = arr1(&[1.0f64, -2.0, 0.5]).into_dyn();
//! let loss = |w: &ArrayD<f64>| 0.5 * (w - &target).mapv(|d| d * d).sum();
//! let mut w = ArrayD::<f64>::zeros(target.raw_dim());
//! let mut adam = Adam::new(AdamOptions::default().lr(0.1))?;
//! let mut losses = vec![loss(&w)];
//! for _ in 0..20 {
//!     let grad = &w - &target;
//!     adam.step(&mut [Param { name: "w", value: w.view_mut(), grad: grad.view() }])?;
//!     losses.push(loss(&w));
//!     if losses.len() == 2 {
//!         // g = −target on the first step, so w = lr·sign(target), up to eps.
//!         assert!((&w - &arr1(&[0.1, -0.1, 0.1]).into_dyn()).iter().all(|d| d.abs() < 1e-8));
//!     }
//! }
//! assert!(losses.windows(2).all(|pair| pair[1] < pair[0]));
//! assert!(losses[20] < 0.1 * losses[0]);
//! # Ok::<(), convlab::Error>(())
//! ```
//!
//! A step-decay schedule changes the rate between steps with [`Optimizer::set_learning_rate`],
//! as a PyTorch scheduler sets `param_groups[0]["lr"]`: the running averages are kept.
//!
//! ## State and checkpoints
//!
//! [`Optimizer::state`] lists everything needed to resume as named tensors, PyTorch's state keys
//! after the parameter's name: `"0.weight.momentum_buffer"` for SGD with momentum;
//! `"0.weight.step"` (a 0-d tensor), `"0.weight.exp_avg"`, `"0.weight.exp_avg_sq"` and, with
//! AMSGrad, `"0.weight.max_exp_avg_sq"` for Adam and AdamW; `"0.weight.step"`,
//! `"0.weight.square_avg"`, and with momentum or centering `"0.weight.momentum_buffer"` and
//! `"0.weight.grad_avg"` for RMSprop. A fresh optimizer that loads them continues bit for bit as
//! the one that saved them. The options (learning rate, betas, …) are not part of the state: they
//! are given again to the constructor.
//!
//! ```
//! use convlab::nn::Param;
//! use convlab::nn::optim::{Adam, AdamOptions, Optimizer};
//! use ndarray::arr1;
//!
//! let g = arr1(&[0.3f32, -0.7]).into_dyn();
//! let (mut a, mut b) = (arr1(&[1.0f32, 2.0]).into_dyn(), arr1(&[1.0f32, 2.0]).into_dyn());
//! let mut straight = Adam::new(AdamOptions::default())?;
//! let mut first = Adam::new(AdamOptions::default())?;
//! for _ in 0..3 {
//!     straight.step(&mut [Param { name: "w", value: a.view_mut(), grad: g.view() }])?;
//!     first.step(&mut [Param { name: "w", value: b.view_mut(), grad: g.view() }])?;
//! }
//! let saved = first.state();
//! assert_eq!(saved.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
//!            ["w.step", "w.exp_avg", "w.exp_avg_sq"]);
//! let mut resumed = Adam::new(AdamOptions::default())?;
//! resumed.load_state(saved)?;
//! straight.step(&mut [Param { name: "w", value: a.view_mut(), grad: g.view() }])?;
//! resumed.step(&mut [Param { name: "w", value: b.view_mut(), grad: g.view() }])?;
//! assert_eq!(a, b);
//! # Ok::<(), convlab::Error>(())
//! ```
//!
//! ## Floating point: PyTorch's arithmetic
//!
//! The optimizers follow the operations of PyTorch's single-tensor CPU implementation
//! (`_single_tensor_sgd`, `_single_tensor_adam`, `_single_tensor_rmsprop`), one tensor operation
//! after another. Scalars such as `bias_correction1` or `step_size` are computed in `f64`, as
//! Python computes them, and rounded to the parameter's type where they meet a tensor. Where
//! PyTorch's CPU kernels fuse a multiply and an add into one rounding (`lerp`, `add` with
//! `alpha`, `addcmul`), the code does too, with [`mul_add`](f64::mul_add). On the fixture's
//! `float32` runs of `torch.optim` (`tests/optim.rs`), all but one of the 3,387 values (the
//! parameters after every step, the state after the last) come out equal to the bit; the last
//! is one unit in the last place off, because PyTorch's vectorised `f32` square root is not
//! always correctly rounded. In `f64` the runs agree to a few units in the last place.
//!
//! One deliberate difference: state that decays by a factor each step (momentum buffers, Adam's
//! moments, RMSprop's averages) has its subnormal values — below 1.2e-38 in `f32` — set to zero,
//! as PyTorch does after `torch.set_flush_denormal(True)`. The moments of a weight whose gradient
//! stays zero otherwise sink into that range and stay there, and arithmetic on subnormals is
//! about a hundred times slower on x86 processors; no update changes by more than a subnormal
//! amount.

use std::collections::BTreeMap;

use ndarray::{ArrayBase, ArrayD, ArrayViewD, CowArray, DataMut, IxDyn, Zip, arr0};

use super::Param;
use crate::error::{Error, Result};
use crate::gemm::Scalar;

/// An optimizer: updates named parameters in place from their gradients, and keeps what it
/// remembers between steps by parameter name.
pub trait Optimizer<T: Scalar> {
    /// The optimizer's name as PyTorch spells it (`"SGD"`, `"Adam"`, `"AdamW"`, `"RMSprop"`).
    fn name(&self) -> &'static str;

    /// One update of every parameter from its gradient. `Err`, with no parameter changed, if a
    /// gradient's shape differs from its parameter's, a parameter's shape differs from the state
    /// kept for its name, two parameters share a name, or the learning rate is negative.
    fn step(&mut self, params: &mut [Param<'_, T>]) -> Result<()>;

    /// The learning rate the next step will use.
    fn learning_rate(&self) -> f64;

    /// Change the learning rate for the following steps (a schedule's step decay); the state is
    /// kept. A negative or NaN rate makes the next [`step`](Optimizer::step) fail.
    fn set_learning_rate(&mut self, lr: f64);

    /// Everything needed to resume, as `(name, tensor)` pairs: PyTorch's state keys after the
    /// parameter's name (`"0.weight.exp_avg"`), step counts as 0-d tensors. Parameters in name
    /// order, each one's entries in PyTorch's order.
    fn state(&self) -> Vec<(String, ArrayD<T>)> {
        self.state_views()
            .into_iter()
            .map(|(name, t)| (name, t.into_owned()))
            .collect()
    }

    /// [`state`](Optimizer::state) without copying the tensors the optimizer keeps (what a
    /// checkpoint writes from).
    fn state_views(&self) -> Vec<(String, CowArray<'_, T, IxDyn>)>;

    /// Replace the whole state with `state`, as [`state`](Optimizer::state) wrote it. `Err`
    /// naming the entry, with the state unchanged, if a name is not one this optimizer keeps with
    /// its options, an entry appears twice or is missing beside its companions, a tensor's shape
    /// differs from its companions' (a step count must be 0-d), or a step count is not a whole
    /// number ≥ 0.
    fn load_state(&mut self, state: Vec<(String, ArrayD<T>)>) -> Result<()>;
}

// ---------------------------------------------------------------------------------------------
// Hyper-parameter checks (PyTorch's rules; NaN never passes).

fn at_least_zero(name: &'static str, value: f64) -> Result<()> {
    if value >= 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            format!("{value} is not allowed; PyTorch requires 0 ≤ {name}"),
        ))
    }
}

fn not_nan(name: &'static str, value: f64) -> Result<()> {
    if value.is_nan() {
        Err(Error::param(
            name,
            format!("got NaN; {name} must be a number"),
        ))
    } else {
        Ok(())
    }
}

fn check_betas((beta1, beta2): (f64, f64)) -> Result<()> {
    for (i, beta) in [beta1, beta2].into_iter().enumerate() {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::param(
                "betas",
                format!("betas.{i} = {beta} is outside [0, 1); PyTorch requires 0 ≤ beta < 1"),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PyTorch's tensor operations, element by element, with the rounding of its CPU kernels.

/// `x` rounded to `T`, as PyTorch converts a Python float where it meets a tensor.
fn cast<T: Scalar>(x: f64) -> T {
    // Float-to-float conversion cannot fail (it saturates to ±∞).
    T::from(x).unwrap_or_else(T::nan)
}

/// `a.mul_(s)`: `a ← a·s`.
fn mul_<T: Scalar, S: DataMut<Elem = T>>(a: &mut ArrayBase<S, IxDyn>, s: T) {
    a.mapv_inplace(|x| x * s);
}

/// `a.add_(b, alpha=alpha)`: `a ← a + alpha·b`, rounded once as PyTorch's kernel fuses it.
fn add_<T: Scalar, S: DataMut<Elem = T>>(a: &mut ArrayBase<S, IxDyn>, b: &ArrayViewD<T>, alpha: T) {
    Zip::from(a)
        .and(b)
        .for_each(|a, &b| *a = alpha.mul_add(b, *a));
}

/// `a.lerp_(end, w)`: `a ← a + w·(end − a)`. PyTorch's kernel starts from the nearer end,
/// `a + w·(end − a)` for `|w| < 0.5` and `end − (1 − w)·(end − a)` otherwise, each with one
/// fused multiply-add.
fn lerp_<T: Scalar>(a: &mut ArrayD<T>, end: &ArrayViewD<T>, w: T) {
    Zip::from(a)
        .and(end)
        .for_each(|a, &end| *a = lerp(*a, end, w));
}

/// One element of [`lerp_`].
fn lerp<T: Scalar>(a: T, end: T, w: T) -> T {
    let diff = end - a;
    if w.abs() < cast::<T>(0.5) {
        w.mul_add(diff, a)
    } else {
        (w - T::one()).mul_add(diff, end)
    }
}

/// `a.addcmul_(t1, t2, value=value)`: `a ← a + value·t1·t2`, the last product and the sum fused.
fn addcmul_<T: Scalar>(a: &mut ArrayD<T>, t1: &ArrayViewD<T>, t2: &ArrayViewD<T>, value: T) {
    Zip::from(a)
        .and(t1)
        .and(t2)
        .for_each(|a, &t1, &t2| *a = (value * t1).mul_add(t2, *a));
}

/// `a.addcdiv_(t1, t2, value=value)`: `a ← a + value·t1/t2`, each operation rounded.
fn addcdiv_<T: Scalar, S: DataMut<Elem = T>>(
    a: &mut ArrayBase<S, IxDyn>,
    t1: &ArrayViewD<T>,
    t2: &ArrayViewD<T>,
    value: T,
) {
    Zip::from(a)
        .and(t1)
        .and(t2)
        .for_each(|a, &t1, &t2| *a += value * t1 / t2);
}

/// Set the values below the smallest normal number (1.2e-38 in f32) to zero, as PyTorch does
/// under `torch.set_flush_denormal(True)`, in a state that decays by a factor each step.
///
/// A running average whose gradient stays zero — the weights of a unit that ReLU has switched
/// off — shrinks into the subnormal range within a few hundred steps and stays there for good
/// (β₁ times the smallest subnormal rounds back to it). Every operation on a subnormal costs a
/// hundred times more on x86 processors: a million such entries in the course CNN's first linear
/// layer slowed its training by half after the first epoch. Flushing changes no update by more
/// than a subnormal amount.
fn flush_subnormal_<T: Scalar>(a: &mut ArrayD<T>) {
    a.mapv_inplace(flush_subnormal);
}

/// One element of [`flush_subnormal_`].
fn flush_subnormal<T: Scalar>(x: T) -> T {
    if x.abs() < T::min_positive_value() {
        T::zero()
    } else {
        x
    }
}

/// `torch.maximum`: the larger, or NaN if either is NaN.
fn maximum<T: Scalar>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::nan()
    } else {
        a.max(b)
    }
}

/// The gradient with `weight_decay·θ` added (`grad.add(param, alpha=weight_decay)`), or the
/// gradient itself when there is no decay.
fn decayed_grad<'g, T: Scalar>(
    grad: ArrayViewD<'g, T>,
    value: ArrayViewD<'_, T>,
    weight_decay: f64,
) -> CowArray<'g, T, IxDyn> {
    if weight_decay == 0.0 {
        CowArray::from(grad)
    } else {
        let mut grad = grad.to_owned();
        add_(&mut grad, &value, cast(weight_decay));
        CowArray::from(grad)
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by every optimizer's step and load_state.

/// Check a step's parameters before any is touched: gradients shaped like their values, names
/// unique, the learning rate usable, and every kept state shaped like its parameter.
fn check_step<T: Scalar>(
    op: &'static str,
    lr: f64,
    params: &[Param<'_, T>],
    kept_shape: impl Fn(&str) -> Option<Vec<usize>>,
) -> Result<()> {
    at_least_zero("lr", lr)?;
    let mut seen = std::collections::BTreeSet::new();
    for p in params {
        if p.grad.shape() != p.value.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "parameter {} has shape {:?} but its gradient has shape {:?}",
                    p.name,
                    p.value.shape(),
                    p.grad.shape()
                ),
            ));
        }
        if !seen.insert(p.name) {
            return Err(Error::param(
                "params",
                format!(
                    "{op}: parameter name {} appears twice in one step; names must be unique",
                    p.name
                ),
            ));
        }
        if let Some(kept) = kept_shape(p.name)
            && kept != p.value.shape()
        {
            return Err(Error::shape(
                op,
                format!(
                    "parameter {} has shape {:?} but the state kept for it has shape {:?}",
                    p.name,
                    p.value.shape(),
                    kept
                ),
            ));
        }
    }
    Ok(())
}

/// A step count as a 0-d tensor.
fn step_tensor<T: Scalar>(step: u64) -> ArrayD<T> {
    arr0(cast::<T>(step as f64)).into_dyn()
}

/// A saved state's entries grouped by parameter: `"0.weight.exp_avg"` is field `exp_avg` of
/// parameter `0.weight` (parameter names hold dots, field names do not).
struct Saved<T> {
    op: &'static str,
    /// The fields this optimizer keeps, for error messages.
    fields: Vec<&'static str>,
    by_param: BTreeMap<String, BTreeMap<String, ArrayD<T>>>,
}

impl<T: Scalar> Saved<T> {
    fn new(
        op: &'static str,
        fields: Vec<&'static str>,
        state: Vec<(String, ArrayD<T>)>,
    ) -> Result<Self> {
        let mut by_param: BTreeMap<String, BTreeMap<String, ArrayD<T>>> = BTreeMap::new();
        for (key, tensor) in state {
            let (param, field) = match key.rsplit_once('.') {
                Some((param, field)) if fields.contains(&field) && !param.is_empty() => {
                    (param.to_string(), field.to_string())
                }
                _ => return Err(Self::unknown(op, &fields, &key)),
            };
            if by_param
                .entry(param)
                .or_default()
                .insert(field, tensor)
                .is_some()
            {
                return Err(Error::param(
                    "state",
                    format!("{op}: entry {key} appears twice"),
                ));
            }
        }
        Ok(Saved {
            op,
            fields,
            by_param,
        })
    }

    fn unknown(op: &'static str, fields: &[&'static str], key: &str) -> Error {
        let reason = if fields.is_empty() {
            format!("{op}: unknown entry {key}; with these options it keeps no state")
        } else {
            format!(
                "{op}: unknown entry {key}; with these options it keeps PARAM.{} for each parameter",
                fields.join(", PARAM.")
            )
        };
        Error::param("state", reason)
    }

    /// Each parameter's name and fields, to be taken apart with [`Fields`].
    fn params(self) -> impl Iterator<Item = Fields<T>> {
        let (op, fields) = (self.op, self.fields);
        self.by_param.into_iter().map(move |(param, map)| Fields {
            op,
            all: fields.clone(),
            param,
            map,
            shape: None,
        })
    }
}

/// One parameter's saved fields.
struct Fields<T> {
    op: &'static str,
    all: Vec<&'static str>,
    param: String,
    map: BTreeMap<String, ArrayD<T>>,
    /// The shape of the first buffer taken, which every other buffer must share.
    shape: Option<Vec<usize>>,
}

impl<T: Scalar> Fields<T> {
    fn missing(&self, field: &str) -> Error {
        Error::param(
            "state",
            format!(
                "{}: entry {}.{field} is missing; each parameter needs {}",
                self.op,
                self.param,
                self.all.join(", ")
            ),
        )
    }

    /// The step count: a 0-d tensor holding a whole number ≥ 0.
    fn step(&mut self) -> Result<u64> {
        let t = self
            .map
            .remove("step")
            .ok_or_else(|| self.missing("step"))?;
        if t.ndim() != 0 {
            return Err(Error::shape(
                self.op,
                format!(
                    "state entry {}.step has shape {:?} but a step count is 0-d",
                    self.param,
                    t.shape()
                ),
            ));
        }
        let value = t.iter().next().and_then(|v| v.to_f64()).unwrap_or(f64::NAN);
        // 2^53: every whole number below it is exact in f64.
        if value >= 0.0 && value.fract() == 0.0 && value < 9_007_199_254_740_992.0 {
            Ok(value as u64)
        } else {
            Err(Error::param(
                "state",
                format!(
                    "{}: entry {}.step holds {value}, but a step count is a whole number ≥ 0",
                    self.op, self.param
                ),
            ))
        }
    }

    /// A buffer shaped like the others of its parameter.
    fn buffer(&mut self, field: &str) -> Result<ArrayD<T>> {
        let t = self.map.remove(field).ok_or_else(|| self.missing(field))?;
        match &self.shape {
            None => self.shape = Some(t.shape().to_vec()),
            Some(shape) if shape.as_slice() != t.shape() => {
                return Err(Error::shape(
                    self.op,
                    format!(
                        "state entry {}.{field} has shape {:?} but the parameter's other \
                         entries have shape {shape:?}",
                        self.param,
                        t.shape()
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(t)
    }

    /// A buffer that this optimizer's options keep (`keep`) or not.
    fn buffer_if(&mut self, keep: bool, field: &str) -> Result<Option<ArrayD<T>>> {
        if keep {
            self.buffer(field).map(Some)
        } else {
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SGD

/// Options of [`Sgd`]; [`Default`] is PyTorch's `torch.optim.SGD()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdOptions {
    /// Learning rate, ≥ 0. Default `1e-3`.
    pub lr: f64,
    /// Momentum factor, ≥ 0; 0 (the default) keeps no buffer.
    pub momentum: f64,
    /// Fraction of each new gradient left out of the momentum buffer. Default 0.
    pub dampening: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening = 0`). Default off.
    pub nesterov: bool,
    /// L2 penalty factor, ≥ 0, added to the gradient as `weight_decay·θ`. Default 0.
    pub weight_decay: f64,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl SgdOptions {
    /// PyTorch's defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        SgdOptions {
            lr,
            ..Self::default()
        }
    }
    /// Set the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Set the momentum factor.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Set the dampening.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    /// Turn Nesterov momentum on or off.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
    /// Set the L2 penalty factor.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn check(&self) -> Result<()> {
        at_least_zero("lr", self.lr)?;
        at_least_zero("momentum", self.momentum)?;
        not_nan("dampening", self.dampening)?;
        at_least_zero("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::param(
                "nesterov",
                format!(
                    "Nesterov momentum requires momentum > 0 and dampening = 0, got momentum {} \
                     and dampening {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }
}

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and weight
/// decay: PyTorch's `torch.optim.SGD`. State: `NAME.momentum_buffer` when `momentum ≠ 0`.
#[derive(Debug, Clone)]
pub struct Sgd<T> {
    options: SgdOptions,
    momentum_buffer: BTreeMap<String, ArrayD<T>>,
}

impl<T: Scalar> Sgd<T> {
    /// An SGD optimizer; `Err(InvalidParameter)` for a negative `lr`, `momentum` or
    /// `weight_decay`, or Nesterov momentum without momentum or with dampening.
    pub fn new(options: SgdOptions) -> Result<Self> {
        options.check()?;
        Ok(Sgd {
            options,
            momentum_buffer: BTreeMap::new(),
        })
    }

    /// The options, with the current learning rate.
    pub fn options(&self) -> SgdOptions {
        self.options
    }

    fn update(&mut self, param: &mut Param<'_, T>) {
        let SgdOptions {
            lr,
            momentum,
            dampening,
            nesterov,
            weight_decay,
        } = self.options;
        let mut grad = decayed_grad(param.grad.view(), param.value.view(), weight_decay);
        if momentum != 0.0 {
            match self.momentum_buffer.get_mut(param.name) {
                Some(buf) => {
                    mul_(buf, cast(momentum));
                    add_(buf, &grad.view(), cast(1.0 - dampening));
                    flush_subnormal_(buf);
                }
                None => {
                    self.momentum_buffer
                        .insert(param.name.to_string(), grad.to_owned());
                }
            }
            let buf = &self.momentum_buffer[param.name];
            grad = if nesterov {
                let mut ahead = grad.into_owned();
                add_(&mut ahead, &buf.view(), cast(momentum));
                CowArray::from(ahead)
            } else {
                CowArray::from(buf.view())
            };
        }
        add_(&mut param.value, &grad.view(), cast(-lr));
    }
}

impl<T: Scalar> Optimizer<T> for Sgd<T> {
    fn name(&self) -> &'static str {
        "SGD"
    }

    fn step(&mut self, params: &mut [Param<'_, T>]) -> Result<()> {
        check_step(self.name(), self.options.lr, params, |name| {
            self.momentum_buffer.get(name).map(|b| b.shape().to_vec())
        })?;
        for param in params.iter_mut() {
            self.update(param);
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.options.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.options.lr = lr;
    }

    fn state_views(&self) -> Vec<(String, CowArray<'_, T, IxDyn>)> {
        self.momentum_buffer
            .iter()
            .map(|(name, buf)| (format!("{name}.momentum_buffer"), buf.view().into()))
            .collect()
    }

    fn load_state(&mut self, state: Vec<(String, ArrayD<T>)>) -> Result<()> {
        let keep = self.options.momentum != 0.0;
        let fields = if keep {
            vec!["momentum_buffer"]
        } else {
            vec![]
        };
        let mut loaded = BTreeMap::new();
        for mut f in Saved::new(self.name(), fields, state)?.params() {
            let buf = f.buffer("momentum_buffer")?;
            loaded.insert(f.param, buf);
        }
        self.momentum_buffer = loaded;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Adam and AdamW

/// Options of [`Adam`]; [`Default`] is PyTorch's `torch.optim.Adam()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamOptions {
    /// Learning rate, ≥ 0. Default `1e-3`.
    pub lr: f64,
    /// `(β1, β2)`, the decay rates of the running averages of the gradient and of its square,
    /// each in `[0, 1)`. Default `(0.9, 0.999)`.
    pub betas: (f64, f64),
    /// Added to the denominator, ≥ 0. Default `1e-8`.
    pub eps: f64,
    /// L2 penalty factor, ≥ 0, added to the gradient as `weight_decay·θ`. Default 0.
    pub weight_decay: f64,
    /// Divide by the largest second moment so far (AMSGrad). Default off.
    pub amsgrad: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

/// Options of [`AdamW`]; [`Default`] is PyTorch's `torch.optim.AdamW()`, which differs from
/// Adam's only in `weight_decay = 0.01`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWOptions {
    /// Learning rate, ≥ 0. Default `1e-3`.
    pub lr: f64,
    /// `(β1, β2)`, each in `[0, 1)`. Default `(0.9, 0.999)`.
    pub betas: (f64, f64),
    /// Added to the denominator, ≥ 0. Default `1e-8`.
    pub eps: f64,
    /// Decoupled decay factor, ≥ 0: each step first scales `θ` by `1 − lr·weight_decay`.
    /// Default `0.01`.
    pub weight_decay: f64,
    /// Divide by the largest second moment so far (AMSGrad). Default off.
    pub amsgrad: bool,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}

macro_rules! adam_builders {
    ($options:ty) => {
        impl $options {
            /// PyTorch's defaults with learning rate `lr`.
            pub fn new(lr: f64) -> Self {
                Self {
                    lr,
                    ..Self::default()
                }
            }
            /// Set the learning rate.
            pub fn lr(mut self, lr: f64) -> Self {
                self.lr = lr;
                self
            }
            /// Set `(β1, β2)`.
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.betas = (beta1, beta2);
                self
            }
            /// Set `eps`.
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }
            /// Set the weight decay factor.
            pub fn weight_decay(mut self, weight_decay: f64) -> Self {
                self.weight_decay = weight_decay;
                self
            }
            /// Turn AMSGrad on or off.
            pub fn amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }
        }
    };
}

adam_builders!(AdamOptions);
adam_builders!(AdamWOptions);

impl AdamOptions {
    fn check(&self) -> Result<()> {
        at_least_zero("lr", self.lr)?;
        at_least_zero("eps", self.eps)?;
        check_betas(self.betas)?;
        at_least_zero("weight_decay", self.weight_decay)
    }
}

/// One parameter's Adam state.
#[derive(Debug, Clone)]
struct AdamState<T> {
    step: u64,
    exp_avg: ArrayD<T>,
    exp_avg_sq: ArrayD<T>,
    max_exp_avg_sq: Option<ArrayD<T>>,
}

/// How weight decay enters Adam's step.
#[derive(Debug, Clone, Copy)]
enum Decay<T> {
    /// Adam's: `grad ← grad + λ·θ`.
    L2(T),
    /// AdamW's: `θ ← θ·(1 − lr·λ)` before the step.
    Decoupled(T),
}

/// One Adam step's constants, applied element by element. PyTorch's sequence of tensor
/// operations — decay, `exp_avg.lerp_(grad, 1 − β₁)`, `exp_avg_sq.mul_(β₂).addcmul_(grad, grad,
/// 1 − β₂)`, the flush of subnormals, AMSGrad's maximum, `denom = (v.sqrt() / c₂).add_(ε)` and
/// `param.addcdiv_(exp_avg, denom, −step_size)` — done in one pass: each element's arithmetic is
/// the same, so the result is too, and no temporary tensor is made.
#[derive(Debug, Clone, Copy)]
struct AdamRule<T> {
    decay: Option<Decay<T>>,
    w1: T,
    beta2: T,
    w2: T,
    c2: T,
    eps: T,
    value: T,
}

impl<T: Scalar> AdamRule<T> {
    #[inline(always)]
    fn element(&self, theta: &mut T, g: T, m: &mut T, v: &mut T, max: Option<&mut T>) {
        let g = match self.decay {
            None => g,
            Some(Decay::L2(decay)) => decay.mul_add(*theta, g),
            Some(Decay::Decoupled(shrink)) => {
                *theta *= shrink;
                g
            }
        };
        *m = flush_subnormal(lerp(*m, g, self.w1));
        *v = flush_subnormal((self.w2 * g).mul_add(g, *v * self.beta2));
        let second = match max {
            Some(max) => {
                *max = maximum(*max, *v);
                *max
            }
            None => *v,
        };
        let denom = second.sqrt() / self.c2 + self.eps;
        *theta += self.value * *m / denom;
    }

    #[inline(always)]
    fn run(&self, theta: &mut [T], g: &[T], m: &mut [T], v: &mut [T], max: Option<&mut [T]>) {
        match max {
            None => {
                for (((t, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
                    self.element(t, g, m, v, None);
                }
            }
            Some(max) => {
                for ((((t, &g), m), v), x) in theta.iter_mut().zip(g).zip(m).zip(v).zip(max) {
                    self.element(t, g, m, v, Some(x));
                }
            }
        }
    }

    /// [`run`](Self::run) compiled for processors with fused multiply-add, where `mul_add` is
    /// one instruction instead of a call to the C library's `fma` (the results are the same:
    /// both round once).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    fn run_fma(&self, theta: &mut [T], g: &[T], m: &mut [T], v: &mut [T], max: Option<&mut [T]>) {
        self.run(theta, g, m, v, max)
    }

    /// The step over contiguous slices, in chunks spread over the rayon pool (element-wise, so
    /// the result does not depend on the number of threads).
    fn apply_slices(
        &self,
        theta: &mut [T],
        g: &[T],
        m: &mut [T],
        v: &mut [T],
        max: Option<&mut [T]>,
    ) {
        use rayon::prelude::*;
        let chunk = |theta: &mut [T], g: &[T], m: &mut [T], v: &mut [T], max: Option<&mut [T]>| {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("fma") {
                // SAFETY: the processor supports FMA, checked just above.
                return unsafe { self.run_fma(theta, g, m, v, max) };
            }
            self.run(theta, g, m, v, max)
        };
        const CHUNK: usize = 1 << 14;
        let chunks = theta
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK));
        match max {
            None => chunks.for_each(|(((t, g), m), v)| chunk(t, g, m, v, None)),
            Some(max) => chunks
                .zip(max.par_chunks_mut(CHUNK))
                .for_each(|((((t, g), m), v), x)| chunk(t, g, m, v, Some(x))),
        }
    }
}

/// Adam and AdamW: the same rule, the weight decay added to the gradient or applied apart.
#[derive(Debug, Clone)]
struct AdamCore<T> {
    options: AdamOptions,
    decoupled: bool,
    state: BTreeMap<String, AdamState<T>>,
}

impl<T: Scalar> AdamCore<T> {
    fn new(options: AdamOptions, decoupled: bool) -> Result<Self> {
        options.check()?;
        Ok(AdamCore {
            options,
            decoupled,
            state: BTreeMap::new(),
        })
    }

    fn fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["step", "exp_avg", "exp_avg_sq"];
        if self.options.amsgrad {
            fields.push("max_exp_avg_sq");
        }
        fields
    }

    fn step(&mut self, op: &'static str, params: &mut [Param<'_, T>]) -> Result<()> {
        check_step(op, self.options.lr, params, |name| {
            self.state.get(name).map(|s| s.exp_avg.shape().to_vec())
        })?;
        for param in params.iter_mut() {
            self.update(param);
        }
        Ok(())
    }

    fn update(&mut self, param: &mut Param<'_, T>) {
        let AdamOptions {
            lr,
            betas: (beta1, beta2),
            eps,
            weight_decay,
            amsgrad,
        } = self.options;
        let st = self
            .state
            .entry(param.name.to_string())
            .or_insert_with(|| AdamState {
                step: 0,
                exp_avg: ArrayD::zeros(param.value.raw_dim()),
                exp_avg_sq: ArrayD::zeros(param.value.raw_dim()),
                max_exp_avg_sq: amsgrad.then(|| ArrayD::zeros(param.value.raw_dim())),
            });
        st.step += 1;

        let step = st.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        let step_size = lr / bias_correction1;
        // PyTorch writes `bias_correction2 ** 0.5`, which calls C's `pow`; that can differ from
        // `sqrt` in the last bit, and the compiler would turn a constant 0.5 into `sqrt`.
        let bias_correction2_sqrt = bias_correction2.powf(std::hint::black_box(0.5));

        let rule = AdamRule {
            decay: (weight_decay != 0.0).then_some(if self.decoupled {
                Decay::Decoupled(cast(1.0 - lr * weight_decay))
            } else {
                Decay::L2(cast(weight_decay))
            }),
            w1: cast(1.0 - beta1),
            beta2: cast(beta2),
            w2: cast(1.0 - beta2),
            c2: cast(bias_correction2_sqrt),
            eps: cast(eps),
            value: cast(-step_size),
        };
        let AdamState {
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
            ..
        } = st;
        let standard = param.value.is_standard_layout() && param.grad.is_standard_layout();
        let slices = (
            param.value.as_slice_mut().filter(|_| standard),
            param.grad.as_slice().filter(|_| standard),
            exp_avg.as_slice_mut(),
            exp_avg_sq.as_slice_mut(),
            max_exp_avg_sq.as_mut().map(|max| max.as_slice_mut()),
        );
        match slices {
            (Some(theta), Some(g), Some(m), Some(v), None) => {
                rule.apply_slices(theta, g, m, v, None)
            }
            (Some(theta), Some(g), Some(m), Some(v), Some(Some(max))) => {
                rule.apply_slices(theta, g, m, v, Some(max))
            }
            _ => {
                let zip = Zip::from(&mut param.value)
                    .and(&param.grad)
                    .and(exp_avg)
                    .and(exp_avg_sq);
                match max_exp_avg_sq {
                    Some(max) => zip
                        .and(max)
                        .for_each(|t, &g, m, v, x| rule.element(t, g, m, v, Some(x))),
                    None => zip.for_each(|t, &g, m, v| rule.element(t, g, m, v, None)),
                }
            }
        }
    }

    fn state_views(&self) -> Vec<(String, CowArray<'_, T, IxDyn>)> {
        let mut out = Vec::new();
        for (name, st) in &self.state {
            out.push((format!("{name}.step"), step_tensor(st.step).into()));
            out.push((format!("{name}.exp_avg"), st.exp_avg.view().into()));
            out.push((format!("{name}.exp_avg_sq"), st.exp_avg_sq.view().into()));
            if let Some(max) = &st.max_exp_avg_sq {
                out.push((format!("{name}.max_exp_avg_sq"), max.view().into()));
            }
        }
        out
    }

    fn load_state(&mut self, op: &'static str, state: Vec<(String, ArrayD<T>)>) -> Result<()> {
        let amsgrad = self.options.amsgrad;
        let mut loaded = BTreeMap::new();
        for mut f in Saved::new(op, self.fields(), state)?.params() {
            let st = AdamState {
                step: f.step()?,
                exp_avg: f.buffer("exp_avg")?,
                exp_avg_sq: f.buffer("exp_avg_sq")?,
                max_exp_avg_sq: f.buffer_if(amsgrad, "max_exp_avg_sq")?,
            };
            loaded.insert(f.param, st);
        }
        self.state = loaded;
        Ok(())
    }
}

/// Adam with bias-corrected running averages of the gradient and its square, optional AMSGrad,
/// and weight decay as an L2 penalty in the gradient: PyTorch's `torch.optim.Adam`. State per
/// parameter: `step`, `exp_avg`, `exp_avg_sq`, and `max_exp_avg_sq` with AMSGrad.
#[derive(Debug, Clone)]
pub struct Adam<T> {
    core: AdamCore<T>,
}

impl<T: Scalar> Adam<T> {
    /// An Adam optimizer; `Err(InvalidParameter)` for a negative `lr`, `eps` or `weight_decay`,
    /// or a beta outside `[0, 1)`.
    pub fn new(options: AdamOptions) -> Result<Self> {
        Ok(Adam {
            core: AdamCore::new(options, false)?,
        })
    }

    /// The options, with the current learning rate.
    pub fn options(&self) -> AdamOptions {
        self.core.options
    }
}

/// [`Optimizer`] for a wrapper of [`AdamCore`], under PyTorch's name.
macro_rules! adam_optimizer {
    ($ty:ident, $name:literal) => {
        impl<T: Scalar> Optimizer<T> for $ty<T> {
            fn name(&self) -> &'static str {
                $name
            }
            fn step(&mut self, params: &mut [Param<'_, T>]) -> Result<()> {
                self.core.step($name, params)
            }
            fn learning_rate(&self) -> f64 {
                self.core.options.lr
            }
            fn set_learning_rate(&mut self, lr: f64) {
                self.core.options.lr = lr;
            }
            fn state_views(&self) -> Vec<(String, CowArray<'_, T, IxDyn>)> {
                self.core.state_views()
            }
            fn load_state(&mut self, state: Vec<(String, ArrayD<T>)>) -> Result<()> {
                self.core.load_state($name, state)
            }
        }
    };
}

adam_optimizer!(Adam, "Adam");

/// Adam with decoupled weight decay, `θ ← θ·(1 − lr·weight_decay)` before each Adam step:
/// PyTorch's `torch.optim.AdamW`. State as [`Adam`]'s.
#[derive(Debug, Clone)]
pub struct AdamW<T> {
    core: AdamCore<T>,
}

impl<T: Scalar> AdamW<T> {
    /// An AdamW optimizer; `Err(InvalidParameter)` for a negative `lr`, `eps` or
    /// `weight_decay`, or a beta outside `[0, 1)`.
    pub fn new(options: AdamWOptions) -> Result<Self> {
        let AdamWOptions {
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
        } = options;
        let options = AdamOptions {
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
        };
        Ok(AdamW {
            core: AdamCore::new(options, true)?,
        })
    }

    /// The options, with the current learning rate.
    pub fn options(&self) -> AdamWOptions {
        let AdamOptions {
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
        } = self.core.options;
        AdamWOptions {
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
        }
    }
}

adam_optimizer!(AdamW, "AdamW");

// ---------------------------------------------------------------------------------------------
// RMSprop

/// Options of [`RmsProp`]; [`Default`] is PyTorch's `torch.optim.RMSprop()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropOptions {
    /// Learning rate, ≥ 0. Default `1e-2`.
    pub lr: f64,
    /// Decay rate of the running average of the squared gradient, ≥ 0 (Keras's `rho`).
    /// Default `0.99`.
    pub alpha: f64,
    /// Added to the denominator, ≥ 0. Default `1e-8`.
    pub eps: f64,
    /// L2 penalty factor, ≥ 0, added to the gradient as `weight_decay·θ`. Default 0.
    pub weight_decay: f64,
    /// Momentum factor, ≥ 0; 0 (the default) keeps no buffer.
    pub momentum: f64,
    /// Divide by the estimated standard deviation of the gradient instead of its root mean
    /// square. Default off.
    pub centered: bool,
}

impl Default for RmsPropOptions {
    fn default() -> Self {
        RmsPropOptions {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsPropOptions {
    /// PyTorch's defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        RmsPropOptions {
            lr,
            ..Self::default()
        }
    }
    /// Set the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Set the decay rate of the squared-gradient average.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
    /// Set `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Set the L2 penalty factor.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Set the momentum factor.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Turn the centered variant on or off.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    fn check(&self) -> Result<()> {
        at_least_zero("lr", self.lr)?;
        at_least_zero("eps", self.eps)?;
        at_least_zero("momentum", self.momentum)?;
        at_least_zero("weight_decay", self.weight_decay)?;
        at_least_zero("alpha", self.alpha)
    }
}

/// One parameter's RMSprop state.
#[derive(Debug, Clone)]
struct RmsPropState<T> {
    step: u64,
    square_avg: ArrayD<T>,
    momentum_buffer: Option<ArrayD<T>>,
    grad_avg: Option<ArrayD<T>>,
}

/// RMSprop, plain or centered, with optional momentum and weight decay: PyTorch's
/// `torch.optim.RMSprop`. State per parameter: `step`, `square_avg`, `momentum_buffer` when
/// `momentum > 0`, `grad_avg` when centered.
#[derive(Debug, Clone)]
pub struct RmsProp<T> {
    options: RmsPropOptions,
    state: BTreeMap<String, RmsPropState<T>>,
}

impl<T: Scalar> RmsProp<T> {
    /// An RMSprop optimizer; `Err(InvalidParameter)` for a negative `lr`, `alpha`, `eps`,
    /// `momentum` or `weight_decay`.
    pub fn new(options: RmsPropOptions) -> Result<Self> {
        options.check()?;
        Ok(RmsProp {
            options,
            state: BTreeMap::new(),
        })
    }

    /// The options, with the current learning rate.
    pub fn options(&self) -> RmsPropOptions {
        self.options
    }

    fn update(&mut self, param: &mut Param<'_, T>) {
        let RmsPropOptions {
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
        } = self.options;
        let st = self
            .state
            .entry(param.name.to_string())
            .or_insert_with(|| RmsPropState {
                step: 0,
                square_avg: ArrayD::zeros(param.value.raw_dim()),
                momentum_buffer: (momentum > 0.0).then(|| ArrayD::zeros(param.value.raw_dim())),
                grad_avg: centered.then(|| ArrayD::zeros(param.value.raw_dim())),
            });
        st.step += 1;

        let grad = decayed_grad(param.grad.view(), param.value.view(), weight_decay);
        let grad = grad.view();

        mul_(&mut st.square_avg, cast(alpha));
        addcmul_(&mut st.square_avg, &grad, &grad, cast(1.0 - alpha));
        flush_subnormal_(&mut st.square_avg);

        let mut avg = match &mut st.grad_avg {
            Some(grad_avg) => {
                lerp_(grad_avg, &grad, cast(1.0 - alpha));
                flush_subnormal_(grad_avg);
                // square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
                let mut avg = st.square_avg.clone();
                addcmul_(&mut avg, &grad_avg.view(), &grad_avg.view(), -T::one());
                avg.mapv_inplace(T::sqrt);
                avg
            }
            None => st.square_avg.mapv(T::sqrt),
        };
        let eps = cast::<T>(eps);
        avg.mapv_inplace(|a| a + eps);

        match &mut st.momentum_buffer {
            Some(buf) => {
                mul_(buf, cast(momentum));
                addcdiv_(buf, &grad, &avg.view(), T::one());
                flush_subnormal_(buf);
                add_(&mut param.value, &buf.view(), cast(-lr));
            }
            None => addcdiv_(&mut param.value, &grad, &avg.view(), cast(-lr)),
        }
    }
}

impl<T: Scalar> Optimizer<T> for RmsProp<T> {
    fn name(&self) -> &'static str {
        "RMSprop"
    }

    fn step(&mut self, params: &mut [Param<'_, T>]) -> Result<()> {
        check_step(self.name(), self.options.lr, params, |name| {
            self.state.get(name).map(|s| s.square_avg.shape().to_vec())
        })?;
        for param in params.iter_mut() {
            self.update(param);
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.options.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.options.lr = lr;
    }

    fn state_views(&self) -> Vec<(String, CowArray<'_, T, IxDyn>)> {
        let mut out = Vec::new();
        for (name, st) in &self.state {
            out.push((format!("{name}.step"), step_tensor(st.step).into()));
            out.push((format!("{name}.square_avg"), st.square_avg.view().into()));
            if let Some(buf) = &st.momentum_buffer {
                out.push((format!("{name}.momentum_buffer"), buf.view().into()));
            }
            if let Some(grad_avg) = &st.grad_avg {
                out.push((format!("{name}.grad_avg"), grad_avg.view().into()));
            }
        }
        out
    }

    fn load_state(&mut self, state: Vec<(String, ArrayD<T>)>) -> Result<()> {
        let (with_momentum, centered) = (self.options.momentum > 0.0, self.options.centered);
        let mut fields = vec!["step", "square_avg"];
        if with_momentum {
            fields.push("momentum_buffer");
        }
        if centered {
            fields.push("grad_avg");
        }
        let mut loaded = BTreeMap::new();
        for mut f in Saved::new(self.name(), fields, state)?.params() {
            let st = RmsPropState {
                step: f.step()?,
                square_avg: f.buffer("square_avg")?,
                momentum_buffer: f.buffer_if(with_momentum, "momentum_buffer")?,
                grad_avg: f.buffer_if(centered, "grad_avg")?,
            };
            loaded.insert(f.param, st);
        }
        self.state = loaded;
        Ok(())
    }
}
