//! The usual mistakes, each as a kernel with the exercise's signature. The checker runs them on a
//! student's first failing case and gives the hint of the one that reproduces the student's
//! result exactly; the tests feed each of them to its checker, which must fail it with its hint.

use ndarray::{Array, Array1, Array2, Array3, Array4, ArrayView4, Axis, Dimension, s};

use super::Mistake;
use super::checks::{
    AvgPoolFn, Conv2dBackwardFn, Conv2dFn, ConvOutputLenFn, ConvolveFn, CrossEntropyFn,
    MaxPoolBackwardFn, MaxPoolFn, SoftmaxFn, UnfoldFn,
};
use crate::activation::{log_softmax, softmax as softmax_ref};
use crate::conv1d::naive as conv1d;
use crate::conv2d::naive as conv2d_naive;
use crate::error::Result;
use crate::im2col;
use crate::loss::{self, LossOutput, Reduction, Target};
use crate::pool::naive as pool;
use crate::shape::{self, Conv2dParams, Mode, Padding, Pads, Pool2dParams, SignalParams};

/// The output without its last position along every axis: what a size formula one short gives
/// on the positions it does compute.
fn one_short<D: Dimension>(a: Array<f64, D>, axes: &[usize]) -> Array<f64, D> {
    let mut view = a.view();
    for &axis in axes {
        let len = view.len_of(Axis(axis));
        view.slice_axis_inplace(Axis(axis), (..len.saturating_sub(1)).into());
    }
    view.to_owned()
}

// ---------------------------------------------------------------------------------------------

/// `y[i] = Σ_k x̃[i·s + k·d] · w[m − 1 − k]` with `pad_left` zeros in front and `len` outputs.
fn signal(
    x: ndarray::ArrayView1<f64>,
    w: ndarray::ArrayView1<f64>,
    pad_left: usize,
    len: usize,
    p: SignalParams,
) -> Array1<f64> {
    let m = w.len();
    Array1::from_shape_fn(len, |i| {
        (0..m)
            .filter_map(|k| {
                let t = (i * p.stride + k * p.dilation).checked_sub(pad_left)?;
                Some(x.get(t)? * w[m - 1 - k])
            })
            .sum()
    })
}

/// Mistakes in `convolve`.
pub fn convolve() -> Vec<Mistake<ConvolveFn>> {
    vec![
        Mistake {
            name: "kernel not flipped",
            hint: "your result is the cross-correlation (the kernel read as is). convolve flips \
                   the kernel: y[i] = Σ_k x̃[i·s + k·d] · w[m − 1 − k]; `correlate` is the one \
                   that reads w[k].",
            kernel: |x, w, p| conv1d::correlate(x, w, p),
        },
        Mistake {
            name: "no padding",
            hint: "your result is the 'valid' part whatever the mode: 'full' pads d·(m − 1) \
                   zeros on both sides, 'same' keeps the centre of 'full', as long as the longer \
                   input.",
            kernel: |x, w, p| {
                conv1d::convolve(
                    x,
                    w,
                    SignalParams {
                        mode: Mode::Valid,
                        ..p
                    },
                )
            },
        },
        Mistake {
            name: "padding on one side",
            hint: "you padded only in front of the signal: 'full' puts d·(m − 1) zeros on both \
                   sides, so it has n + d·(m − 1) outputs before the stride.",
            kernel: |x, w, p| {
                let full = conv1d::convolve(x, w, p)?;
                if p.mode != Mode::Full {
                    return Ok(full);
                }
                let span = p.dilation * (w.len() - 1) + 1;
                Ok(signal(x, w, span - 1, (x.len() - 1) / p.stride + 1, p))
            },
        },
        Mistake {
            name: "stride ignored",
            hint: "your result has every output of stride 1: with stride s keep only outputs \
                   0, s, 2s, … (y[i] reads x̃ from i·s).",
            kernel: |x, w, p| conv1d::convolve(x, w, p.stride(1)),
        },
        Mistake {
            name: "dilation ignored",
            hint: "your result is the one with dilation 1: with dilation d the taps are d apart, \
                   x̃[i·s + k·d], and the kernel spans d·(m − 1) + 1 elements.",
            kernel: |x, w, p| conv1d::convolve(x, w, p.dilation(1)),
        },
        Mistake {
            name: "output one short",
            hint: "your output has one element too few, the others right: check the length \
                   formula (chapter 2), e.g. n + m − 1 for 'full', and the + 1 after a stride.",
            kernel: |x, w, p| Ok(one_short(conv1d::convolve(x, w, p)?, &[0])),
        },
    ]
}

