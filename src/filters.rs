#![doc = include_str!("../chapters/12-image-kernels.md")]

pub mod io;

pub use io::{
    encode_png_gray, encode_png_rgb, grayscale, luma, read_png_gray, read_png_rgb, sample_photo,
    sample_photo_gray, write_png_gray, write_png_rgb,
};

use ndarray::{Array2, ArrayView2};

use crate::conv2d::{convolve2d, correlate2d};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::shape::{Mode, SignalOp};

/// Leaves every pixel as it is: the only weight, 1, sits on the centre.
pub const IDENTITY: [[f64; 3]; 3] = [[0., 0., 0.], [0., 1., 0.], [0., 0., 0.]];

/// Edge detection, the course's first kernel: four times the mixed second derivative
/// `∂²/∂i∂j`. It ignores purely horizontal and purely vertical edges and answers diagonal
/// edges and corners.
pub const EDGES_DIAGONAL: [[f64; 3]; 3] = [[1., 0., -1.], [0., 0., 0.], [-1., 0., 1.]];

/// Edge detection, the course's second kernel: the discrete Laplacian over the four nearest
/// neighbours, `∂²/∂i² + ∂²/∂j²`.
pub const EDGES_LAPLACE_4: [[f64; 3]; 3] = [[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]];

/// Edge detection, the course's third kernel: minus the Laplacian over all eight neighbours
/// (its centre is positive, unlike [`EDGES_LAPLACE_4`]'s).
pub const EDGES_LAPLACE_8: [[f64; 3]; 3] = [[-1., -1., -1.], [-1., 8., -1.], [-1., -1., -1.]];

/// Sharpen: the identity minus the four-neighbour Laplacian, `IDENTITY − EDGES_LAPLACE_4`.
pub const SHARPEN: [[f64; 3]; 3] = [[0., -1., 0.], [-1., 5., -1.], [0., -1., 0.]];

/// Box blur: the mean of the 3 × 3 neighbourhood.
pub const BOX_BLUR: [[f64; 3]; 3] = [[1. / 9.; 3]; 3];

/// Gaussian blur 3 × 3: the binomial weights `[1, 2, 1] / 4` along each axis, `/16` in all.
pub const GAUSSIAN_BLUR_3: [[f64; 3]; 3] = [
    [1. / 16., 2. / 16., 1. / 16.],
    [2. / 16., 4. / 16., 2. / 16.],
    [1. / 16., 2. / 16., 1. / 16.],
];

/// Gaussian blur 5 × 5: the binomial weights `[1, 4, 6, 4, 1] / 16` along each axis, `/256`
/// in all.
pub const GAUSSIAN_BLUR_5: [[f64; 5]; 5] = binomial_5x5(1.0 / 256.0, 36.0);

/// Unsharp masking 5 × 5: `−1/256` times the Gaussian 5 × 5 weights with `−476` in the centre,
/// which is `2·IDENTITY − GAUSSIAN_BLUR_5` — the image plus (the image minus its blur).
pub const UNSHARP_MASKING_5: [[f64; 5]; 5] = binomial_5x5(-1.0 / 256.0, -476.0);

/// Emboss: weights that grow from the top-left corner to the bottom-right one, plus the pixel
/// itself in the centre, so the image keeps its brightness and its edges look raised.
pub const EMBOSS: [[f64; 3]; 3] = [[-2., -1., 0.], [-1., 1., 1.], [0., 1., 2.]];

/// Sobel x: the horizontal derivative `∂/∂j`, a central difference `[−1, 0, 1]` along the row
/// smoothed by `[1, 2, 1]` down the column (as correlation; it gives `8·a` on the ramp
/// `a·j`).
pub const SOBEL_X: [[f64; 3]; 3] = [[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]];

/// Sobel y: the vertical derivative `∂/∂i`, the transpose of [`SOBEL_X`].
pub const SOBEL_Y: [[f64; 3]; 3] = [[-1., -2., -1.], [0., 0., 0.], [1., 2., 1.]];

/// `scale` times the outer product of `[1, 4, 6, 4, 1]` with itself, with `centre` in place of
/// the middle 36.
const fn binomial_5x5(scale: f64, centre: f64) -> [[f64; 5]; 5] {
    let b = [1.0, 4.0, 6.0, 4.0, 1.0];
    let mut k = [[0.0; 5]; 5];
    let mut i = 0;
    while i < 5 {
        let mut j = 0;
        while j < 5 {
            k[i][j] = scale
                * if i == 2 && j == 2 {
                    centre
                } else {
                    b[i] * b[j]
                };
            j += 1;
        }
        i += 1;
    }
    k
}

