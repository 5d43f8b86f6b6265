#![doc = include_str!("../chapters/04-im2col-gemm.md")]

use ndarray::{
    Array3, Array4, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, ArrayViewMut3, NdFloat,
};

use crate::error::{Error, Result};
use crate::shape::{Conv2dParams, ConvGeometry, ConvNdParams, Pads, conv_output_len};

/// Where the sliding windows of one image lie, per spatial axis: the input size, the kernel, the
/// padding, stride and dilation, and the number of windows (the output size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patches<const D: usize> {
    /// Input size per axis.
    pub input: [usize; D],
    /// Kernel size per axis.
    pub kernel: [usize; D],
    /// Windows per axis.
    pub output: [usize; D],
    /// Zeros before and after the input, per axis.
    pub pads: [Pads; D],
    /// Stride per axis.
    pub stride: [usize; D],
    /// Dilation per axis.
    pub dilation: [usize; D],
}

impl<const D: usize> Patches<D> {
    /// The windows of a `kernel` sliding over an input of size `input` (groups are ignored).
    pub fn new(input: [usize; D], kernel: [usize; D], params: ConvNdParams<D>) -> Result<Self> {
        let mut pads = [Pads::default(); D];
        let mut output = [0; D];
        for i in 0..D {
            let axis = params.axis(i);
            pads[i] = axis.pads(input[i], kernel[i])?;
            output[i] = conv_output_len(input[i], kernel[i], axis.stride, pads[i], axis.dilation)?;
        }
        Ok(Patches {
            input,
            kernel,
            output,
            pads,
            stride: params.strides,
            dilation: params.dilations,
        })
    }

    /// Kernel taps per channel: `Π kernel`.
    pub fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Windows per image: `Π output`.
    pub fn windows(&self) -> usize {
        self.output.iter().product()
    }
}

impl Patches<2> {
    /// For each column tap `k_j`, the outputs of a line it reaches: the same for every row.
    fn column_spans(&self) -> Vec<Span> {
        (0..self.kernel[1])
            .map(|k_j| {
                let offset = k_j * self.dilation[1];
                Span::new(
                    self.input[1],
                    self.output[1],
                    offset,
                    self.pads[1].left,
                    self.stride[1],
                )
            })
            .collect()
    }
}

impl<const D: usize> From<&ConvGeometry<D>> for Patches<D> {
    fn from(g: &ConvGeometry<D>) -> Self {
        Patches {
            input: g.input,
            kernel: g.kernel,
            output: g.output,
            pads: g.pads,
            stride: g.stride,
            dilation: g.dilation,
        }
    }
}

/// The `q < count` with `pad ≤ offset + q·step < pad + len`: the outputs of a line whose tap at
/// `offset = k·d` lands inside an axis of `len` elements behind `pad` zeros (`step` the stride),
/// or the taps of a window at `offset` that do (`step` the dilation).
pub(crate) fn inside(
    len: usize,
    count: usize,
    offset: usize,
    pad: usize,
    step: usize,
) -> std::ops::Range<usize> {
    let first = pad.saturating_sub(offset).div_ceil(step).min(count);
    let end = (pad + len)
        .saturating_sub(offset)
        .div_ceil(step)
        .clamp(first, count);
    first..end
}

/// The outputs `first..end` of a line whose tap at `offset = k·d` lands inside an axis of
/// length `len` (`pad_left ≤ o·s + offset < pad_left + len`, clipped to `out` outputs), and
/// `start`, the input index that output `first` reads.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: usize,
    end: usize,
    start: usize,
}

impl Span {
    fn new(len: usize, out: usize, offset: usize, pad_left: usize, stride: usize) -> Span {
        let std::ops::Range { start: first, end } = inside(len, out, offset, pad_left, stride);
        let start = (first * stride + offset).saturating_sub(pad_left);
        Span { first, end, start }
    }

    /// `dst[o] = src[start + (o − first)·s]` inside the span, zero outside it. Plain slices, so
    /// the copy is a `memcpy` when `s = 1`.
    fn gather<T: NdFloat>(self, dst: &mut [T], src: &[T], stride: usize) {
        let Span { first, end, start } = self;
        // Lines are short (a feature map's width) and a padding strip is a pixel or two: plain
        // loops, not calls to `memset` / `memcpy` that cost more than the copy.
        for d in &mut dst[..first] {
            *d = T::zero();
        }
        for d in &mut dst[end..] {
            *d = T::zero();
        }
        if first == end {
            // No tap inside: `start` may lie past the input.
        } else if stride == 1 {
            copy_short(&mut dst[first..end], &src[start..start + end - first]);
        } else {
            for (d, &v) in dst[first..end]
                .iter_mut()
                .zip(src[start..].iter().step_by(stride))
            {
                *d = v;
            }
        }
    }

