//! Fast pooling, with the same names and signatures as [`super::naive`].
//!
//! Each `(n, c)` feature map is a contiguous slice, and maps are pooled in parallel. The input
//! positions of every window are worked out once per axis — rows for each output row, columns
//! for each output column — so the inner loops only read memory and compare or add; no bounds
//! are tested per element and no index arithmetic is repeated.

use ndarray::parallel::prelude::*;
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis, NdFloat};
use rayon::slice::{ParallelSlice, ParallelSliceMut};

use super::naive::{AxisWindows, windows};
use crate::error::{Error, Result};
use crate::shape::{Pool1dParams, Pool2dParams, adaptive_bin};

/// The input positions one output reads along one axis: `first, first + step, …`, `count` of
/// them (the taps inside the input always form such a progression).
#[derive(Debug, Clone, Copy)]
struct Taps {
    first: usize,
    count: usize,
    step: usize,
}

impl Taps {
    /// The elements of `line` at these positions.
    fn of<T: Copy>(self, line: &[T]) -> impl Iterator<Item = (usize, T)> + '_ {
        line[self.first.min(line.len())..]
            .iter()
            .step_by(self.step)
            .take(self.count)
            .enumerate()
            .map(move |(t, &v)| (self.first + t * self.step, v))
    }
}

/// The positions every output of one axis reads.
fn taps(axis: &AxisWindows) -> Vec<Taps> {
    (0..axis.out)
        .map(|o| {
            let mut inside = axis.taps(o);
            let first = inside.next();
            Taps {
                first: first.unwrap_or(axis.len),
                count: first.map_or(0, |_| 1 + inside.count()),
                step: axis.dilation,
            }
        })
        .collect()
}

fn bins(n: usize, out: usize) -> Vec<Taps> {
    (0..out)
        .map(|o| {
            let (start, end) = adaptive_bin(o, n, out);
            Taps {
                first: start,
                count: end - start,
                step: 1,
            }
        })
        .collect()
}

fn check_input<T>(op: &'static str, x: &ArrayView4<T>) -> Result<()> {
    let (n, c, h, w) = x.dim();
    if n * c > 0 && h * w == 0 {
        return Err(Error::EmptyInput {
            op,
            what: "spatial size (with N > 0 and C > 0)",
        });
    }
    Ok(())
}

/// Max over the windows `rows[i] × cols[j]` of every map, with PyTorch's tie and NaN rules: the
/// first maximum in row-major order wins, a NaN beats everything (the last NaN stays).
///
/// Windows are rectangles, so the max is separable: first along each input row for every output
/// column (`line_max`, with the column it came from), then down the rows of each window. Scanning
/// rows in order with a strict `>` keeps the earliest row, and each row's earliest column, which
/// is the first maximum in row-major order.
fn max_windows<T: NdFloat>(
    x: ArrayView4<T>,
    rows: &[Taps],
    cols: &[Taps],
) -> (Array4<T>, Array4<usize>) {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (rows.len(), cols.len());
    let mut out = crate::buffers::full((n, c, oh, ow), T::neg_infinity());
    let mut index = crate::buffers::full((n, c, oh, ow), 0usize);
    if n * c == 0 || oh * ow == 0 {
        return (out, index);
    }
    let pairs = are_pairs(rows) && are_pairs(cols);
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("a standard-layout array is one slice");
    let out_slice = out.as_slice_mut().expect("a new array is contiguous");
    let index_slice = index.as_slice_mut().expect("a new array is contiguous");
    out_slice
        .par_chunks_mut(oh * ow)
        .zip(index_slice.par_chunks_mut(oh * ow))
        .zip(x.par_chunks(h * w))
        .for_each_init(
            || vec![(T::neg_infinity(), 0usize); h * ow],
            |line_max, ((y, idx), map)| {
                if pairs {
                    max_of_pairs(map, w, y, idx, ow);
                    return;
                }
                for (line, maxima) in map.chunks_exact(w).zip(line_max.chunks_exact_mut(ow)) {
                    for (m, &col_taps) in maxima.iter_mut().zip(cols) {
                        *m = (T::neg_infinity(), col_taps.first);
                        for (s, v) in col_taps.of(line) {
                            if v > m.0 || v.is_nan() {
                                *m = (v, s);
                            }
                        }
                    }
                }
                for (i, &row_taps) in rows.iter().enumerate() {
                    let (y, idx) = (&mut y[i * ow..(i + 1) * ow], &mut idx[i * ow..(i + 1) * ow]);
                    // PyTorch starts from the first position inside the image, even if nothing
                    // beats −∞.
                    for ((y, at), col_taps) in y.iter_mut().zip(idx.iter_mut()).zip(cols) {
                        *y = T::neg_infinity();
                        *at = row_taps.first * w + col_taps.first;
                    }
                    for r in (0..row_taps.count).map(|t| row_taps.first + t * row_taps.step) {
                        let maxima = &line_max[r * ow..(r + 1) * ow];
                        for ((y, at), &(v, s)) in y.iter_mut().zip(idx.iter_mut()).zip(maxima) {
                            if v > *y || v.is_nan() {
                                *y = v;
                                *at = r * w + s;
                            }
                        }
                    }
                }
            },
        );
    (out, index)
}

