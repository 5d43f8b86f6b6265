#![doc = include_str!("../chapters/07-losses.md")]

use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayViewD, Axis, IxDyn, NdFloat, Zip};

use crate::activation::log_softmax;
use crate::error::{Error, Result};

/// How per-element losses are combined (PyTorch's `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Keep one loss per element (per sample, per position).
    None,
    /// The (weighted) mean: PyTorch's default.
    #[default]
    Mean,
    /// The sum.
    Sum,
}

/// The result of a loss: one number for [`Reduction::Mean`] / [`Reduction::Sum`], or an array
/// of per-element losses for [`Reduction::None`].
#[derive(Debug, Clone, PartialEq)]
pub enum LossOutput<T> {
    /// The mean or the sum.
    Reduced(T),
    /// One loss per element, shaped like the target without its class axis.
    PerElement(ArrayD<T>),
}

impl<T: Copy> LossOutput<T> {
    /// The mean or sum; `None` for per-element losses.
    pub fn reduced(&self) -> Option<T> {
        match self {
            LossOutput::Reduced(v) => Some(*v),
            LossOutput::PerElement(_) => None,
        }
    }

    /// The per-element losses; `None` for a mean or sum.
    pub fn per_element(&self) -> Option<&ArrayD<T>> {
        match self {
            LossOutput::PerElement(a) => Some(a),
            LossOutput::Reduced(_) => None,
        }
    }
}

/// Options of the losses, PyTorch's keyword arguments; each loss reads the ones it has.
#[derive(Debug, Clone)]
pub struct LossOptions<'a, T> {
    /// Mean (default), sum or none.
    pub reduction: Reduction,
    /// `cross_entropy` / `nll_loss`: one weight per class. `binary_cross_entropy*`: a weight
    /// per element, broadcast to the input's shape.
    pub weight: Option<ArrayViewD<'a, T>>,
    /// `binary_cross_entropy_with_logits`: the weight of positive examples, one per class along
    /// the last axis.
    pub pos_weight: Option<ArrayView1<'a, T>>,
    /// `cross_entropy` / `nll_loss`: targets equal to this are skipped (default −100).
    pub ignore_index: i64,
    /// `cross_entropy`: mix the target with the uniform distribution, `ε` in `[0, 1]`.
    pub label_smoothing: T,
}

impl<T: NdFloat> Default for LossOptions<'_, T> {
    fn default() -> Self {
        LossOptions {
            reduction: Reduction::Mean,
            weight: None,
            pos_weight: None,
            ignore_index: -100,
            label_smoothing: T::zero(),
        }
    }
}

