#![doc = include_str!("../chapters/02-output-size.md")]

use crate::error::{Error, Result};

/// How much zero padding goes on each side of an axis, as a rule or as a number.
///
/// `Valid`, `Same` and explicit numbers are PyTorch's choices (`padding='valid'`, `'same'`, `p`);
/// `KerasSame` is Keras/TensorFlow's `padding='same'`, which also works with a stride; `Full` pads
/// `dilation·(k − 1)` on both sides so that every partial overlap is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding: `p = 0`.
    Valid,
    /// PyTorch `'same'`: output length = input length; stride must be 1. The total
    /// `d·(k − 1)` is split `left = total / 2`, `right = total − left`.
    Same,
    /// Keras/TensorFlow `'same'`: output length `⌈n / s⌉` for any stride `s`; the total
    /// `max((out − 1)·s + d·(k − 1) + 1 − n, 0)` is split with the extra zero on the right.
    KerasSame,
    /// `p = d·(k − 1)` on both sides: every position where kernel and input overlap.
    Full,
    /// The same number of zeros on both sides.
    Explicit(usize),
}

impl Default for Padding {
    fn default() -> Self {
        Padding::Explicit(0)
    }
}

impl From<usize> for Padding {
    fn from(p: usize) -> Self {
        Padding::Explicit(p)
    }
}

/// Zeros added on the left and on the right of one axis, once a [`Padding`] rule is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pads {
    /// Zeros before the first element.
    pub left: usize,
    /// Zeros after the last element.
    pub right: usize,
}

impl Pads {
    /// `left + right`.
    pub fn total(self) -> usize {
        self.left + self.right
    }
}

fn positive(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::param(name, "must be at least 1, got 0"))
    } else {
        Ok(())
    }
}

/// The number of input elements one window covers: `d·(k − 1) + 1`.
///
/// Errors if `kernel` or `dilation` is 0.
pub fn effective_kernel(kernel: usize, dilation: usize) -> Result<usize> {
    positive("kernel size", kernel)?;
    positive("dilation", dilation)?;
    dilation
        .checked_mul(kernel - 1)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| {
            Error::param(
                "dilation",
                format!("kernel {kernel} with dilation {dilation} spans more than usize::MAX"),
            )
        })
}

/// `a + b`, or an error naming `what` when the sum does not fit in a `usize`.
fn add(a: usize, b: usize, what: &'static str) -> Result<usize> {
    a.checked_add(b)
        .ok_or_else(|| Error::param(what, format!("{a} + {b} overflows usize")))
}

impl Padding {
    /// The zeros this rule puts on each side of an axis of length `n` for a kernel of size `k`
    /// with the given stride and dilation.
    ///
    /// Errors on stride 0, dilation 0, kernel 0, and PyTorch `Same` with stride > 1.
    pub fn resolve(self, n: usize, k: usize, stride: usize, dilation: usize) -> Result<Pads> {
        positive("stride", stride)?;
        let span = effective_kernel(k, dilation)?;
        Ok(match self {
            Padding::Valid => Pads::default(),
            Padding::Explicit(p) => Pads { left: p, right: p },
            Padding::Full => Pads {
                left: span - 1,
                right: span - 1,
            },
            Padding::Same => {
                if stride != 1 {
                    return Err(Error::param(
                        "padding",
                        format!(
                            "PyTorch 'same' padding needs stride 1, got stride {stride} \
                             (use Padding::KerasSame for Keras/TensorFlow 'same' with a stride)"
                        ),
                    ));
                }
                split(span - 1)
            }
            Padding::KerasSame => {
                let out = n.div_ceil(stride);
                split(((out.max(1) - 1) * stride + span).saturating_sub(n))
            }
        })
    }
}

fn split(total: usize) -> Pads {
    Pads {
        left: total / 2,
        right: total - total / 2,
    }
}

/// Output length of a convolution (PyTorch's formula):
/// `L_out = ⌊(L_in + p_left + p_right − d·(k − 1) − 1) / s⌋ + 1`.
///
/// Errors if stride, dilation or kernel is 0, or if the dilated kernel spans more elements than
/// the padded input holds.
pub fn conv_output_len(
    n: usize,
    kernel: usize,
    stride: usize,
    pads: Pads,
    dilation: usize,
) -> Result<usize> {
    positive("stride", stride)?;
    let span = effective_kernel(kernel, dilation)?;
    let padded = add(add(n, pads.left, "padding")?, pads.right, "padding")?;
    if span > padded {
        return Err(Error::KernelTooLarge {
            kernel,
            dilation,
            span,
            padded,
        });
    }
    Ok((padded - span) / stride + 1)
}

