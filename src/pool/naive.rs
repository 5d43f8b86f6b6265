//! Reference kernels of chapter 5: loops in the order of the formulas, nothing else.
//!
//! Each function here has a twin of the same name in [`super::fast`]; property tests hold the two
//! equal. This file depends only on `ndarray` and the crate's `shape` and `error` modules, so it
//! can be copied into an exercise. The 1-D functions are the 2-D ones on a height of 1.

use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis, NdFloat};

use crate::error::{Error, Result};
use crate::shape::{Padding, Pads, Pool1dParams, Pool2dParams, PoolNdParams, adaptive_bin};

/// The window geometry of one axis: output `o` covers input positions
/// `o·s − pad_left + k·d` for `k = 0, 1, …, kernel − 1`.
#[derive(Debug, Clone, Copy)]
pub struct AxisWindows {
    /// Input length.
    pub len: usize,
    /// Number of windows.
    pub out: usize,
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Spacing inside a window.
    pub dilation: usize,
    /// Zeros before and after the input.
    pub pads: Pads,
    /// Whether padding counts in an average's divisor (PyTorch's explicit padding with
    /// `count_include_pad`; never for Keras 'same').
    pub count_pad: bool,
}

impl AxisWindows {
    /// The input positions of window `o` that lie inside the input, in order.
    pub fn taps(&self, o: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.kernel).filter_map(move |k| {
            (o * self.stride + k * self.dilation)
                .checked_sub(self.pads.left)
                .filter(|&t| t < self.len)
        })
    }

    /// How many positions of window `o` an average divides by: with `count_pad`, the window
    /// clipped to the padded input (`min(start + k, n + p) − start`, PyTorch's rule), otherwise
    /// only the positions inside the input.
    pub fn divisor(&self, o: usize) -> usize {
        if self.count_pad {
            let start = o * self.stride;
            (start + self.kernel).min(self.len + self.pads.left + self.pads.right) - start
        } else {
            self.taps(o).count()
        }
    }
}

/// The windows of every axis of an input of size `input`, checked.
pub fn windows<const D: usize>(
    input: [usize; D],
    params: &PoolNdParams<D>,
    average: bool,
) -> Result<[AxisWindows; D]> {
    if average && params.dilations.iter().any(|&d| d != 1) {
        return Err(Error::param(
            "dilation",
            format!(
                "average pooling has no dilation, got {:?}",
                params.dilations
            ),
        ));
    }
    if params.divisor_override == Some(0) {
        return Err(Error::param("divisor_override", "must not be zero"));
    }
    let mut axes = [AxisWindows {
        len: 0,
        out: 0,
        kernel: 0,
        stride: 0,
        dilation: 0,
        pads: Pads::default(),
        count_pad: false,
    }; D];
    for (i, axis) in axes.iter_mut().enumerate() {
        let (pads, out) = params.axis(i, input[i])?;
        *axis = AxisWindows {
            len: input[i],
            out,
            kernel: params.kernel[i],
            stride: params.stride_of(i),
            dilation: params.dilations[i],
            pads,
            count_pad: params.count_include_pad
                && matches!(params.paddings[i], Padding::Explicit(_)),
        };
    }
    Ok(axes)
}

fn check_nonempty(op: &'static str, planes: usize, size: usize) -> Result<()> {
    if planes > 0 && size == 0 {
        return Err(Error::EmptyInput {
            op,
            what: "spatial size (with N > 0 and C > 0)",
        });
    }
    Ok(())
}

/// Max pooling with the position of each maximum, exactly as PyTorch's
/// `max_pool2d(…, return_indices=True)` on `(N, C, H, W)`:
///
/// `out[n, c, i, j] = max_{k_i, k_j} x[n, c, i·s_h + k_i·d_h − p_h, j·s_w + k_j·d_w − p_w]`
///
/// over the positions inside the image (padding never wins). `index[n, c, i, j] = h·W + w` of
/// the maximum: the first one in row-major order on ties; a NaN wins over any number (the last
/// NaN, as PyTorch's scan leaves it).
pub fn max_pool2d_with_indices<T: NdFloat>(
    x: ArrayView4<T>,
    params: Pool2dParams,
) -> Result<(Array4<T>, Array4<usize>)> {
    let (n, c, h, w) = x.dim();
    check_nonempty("max_pool2d", n * c, h * w)?;
    let [rows, cols] = windows([h, w], &params, false)?;
    let shape = (n, c, rows.out, cols.out);
    let mut out = Array4::from_elem(shape, T::neg_infinity());
    let mut index = Array4::zeros(shape);
    for ((n, c, i, j), y) in out.indexed_iter_mut() {
        // PyTorch starts from the first position inside the image, even if nothing beats −∞.
        let first_row = rows.taps(i).next().unwrap_or(h);
        let first_col = cols.taps(j).next().unwrap_or(w);
        let mut best = first_row * w + first_col;
        for r in rows.taps(i) {
            for s in cols.taps(j) {
                let v = x[[n, c, r, s]];
                if v > *y || v.is_nan() {
                    *y = v;
                    best = r * w + s;
                }
            }
        }
        index[[n, c, i, j]] = best;
    }
    Ok((out, index))
}