impl<'a, T: NdFloat> LossOptions<'a, T> {
    /// Set the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// Set the weights.
    pub fn weight(mut self, weight: ArrayViewD<'a, T>) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Set the positive weights.
    pub fn pos_weight(mut self, pos_weight: ArrayView1<'a, T>) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }
    /// Set the ignored class index.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    /// Set the label smoothing `ε`.
    pub fn label_smoothing(mut self, label_smoothing: T) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
}

/// The target of a cross-entropy: a class index per sample, or a probability per class.
#[derive(Debug, Clone)]
pub enum Target<'a, T> {
    /// Class indices, shape `(N, d…)` for logits `(N, C, d…)` (or `()` for logits `(C)`).
    Classes(ArrayViewD<'a, i64>),
    /// Class probabilities, the logits' shape.
    Probabilities(ArrayViewD<'a, T>),
}

fn reduce<T: NdFloat>(losses: ArrayD<T>, reduction: Reduction) -> LossOutput<T> {
    match reduction {
        Reduction::None => LossOutput::PerElement(losses),
        Reduction::Sum => LossOutput::Reduced(losses.sum()),
        Reduction::Mean => LossOutput::Reduced(
            losses.sum() / T::from(losses.len()).expect("a count converts to a float"),
        ),
    }
}

fn same_shape(op: &'static str, input: &[usize], target: &[usize]) -> Result<()> {
    if input != target {
        return Err(Error::shape(
            op,
            format!("target of shape {target:?} must have the input's shape {input:?}"),
        ));
    }
    Ok(())
}

fn element_weights<'a, T: NdFloat>(
    op: &'static str,
    weight: &'a Option<ArrayViewD<'a, T>>,
    shape: &[usize],
) -> Result<Option<ArrayViewD<'a, T>>> {
    weight
        .as_ref()
        .map(|w| {
            w.broadcast(IxDyn(shape)).ok_or_else(|| {
                Error::shape(
                    op,
                    format!(
                        "weight of shape {:?} does not broadcast to {shape:?}",
                        w.shape()
                    ),
                )
            })
        })
        .transpose()
}

/// Binary cross-entropy of probabilities `p` against targets `y`, exactly as PyTorch's
/// `binary_cross_entropy`:
///
/// `ℓ = −w · (y · max(log p, −100) + (1 − y) · max(log(1 − p), −100))`
///
/// (PyTorch clamps the logarithms at −100, so `p = 0` or `1` gives a large, finite loss).
/// Probabilities outside `[0, 1]` are an error.
pub fn binary_cross_entropy<T: NdFloat>(
    p: ArrayViewD<T>,
    y: ArrayViewD<T>,
    options: &LossOptions<T>,
) -> Result<LossOutput<T>> {
    const OP: &str = "binary_cross_entropy";
    same_shape(OP, p.shape(), y.shape())?;
    if let Some(bad) = p.iter().find(|v| !(**v >= T::zero() && **v <= T::one())) {
        return Err(Error::param(
            "input",
            format!("{OP} takes probabilities between 0 and 1, got {bad:?}"),
        ));
    }
    let floor = T::from(-100.0).expect("−100 converts to a float");
    let mut losses = Zip::from(&p).and(&y).map_collect(|&p, &y| {
        -(y * p.ln().max(floor) + (T::one() - y) * (T::one() - p).ln().max(floor))
    });
    if let Some(w) = element_weights(OP, &options.weight, p.shape())? {
        losses *= &w;
    }
    Ok(reduce(losses, options.reduction))
}

/// Binary cross-entropy of logits `x` (before the sigmoid), exactly as PyTorch's
/// `binary_cross_entropy_with_logits`, in the stable form
///
/// `ℓ = w · ((1 − y)·x + (1 + (p_w − 1)·y) · (log(1 + e^(−|x|)) + max(−x, 0)))`
///
/// which equals `−w·(p_w·y·log σ(x) + (1 − y)·log(1 − σ(x)))` without computing `σ(x)`, so logits
/// of any size give finite losses. `p_w` (`pos_weight`) weighs the positive examples, one value
/// per class along the last axis.
pub fn binary_cross_entropy_with_logits<T: NdFloat>(
    x: ArrayViewD<T>,
    y: ArrayViewD<T>,
    options: &LossOptions<T>,
) -> Result<LossOutput<T>> {
    const OP: &str = "binary_cross_entropy_with_logits";
    same_shape(OP, x.shape(), y.shape())?;
    // (1 − y)·x + (1 + (p_w − 1)·y)·softplus(−x), softplus(−x) = log(1 + e^(−|x|)) + max(−x, 0).
    let term = |x: T, y: T, pw: T| {
        let softplus = (-x.abs()).exp().ln_1p() + (-x).max(T::zero());
        (T::one() - y) * x + (T::one() + (pw - T::one()) * y) * softplus
    };
    let mut losses = match options.pos_weight {
        None => Zip::from(&x)
            .and(&y)
            .map_collect(|&x, &y| term(x, y, T::one())),
        Some(pw) => {
            let classes = x.shape().last().copied().unwrap_or(1);
            if pw.len() != classes {
                return Err(Error::shape(
                    OP,
                    format!(
                        "pos_weight has {} values, expected one per class: {classes}",
                        pw.len()
                    ),
                ));
            }
            let pw = pw.broadcast(IxDyn(x.shape())).ok_or_else(|| {
                Error::shape(
                    OP,
                    format!("pos_weight does not broadcast to {:?}", x.shape()),
                )
            })?;
            Zip::from(&x)
                .and(&y)
                .and(&pw)
                .map_collect(|&x, &y, &pw| term(x, y, pw))
        }
    };
    if let Some(w) = element_weights(OP, &options.weight, x.shape())? {
        losses *= &w;
    }
    Ok(reduce(losses, options.reduction))
}

/// `(N, C, d…)` → `(N·d…, C)` with the class axis last, and the shape `(N, d…)` of one value per
/// sample and position. A 1-D input `(C)` is one sample with shape `()`.
fn rows_by_class<T: NdFloat>(
    op: &'static str,
    x: ArrayViewD<T>,
) -> Result<(Array2<T>, Vec<usize>)> {
    match x.ndim() {
        0 => Err(Error::shape(
            op,
            "input must have a class axis, got a 0-d array",
        )),
        1 => Ok((
            x.to_owned()
                .insert_axis(Axis(0))
                .into_dimensionality()
                .expect("2-D"),
            vec![],
        )),
        _ => {
            let classes = x.shape()[1];
            let mut sample_shape = x.shape().to_vec();
            sample_shape.remove(1);
            let mut order: Vec<usize> = (0..x.ndim()).filter(|&a| a != 1).collect();
            order.push(1);
            let rows = sample_shape.iter().product();
            let moved = x
                .permuted_axes(IxDyn(&order))
                .as_standard_layout()
                .into_owned();
            let flat = moved
                .into_shape_with_order((rows, classes))
                .expect("a standard-layout array reshapes to its own element count");
            Ok((flat, sample_shape))
        }
    }
}

fn class_weights<'a, T: NdFloat>(
    op: &'static str,
    weight: &'a Option<ArrayViewD<'a, T>>,
    classes: usize,
) -> Result<Option<ArrayView1<'a, T>>> {
    weight
        .as_ref()
        .map(|w| {
            w.view()
                .into_dimensionality::<ndarray::Ix1>()
                .ok()
                .filter(|w| w.len() == classes)
                .ok_or_else(|| {
                    Error::shape(
                        op,
                        format!(
                            "weight must have one value per class ({classes}), got shape {:?}",
                            w.shape()
                        ),
                    )
                })
        })
        .transpose()
}