/// Whether output `o` reads inputs `2o` and `2o + 1`, for every `o`: the 2×2, stride 2 pooling
/// of most CNNs, which [`max_of_pairs`] computes directly.
fn are_pairs(taps: &[Taps]) -> bool {
    taps.iter()
        .enumerate()
        .all(|(o, t)| t.first == 2 * o && t.count == 2 && t.step == 1)
}

/// One map's max over the windows `{2i, 2i+1} × {2j, 2j+1}` (`map` has rows of `w`, `y` and `at`
/// rows of `ow`), with [`max_windows`]'s rules: the four candidates in row-major order, a later
/// one taken only if it is larger or NaN.
fn max_of_pairs<T: NdFloat>(map: &[T], w: usize, y: &mut [T], at: &mut [usize], ow: usize) {
    for (i, (y, at)) in y
        .chunks_exact_mut(ow)
        .zip(at.chunks_exact_mut(ow))
        .enumerate()
    {
        let (top, bottom) = (&map[2 * i * w..][..w], &map[(2 * i + 1) * w..][..w]);
        for (j, (y, at)) in y.iter_mut().zip(at.iter_mut()).enumerate() {
            let s = 2 * j;
            let candidates = [
                (top[s], 2 * i * w + s),
                (top[s + 1], 2 * i * w + s + 1),
                (bottom[s], (2 * i + 1) * w + s),
                (bottom[s + 1], (2 * i + 1) * w + s + 1),
            ];
            let (mut best, mut from) = (T::neg_infinity(), candidates[0].1);
            for (v, k) in candidates {
                if v > best || v.is_nan() {
                    (best, from) = (v, k);
                }
            }
            (*y, *at) = (best, from);
        }
    }
}