    /// The adjoint of [`Span::gather`]: `dst[start + (o − first)·s] += src[o]` inside the span.
    fn scatter_add<T: NdFloat>(self, dst: &mut [T], src: &[T], stride: usize) {
        let Span { first, end, start } = self;
        if first == end {
            return;
        }
        if stride == 1 {
            // Plain slices of one length: the loop is vectorised.
            let n = end - first;
            for (d, &v) in dst[start..start + n].iter_mut().zip(&src[first..end]) {
                *d += v;
            }
            return;
        }
        for (d, &v) in dst[start..]
            .iter_mut()
            .step_by(stride)
            .zip(&src[first..end])
        {
            *d += v;
        }
    }
}

/// `dst.copy_from_slice(src)` for short slices: blocks of 8 elements (a pair of vector moves),
/// the last block overlapping the one before it instead of a loop over the remainder.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    const B: usize = 8;
    let n = dst.len();
    if n < B {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
        return;
    }
    let block = |dst: &mut [T], src: &[T], at: usize| {
        let d: &mut [T; B] = (&mut dst[at..at + B]).try_into().expect("B elements");
        let s: &[T; B] = src[at..at + B].try_into().expect("B elements");
        *d = *s;
    };
    let mut at = 0;
    while at + B <= n {
        block(dst, src, at);
        at += B;
    }
    if at < n {
        block(dst, src, n - B);
    }
}

/// 1-D im2col of one image `(C, L)` into `cols` `(C·K, L_out)`:
/// `cols[c·K + k, o] = x̃[c, o·s + k·d]`. `cols` must be in standard layout.
pub fn im2col_1d<T: NdFloat>(x: ArrayView2<T>, p: &Patches<1>, mut cols: ArrayViewMut2<T>) {
    let (k_len, l_out, l_in) = (p.kernel[0], p.output[0], p.input[0]);
    let signal = x.as_standard_layout();
    let signal = signal
        .as_slice()
        .expect("a standard-layout array is one slice");
    let cols = cols
        .as_slice_mut()
        .expect("im2col writes into standard-layout columns");
    if l_out == 0 || l_in == 0 {
        cols.fill(T::zero());
        return;
    }
    for (r, row) in cols.chunks_exact_mut(l_out).enumerate() {
        let (c, k) = (r / k_len, r % k_len);
        let src = &signal[c * l_in..(c + 1) * l_in];
        Span::new(l_in, l_out, k * p.dilation[0], p.pads[0].left, p.stride[0]).gather(
            row,
            src,
            p.stride[0],
        );
    }
}

/// 2-D im2col of one image `(C, H, W)` into `cols` `(C·kH·kW, H_out·W_out)`:
/// `cols[(c·kH + k_i)·kW + k_j, i·W_out + j] = x̃[c, i·s_h + k_i·d_h, j·s_w + k_j·d_w]`.
/// `cols` must be in standard layout (the fast kernels own it); `x` may have any strides.
pub fn im2col_2d<T: NdFloat>(x: ArrayView3<T>, p: &Patches<2>, mut cols: ArrayViewMut2<T>) {
    let ([kh, kw], [ho, wo], [h, w]) = (p.kernel, p.output, p.input);
    let top = p.pads[0].left;
    let ([s_h, s_w], d_h) = (p.stride, p.dilation[0]);
    let image = x.as_standard_layout();
    let image = image
        .as_slice()
        .expect("a standard-layout array is one slice");
    let cols = cols
        .as_slice_mut()
        .expect("im2col writes into standard-layout columns");
    if ho * wo == 0 {
        return;
    }
    // Which outputs of a line a column tap k_j reaches depends on k_j alone: work it out once.
    let spans = p.column_spans();
    for (r, row) in cols.chunks_exact_mut(ho * wo).enumerate() {
        let (c, k_i, k_j) = (r / (kh * kw), r / kw % kh, r % kw);
        for (i, line) in row.chunks_exact_mut(wo).enumerate() {
            match (i * s_h + k_i * d_h).checked_sub(top).filter(|&y| y < h) {
                Some(y) => {
                    spans[k_j].gather(line, &image[(c * h + y) * w..(c * h + y + 1) * w], s_w)
                }
                None => line.fill(T::zero()),
            }
        }
    }
}