/// Checked class indices, one per row; `None` where the target is `ignore_index`.
fn class_indices(
    op: &'static str,
    target: &ArrayViewD<i64>,
    sample_shape: &[usize],
    classes: usize,
    ignore_index: i64,
) -> Result<Vec<Option<usize>>> {
    if target.shape() != sample_shape {
        return Err(Error::shape(
            op,
            format!(
                "target of shape {:?} does not match the input's samples {sample_shape:?}",
                target.shape()
            ),
        ));
    }
    target
        .as_standard_layout()
        .iter()
        .map(|&t| {
            if t == ignore_index {
                Ok(None)
            } else if t < 0 || t as usize >= classes {
                Err(Error::param(
                    "target",
                    format!("class index {t} is out of range for {classes} classes"),
                ))
            } else {
                Ok(Some(t as usize))
            }
        })
        .collect()
}

/// The negative log-likelihood of log-probabilities `(N, C, d…)` and class indices `(N, d…)`,
/// exactly as PyTorch's `nll_loss`: `ℓ_i = −w[t_i] · x[i, t_i]`, zero for ignored targets; the
/// mean divides by the total weight `Σ w[t_i]` of the targets not ignored.
pub fn nll_loss<T: NdFloat>(
    log_probs: ArrayViewD<T>,
    target: ArrayViewD<i64>,
    options: &LossOptions<T>,
) -> Result<LossOutput<T>> {
    const OP: &str = "nll_loss";
    let (rows, sample_shape) = rows_by_class(OP, log_probs)?;
    let classes = rows.ncols();
    let weight = class_weights(OP, &options.weight, classes)?;
    let targets = class_indices(OP, &target, &sample_shape, classes, options.ignore_index)?;
    Ok(nll(
        &rows,
        &targets,
        weight,
        &sample_shape,
        options.reduction,
    ))
}