// ---------------------------------------------------------------------------------------------

/// Mistakes in the output-size formula.
pub fn conv_output_len() -> Vec<Mistake<ConvOutputLenFn>> {
    // Each first lets the reference refuse what it refuses, then computes the wrong length.
    vec![
        Mistake {
            name: "+ 1 missing",
            hint: "your length is one short: L_out = ⌊(L_in + p_left + p_right − d·(k − 1) − 1) / \
                   s⌋ + 1 — the + 1 counts the first window.",
            kernel: |n, k, s, pads, d| {
                shape::conv_output_len(n, k, s, pads, d)?;
                Ok((n + pads.total() - d * (k - 1) - 1) / s)
            },
        },
        Mistake {
            name: "rounded up",
            hint: "you rounded the division up: a window that would run past the padded input \
                   is not taken, so L_out = ⌊(L_in + p_left + p_right − d·(k − 1) − 1) / s⌋ + 1 \
                   rounds down (PyTorch's ceil_mode exists only for pooling).",
            kernel: |n, k, s, pads, d| {
                shape::conv_output_len(n, k, s, pads, d)?;
                Ok((n + pads.total() - d * (k - 1) - 1).div_ceil(s) + 1)
            },
        },
        Mistake {
            name: "padding on one side",
            hint: "you counted the padding on one side only: the padded input has \
                   L_in + p_left + p_right elements (2p when both sides get p).",
            kernel: |n, k, s, pads, d| {
                shape::conv_output_len(n, k, s, pads, d)?;
                let one_side = Pads {
                    left: pads.left,
                    right: 0,
                };
                shape::conv_output_len(n, k, s, one_side, d)
            },
        },
        Mistake {
            name: "dilation ignored",
            hint: "you used the kernel size k where the dilated kernel spans d·(k − 1) + 1 \
                   elements.",
            kernel: |n, k, s, pads, d| {
                shape::conv_output_len(n, k, s, pads, d)?;
                shape::conv_output_len(n, k, s, pads, 1)
            },
        },
        Mistake {
            name: "stride ignored",
            hint: "your length is the one for stride 1: divide by the stride before adding 1.",
            kernel: |n, k, s, pads, d| {
                shape::conv_output_len(n, k, s, pads, d)?;
                shape::conv_output_len(n, k, 1, pads, d)
            },
        },
    ]
}

// ---------------------------------------------------------------------------------------------

/// The resolved padding of both axes of a 2-D convolution of `x` by `w`.
fn conv_pads(x: &ArrayView4<f64>, kernel: [usize; 2], params: Conv2dParams) -> Result<[Pads; 2]> {
    let (_, _, h, w) = x.dim();
    Ok([
        params.axis(0).pads(h, kernel[0])?,
        params.axis(1).pads(w, kernel[1])?,
    ])
}

/// `x` with `pads[i].left` zeros before each spatial axis and none after.
fn pad_front(x: ArrayView4<f64>, pads: [Pads; 2]) -> Array4<f64> {
    let (n, c, h, w) = x.dim();
    let mut out = Array4::zeros((n, c, h + pads[0].left, w + pads[1].left));
    out.slice_mut(s![.., .., pads[0].left.., pads[1].left..])
        .assign(&x);
    out
}