/// [`max_pool2d_with_indices`] without the indices: PyTorch's `max_pool2d`.
pub fn max_pool2d<T: NdFloat>(x: ArrayView4<T>, params: Pool2dParams) -> Result<Array4<T>> {
    Ok(max_pool2d_with_indices(x, params)?.0)
}

/// Average pooling, exactly as PyTorch's `avg_pool2d` on `(N, C, H, W)`:
///
/// `out[n, c, i, j] = (1 / D) · Σ_{k_i, k_j} x[n, c, i·s_h + k_i − p_h, j·s_w + k_j − p_w]`
///
/// over the positions inside the image, where the divisor `D` is `divisor_override` if given,
/// else the window clipped to the padded image (`count_include_pad`) or only its positions
/// inside the image.
pub fn avg_pool2d<T: NdFloat>(x: ArrayView4<T>, params: Pool2dParams) -> Result<Array4<T>> {
    let (n, c, h, w) = x.dim();
    check_nonempty("avg_pool2d", n * c, h * w)?;
    let [rows, cols] = windows([h, w], &params, true)?;
    Ok(Array4::from_shape_fn(
        (n, c, rows.out, cols.out),
        |(n, c, i, j)| {
            let mut sum = T::zero();
            for r in rows.taps(i) {
                for s in cols.taps(j) {
                    sum += x[[n, c, r, s]];
                }
            }
            let divisor = params
                .divisor_override
                .unwrap_or_else(|| rows.divisor(i) * cols.divisor(j));
            if divisor == 0 {
                T::zero()
            } else {
                sum / T::from(divisor).expect("a count converts to a float")
            }
        },
    ))
}

fn adaptive_output(op: &'static str, output: [usize; 2], input: [usize; 2]) -> Result<()> {
    if output.contains(&0) && !input.contains(&0) {
        return Err(Error::param(
            "output_size",
            format!("{op} needs every output size ≥ 1, got {output:?}"),
        ));
    }
    Ok(())
}

/// Adaptive average pooling, exactly as PyTorch's `adaptive_avg_pool2d`: output `(i, j)` is the
/// mean of rows `⌊i·H/H_out⌋ .. ⌈(i+1)·H/H_out⌉` and columns `⌊j·W/W_out⌋ .. ⌈(j+1)·W/W_out⌉`.
pub fn adaptive_avg_pool2d<T: NdFloat>(
    x: ArrayView4<T>,
    output_size: [usize; 2],
) -> Result<Array4<T>> {
    let (n, c, h, w) = x.dim();
    check_nonempty("adaptive_avg_pool2d", n * c, h * w)?;
    adaptive_output("adaptive_avg_pool2d", output_size, [h, w])?;
    let [oh, ow] = output_size;
    Ok(Array4::from_shape_fn((n, c, oh, ow), |(n, c, i, j)| {
        let ((r0, r1), (s0, s1)) = (adaptive_bin(i, h, oh), adaptive_bin(j, w, ow));
        let mut sum = T::zero();
        for r in r0..r1 {
            for s in s0..s1 {
                sum += x[[n, c, r, s]];
            }
        }
        sum / T::from((r1 - r0) * (s1 - s0)).expect("a count converts to a float")
    }))
}

/// Adaptive max pooling with the position `h·W + w` of each maximum, exactly as PyTorch's
/// `adaptive_max_pool2d(…, return_indices=True)`; bins as in [`adaptive_avg_pool2d`], ties and
/// NaN as in [`max_pool2d_with_indices`].
pub fn adaptive_max_pool2d_with_indices<T: NdFloat>(
    x: ArrayView4<T>,
    output_size: [usize; 2],
) -> Result<(Array4<T>, Array4<usize>)> {
    let (n, c, h, w) = x.dim();
    check_nonempty("adaptive_max_pool2d", n * c, h * w)?;
    adaptive_output("adaptive_max_pool2d", output_size, [h, w])?;
    let [oh, ow] = output_size;
    let mut out = Array4::from_elem((n, c, oh, ow), T::neg_infinity());
    let mut index = Array4::zeros((n, c, oh, ow));
    for ((n, c, i, j), y) in out.indexed_iter_mut() {
        let ((r0, r1), (s0, s1)) = (adaptive_bin(i, h, oh), adaptive_bin(j, w, ow));
        let mut best = r0 * w + s0;
        for r in r0..r1 {
            for s in s0..s1 {
                let v = x[[n, c, r, s]];
                if v > *y || v.is_nan() {
                    *y = v;
                    best = r * w + s;
                }
            }
        }
        index[[n, c, i, j]] = best;
    }
    Ok((out, index))
}