/// Output length of a transposed convolution (PyTorch's `conv_transpose` formula):
/// `L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1`.
///
/// `output_padding` must be smaller than the stride or the dilation, and the result at least 1.
pub fn conv_transpose_output_len(
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    output_padding: usize,
) -> Result<usize> {
    positive("stride", stride)?;
    let span = effective_kernel(kernel, dilation)?;
    if output_padding >= stride.max(dilation) {
        return Err(Error::param(
            "output_padding",
            format!(
                "must be smaller than the stride ({stride}) or the dilation ({dilation}), \
                 got {output_padding}"
            ),
        ));
    }
    let full = n
        .saturating_sub(1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(span))
        .and_then(|v| v.checked_add(output_padding))
        .ok_or_else(|| Error::param("stride", "the output length overflows usize"))?;
    if n == 0 || full <= 2 * padding {
        return Err(Error::param(
            "padding",
            format!(
                "input length {n} with kernel {kernel}, stride {stride}, dilation {dilation} \
                 and output_padding {output_padding} gives output length {full} − 2·{padding} < 1"
            ),
        ));
    }
    Ok(full - 2 * padding)
}

/// Hyper-parameters of a 1-D pooling window, PyTorch's `max_pool1d` / `avg_pool1d` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolParams {
    /// Window length `k`.
    pub kernel: usize,
    /// Step between windows; `None` means `stride = kernel`, PyTorch's default.
    pub stride: Option<usize>,
    /// Implicit padding on both sides; at most `kernel / 2`. Padding never wins a max.
    pub padding: usize,
    /// Spacing between the elements of a window (max pooling only; 1 for average pooling).
    pub dilation: usize,
    /// Round the output length up instead of down, as long as the last window starts inside the
    /// input or the left padding.
    pub ceil_mode: bool,
}

impl PoolParams {
    /// A window of `kernel` elements with stride = kernel, no padding, no dilation, floor mode.
    pub fn new(kernel: usize) -> Self {
        PoolParams {
            kernel,
            stride: None,
            padding: 0,
            dilation: 1,
            ceil_mode: false,
        }
    }
    /// Set the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = Some(stride);
        self
    }
    /// Set the padding on both sides.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }
    /// Set the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }
    /// Round the output length up.
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Output length of pooling an axis of length `n`, exactly as PyTorch computes it:
    /// `L_out = ⌊(n + 2p − d·(k − 1) − 1 [+ s − 1 in ceil mode]) / s⌋ + 1`, less one in ceil
    /// mode when the last window would start at or past `n + p`.
    ///
    /// Errors on kernel, stride or dilation 0, padding above `kernel / 2`, and an output shorter
    /// than 1.
    pub fn output_len(&self, n: usize) -> Result<usize> {
        let (k, p, d) = (self.kernel, self.padding, self.dilation);
        let s = self.stride.unwrap_or(k);
        positive("stride", s)?;
        let span = effective_kernel(k, d)?;
        if p > k / 2 {
            return Err(Error::param(
                "padding",
                format!(
                    "pooling padding must be at most half the kernel size: \
                     got padding {p} with kernel {k} (at most {})",
                    k / 2
                ),
            ));
        }
        // PyTorch's arithmetic, signed: in ceil mode a window may start in the input and hang
        // past its padded end, so the numerator can be negative.
        let round_up = if self.ceil_mode { s - 1 } else { 0 };
        let numerator = n as i128 + 2 * p as i128 + round_up as i128 - span as i128;
        let mut out = numerator.div_euclid(s as i128) + 1;
        if self.ceil_mode && (out - 1) * s as i128 >= n as i128 + p as i128 {
            out -= 1;
        }
        if out < 1 {
            return Err(Error::param(
                "kernel size",
                format!(
                    "pooling a length of {n} with kernel {k}, dilation {d}, padding {p} \
                     and stride {s} leaves no output (the window spans {span})"
                ),
            ));
        }
        Ok(out as usize)
    }
}