/// Mistakes in `conv2d`.
pub fn conv2d() -> Vec<Mistake<Conv2dFn>> {
    vec![
        Mistake {
            name: "kernel flipped",
            hint: "your result is the true convolution (the kernel turned by 180°). A \
                   convolution layer computes the cross-correlation: x̃[n, c, i·s_h + k_i·d_h, \
                   j·s_w + k_j·d_w] · w[c_out, c, k_i, k_j], no flip.",
            kernel: |x, w, b, p| conv2d_naive::conv2d(x, w.slice(s![.., .., ..;-1, ..;-1]), b, p),
        },
        Mistake {
            name: "no padding",
            hint: "your result ignores the padding: the input is surrounded by p zeros on every \
                   side before the windows slide (x̃ is x padded).",
            kernel: |x, w, b, p| conv2d_naive::conv2d(x, w, b, p.paddings([Padding::Valid; 2])),
        },
        Mistake {
            name: "padding on one side",
            hint: "you padded only above and to the left: the zeros go on both sides, p before \
                   and p after each axis.",
            kernel: |x, w, b, p| {
                let (_, _, kh, kw) = w.dim();
                let pads = conv_pads(&x, [kh, kw], p)?;
                let x = pad_front(x, pads);
                conv2d_naive::conv2d(x.view(), w, b, p.paddings([Padding::Valid; 2]))
            },
        },
        Mistake {
            name: "stride ignored",
            hint: "your result has every window of stride 1: output (i, j) starts at row i·s_h \
                   and column j·s_w.",
            kernel: |x, w, b, p| conv2d_naive::conv2d(x, w, b, p.strides([1, 1])),
        },
        Mistake {
            name: "dilation ignored",
            hint: "your result is the one with dilation 1: tap (k_i, k_j) reads row i·s_h + \
                   k_i·d_h and column j·s_w + k_j·d_w.",
            kernel: |x, w, b, p| conv2d_naive::conv2d(x, w, b, p.dilations([1, 1])),
        },
        Mistake {
            name: "bias missing",
            hint: "your result lacks the bias: every output of channel c_out starts from \
                   b[c_out].",
            kernel: |x, w, _, p| conv2d_naive::conv2d(x, w, None, p),
        },
        Mistake {
            name: "output one short",
            hint: "your output is one row and one column short, the values right: H_out = \
                   ⌊(H + 2p − d·(k − 1) − 1) / s⌋ + 1 (chapter 2), the + 1 included.",
            kernel: |x, w, b, p| Ok(one_short(conv2d_naive::conv2d(x, w, b, p)?, &[2, 3])),
        },
    ]
}

// ---------------------------------------------------------------------------------------------

/// The output grid `(H_out, W_out)` of `unfold`.
fn unfold_grid(x: &ArrayView4<f64>, kernel: [usize; 2], p: Conv2dParams) -> Result<[usize; 2]> {
    let (_, _, h, w) = x.dim();
    Ok([
        p.axis(0).output_len(h, kernel[0])?,
        p.axis(1).output_len(w, kernel[1])?,
    ])
}

/// Mistakes in `unfold`.
pub fn unfold() -> Vec<Mistake<UnfoldFn>> {
    vec![
        Mistake {
            name: "no padding",
            hint: "your columns ignore the padding: windows slide over the input surrounded by \
                   p zeros, and the padded positions appear as 0 in the columns.",
            kernel: |x, k, p| im2col::unfold(x, k, p.paddings([Padding::Valid; 2])),
        },
        Mistake {
            name: "stride ignored",
            hint: "you took every window of stride 1: window (i, j) starts at row i·s_h and \
                   column j·s_w.",
            kernel: |x, k, p| im2col::unfold(x, k, p.strides([1, 1])),
        },
        Mistake {
            name: "dilation ignored",
            hint: "your windows are those of dilation 1: tap (k_i, k_j) reads row i·s_h + \
                   k_i·d_h and column j·s_w + k_j·d_w.",
            kernel: |x, k, p| im2col::unfold(x, k, p.dilations([1, 1])),
        },
        Mistake {
            name: "channel last in a column",
            hint: "your column holds the right values in another order: PyTorch flattens a \
                   window channel by channel, then row by row — row (c·kH + k_i)·kW + k_j — not \
                   position by position with the channels inside.",
            kernel: |x, k, p| {
                let cols = im2col::unfold(x, k, p)?;
                let c = x.dim().1;
                let taps = k[0] * k[1];
                Ok(Array3::from_shape_fn(cols.raw_dim(), |(n, row, l)| {
                    let (tap, channel) = (row / c, row % c);
                    cols[[n, channel * taps + tap, l]]
                }))
            },
        },
        Mistake {
            name: "windows column by column",
            hint: "your columns are the right windows in another order: window (i, j) is \
                   column l = i·W_out + j, row-major like the output it becomes.",
            kernel: |x, k, p| {
                let cols = im2col::unfold(x, k, p)?;
                let [h_out, w_out] = unfold_grid(&x, k, p)?;
                Ok(Array3::from_shape_fn(cols.raw_dim(), |(n, row, l)| {
                    let (j, i) = (l / h_out, l % h_out);
                    cols[[n, row, i * w_out + j]]
                }))
            },
        },
        Mistake {
            name: "output one short",
            hint: "you took one window row and one window column too few: H_out = ⌊(H + 2p − \
                   d·(k − 1) − 1) / s⌋ + 1 (chapter 2), the + 1 included.",
            kernel: |x, k, p| {
                let cols = im2col::unfold(x, k, p)?;
                let [h_out, w_out] = unfold_grid(&x, k, p)?;
                let (n, rows, _) = cols.dim();
                let grid = cols
                    .into_shape_with_order((n, rows, h_out, w_out))
                    .expect("L = H_out·W_out");
                let short = one_short(grid, &[2, 3]);
                let (h, w) = (short.dim().2, short.dim().3);
                Ok(short
                    .into_shape_with_order((n, rows, h * w))
                    .expect("the same elements"))
            },
        },
    ]
}