/// col2im, the adjoint of [`im2col_2d`]: every entry of `cols` is added back to the pixel of
/// `x` `(C, H, W)` it was copied from (entries that came from padding are dropped). `x` must
/// be in standard layout.
pub fn col2im_2d<T: NdFloat>(cols: ArrayView2<T>, p: &Patches<2>, mut x: ArrayViewMut3<T>) {
    let ([kh, kw], [ho, wo], [h, w]) = (p.kernel, p.output, p.input);
    let top = p.pads[0].left;
    let ([s_h, s_w], d_h) = (p.stride, p.dilation[0]);
    let cols = cols.as_standard_layout();
    let cols = cols
        .as_slice()
        .expect("a standard-layout array is one slice");
    let image = x
        .as_slice_mut()
        .expect("col2im adds into a standard-layout image");
    if ho * wo == 0 {
        return;
    }
    let spans = p.column_spans();
    for (r, row) in cols.chunks_exact(ho * wo).enumerate() {
        let (c, k_i, k_j) = (r / (kh * kw), r / kw % kh, r % kw);
        for (i, line) in row.chunks_exact(wo).enumerate() {
            if let Some(y) = (i * s_h + k_i * d_h).checked_sub(top).filter(|&y| y < h) {
                let dst = &mut image[(c * h + y) * w..(c * h + y + 1) * w];
                spans[k_j].scatter_add(dst, line, s_w);
            }
        }
    }
}

fn check_no_groups(params: &Conv2dParams, op: &'static str) -> Result<()> {
    if params.groups != 1 {
        return Err(Error::param(
            "groups",
            format!("{op} has no groups; got groups = {}", params.groups),
        ));
    }
    Ok(())
}

/// Extract sliding windows, exactly as PyTorch's `torch.nn.functional.unfold`: input
/// `(N, C, H, W)` → columns `(N, C·kH·kW, L)` with `L = H_out·W_out` windows; column `l` of image
/// `n` is the window at output position `l`, flattened channel by channel, row by row.
pub fn unfold<T: NdFloat>(
    x: ArrayView4<T>,
    kernel: [usize; 2],
    params: Conv2dParams,
) -> Result<Array3<T>> {
    check_no_groups(&params, "unfold")?;
    let (n, c, h, w) = x.dim();
    let p = Patches::new([h, w], kernel, params)?;
    let mut cols = Array3::zeros((n, c * p.taps(), p.windows()));
    for (image, out) in x.outer_iter().zip(cols.outer_iter_mut()) {
        im2col_2d(image, &p, out);
    }
    Ok(cols)
}

/// Sum sliding windows back into an image, exactly as PyTorch's `torch.nn.functional.fold`:
/// columns `(N, C·kH·kW, L)` → `(N, C, H, W)` with `(H, W) = output_size`; where windows overlap,
/// their entries add. `fold` is the adjoint of [`unfold`]: `⟨unfold(x), y⟩ = ⟨x, fold(y)⟩`.
pub fn fold<T: NdFloat>(
    cols: ArrayView3<T>,
    output_size: [usize; 2],
    kernel: [usize; 2],
    params: Conv2dParams,
) -> Result<Array4<T>> {
    check_no_groups(&params, "fold")?;
    let (n, rows, l) = cols.dim();
    let p = Patches::new(output_size, kernel, params)?;
    if p.taps() == 0 || rows % p.taps() != 0 {
        return Err(Error::shape(
            "fold",
            format!(
                "columns have {rows} rows, expected a multiple of kH·kW = {}",
                p.taps()
            ),
        ));
    }
    if l != p.windows() {
        return Err(Error::shape(
            "fold",
            format!(
                "columns have {l} windows, but a {kernel:?} kernel over {output_size:?} with \
                 these stride, padding and dilation makes {} × {} = {}",
                p.output[0],
                p.output[1],
                p.windows()
            ),
        ));
    }
    let mut x = Array4::zeros((n, rows / p.taps(), output_size[0], output_size[1]));
    for (image_cols, image) in cols.outer_iter().zip(x.outer_iter_mut()) {
        col2im_2d(image_cols, &p, image);
    }
    Ok(x)
}

/// Backward of [`unfold`]: each column entry is a copy of one pixel (or of padding), so the
/// pixel's gradient is the sum of its copies' gradients — [`fold`] of the column gradient.
pub fn unfold_backward<T: NdFloat>(
    grad_cols: ArrayView3<T>,
    input_size: [usize; 2],
    kernel: [usize; 2],
    params: Conv2dParams,
) -> Result<Array4<T>> {
    fold(grad_cols, input_size, kernel, params)
}

/// Backward of [`fold`]: each output pixel is a sum of column entries, so every entry receives
/// its pixel's gradient — [`unfold`] of the output gradient.
pub fn fold_backward<T: NdFloat>(
    grad_out: ArrayView4<T>,
    kernel: [usize; 2],
    params: Conv2dParams,
) -> Result<Array3<T>> {
    unfold(grad_out, kernel, params)
}