fn nll<T: NdFloat>(
    rows: &Array2<T>,
    targets: &[Option<usize>],
    weight: Option<ArrayView1<T>>,
    sample_shape: &[usize],
    reduction: Reduction,
) -> LossOutput<T> {
    let w = |t: usize| weight.map_or(T::one(), |w| w[t]);
    let losses: Array1<T> = targets
        .iter()
        .zip(rows.outer_iter())
        .map(|(t, row)| t.map_or(T::zero(), |t| -w(t) * row[t]))
        .collect();
    let losses = losses
        .into_shape_with_order(IxDyn(sample_shape))
        .expect("one loss per sample");
    match reduction {
        Reduction::Mean => {
            let total: T = targets
                .iter()
                .flatten()
                .map(|&t| w(t))
                .fold(T::zero(), |a, b| a + b);
            LossOutput::Reduced(losses.sum() / total)
        }
        other => reduce(losses, other),
    }
}

/// Cross-entropy of logits `(N, C, d…)` (or `(C)`), exactly as PyTorch's `cross_entropy`:
/// `log_softmax` over the class axis, then
///
/// * with class indices: `nll_loss` — `ℓ_i = −w[t_i] · log p[i, t_i]` — mixed with label
///   smoothing `ε` as `(1 − ε)·nll + (ε/C)·Σ_c −w_c·log p[i, c]`, the smoothing term reduced with
///   the same weighted mean;
/// * with class probabilities `q`: `ℓ_i = −Σ_c w_c · q'[i, c] · log p[i, c]` with
///   `q' = (1 − ε)·q + ε/C`; the mean divides by the number of samples.
pub fn cross_entropy<T: NdFloat>(
    logits: ArrayViewD<T>,
    target: Target<T>,
    options: &LossOptions<T>,
) -> Result<LossOutput<T>> {
    const OP: &str = "cross_entropy";
    let eps = options.label_smoothing;
    if !(eps >= T::zero() && eps <= T::one()) {
        return Err(Error::param(
            "label_smoothing",
            format!("must be between 0 and 1, got {eps:?}"),
        ));
    }
    let (rows, sample_shape) = rows_by_class(OP, logits)?;
    let classes = rows.ncols();
    let log_p = log_softmax(rows.view(), 1)?;
    let weight = class_weights(OP, &options.weight, classes)?;
    let w = |c: usize| weight.map_or(T::one(), |w| w[c]);
    let c_t = T::from(classes).expect("a count converts to a float");
    match target {
        Target::Classes(target) => {
            let targets = class_indices(OP, &target, &sample_shape, classes, options.ignore_index)?;
            let nll_part = nll(&log_p, &targets, weight, &sample_shape, options.reduction);
            if eps == T::zero() {
                return Ok(nll_part);
            }
            let smooth: Array1<T> = targets
                .iter()
                .zip(log_p.outer_iter())
                .map(|(t, row)| match t {
                    None => T::zero(),
                    Some(_) => -row
                        .iter()
                        .enumerate()
                        .fold(T::zero(), |s, (c, &lp)| s + lp * w(c)),
                })
                .collect();
            let smooth = smooth
                .into_shape_with_order(IxDyn(&sample_shape))
                .expect("one per sample");
            let scale = eps / c_t;
            let keep = T::one() - eps;
            Ok(match (nll_part, options.reduction) {
                (LossOutput::PerElement(n), _) => LossOutput::PerElement(n * keep + smooth * scale),
                (LossOutput::Reduced(n), Reduction::Sum) => {
                    LossOutput::Reduced(n * keep + smooth.sum() * scale)
                }
                (LossOutput::Reduced(n), _) => {
                    let total = match weight {
                        Some(_) => targets
                            .iter()
                            .flatten()
                            .map(|&t| w(t))
                            .fold(T::zero(), |a, b| a + b),
                        None => T::from(targets.iter().flatten().count())
                            .expect("a count converts to a float"),
                    };
                    LossOutput::Reduced(n * keep + smooth.sum() / total * scale)
                }
            })
        }
        Target::Probabilities(q) => {
            let (q_rows, q_shape) = rows_by_class(OP, q.view())?;
            if q_rows.dim() != rows.dim() || q_shape != sample_shape {
                return Err(Error::shape(
                    OP,
                    format!(
                        "probability target of shape {:?} must have the logits' shape",
                        q.shape()
                    ),
                ));
            }
            let losses: Array1<T> = log_p
                .outer_iter()
                .zip(q_rows.outer_iter())
                .map(|(lp, q)| {
                    -(0..classes).fold(T::zero(), |s, c| {
                        let q = q[c] * (T::one() - eps) + eps / c_t;
                        s + w(c) * q * lp[c]
                    })
                })
                .collect();
            let losses = losses
                .into_shape_with_order(IxDyn(&sample_shape))
                .expect("one per sample");
            Ok(reduce(losses, options.reduction))
        }
    }
}