// ---------------------------------------------------------------------------------------------

/// The mistakes of window geometry that max and average pooling share, for the pooling kernel
/// `$pool` of signature `$signature`: the stride, the padding and `ceil_mode` ignored.
macro_rules! pool_geometry_mistakes {
    ($pool:path, $signature:ty) => {{
        let list: [Mistake<$signature>; 3] = [
            Mistake {
                name: "stride 1",
                hint: "your windows move by 1: the stride of pooling defaults to the window size \
                       (stride = kernel when none is given).",
                kernel: |x, p| $pool(x, p.strides([1, 1])),
            },
            Mistake {
                name: "no padding",
                hint: "you ignored the padding: it adds p positions on each side (zeros for an \
                       average; for a maximum they never win, PyTorch pads with −∞).",
                kernel: |x, p| $pool(x, p.paddings([Padding::Valid; 2])),
            },
            Mistake {
                name: "ceil_mode ignored",
                hint: "with ceil_mode the output size rounds up: one more window where the last \
                       one starts inside the input (or the left padding).",
                kernel: |x, p| $pool(x, p.ceil_mode(false)),
            },
        ];
        list
    }};
}

/// Max pooling with ties going to the last maximum (`≥` instead of `>`).
fn max_pool_last(x: ArrayView4<f64>, params: Pool2dParams) -> Result<(Array4<f64>, Array4<usize>)> {
    let (mut y, mut at) = pool::max_pool2d_with_indices(x, params)?;
    let (_, _, h, w) = x.dim();
    let [rows, cols] = pool::windows([h, w], &params, false)?;
    for ((n, c, i, j), v) in y.indexed_iter_mut() {
        for r in rows.taps(i) {
            for col in cols.taps(j) {
                if x[[n, c, r, col]] >= *v {
                    *v = x[[n, c, r, col]];
                    at[[n, c, i, j]] = r * w + col;
                }
            }
        }
    }
    Ok((y, at))
}