/// Hyper-parameters of pooling over `D` spatial axes, PyTorch's `max_pool2d` / `avg_pool2d`
/// arguments (one value per axis), plus Keras's `'same'` padding.
///
/// ```
/// use convlab::shape::{Pool2dParams, Padding};
/// let p = Pool2dParams::new([2, 2]);
/// assert_eq!(p.output_size([28, 28]).unwrap(), [14, 14]);
/// // Keras 'same': ⌈n/s⌉ windows, the padding they need placed by TensorFlow's rule.
/// let keras = Pool2dParams::new([2, 2]).padding(Padding::KerasSame);
/// assert_eq!(keras.output_size([4, 3]).unwrap(), [2, 2]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolNdParams<const D: usize> {
    /// Window size per axis.
    pub kernel: [usize; D],
    /// Step per axis; `None` means the window size (no overlap), PyTorch's default.
    pub strides: Option<[usize; D]>,
    /// Padding per axis: `Explicit(p)` (PyTorch: at most half the window, never part of a max),
    /// `Valid`, or `KerasSame`.
    pub paddings: [Padding; D],
    /// Spacing between window elements per axis (max pooling only).
    pub dilations: [usize; D],
    /// Round the output size up (PyTorch's rule; see [`PoolParams::output_len`]).
    pub ceil_mode: bool,
    /// Average pooling: count padding zeros in the divisor (PyTorch's default, `true`).
    pub count_include_pad: bool,
    /// Average pooling: divide by this instead of the window size.
    pub divisor_override: Option<usize>,
}

/// Pooling parameters of a 1-D signal `(N, C, L)`.
pub type Pool1dParams = PoolNdParams<1>;
/// Pooling parameters of images `(N, C, H, W)`.
pub type Pool2dParams = PoolNdParams<2>;

impl<const D: usize> PoolNdParams<D> {
    /// Windows of size `kernel`, stride = kernel, no padding or dilation, floor mode, padding
    /// counted in averages.
    pub fn new(kernel: [usize; D]) -> Self {
        PoolNdParams {
            kernel,
            strides: None,
            paddings: [Padding::Explicit(0); D],
            dilations: [1; D],
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }
    /// The same stride on every axis.
    pub fn stride(mut self, stride: usize) -> Self {
        self.strides = Some([stride; D]);
        self
    }
    /// One stride per axis.
    pub fn strides(mut self, strides: [usize; D]) -> Self {
        self.strides = Some(strides);
        self
    }
    /// The same padding on every axis.
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.paddings = [padding.into(); D];
        self
    }
    /// One padding per axis.
    pub fn paddings(mut self, paddings: [Padding; D]) -> Self {
        self.paddings = paddings;
        self
    }
    /// The same dilation on every axis.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilations = [dilation; D];
        self
    }
    /// One dilation per axis.
    pub fn dilations(mut self, dilations: [usize; D]) -> Self {
        self.dilations = dilations;
        self
    }
    /// Round output sizes up.
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
    /// Whether averages count the padding.
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }
    /// Divide averages by this number.
    pub fn divisor_override(mut self, divisor: usize) -> Self {
        self.divisor_override = Some(divisor);
        self
    }

    /// The stride of axis `i` (the window size when unset).
    pub fn stride_of(&self, i: usize) -> usize {
        self.strides.map_or(self.kernel[i], |s| s[i])
    }

    /// Zeros before and after axis `i` of an input of size `n`, and the number of windows.
    pub fn axis(&self, i: usize, n: usize) -> Result<(Pads, usize)> {
        let (k, s, d) = (self.kernel[i], self.stride_of(i), self.dilations[i]);
        match self.paddings[i] {
            Padding::Explicit(p) => {
                let params = PoolParams {
                    kernel: k,
                    stride: Some(s),
                    padding: p,
                    dilation: d,
                    ceil_mode: self.ceil_mode,
                };
                Ok((Pads { left: p, right: p }, params.output_len(n)?))
            }
            Padding::Valid => {
                let params = PoolParams::new(k)
                    .stride(s)
                    .dilation(d)
                    .ceil_mode(self.ceil_mode);
                Ok((Pads::default(), params.output_len(n)?))
            }
            Padding::KerasSame => {
                if n == 0 {
                    return Err(Error::EmptyInput {
                        op: "pooling",
                        what: "input",
                    });
                }
                let pads = Padding::KerasSame.resolve(n, k, s, d)?;
                Ok((pads, n.div_ceil(s)))
            }
            other => Err(Error::param(
                "padding",
                format!("pooling takes a number of zeros, Valid or KerasSame, not {other:?}"),
            )),
        }
    }

    /// The number of windows along every axis of an input of size `input`.
    pub fn output_size(&self, input: [usize; D]) -> Result<[usize; D]> {
        let mut out = [0; D];
        for i in 0..D {
            out[i] = self.axis(i, input[i])?.1;
        }
        Ok(out)
    }
}