/// The inverse of `rows_by_class`: `(N·d…, C)` rows back to the input's shape `(N, C, d…)`.
fn from_rows<T: NdFloat>(rows: Array2<T>, shape: &[usize]) -> ArrayD<T> {
    if shape.len() == 1 {
        return rows
            .into_shape_with_order(IxDyn(shape))
            .expect("one row of C values");
    }
    let mut moved: Vec<usize> = shape.to_vec();
    let classes = moved.remove(1);
    moved.push(classes);
    let moved = rows
        .into_shape_with_order(IxDyn(&moved))
        .expect("rows reshape to (N, d…, C)");
    // Move the class axis from last back to 1.
    let n = shape.len();
    let mut order: Vec<usize> = vec![0, n - 1];
    order.extend(1..n - 1);
    moved
        .permuted_axes(IxDyn(&order))
        .as_standard_layout()
        .into_owned()
}

/// The factor each sample's loss is multiplied by in the upstream gradient: the per-element
/// gradient for [`Reduction::None`], the reduced gradient for a sum, divided by `mean_divisor`
/// for a mean.
fn sample_factors<T: NdFloat>(
    op: &'static str,
    grad: &LossOutput<T>,
    reduction: Reduction,
    sample_shape: &[usize],
    mean_divisor: T,
) -> Result<Vec<T>> {
    let count = sample_shape.iter().product();
    match (grad, reduction) {
        (LossOutput::PerElement(g), Reduction::None) if g.shape() == sample_shape => {
            Ok(g.as_standard_layout().iter().copied().collect())
        }
        (LossOutput::Reduced(s), Reduction::Sum) => Ok(vec![*s; count]),
        (LossOutput::Reduced(s), Reduction::Mean) => Ok(vec![*s / mean_divisor; count]),
        _ => Err(Error::shape(
            op,
            format!(
                "the gradient must match the forward's output: a number for a mean or sum, \
                 per-element losses of shape {sample_shape:?} for reduction None"
            ),
        )),
    }
}