/// A square kernel with its names, for lists, figures and the command line. It is built from a
/// `[[f64; N]; N]` array, so its weights always fill `N × N`.
///
/// ```
/// use convlab::filters::NamedKernel;
///
/// const RIDGE: [[f64; 3]; 3] = [[-1., -1., -1.], [2., 2., 2.], [-1., -1., -1.]];
/// const MINE: NamedKernel = NamedKernel::new("Horizontal ridge", "Cresta horizontal", &RIDGE);
/// assert_eq!((MINE.size(), MINE.sum()), (3, 0.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamedKernel {
    name: &'static str,
    spanish: &'static str,
    size: usize,
    weights: &'static [f64],
}

impl NamedKernel {
    /// A kernel named `name` (in English, as figures label it) and `spanish` (as the course's
    /// notes call it), with the weights of `weights`.
    pub const fn new<const N: usize>(
        name: &'static str,
        spanish: &'static str,
        weights: &'static [[f64; N]; N],
    ) -> Self {
        NamedKernel {
            name,
            spanish,
            size: N,
            weights: weights.as_flattened(),
        }
    }

    /// Its English name, as figures label it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its name in the course's notes.
    pub fn spanish(&self) -> &'static str {
        self.spanish
    }

    /// Side length: the kernel is `size × size`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The `size²` weights, row by row.
    pub fn weights(&self) -> &'static [f64] {
        self.weights
    }

    /// The weights as a `size × size` array.
    pub fn array(&self) -> Array2<f64> {
        Array2::from_shape_fn((self.size, self.size), |(i, j)| {
            self.weights[i * self.size + j]
        })
    }

    /// The sum of the weights: what the kernel does to a region of constant brightness.
    pub fn sum(&self) -> f64 {
        self.weights.iter().sum()
    }

    /// How to show this kernel's output: [`Display::AbsStretched`] for a kernel whose weights
    /// sum to 0 (an edge detector, whose output is signed and mostly near 0), [`Display::Clip`]
    /// otherwise.
    pub fn display(&self) -> Display {
        if self.sum().abs() < 1e-9 {
            Display::AbsStretched
        } else {
            Display::Clip
        }
    }
}

/// Every kernel of the chapter with its names, in the order the montage shows them.
pub const KERNELS: [NamedKernel; 12] = [
    NamedKernel::new("Identity", "Identidad", &IDENTITY),
    NamedKernel::new("Edges (diagonal)", "Detección de bordes", &EDGES_DIAGONAL),
    NamedKernel::new("Edges (Laplace 4)", "Detección de bordes", &EDGES_LAPLACE_4),
    NamedKernel::new("Edges (Laplace 8)", "Detección de bordes", &EDGES_LAPLACE_8),
    NamedKernel::new("Sobel x", "Sobel x", &SOBEL_X),
    NamedKernel::new("Sobel y", "Sobel y", &SOBEL_Y),
    NamedKernel::new("Sharpen", "Afilado", &SHARPEN),
    NamedKernel::new("Unsharp masking 5×5", "Enfoque", &UNSHARP_MASKING_5),
    NamedKernel::new("Emboss", "Repujado (emboss)", &EMBOSS),
    NamedKernel::new("Box blur", "Difuminado", &BOX_BLUR),
    NamedKernel::new(
        "Gaussian blur 3×3",
        "Desenfoque gaussiano 3x3",
        &GAUSSIAN_BLUR_3,
    ),
    NamedKernel::new(
        "Gaussian blur 5×5",
        "Desenfoque gaussiano 5x5",
        &GAUSSIAN_BLUR_5,
    ),
];

/// What the image is taken to hold outside its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Border {
    /// Zeros (black): SciPy's `signal.correlate2d(..., mode='same', boundary='fill')`, the
    /// course's rule. A blur darkens the border, an edge detector finds an edge all around.
    #[default]
    Zero,
    /// The nearest pixel of the image repeated: `scipy.ndimage.correlate(..., mode='nearest')`,
    /// OpenCV's `BORDER_REPLICATE`. A region of constant brightness stays constant up to the
    /// frame.
    Replicate,
}

/// How a kernel is applied: correlated or convolved, and what lies beyond the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterParams {
    /// [`SignalOp::Correlate`] (the default: the kernel as written, as image libraries and CNN
    /// layers apply it) or [`SignalOp::Convolve`] (the kernel flipped along both axes).
    pub op: SignalOp,
    /// What the image holds outside its frame.
    pub border: Border,
}

impl Default for FilterParams {
    fn default() -> Self {
        FilterParams {
            op: SignalOp::Correlate,
            border: Border::Zero,
        }
    }
}

impl FilterParams {
    /// Convolve instead of correlate: the kernel flipped along both axes.
    pub fn convolve(self) -> Self {
        FilterParams {
            op: SignalOp::Convolve,
            ..self
        }
    }