impl PoolNdParams<1> {
    /// The same pooling as 2-D parameters for maps of height 1 (a 1-row window, no padding,
    /// stride or dilation along the height): how the 1-D pooling functions run.
    pub fn as_2d(&self) -> Pool2dParams {
        Pool2dParams {
            kernel: [1, self.kernel[0]],
            strides: Some([1, self.stride_of(0)]),
            paddings: [Padding::Explicit(0), self.paddings[0]],
            dilations: [1, self.dilations[0]],
            ceil_mode: self.ceil_mode,
            count_include_pad: self.count_include_pad,
            divisor_override: self.divisor_override,
        }
    }
}

/// The bins of adaptive pooling along one axis of length `n` cut into `out` bins: bin `i` covers
/// `⌊i·n/out⌋ .. ⌈(i+1)·n/out⌉` (neighbouring bins may overlap), exactly as PyTorch.
pub fn adaptive_bin(i: usize, n: usize, out: usize) -> (usize, usize) {
    ((i * n) / out, ((i + 1) * n).div_ceil(out))
}

/// Hyper-parameters of a convolution along one axis: PyTorch's `conv1d` arguments, and those of
/// each axis of a square 2-D layer.
///
/// ```
/// use convlab::shape::{ConvParams, Padding};
/// let p = ConvParams::default().stride(2).padding(3).dilation(1);
/// assert_eq!(p.output_len(1000, 7).unwrap(), 500);
/// assert_eq!(ConvParams::default().padding(Padding::Same).output_len(10, 4).unwrap(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Step `s` between output positions.
    pub stride: usize,
    /// Zero padding `p` (a number or a rule).
    pub padding: Padding,
    /// Spacing `d` between kernel taps.
    pub dilation: usize,
    /// Channel groups: each group of `C_in / groups` input channels feeds `C_out / groups`
    /// output channels.
    pub groups: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        ConvParams {
            stride: 1,
            padding: Padding::Explicit(0),
            dilation: 1,
            groups: 1,
        }
    }
}

impl ConvParams {
    /// Set the stride `s`.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
    /// Set the padding: a number of zeros per side or a [`Padding`] rule.
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.padding = padding.into();
        self
    }
    /// Set the dilation `d`.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }
    /// Set the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// The zeros on each side for an input of length `n` and a kernel of size `k`.
    pub fn pads(&self, n: usize, k: usize) -> Result<Pads> {
        self.padding.resolve(n, k, self.stride, self.dilation)
    }

    /// Output length for an input of length `n` and a kernel of size `k`.
    pub fn output_len(&self, n: usize, k: usize) -> Result<usize> {
        conv_output_len(n, k, self.stride, self.pads(n, k)?, self.dilation)
    }
}

/// Hyper-parameters of a convolution over `D` spatial axes (PyTorch's `conv2d` / `conv3d`
/// arguments), one value per axis: `Conv2dParams` for `(H, W)`, `Conv3dParams` for `(D, H, W)`.
///
/// ```
/// use convlab::shape::{Conv2dParams, Padding};
/// // stride 2 on both axes, 'same'-Keras padding on rows and one zero on each side of columns.
/// let p = Conv2dParams::default().stride(2).paddings([Padding::KerasSame, Padding::Explicit(1)]);
/// assert_eq!(p.strides, [2, 2]);
/// assert_eq!(p.axis(0).output_len(7, 3).unwrap(), 4);
/// assert_eq!(p.axis(1).output_len(7, 3).unwrap(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvNdParams<const D: usize> {
    /// Stride per axis.
    pub strides: [usize; D],
    /// Padding per axis.
    pub paddings: [Padding; D],
    /// Dilation per axis.
    pub dilations: [usize; D],
    /// Channel groups (see [`ConvParams::groups`]).
    pub groups: usize,
}

/// Parameters of a 2-D convolution, per axis `(H, W)`.
pub type Conv2dParams = ConvNdParams<2>;
/// Parameters of a 3-D convolution, per axis `(D, H, W)`.
pub type Conv3dParams = ConvNdParams<3>;