/// Sum over the windows `rows[i] × cols[j]` of every map, divided by `divisor(i, j)`; separable
/// like [`max_windows`]: sums along each input row first, then down each window's rows.
fn mean_windows<T: NdFloat>(
    x: ArrayView4<T>,
    rows: &[Taps],
    cols: &[Taps],
    divisor: impl Fn(usize, usize) -> usize + Sync,
) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = (rows.len(), cols.len());
    let mut out = crate::buffers::zeros((n, c, oh, ow));
    if n * c == 0 || oh * ow == 0 {
        return out;
    }
    // 1 / divisor, once per output position rather than once per map.
    let scale: Vec<T> = (0..oh * ow)
        .map(|o| match divisor(o / ow, o % ow) {
            0 => T::zero(),
            d => T::one() / T::from(d).expect("a count converts to a float"),
        })
        .collect();
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("a standard-layout array is one slice");
    out.as_slice_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each_init(
            || vec![T::zero(); h * ow],
            |line_sum, (y, map)| {
                for (line, sums) in map.chunks_exact(w).zip(line_sum.chunks_exact_mut(ow)) {
                    for (sum, &col_taps) in sums.iter_mut().zip(cols) {
                        *sum = col_taps.of(line).fold(T::zero(), |acc, (_, v)| acc + v);
                    }
                }
                for (i, &row_taps) in rows.iter().enumerate() {
                    let y = &mut y[i * ow..(i + 1) * ow];
                    for r in (0..row_taps.count).map(|t| row_taps.first + t * row_taps.step) {
                        for (y, &s) in y.iter_mut().zip(&line_sum[r * ow..(r + 1) * ow]) {
                            *y += s;
                        }
                    }
                    for (y, &k) in y.iter_mut().zip(&scale[i * ow..(i + 1) * ow]) {
                        *y *= k;
                    }
                }
            },
        );
    out
}

/// PyTorch's `max_pool2d(…, return_indices=True)`; the twin of
/// [`super::naive::max_pool2d_with_indices`].
pub fn max_pool2d_with_indices<T: NdFloat>(
    x: ArrayView4<T>,
    params: Pool2dParams,
) -> Result<(Array4<T>, Array4<usize>)> {
    check_input("max_pool2d", &x)?;
    let (_, _, h, w) = x.dim();
    let [rows, cols] = windows([h, w], &params, false)?;
    Ok(max_windows(x, &taps(&rows), &taps(&cols)))
}

/// PyTorch's `max_pool2d`; the twin of [`super::naive::max_pool2d`].
pub fn max_pool2d<T: NdFloat>(x: ArrayView4<T>, params: Pool2dParams) -> Result<Array4<T>> {
    Ok(max_pool2d_with_indices(x, params)?.0)
}

/// PyTorch's `avg_pool2d`; the twin of [`super::naive::avg_pool2d`].
pub fn avg_pool2d<T: NdFloat>(x: ArrayView4<T>, params: Pool2dParams) -> Result<Array4<T>> {
    check_input("avg_pool2d", &x)?;
    let (_, _, h, w) = x.dim();
    let [rows, cols] = windows([h, w], &params, true)?;
    let divisor = |i: usize, j: usize| {
        params
            .divisor_override
            .unwrap_or_else(|| rows.divisor(i) * cols.divisor(j))
    };
    Ok(mean_windows(x, &taps(&rows), &taps(&cols), divisor))
}

fn check_adaptive(op: &'static str, output: [usize; 2]) -> Result<()> {
    if output.contains(&0) {
        return Err(Error::param(
            "output_size",
            format!("{op} needs every output size ≥ 1, got {output:?}"),
        ));
    }
    Ok(())
}

/// PyTorch's `adaptive_avg_pool2d`; the twin of [`super::naive::adaptive_avg_pool2d`].
pub fn adaptive_avg_pool2d<T: NdFloat>(
    x: ArrayView4<T>,
    output_size: [usize; 2],
) -> Result<Array4<T>> {
    check_input("adaptive_avg_pool2d", &x)?;
    let (_, _, h, w) = x.dim();
    check_adaptive("adaptive_avg_pool2d", output_size)?;
    let (rows, cols) = (bins(h, output_size[0]), bins(w, output_size[1]));
    let divisor = |i: usize, j: usize| rows[i].count * cols[j].count;
    Ok(mean_windows(x, &rows, &cols, divisor))
}