/// Mistakes in `max_pool2d_with_indices`.
pub fn max_pool2d_with_indices() -> Vec<Mistake<MaxPoolFn>> {
    let mut mistakes: Vec<Mistake<MaxPoolFn>> = vec![
        Mistake {
            name: "ties to the last maximum",
            hint: "your maxima are right but on ties you keep the last one: PyTorch keeps the \
                   first maximum in row-major order (replace only when a value is strictly \
                   greater).",
            kernel: max_pool_last,
        },
        Mistake {
            name: "index inside the window",
            hint: "your indices count inside the window (k_i·kW + k_j); PyTorch's index is the \
                   position in the input plane, h·W + w.",
            kernel: |x, p| {
                let (y, at) = pool::max_pool2d_with_indices(x, p)?;
                let (_, _, h, w) = x.dim();
                let [rows, cols] = pool::windows([h, w], &p, false)?;
                let local = Array4::from_shape_fn(at.raw_dim(), |(n, c, i, j)| {
                    let (r, col) = (at[[n, c, i, j]] / w, at[[n, c, i, j]] % w);
                    let k_i = (r + rows.pads.left - i * rows.stride) / rows.dilation;
                    let k_j = (col + cols.pads.left - j * cols.stride) / cols.dilation;
                    k_i * cols.kernel + k_j
                });
                Ok((y, local))
            },
        },
        Mistake {
            name: "output one short",
            hint: "your output is one row and one column short, the values right: \
                   H_out = ⌊(H + 2p − d·(k − 1) − 1) / s⌋ + 1, the + 1 included.",
            kernel: |x, p| {
                let (y, at) = pool::max_pool2d_with_indices(x, p)?;
                let short = one_short(at.mapv(|v| v as f64), &[2, 3]).mapv(|v| v as usize);
                Ok((one_short(y, &[2, 3]), short))
            },
        },
    ];
    mistakes.extend(pool_geometry_mistakes!(
        pool::max_pool2d_with_indices,
        MaxPoolFn
    ));
    mistakes
}

/// Mistakes in `avg_pool2d`.
pub fn avg_pool2d() -> Vec<Mistake<AvgPoolFn>> {
    let mut mistakes: Vec<Mistake<AvgPoolFn>> = vec![
        Mistake {
            name: "divisor always kH·kW",
            hint: "you always divide by kH·kW: windows that run into the padding with \
                   count_include_pad = false, or past it with ceil_mode, divide by the positions \
                   they really cover.",
            kernel: |x, p| {
                let whole = p.kernel[0] * p.kernel[1];
                pool::avg_pool2d(x, p.divisor_override(p.divisor_override.unwrap_or(whole)))
            },
        },
        Mistake {
            name: "padding never counted",
            hint: "you divide by the positions inside the image only: with \
                   count_include_pad = true (PyTorch's default) the padding counts in the \
                   divisor.",
            kernel: |x, p| pool::avg_pool2d(x, p.count_include_pad(false)),
        },
        Mistake {
            name: "count_include_pad ignored",
            hint: "with count_include_pad = false, zeros of the padding do not count in the \
                   divisor: divide by the positions inside the image.",
            kernel: |x, p| pool::avg_pool2d(x, p.count_include_pad(true)),
        },
        Mistake {
            name: "divisor_override ignored",
            hint: "divisor_override, when given, replaces the divisor of every window.",
            kernel: |x, mut p| {
                p.divisor_override = None;
                pool::avg_pool2d(x, p)
            },
        },
        Mistake {
            name: "output one short",
            hint: "your output is one row and one column short, the values right: H_out = \
                   ⌊(H + 2p − k) / s⌋ + 1, the + 1 included.",
            kernel: |x, p| Ok(one_short(pool::avg_pool2d(x, p)?, &[2, 3])),
        },
    ];
    mistakes.extend(pool_geometry_mistakes!(pool::avg_pool2d, AvgPoolFn));
    mistakes
}

// ---------------------------------------------------------------------------------------------

/// Mistakes in `softmax`.
pub fn softmax() -> Vec<Mistake<SoftmaxFn>> {
    vec![
        Mistake {
            name: "maximum not subtracted",
            hint: "e^x overflows for logits above ~709 (inf / inf = NaN): subtract the maximum \
                   first, softmax(x)_i = e^(x_i − m) / Σ_j e^(x_j − m) — the same value, every \
                   exponential ≤ 1.",
            kernel: |x, axis| {
                let mut y = softmax_ref(x, axis)?;
                for (mut lane, x_lane) in
                    y.lanes_mut(Axis(axis)).into_iter().zip(x.lanes(Axis(axis)))
                {
                    let sum: f64 = x_lane.iter().map(|v| v.exp()).sum();
                    lane.zip_mut_with(&x_lane, |y, &x| *y = x.exp() / sum);
                }
                Ok(y)
            },
        },
        Mistake {
            name: "other axis",
            hint: "you normalised along the other axis: the values along `axis` must sum to 1.",
            kernel: |x, axis| {
                softmax_ref(x, axis)?;
                softmax_ref(x, 1 - axis)
            },
        },
        Mistake {
            name: "not normalised",
            hint: "your exponentials are right but not divided by their sum along the axis.",
            kernel: |x, axis| {
                let mut y = x.to_owned();
                softmax_ref(x, axis)?;
                for mut lane in y.lanes_mut(Axis(axis)) {
                    let m = lane.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                    lane.mapv_inplace(|v| (v - m).exp());
                }
                Ok(y)
            },
        },
    ]
}