    /// Use `border` beyond the image's frame.
    pub fn border(self, border: Border) -> Self {
        FilterParams { border, ..self }
    }
}

/// `image` with `p_h` rows and `p_w` columns added on each side, copies of the nearest pixel.
fn pad_replicate<T: Scalar>(image: ArrayView2<T>, p_h: usize, p_w: usize) -> Array2<T> {
    let (h, w) = image.dim();
    Array2::from_shape_fn((h + 2 * p_h, w + 2 * p_w), |(i, j)| {
        image[[
            i.saturating_sub(p_h).min(h - 1),
            j.saturating_sub(p_w).min(w - 1),
        ]]
    })
}

/// Apply `kernel` to `image`, centred on every pixel: an output of the image's size,
///
/// `y[i, j] = Σ_{k_i} Σ_{k_j} x̃[i + k_i − r_h, j + k_j − r_w] · w[k_i, k_j]`
///
/// for correlation (the default), with `r_h = (kH − 1)/2`, `r_w = (kW − 1)/2` the kernel's
/// radii and `x̃` the image extended beyond its frame by `params.border`; convolution reads
/// `w[kH − 1 − k_i, kW − 1 − k_j]` instead. The work is done by [`correlate2d`] /
/// [`convolve2d`] of chapter 3: in 'same' mode for [`Border::Zero`], in 'valid' mode on the
/// replicated image for [`Border::Replicate`].
///
/// Fails when the image is empty or a side of the kernel is even (it has no centre).
pub fn apply_kernel<T: Scalar>(
    image: ArrayView2<T>,
    kernel: ArrayView2<T>,
    params: FilterParams,
) -> Result<Array2<T>> {
    let ((h, w), (kh, kw)) = (image.dim(), kernel.dim());
    if h == 0 || w == 0 {
        return Err(Error::param(
            "image",
            format!("{h} × {w}: needs at least one pixel"),
        ));
    }
    if kh % 2 == 0 || kw % 2 == 0 {
        return Err(Error::param(
            "kernel",
            format!("{kh} × {kw}: both sides must be odd, so that the kernel has a centre pixel"),
        ));
    }
    let op = match params.op {
        SignalOp::Correlate => correlate2d::<T>,
        SignalOp::Convolve => convolve2d::<T>,
    };
    match params.border {
        Border::Zero => op(image, kernel, Mode::Same),
        Border::Replicate => {
            let padded = pad_replicate(image, kh / 2, kw / 2);
            op(padded.view(), kernel, Mode::Valid)
        }
    }
}

/// Apply a named kernel to an 8-bit gray image and map the result to bytes for display with
/// the kernel's own [`NamedKernel::display`] rule.
pub fn filter_for_display(
    image: ArrayView2<u8>,
    kernel: &NamedKernel,
    border: Border,
) -> Result<Array2<u8>> {
    let x = image.mapv(f64::from);
    let y = apply_kernel(
        x.view(),
        kernel.array().view(),
        FilterParams::default().border(border),
    )?;
    Ok(to_display(y.view(), kernel.display()))
}

/// How a filtered image, whose values may fall anywhere, becomes bytes `0..=255` to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Round to the nearest integer and clip to `0..=255`: right for kernels whose weights sum
    /// to 1 (blurs, sharpening, emboss), whose output has the image's brightness.
    Clip,
    /// `|y|`, rounded and clipped to `0..=255`: an edge's strength, whichever its sign.
    Abs,
    /// `|y|` scaled so that its 99th percentile becomes 255, then rounded and clipped: the
    /// same picture as [`Display::Abs`] with its contrast stretched, for edge detectors whose
    /// output is mostly small. An image whose `|y|` is all 0 stays black.
    AbsStretched,
}

/// Map a filtered image to bytes by `how`; NaN becomes 0.
pub fn to_display(y: ArrayView2<f64>, how: Display) -> Array2<u8> {
    fn byte(v: f64) -> u8 {
        if v.is_nan() {
            0
        } else {
            v.round().clamp(0.0, 255.0) as u8
        }
    }
    match how {
        Display::Clip => y.mapv(byte),
        Display::Abs => y.mapv(|v| byte(v.abs())),
        Display::AbsStretched => {
            let mut mags: Vec<f64> = y.iter().map(|v| v.abs()).filter(|v| !v.is_nan()).collect();
            mags.sort_by(f64::total_cmp);
            let p99 = if mags.is_empty() {
                0.0
            } else {
                mags[(mags.len() - 1) * 99 / 100]
            };
            let gain = if p99 > 0.0 && p99.is_finite() {
                255.0 / p99
            } else {
                1.0
            };
            y.mapv(|v| byte(v.abs() * gain))
        }
    }
}