/// PyTorch's `adaptive_max_pool2d(…, return_indices=True)`; the twin of
/// [`super::naive::adaptive_max_pool2d_with_indices`].
pub fn adaptive_max_pool2d_with_indices<T: NdFloat>(
    x: ArrayView4<T>,
    output_size: [usize; 2],
) -> Result<(Array4<T>, Array4<usize>)> {
    check_input("adaptive_max_pool2d", &x)?;
    let (_, _, h, w) = x.dim();
    check_adaptive("adaptive_max_pool2d", output_size)?;
    let (rows, cols) = (bins(h, output_size[0]), bins(w, output_size[1]));
    Ok(max_windows(x, &rows, &cols))
}

/// [`adaptive_max_pool2d_with_indices`] without the indices.
pub fn adaptive_max_pool2d<T: NdFloat>(
    x: ArrayView4<T>,
    output_size: [usize; 2],
) -> Result<Array4<T>> {
    Ok(adaptive_max_pool2d_with_indices(x, output_size)?.0)
}

/// Global average pooling: `(N, C, H, W)` → `(N, C, 1, 1)`.
pub fn global_avg_pool2d<T: NdFloat>(x: ArrayView4<T>) -> Result<Array4<T>> {
    adaptive_avg_pool2d(x, [1, 1])
}

fn as_signal<T>(a: Array4<T>) -> Array3<T> {
    a.index_axis_move(Axis(2), 0)
}

/// PyTorch's `max_pool1d(…, return_indices=True)`.
pub fn max_pool1d_with_indices<T: NdFloat>(
    x: ArrayView3<T>,
    params: Pool1dParams,
) -> Result<(Array3<T>, Array3<usize>)> {
    let (y, i) = max_pool2d_with_indices(x.insert_axis(Axis(2)), params.as_2d())?;
    Ok((as_signal(y), as_signal(i)))
}

/// PyTorch's `max_pool1d`.
pub fn max_pool1d<T: NdFloat>(x: ArrayView3<T>, params: Pool1dParams) -> Result<Array3<T>> {
    Ok(max_pool1d_with_indices(x, params)?.0)
}

/// PyTorch's `avg_pool1d`.
pub fn avg_pool1d<T: NdFloat>(x: ArrayView3<T>, params: Pool1dParams) -> Result<Array3<T>> {
    Ok(as_signal(avg_pool2d(
        x.insert_axis(Axis(2)),
        params.as_2d(),
    )?))
}

/// PyTorch's `adaptive_avg_pool1d`.
pub fn adaptive_avg_pool1d<T: NdFloat>(x: ArrayView3<T>, output_size: usize) -> Result<Array3<T>> {
    Ok(as_signal(adaptive_avg_pool2d(
        x.insert_axis(Axis(2)),
        [1, output_size],
    )?))
}

/// PyTorch's `adaptive_max_pool1d(…, return_indices=True)`.
pub fn adaptive_max_pool1d_with_indices<T: NdFloat>(
    x: ArrayView3<T>,
    output_size: usize,
) -> Result<(Array3<T>, Array3<usize>)> {
    let (y, i) = adaptive_max_pool2d_with_indices(x.insert_axis(Axis(2)), [1, output_size])?;
    Ok((as_signal(y), as_signal(i)))
}

/// PyTorch's `adaptive_max_pool1d`.
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

/// Backpropagation through max pooling, the twin of [`super::naive::max_pool2d_backward`]:
/// maps in parallel, each output's gradient added to the input position its index names.
pub fn max_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    indices: ArrayView4<usize>,
    input_size: [usize; 2],
) -> Result<Array4<T>> {
    check_pool_grad("max_pool2d_backward", grad_out.shape(), indices.shape())?;
    let (n, c, oh, ow) = grad_out.dim();
    let [h, w] = input_size;
    let mut grad_in = crate::buffers::zeros((n, c, h, w));
    if n * c == 0 || oh * ow == 0 || h * w == 0 {
        return Ok(grad_in);
    }
    let (g, at) = (grad_out.as_standard_layout(), indices.as_standard_layout());
    let g = g.as_slice().expect("a standard-layout array is one slice");
    let at = at.as_slice().expect("a standard-layout array is one slice");
    grad_in
        .as_slice_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(h * w)
        .zip(g.par_chunks(oh * ow).zip(at.par_chunks(oh * ow)))
        .for_each(|(gi, (g, at))| {
            // Indices past the end (windows of padding only) pass nothing on, as in PyTorch.
            for (&g, &at) in g.iter().zip(at) {
                if let Some(d) = gi.get_mut(at) {
                    *d += g;
                }
            }
        });
    Ok(grad_in)
}