impl<const D: usize> Default for ConvNdParams<D> {
    fn default() -> Self {
        ConvParams::default().into()
    }
}

/// The same stride, padding and dilation on every axis.
impl<const D: usize> From<ConvParams> for ConvNdParams<D> {
    fn from(p: ConvParams) -> Self {
        ConvNdParams {
            strides: [p.stride; D],
            paddings: [p.padding; D],
            dilations: [p.dilation; D],
            groups: p.groups,
        }
    }
}

impl<const D: usize> ConvNdParams<D> {
    /// The same stride on every axis.
    pub fn stride(mut self, stride: usize) -> Self {
        self.strides = [stride; D];
        self
    }
    /// One stride per axis.
    pub fn strides(mut self, strides: [usize; D]) -> Self {
        self.strides = strides;
        self
    }
    /// The same padding on every axis: a number of zeros per side or a [`Padding`] rule.
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.paddings = [padding.into(); D];
        self
    }
    /// One padding per axis.
    pub fn paddings(mut self, paddings: [Padding; D]) -> Self {
        self.paddings = paddings;
        self
    }
    /// The same dilation on every axis.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilations = [dilation; D];
        self
    }
    /// One dilation per axis.
    pub fn dilations(mut self, dilations: [usize; D]) -> Self {
        self.dilations = dilations;
        self
    }
    /// Set the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// The 1-D parameters of axis `i` (groups included).
    pub fn axis(&self, i: usize) -> ConvParams {
        ConvParams {
            stride: self.strides[i],
            padding: self.paddings[i],
            dilation: self.dilations[i],
            groups: self.groups,
        }
    }
}

/// Every size of a convolution call over `D` spatial axes, checked: input
/// `(N, C_in, *input)`, weight `(C_out, C_in / groups, *kernel)`, output `(N, C_out, *output)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry<const D: usize> {
    /// Batch size `N`.
    pub batch: usize,
    /// Input channels `C_in`.
    pub c_in: usize,
    /// Output channels `C_out`.
    pub c_out: usize,
    /// Number of groups.
    pub groups: usize,
    /// Input size per spatial axis.
    pub input: [usize; D],
    /// Kernel size per spatial axis.
    pub kernel: [usize; D],
    /// Output size per spatial axis.
    pub output: [usize; D],
    /// Zeros before and after the input, per axis.
    pub pads: [Pads; D],
    /// Stride per axis.
    pub stride: [usize; D],
    /// Dilation per axis.
    pub dilation: [usize; D],
}

/// The geometry of `conv1d`: input `(N, C_in, L_in)`, weight `(C_out, C_in / groups, K)`.
pub type Conv1dGeometry = ConvGeometry<1>;

impl ConvGeometry<2> {
    /// [`ConvGeometry::new`] for `conv2d`, from the dimensions of the input `(N, C_in, H, W)` and
    /// of the weight `(C_out, C_in / groups, kH, kW)`.
    pub fn conv2d(
        input: (usize, usize, usize, usize),
        weight: (usize, usize, usize, usize),
        bias_len: Option<usize>,
        params: impl Into<ConvNdParams<2>>,
    ) -> Result<Self> {
        let ((n, c_in, h, w), (c_out, c_in_per_group, kh, kw)) = (input, weight);
        Self::new(
            (n, c_in, [h, w]),
            (c_out, c_in_per_group, [kh, kw]),
            bias_len,
            params,
        )
    }
}