/// Backward of [`nll_loss`]: `∂L/∂x[i, t_i] = −w[t_i] · u_i`, zero elsewhere, where `u_i` is the
/// upstream gradient of sample `i` (divided by `Σ w[t_i]` for the mean). `grad` is the gradient
/// of the loss's output, shaped like it: `LossOutput::Reduced(1.0)` for the loss itself.
pub fn nll_loss_backward<T: NdFloat>(
    log_probs: ArrayViewD<T>,
    target: ArrayViewD<i64>,
    options: &LossOptions<T>,
    grad: &LossOutput<T>,
) -> Result<ArrayD<T>> {
    const OP: &str = "nll_loss_backward";
    let shape = log_probs.shape().to_vec();
    let (rows, sample_shape) = rows_by_class(OP, log_probs)?;
    let classes = rows.ncols();
    let weight = class_weights(OP, &options.weight, classes)?;
    let w = |c: usize| weight.map_or(T::one(), |w| w[c]);
    let targets = class_indices(OP, &target, &sample_shape, classes, options.ignore_index)?;
    let total = targets
        .iter()
        .flatten()
        .map(|&t| w(t))
        .fold(T::zero(), |a, b| a + b);
    let factors = sample_factors(OP, grad, options.reduction, &sample_shape, total)?;
    let mut dx = Array2::zeros(rows.raw_dim());
    for ((mut row, t), u) in dx.outer_iter_mut().zip(&targets).zip(factors) {
        if let Some(t) = *t {
            row[t] = -w(t) * u;
        }
    }
    Ok(from_rows(dx, &shape))
}

/// Backward of [`cross_entropy`]. Each sample's loss is `−Σ_c a_c · log p_c` for some
/// coefficients `a` (`a_c = (1 − ε)·w_t·[c = t] + (ε/C)·w_c` for a class target,
/// `a_c = w_c·q'_c` for probabilities), and through the log-softmax
/// `∂ℓ/∂z_j = p_j · Σ_c a_c − a_j`: the predicted probabilities, pulled towards the target.
pub fn cross_entropy_backward<T: NdFloat>(
    logits: ArrayViewD<T>,
    target: Target<T>,
    options: &LossOptions<T>,
    grad: &LossOutput<T>,
) -> Result<ArrayD<T>> {
    const OP: &str = "cross_entropy_backward";
    let shape = logits.shape().to_vec();
    let (rows, sample_shape) = rows_by_class(OP, logits)?;
    let classes = rows.ncols();
    let p = crate::activation::softmax(rows.view(), 1)?;
    let weight = class_weights(OP, &options.weight, classes)?;
    let w = |c: usize| weight.map_or(T::one(), |w| w[c]);
    let (eps, c_t) = (
        options.label_smoothing,
        T::from(classes).expect("a count converts to a float"),
    );
    // One row of coefficients a per sample, and the mean's divisor.
    let (coefficients, divisor): (Array2<T>, T) = match target {
        Target::Classes(target) => {
            let targets = class_indices(OP, &target, &sample_shape, classes, options.ignore_index)?;
            let mut a = Array2::zeros(rows.raw_dim());
            for (mut row, t) in a.outer_iter_mut().zip(&targets) {
                if let Some(t) = *t {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = eps / c_t * w(c);
                    }
                    row[t] += (T::one() - eps) * w(t);
                }
            }
            let total = match weight {
                Some(_) => targets
                    .iter()
                    .flatten()
                    .map(|&t| w(t))
                    .fold(T::zero(), |a, b| a + b),
                None => {
                    T::from(targets.iter().flatten().count()).expect("a count converts to a float")
                }
            };
            (a, total)
        }
        Target::Probabilities(q) => {
            let (q_rows, _) = rows_by_class(OP, q.view())?;
            if q_rows.dim() != rows.dim() {
                return Err(Error::shape(
                    OP,
                    format!(
                        "probability target of shape {:?} must have the logits' shape",
                        q.shape()
                    ),
                ));
            }
            let mut a = q_rows.mapv(|q| q * (T::one() - eps) + eps / c_t);
            for mut row in a.outer_iter_mut() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v *= w(c);
                }
            }
            (
                a,
                T::from(rows.nrows()).expect("a count converts to a float"),
            )
        }
    };
    let factors = sample_factors(OP, grad, options.reduction, &sample_shape, divisor)?;
    let mut dz = p;
    for ((mut dz, a), u) in dz
        .outer_iter_mut()
        .zip(coefficients.outer_iter())
        .zip(factors)
    {
        // A sample that contributes nothing (ignored, or of zero weight) has zero gradient even
        // when the mean's divisor is 0 (every sample ignored), as in PyTorch.
        if a.iter().all(|&a| a == T::zero()) {
            dz.fill(T::zero());
            continue;
        }
        let sum_a = a.sum();
        Zip::from(&mut dz)
            .and(&a)
            .for_each(|d, &a| *d = u * (*d * sum_a - a));
    }
    Ok(from_rows(dz, &shape))
}