/// [`adaptive_max_pool2d_with_indices`] without the indices.
pub fn adaptive_max_pool2d<T: NdFloat>(
    x: ArrayView4<T>,
    output_size: [usize; 2],
) -> Result<Array4<T>> {
    Ok(adaptive_max_pool2d_with_indices(x, output_size)?.0)
}

/// Global average pooling: the mean of each feature map, `(N, C, H, W)` → `(N, C, 1, 1)`.
pub fn global_avg_pool2d<T: NdFloat>(x: ArrayView4<T>) -> Result<Array4<T>> {
    adaptive_avg_pool2d(x, [1, 1])
}

/// A 1-D signal `(N, C, L)` as images of height 1, and 1-D parameters as 2-D ones.
fn as_image<T: NdFloat>(x: ArrayView3<T>) -> ArrayView4<T> {
    x.insert_axis(Axis(2))
}

fn as_signal<T>(a: Array4<T>) -> Array3<T> {
    a.index_axis_move(Axis(2), 0)
}

/// PyTorch's `max_pool1d(…, return_indices=True)` on `(N, C, L)`: [`max_pool2d_with_indices`]
/// on a height of 1, indices into `L`.
pub fn max_pool1d_with_indices<T: NdFloat>(
    x: ArrayView3<T>,
    params: Pool1dParams,
) -> Result<(Array3<T>, Array3<usize>)> {
    let (y, i) = max_pool2d_with_indices(as_image(x), params.as_2d())?;
    Ok((as_signal(y), as_signal(i)))
}

/// PyTorch's `max_pool1d` on `(N, C, L)`.
pub fn max_pool1d<T: NdFloat>(x: ArrayView3<T>, params: Pool1dParams) -> Result<Array3<T>> {
    Ok(max_pool1d_with_indices(x, params)?.0)
}

/// PyTorch's `avg_pool1d` on `(N, C, L)` (and `divisor_override`, which only `avg_pool2d` has).
pub fn avg_pool1d<T: NdFloat>(x: ArrayView3<T>, params: Pool1dParams) -> Result<Array3<T>> {
    Ok(as_signal(avg_pool2d(as_image(x), params.as_2d())?))
}

/// PyTorch's `adaptive_avg_pool1d` on `(N, C, L)`.
pub fn adaptive_avg_pool1d<T: NdFloat>(x: ArrayView3<T>, output_size: usize) -> Result<Array3<T>> {
    Ok(as_signal(adaptive_avg_pool2d(
        as_image(x),
        [1, output_size],
    )?))
}

/// PyTorch's `adaptive_max_pool1d(…, return_indices=True)` on `(N, C, L)`.
pub fn adaptive_max_pool1d_with_indices<T: NdFloat>(
    x: ArrayView3<T>,
    output_size: usize,
) -> Result<(Array3<T>, Array3<usize>)> {
    let (y, i) = adaptive_max_pool2d_with_indices(as_image(x), [1, output_size])?;
    Ok((as_signal(y), as_signal(i)))
}

/// PyTorch's `adaptive_max_pool1d` on `(N, C, L)`.
pub fn adaptive_max_pool1d<T: NdFloat>(x: ArrayView3<T>, output_size: usize) -> Result<Array3<T>> {
    Ok(adaptive_max_pool1d_with_indices(x, output_size)?.0)
}

fn check_pool_grad(op: &'static str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(Error::shape(
            op,
            format!("grad_out has shape {got:?}, the forward output's shape is {expected:?}"),
        ));
    }
    Ok(())
}