/// The per-sample losses `−log p[i, t_i]` from log-probabilities `(N, C)`, reduced.
fn reduce_picked(
    log_p: &Array2<f64>,
    target: &Target<f64>,
    reduction: Reduction,
) -> LossOutput<f64> {
    let Target::Classes(t) = target else {
        unreachable!("the checker passes class indices")
    };
    let losses: Array1<f64> = t
        .iter()
        .zip(log_p.outer_iter())
        .map(|(&t, row)| -row[t as usize])
        .collect();
    match reduction {
        Reduction::None => LossOutput::PerElement(losses.into_dyn()),
        Reduction::Sum => LossOutput::Reduced(losses.sum()),
        Reduction::Mean => LossOutput::Reduced(losses.sum() / losses.len() as f64),
    }
}

/// Mistakes in `cross_entropy`.
pub fn cross_entropy() -> Vec<Mistake<CrossEntropyFn>> {
    vec![
        Mistake {
            name: "sum instead of mean",
            hint: "you returned the sum where the mean was asked: reduction = mean (PyTorch's \
                   default) divides the sum of the N losses by N.",
            kernel: |x, t, o| {
                let reduction = match o.reduction {
                    Reduction::Mean => Reduction::Sum,
                    other => other,
                };
                loss::cross_entropy(x, t, &o.clone().reduction(reduction))
            },
        },
        Mistake {
            name: "mean over every logit",
            hint: "you divided by N·C: the mean is over the N samples (one loss each), not over \
                   every logit.",
            kernel: |x, t, o| {
                let out = loss::cross_entropy(x.view(), t, o)?;
                Ok(match (o.reduction, out) {
                    (Reduction::Mean, LossOutput::Reduced(v)) => {
                        let n = x.shape()[0] as f64;
                        LossOutput::Reduced(v * n / x.len() as f64)
                    }
                    (_, out) => out,
                })
            },
        },
        Mistake {
            name: "softmax over the batch",
            hint: "you normalised each class over the batch (axis 0): the probabilities of one \
                   sample are log_softmax over its C logits, axis 1.",
            kernel: |x, t, o| {
                loss::cross_entropy(x.view(), t.clone(), o)?;
                let x = x
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("(N, C) logits");
                let log_p = log_softmax(x, 0)?;
                Ok(reduce_picked(&log_p, &t, o.reduction))
            },
        },
        Mistake {
            name: "maximum not subtracted",
            hint: "e^x overflows for large logits (inf / inf = NaN, log 0 = −inf): use \
                   log_softmax, x_t − m − log Σ_j e^(x_j − m) with m the largest logit.",
            kernel: |x, t, o| {
                loss::cross_entropy(x.view(), t.clone(), o)?;
                let x = x
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("(N, C) logits");
                let mut log_p = x.to_owned();
                for mut row in log_p.outer_iter_mut() {
                    let sum: f64 = row.iter().map(|v| v.exp()).sum();
                    row.mapv_inplace(|v| (v.exp() / sum).ln());
                }
                Ok(reduce_picked(&log_p, &t, o.reduction))
            },
        },
        Mistake {
            name: "sign missing",
            hint: "your losses are negative: the loss is −log p[t], and a probability's log is \
                   ≤ 0.",
            kernel: |x, t, o| {
                Ok(match loss::cross_entropy(x, t, o)? {
                    LossOutput::Reduced(v) => LossOutput::Reduced(-v),
                    LossOutput::PerElement(a) => LossOutput::PerElement(-a),
                })
            },
        },
    ]
}