fn element_factors<T: NdFloat>(
    op: &'static str,
    grad: &LossOutput<T>,
    reduction: Reduction,
    shape: &[usize],
) -> Result<ArrayD<T>> {
    let count = T::from(shape.iter().product::<usize>()).expect("a count converts to a float");
    let factors = sample_factors(op, grad, reduction, shape, count)?;
    Ok(ArrayD::from_shape_vec(IxDyn(shape), factors).expect("one factor per element"))
}

/// Backward of [`binary_cross_entropy`] with respect to the probabilities, as PyTorch computes
/// it: `∂ℓ/∂p = w · (p − y) / max(p·(1 − p), ε)` with PyTorch's `ε`, the f32 nearest `1e-12`.
pub fn binary_cross_entropy_backward<T: NdFloat>(
    p: ArrayViewD<T>,
    y: ArrayViewD<T>,
    options: &LossOptions<T>,
    grad: &LossOutput<T>,
) -> Result<ArrayD<T>> {
    const OP: &str = "binary_cross_entropy_backward";
    same_shape(OP, p.shape(), y.shape())?;
    let mut dp = element_factors(OP, grad, options.reduction, p.shape())?;
    // PyTorch's EPSILON is the f32 nearest 1e-12, also in f64.
    let floor = T::from(f64::from(1e-12_f32)).expect("1e-12 converts to a float");
    Zip::from(&mut dp).and(&p).and(&y).for_each(|d, &p, &y| {
        *d = *d * (p - y) / (p * (T::one() - p)).max(floor);
    });
    if let Some(w) = element_weights(OP, &options.weight, p.shape())? {
        dp *= &w;
    }
    Ok(dp)
}

/// Backward of [`binary_cross_entropy_with_logits`]:
/// `∂ℓ/∂x = w · ((1 − y) − (1 + (p_w − 1)·y) · (1 − σ(x)))`, which is `w·(σ(x) − y)` without a
/// positive weight.
pub fn binary_cross_entropy_with_logits_backward<T: NdFloat>(
    x: ArrayViewD<T>,
    y: ArrayViewD<T>,
    options: &LossOptions<T>,
    grad: &LossOutput<T>,
) -> Result<ArrayD<T>> {
    const OP: &str = "binary_cross_entropy_with_logits_backward";
    same_shape(OP, x.shape(), y.shape())?;
    let mut dx = element_factors(OP, grad, options.reduction, x.shape())?;
    let sig = crate::activation::sigmoid(x.view());
    let pw = match &options.pos_weight {
        None => None,
        Some(pw) => Some(pw.broadcast(IxDyn(x.shape())).ok_or_else(|| {
            Error::shape(
                OP,
                format!("pos_weight does not broadcast to {:?}", x.shape()),
            )
        })?),
    };
    let one = T::one();
    match pw {
        None => Zip::from(&mut dx)
            .and(&sig)
            .and(&y)
            .for_each(|d, &s, &y| *d *= s - y),
        Some(pw) => Zip::from(&mut dx)
            .and(&sig)
            .and(&y)
            .and(&pw)
            .for_each(|d, &s, &y, &pw| {
                *d *= (one - y) - (one + (pw - one) * y) * (one - s);
            }),
    }
    if let Some(w) = element_weights(OP, &options.weight, x.shape())? {
        dx *= &w;
    }
    Ok(dx)
}