impl<const D: usize> ConvGeometry<D> {
    /// Check the shapes of a convolution call the way PyTorch does and compute the output size.
    /// `input` is `(N, C_in, spatial sizes)`, `weight` is `(C_out, C_in / groups, kernel sizes)`.
    pub fn new(
        input: (usize, usize, [usize; D]),
        weight: (usize, usize, [usize; D]),
        bias_len: Option<usize>,
        params: impl Into<ConvNdParams<D>>,
    ) -> Result<Self> {
        let params = params.into();
        let op = match D {
            1 => "conv1d",
            2 => "conv2d",
            _ => "conv3d",
        };
        let (batch, c_in, sizes) = input;
        let (c_out, c_in_per_group, kernel) = weight;
        let groups = params.groups;
        positive("groups", groups)?;
        if c_out == 0 {
            return Err(Error::shape(
                op,
                format!("weight {weight:?} has no output channels; expected C_out ≥ 1"),
            ));
        }
        if c_out % groups != 0 {
            return Err(Error::shape(
                op,
                format!(
                    "groups = {groups} must divide the output channels, \
                     but weight {weight:?} has C_out = {c_out}"
                ),
            ));
        }
        if c_in_per_group * groups != c_in {
            return Err(Error::shape(
                op,
                format!(
                    "weight {weight:?} with groups = {groups} expects input with \
                     {} channels, but input {input:?} has {c_in}",
                    c_in_per_group * groups
                ),
            ));
        }
        if let Some(len) = bias_len.filter(|&len| len != c_out) {
            return Err(Error::shape(
                op,
                format!("bias has {len} elements, expected C_out = {c_out}"),
            ));
        }
        let mut pads = [Pads::default(); D];
        let mut output = [0; D];
        for i in 0..D {
            let axis = params.axis(i);
            pads[i] = axis.pads(sizes[i], kernel[i])?;
            output[i] = conv_output_len(sizes[i], kernel[i], axis.stride, pads[i], axis.dilation)?;
        }
        if sizes.contains(&0) && batch > 0 && c_in > 0 {
            return Err(Error::EmptyInput {
                op,
                what: "spatial size (with N > 0 and C_in > 0)",
            });
        }
        Ok(ConvGeometry {
            batch,
            c_in,
            c_out,
            groups,
            input: sizes,
            kernel,
            output,
            pads,
            stride: params.strides,
            dilation: params.dilations,
        })
    }
}

/// Which part of the full convolution a signal-processing call returns (NumPy's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every position where the two sequences overlap: length `n + m − 1`.
    #[default]
    Full,
    /// Centred on the full result, as long as the longer input: length `max(n, m)`.
    Same,
    /// Only positions of full overlap: length `max(n, m) − min(n, m) + 1`.
    Valid,
}

/// Parameters of a signal-processing `convolve` / `correlate`: NumPy's `mode`, plus the course's
/// stride `s` (keep every `s`-th output, starting with the first) and dilation `d` (`d − 1` zeros
/// between kernel taps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalParams {
    /// Which part of the full result to keep.
    pub mode: Mode,
    /// Keep outputs `0, s, 2s, …` of that part.
    pub stride: usize,
    /// Spacing between kernel taps.
    pub dilation: usize,
}

impl From<Mode> for SignalParams {
    fn from(mode: Mode) -> Self {
        SignalParams {
            mode,
            stride: 1,
            dilation: 1,
        }
    }
}

impl Mode {
    /// These parameters with stride `s`.
    pub fn stride(self, stride: usize) -> SignalParams {
        SignalParams::from(self).stride(stride)
    }
    /// These parameters with dilation `d`.
    pub fn dilation(self, dilation: usize) -> SignalParams {
        SignalParams::from(self).dilation(dilation)
    }
}

impl SignalParams {
    /// Set the stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }
    /// Set the dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        self
    }
}

/// Whether the kernel is flipped (true convolution) or not (cross-correlation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalOp {
    /// `y = x * w`, the kernel flipped: NumPy's `convolve`.
    Convolve,
    /// `y = x ⋆ w`, the kernel as is: NumPy's `correlate`.
    Correlate,
}

/// Where the outputs of a signal convolution start and how many there are: output `i` reads the
/// input from position `i·s − pad_left` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalFrame {
    /// Zeros before the signal.
    pub pad_left: usize,
    /// Number of outputs.
    pub len: usize,
}

impl SignalParams {
    /// The frame of `convolve` / `correlate` of a signal of length `n` with a kernel of length
    /// `m`, exactly where NumPy puts it; `m` may exceed `n` (NumPy then swaps the two).
    ///
    /// In 'same' mode NumPy centres the output on the full result: for `convolve` and for
    /// `correlate` with the kernel no longer than the signal, `⌊(m' − 1)/2⌋` outputs of the full
    /// result are dropped on the left (`m'` = the shorter of signal and dilated kernel); for
    /// `correlate` with a longer kernel, NumPy reverses the roles and drops `⌊m'/2⌋`.
    pub fn frame(&self, n: usize, m: usize, op: SignalOp) -> Result<SignalFrame> {
        if n == 0 {
            return Err(Error::EmptyInput {
                op: "convolve/correlate",
                what: "signal",
            });
        }
        if m == 0 {
            return Err(Error::EmptyInput {
                op: "convolve/correlate",
                what: "kernel",
            });
        }
        positive("stride", self.stride)?;
        let span = effective_kernel(m, self.dilation)?;
        let (long, short) = (n.max(span), n.min(span));
        let (offset, len) = match self.mode {
            Mode::Full => (0, add(n, span - 1, "dilation")?),
            Mode::Valid => (short - 1, long - short + 1),
            Mode::Same => {
                let dropped = match op {
                    SignalOp::Correlate if span > n => short / 2,
                    _ => (short - 1) / 2,
                };
                (dropped, long)
            }
        };
        Ok(SignalFrame {
            pad_left: span - 1 - offset,
            len: (len - 1) / self.stride + 1,
        })
    }
}