// ---------------------------------------------------------------------------------------------

/// Mistakes in `conv2d_backward`.
pub fn conv2d_backward() -> Vec<Mistake<Conv2dBackwardFn>> {
    vec![
        Mistake {
            name: "wrong sign",
            hint: "your gradients have the wrong sign: backpropagation multiplies g = ∂L/∂out by \
                   the other factor of each product, with no minus (the minus belongs to the \
                   descent step).",
            kernel: |x, w, g, p| {
                let mut grads = conv2d_naive::conv2d_backward(x, w, g, p)?;
                grads.input.mapv_inplace(|v| -v);
                grads.weight.mapv_inplace(|v| -v);
                grads.bias.mapv_inplace(|v| -v);
                Ok(grads)
            },
        },
        Mistake {
            name: "divided by the batch",
            hint: "your gradients are 1/N of the right ones: the layer only sums over the batch; \
                   a mean, if any, is the loss's and is already in g.",
            kernel: |x, w, g, p| {
                let mut grads = conv2d_naive::conv2d_backward(x, w, g, p)?;
                let n = x.dim().0 as f64;
                grads.input.mapv_inplace(|v| v / n);
                grads.weight.mapv_inplace(|v| v / n);
                grads.bias.mapv_inplace(|v| v / n);
                Ok(grads)
            },
        },
        Mistake {
            name: "∂L/∂x with the kernel flipped twice",
            hint: "your ∂L/∂x used the kernel turned by 180° where the forward did not turn it: \
                   input pixel (h, w) gets g[c_out, i, j] · w[c_out, c, k_i, k_j] from each output \
                   (i, j) whose tap (k_i, k_j) read it.",
            kernel: |x, w, g, p| {
                let flipped = w.slice(s![.., .., ..;-1, ..;-1]);
                let mut grads = conv2d_naive::conv2d_backward(x, w, g, p)?;
                grads.input = conv2d_naive::conv2d_backward(x, flipped, g, p)?.input;
                Ok(grads)
            },
        },
        Mistake {
            name: "∂L/∂b missing",
            hint: "your ∂L/∂b is zero: each output of channel c_out adds its g to b[c_out]'s \
                   gradient, ∂L/∂b[c_out] = Σ_{n,i,j} g[n, c_out, i, j].",
            kernel: |x, w, g, p| {
                let mut grads = conv2d_naive::conv2d_backward(x, w, g, p)?;
                grads.bias.fill(0.0);
                Ok(grads)
            },
        },
    ]
}

/// Mistakes in `max_pool2d_backward`.
pub fn max_pool2d_backward() -> Vec<Mistake<MaxPoolBackwardFn>> {
    vec![
        Mistake {
            name: "assigned instead of added",
            hint: "where overlapping windows pick the same input, their gradients add up: use \
                   +=, not =.",
            kernel: |g, at, size| {
                let mut grad_in = pool::max_pool2d_backward(g, at, size)?;
                grad_in.fill(0.0);
                let [h, w] = size;
                for ((n, c, i, j), &v) in g.indexed_iter() {
                    let k = at[[n, c, i, j]];
                    if k < h * w {
                        grad_in[[n, c, k / w, k % w]] = v;
                    }
                }
                Ok(grad_in)
            },
        },
        Mistake {
            name: "index decoded with H",
            hint: "the index of input (h, w) is h·W + w: decode it as (index / W, index % W), with \
                   the width.",
            kernel: |g, at, size| {
                let mut grad_in = pool::max_pool2d_backward(g, at, size)?;
                grad_in.fill(0.0);
                let [h, w] = size;
                for ((n, c, i, j), &v) in g.indexed_iter() {
                    let (r, col) = (at[[n, c, i, j]] / h, at[[n, c, i, j]] % h);
                    if r < h && col < w {
                        grad_in[[n, c, r, col]] += v;
                    }
                }
                Ok(grad_in)
            },
        },
        Mistake {
            name: "wrong sign",
            hint: "your gradient has the wrong sign: the winner's ∂L/∂x is +g.",
            kernel: |g, at, size| Ok(-pool::max_pool2d_backward(g, at, size)?),
        },
    ]
}