/// Backpropagation through max pooling (also adaptive max pooling): each output's gradient goes
/// to the input position that won, `∂L/∂x[n, c, h, w] = Σ g[n, c, i, j]` over the outputs whose
/// `index` is `h·W + w`; every other input gets 0, and indices past the end (windows that held
/// only padding) pass nothing, as in PyTorch. `input_size` is `(H, W)`.
pub fn max_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    indices: ArrayView4<usize>,
    input_size: [usize; 2],
) -> Result<Array4<T>> {
    check_pool_grad("max_pool2d_backward", grad_out.shape(), indices.shape())?;
    let (n, c, _, _) = grad_out.dim();
    let [h, w] = input_size;
    let mut grad_in = Array4::zeros((n, c, h, w));
    for ((n, c, i, j), &g) in grad_out.indexed_iter() {
        let at = indices[[n, c, i, j]];
        // A window with no position inside the image has an index past the end (its value is
        // −∞): like PyTorch, it passes no gradient on.
        if at < h * w {
            grad_in[[n, c, at / w, at % w]] += g;
        }
    }
    Ok(grad_in)
}

/// Backpropagation through [`avg_pool2d`]: each output's gradient is shared equally by the
/// positions it averaged, `∂L/∂x[n, c, h, w] = Σ g[n, c, i, j] / D(i, j)` over the windows that
/// contain `(h, w)`, with the forward's divisor `D`. `input_size` is `(H, W)`.
pub fn avg_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    input_size: [usize; 2],
    params: Pool2dParams,
) -> Result<Array4<T>> {
    let (n, c, _, _) = grad_out.dim();
    let [h, w] = input_size;
    check_nonempty("avg_pool2d_backward", n * c, h * w)?;
    let [rows, cols] = windows([h, w], &params, true)?;
    check_pool_grad(
        "avg_pool2d_backward",
        grad_out.shape(),
        &[n, c, rows.out, cols.out],
    )?;
    let mut grad_in = Array4::zeros((n, c, h, w));
    for ((n, c, i, j), &g) in grad_out.indexed_iter() {
        let divisor = params
            .divisor_override
            .unwrap_or_else(|| rows.divisor(i) * cols.divisor(j));
        if divisor == 0 {
            continue;
        }
        let share = g / T::from(divisor).expect("a count converts to a float");
        for r in rows.taps(i) {
            for s in cols.taps(j) {
                grad_in[[n, c, r, s]] += share;
            }
        }
    }
    Ok(grad_in)
}

/// Backpropagation through [`adaptive_avg_pool2d`]: each output's gradient is shared equally by
/// the positions of its bin (bins may overlap, so a position can receive from several).
pub fn adaptive_avg_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    input_size: [usize; 2],
) -> Result<Array4<T>> {
    let (n, c, oh, ow) = grad_out.dim();
    let [h, w] = input_size;
    check_nonempty("adaptive_avg_pool2d_backward", n * c, h * w)?;
    let mut grad_in = Array4::zeros((n, c, h, w));
    for ((n, c, i, j), &g) in grad_out.indexed_iter() {
        let ((r0, r1), (s0, s1)) = (adaptive_bin(i, h, oh), adaptive_bin(j, w, ow));
        let share = g / T::from((r1 - r0) * (s1 - s0)).expect("a count converts to a float");
        for r in r0..r1 {
            for s in s0..s1 {
                grad_in[[n, c, r, s]] += share;
            }
        }
    }
    Ok(grad_in)
}

/// Backward of 1-D max pooling (and adaptive max pooling): [`max_pool2d_backward`] on a height
/// of 1, `indices` into `L`.
pub fn max_pool1d_backward<T: NdFloat>(
    grad_out: ArrayView3<T>,
    indices: ArrayView3<usize>,
    input_len: usize,
) -> Result<Array3<T>> {
    let g = max_pool2d_backward(
        grad_out.insert_axis(Axis(2)),
        indices.insert_axis(Axis(2)),
        [1, input_len],
    )?;
    Ok(g.index_axis_move(Axis(2), 0))
}

/// Backward of 1-D average pooling: [`avg_pool2d_backward`] on a height of 1.
pub fn avg_pool1d_backward<T: NdFloat>(
    grad_out: ArrayView3<T>,
    input_len: usize,
    params: Pool1dParams,
) -> Result<Array3<T>> {
    let g = avg_pool2d_backward(
        grad_out.insert_axis(Axis(2)),
        [1, input_len],
        params.as_2d(),
    )?;
    Ok(g.index_axis_move(Axis(2), 0))
}

/// Backward of 1-D adaptive average pooling: [`adaptive_avg_pool2d_backward`] on a height of 1.
pub fn adaptive_avg_pool1d_backward<T: NdFloat>(
    grad_out: ArrayView3<T>,
    input_len: usize,
) -> Result<Array3<T>> {
    let g = adaptive_avg_pool2d_backward(grad_out.insert_axis(Axis(2)), [1, input_len])?;
    Ok(g.index_axis_move(Axis(2), 0))
}