/// `∂L/∂x += g[i, j] / D(i, j)` over the windows `rows[i] × cols[j]` of every map.
fn spread_windows<T: NdFloat>(
    grad_out: ArrayView4<T>,
    input_size: [usize; 2],
    rows: &[Taps],
    cols: &[Taps],
    divisor: impl Fn(usize, usize) -> usize + Sync,
) -> Array4<T> {
    let (n, c, oh, ow) = grad_out.dim();
    let [h, w] = input_size;
    let mut grad_in = crate::buffers::zeros((n, c, h, w));
    if n * c == 0 || oh * ow == 0 || h * w == 0 {
        return grad_in;
    }
    let g = grad_out.as_standard_layout();
    let g = g.as_slice().expect("a standard-layout array is one slice");
    grad_in
        .as_slice_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(h * w)
        .zip(g.par_chunks(oh * ow))
        .for_each(|(gi, g)| {
            for (i, &row_taps) in rows.iter().enumerate() {
                for (j, &col_taps) in cols.iter().enumerate() {
                    let d = divisor(i, j);
                    if d == 0 {
                        continue;
                    }
                    let share = g[i * ow + j] / T::from(d).expect("a count converts to a float");
                    for r in (0..row_taps.count).map(|t| row_taps.first + t * row_taps.step) {
                        let line = &mut gi[r * w..(r + 1) * w];
                        for s in (0..col_taps.count).map(|t| col_taps.first + t * col_taps.step) {
                            line[s] += share;
                        }
                    }
                }
            }
        });
    grad_in
}

/// Backpropagation through [`avg_pool2d`], the twin of [`super::naive::avg_pool2d_backward`].
pub fn avg_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    input_size: [usize; 2],
    params: Pool2dParams,
) -> Result<Array4<T>> {
    let (n, c, _, _) = grad_out.dim();
    let [h, w] = input_size;
    if n * c > 0 && h * w == 0 {
        return Err(Error::EmptyInput {
            op: "avg_pool2d_backward",
            what: "spatial size (with N > 0 and C > 0)",
        });
    }
    let [rows, cols] = windows([h, w], &params, true)?;
    check_pool_grad(
        "avg_pool2d_backward",
        grad_out.shape(),
        &[n, c, rows.out, cols.out],
    )?;
    let divisor = |i: usize, j: usize| {
        params
            .divisor_override
            .unwrap_or_else(|| rows.divisor(i) * cols.divisor(j))
    };
    Ok(spread_windows(
        grad_out,
        input_size,
        &taps(&rows),
        &taps(&cols),
        divisor,
    ))
}

/// Backpropagation through [`adaptive_avg_pool2d`], the twin of
/// [`super::naive::adaptive_avg_pool2d_backward`].
pub fn adaptive_avg_pool2d_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    input_size: [usize; 2],
) -> Result<Array4<T>> {
    let (n, c, oh, ow) = grad_out.dim();
    let [h, w] = input_size;
    if n * c > 0 && h * w == 0 {
        return Err(Error::EmptyInput {
            op: "adaptive_avg_pool2d_backward",
            what: "spatial size (with N > 0 and C > 0)",
        });
    }
    let (rows, cols) = (bins(h, oh), bins(w, ow));
    let divisor = |i: usize, j: usize| rows[i].count * cols[j].count;
    Ok(spread_windows(grad_out, input_size, &rows, &cols, divisor))
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