impl SignalFrame {
    /// The frame along one axis of SciPy's `convolve2d` / `correlate2d` (zero fill) of an input
    /// of size `n` with a kernel of size `m`: 'full' keeps `n + m − 1` outputs, 'same' keeps `n`
    /// (the first input's size) centred on the full result — `⌊(m − 1)/2⌋` full outputs dropped on
    /// the left for `convolve2d`, `⌊m/2⌋` for `correlate2d` — and 'valid' keeps
    /// `max(n, m) − min(n, m) + 1`. Output `i` reads the input from `i − pad_left` on.
    pub fn scipy(n: usize, m: usize, mode: Mode, op: SignalOp) -> Result<SignalFrame> {
        if n == 0 || m == 0 {
            return Err(Error::EmptyInput {
                op: "convolve2d/correlate2d",
                what: "input and kernel",
            });
        }
        let (offset, len) = match mode {
            Mode::Full => (0, n + m - 1),
            Mode::Valid => (n.min(m) - 1, n.max(m) - n.min(m) + 1),
            Mode::Same => match op {
                SignalOp::Convolve => ((m - 1) / 2, n),
                SignalOp::Correlate => (m / 2, n),
            },
        };
        Ok(SignalFrame {
            pad_left: m - 1 - offset,
            len,
        })
    }
}

impl SignalFrame {
    /// The frames of both axes of a SciPy 2-D call on an input of shape `x` with a kernel of
    /// shape `w`, with SciPy's rule that in 'valid' mode one of the two must be at least as large
    /// as the other along every axis.
    pub fn scipy_2d(
        x: (usize, usize),
        w: (usize, usize),
        mode: Mode,
        op: SignalOp,
    ) -> Result<[SignalFrame; 2]> {
        if mode == Mode::Valid && !((x.0 >= w.0 && x.1 >= w.1) || (x.0 <= w.0 && x.1 <= w.1)) {
            return Err(Error::shape(
                "convolve2d/correlate2d",
                format!(
                    "in 'valid' mode one input must be at least as large as the other along \
                     every axis, got {x:?} and {w:?}"
                ),
            ));
        }
        Ok([
            SignalFrame::scipy(x.0, w.0, mode, op)?,
            SignalFrame::scipy(x.1, w.1, mode, op)?,
        ])
    }
}

/// One layer's geometry along one axis, for receptive-field arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Kernel size `k`.
    pub kernel: usize,
    /// Stride `s`.
    pub stride: usize,
    /// Dilation `d`.
    pub dilation: usize,
}

/// Receptive field of one unit after a stack of layers, along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// `r`: how many input elements one output unit sees.
    pub size: usize,
    /// `j`: how far apart in the input two neighbouring output units are.
    pub jump: usize,
}

impl Field {
    /// The input itself: each unit sees one element, neighbours are one apart.
    pub const INPUT: Field = Field { size: 1, jump: 1 };

    /// The field after one more layer: `r' = r + d·(k − 1)·j`, `j' = j·s`.
    pub fn then(self, layer: Window) -> Result<Field> {
        positive("stride", layer.stride)?;
        let span = effective_kernel(layer.kernel, layer.dilation)?;
        Ok(Field {
            size: self.size + (span - 1) * self.jump,
            jump: self.jump * layer.stride,
        })
    }
}

/// Receptive field and jump after each layer of a stack, along one axis.
pub fn receptive_fields(layers: &[Window]) -> Result<Vec<Field>> {
    let mut field = Field::INPUT;
    layers
        .iter()
        .map(|&layer| {
            field = field.then(layer)?;
            Ok(field)
        })
        .collect()
}
