//! Winograd's minimal filtering F(m×m, r×r): a convolution at stride 1 with fewer
//! multiplications than the formula (chapter 4). The fast route takes 3 × 3 kernels by
//! F(2×2, 3×3) and 5 × 5 kernels by F(3×3, 5×5) ([`KERNELS`]).
//!
//! `m` neighbouring outputs of a 1-D correlation with an `r`-tap filter `g` read
//! `n = m + r − 1` inputs `d`. The formula spends `m·r` multiplications on them; F(m, r)
//! spends `n`:
//!
//! `y = Aᵀ [(G g) ⊙ (Bᵀ d)]`
//!
//! where `Bᵀ` (`n × n`), `G` (`n × r`) and `Aᵀ` (`m × n`) hold only small rationals. They come
//! from the Chinese remainder theorem for polynomials: `G g` and `Bᵀ d` evaluate the filter and
//! the data as polynomials at `n − 1` points (the first `n − 1` of 0, 1, −1, 2, −1/2, −2) and
//! at infinity, the product of the evaluations is the product polynomial evaluated there, and
//! `Aᵀ` reads the `m` outputs off it. In 2-D the same matrices act on rows and on columns: a
//! tile of `m × m` outputs needs `n × n` products instead of `m²r²`: F(2×2, 3×3) 16 for 36,
//! F(2×2, 5×5) 36 for 100, F(3×3, 5×5) 49 for 225:
//!
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//!
//! Summed over the input channels the products become `n²` matrix products, one per position
//! `ξ` of the `n × n` tile: `M[ξ] = U[ξ] · V[ξ]` with `U[ξ]` (`C_out × C_in`) the transformed
//! filters and `V[ξ]` (`C_in × tiles`) the transformed input tiles. The route:
//! 1. transforms every filter once per call (`U`, in `f64` then rounded);
//! 2. for a block of tile rows, transforms each input tile, 16 neighbouring tiles per register
//!    (short rows share a register: two rows of 7 tiles of 2 × 2, or three rows of 5 tiles of
//!    3 × 3 for a 14 × 14 output);
//! 3. multiplies `V` by `U` with the direct kernels' row tiles (16 tiles per lane register);
//! 4. transforms `M` back to `m × m` outputs, adds the bias and stores whole output rows.
//!
//! The transforms add and subtract the pixels of a tile, so a value that is not finite spreads
//! to outputs of its tile that never read it; when an output comes out infinite or NaN the
//! route gives the call back, and [`super::fast::conv2d`] takes the direct kernels, which keep
//! the formula's semantics there.
//! Its rounding differs from the formula's order of sums; the property tests hold it, against
//! `f64`, to 10⁻⁵ of the sum of the terms' magnitudes, as every fast route. More points mean
//! larger coefficients: simulated in `f32` over 32 channels, the worst error of F(3×3, 5×5)
//! came to 8·10⁻⁷ of that sum, about four times F(2×2, 5×5)'s. The fifth point is −1/2 rather
//! than −2, which made the error of F(2×2, 5×5) about 2.5 times smaller; −2 then came out as
//! good a sixth point as 1/2.
//! For a 14 × 14 output, F(3×3, 5×5) also wastes less than its tiles suggest: 25 tiles of
//! 3 × 3 (1225 products per channel pair) against 49 of 2 × 2 (1764).
//!
//! The weight gradient takes the matrices of F(2×2, r×r) the other way round
//! ([`conv2d_weight_grad`]): `∂L/∂w = Gᵀ [(A ∂L/∂Y Aᵀ) ⊙ (Bᵀ d B)] G` for each tile, summed
//! over every tile of the batch before `Gᵀ · G`, so that the products are `n²` matrix products
//! of `C_in × tiles` by `tiles × C_out`.

use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::parallel::prelude::*;
use ndarray::{Array4, ArrayView1, ArrayView4};
use rayon::slice::{ParallelSlice, ParallelSliceMut};

use super::direct::{
    LANES, MAX_VECTORS, RowJob, Taps, f32_operands, is_available, max_channels, pieces, row_shapes,
};
use super::naive::check_grad_shape;
use crate::buffers::Scratch;
use crate::error::Result;
use crate::gemm::Scalar;
use crate::shape::{Conv2dParams, ConvGeometry};

/// The kernel sizes this route takes (square, stride 1, dilation 1, one group).
pub const KERNELS: [usize; 2] = [3, 5];
/// Interpolation points; F(m, r) uses the first `m + r − 2`.
const POINTS: [f64; 6] = [0.0, 1.0, -1.0, 2.0, -0.5, -2.0];
/// Fewest input and output channels for which the products outweigh the transforms.
const MIN_CHANNELS: usize = 16;
/// Tiles per block of F(m×m, ·), where the transformed inputs and products of a block stay in
/// L2; measured on the course's layers: 128 tiles for F(2×2, 3×3), and for F(3×3, 5×5), whose
/// tiles take 49 positions each, 32 (30 on L2 ran a fifth faster than 120).
const fn block_tiles(m: usize) -> usize {
    if m == 2 { 128 } else { 32 }
}
/// Largest `n` of the route's transforms.
const MAX_N: usize = 7;
/// Largest `m` of the route's transforms.
const MAX_M: usize = 3;

/// The matrices of F(m, r) for `M = m` and `N = n = m + r − 1`, padded to `n` columns: `a_t` is
/// `m × n`, `g` is `n × r` (its last `m − 1` columns zero), `b_t` is `n × n`.
#[derive(Debug, Clone, Copy)]
struct Matrices<const M: usize, const N: usize> {
    a_t: [[f64; N]; M],
    g: [[f64; N]; N],
    b_t: [[f64; N]; N],
}

/// `poly · (x − q)` in place, `poly` of degree `degree` (coefficients lowest first).
const fn times_root<const N: usize>(poly: &mut [f64; N], degree: usize, q: f64) {
    let mut k = degree + 1;
    while k > 0 {
        poly[k] = poly[k - 1] - q * poly[k];
        k -= 1;
    }
    poly[0] = -q * poly[0];
}

/// The matrices of F(m, r) for `M = m`, `N = m + r − 1`, from the points `p_i` (`i < n − 1`)
/// and infinity:
/// * `Aᵀ[k][i] = p_iᵏ`, and `Aᵀ[m − 1][∞] = 1`;
/// * `G[i][k] = p_iᵏ / Π_{j≠i} (p_i − p_j)`, and `G[∞][r − 1] = 1`;
/// * row `i` of `Bᵀ` holds the coefficients of `Π_{j≠i} (x − p_j)`, row `∞` those of
///   `Π_j (x − p_j)`.
const fn matrices<const M: usize, const N: usize>() -> Matrices<M, N> {
    assert!(M >= 2 && N > M && N <= POINTS.len() + 1);
    let (r, finite) = (N + 1 - M, N - 1);
    let mut a_t = [[0.0; N]; M];
    let mut g = [[0.0; N]; N];
    let mut b_t = [[0.0; N]; N];
    let mut i = 0;
    while i < finite {
        let p = POINTS[i];
        let (mut k, mut power) = (0, 1.0);
        while k < M {
            a_t[k][i] = power;
            power *= p;
            k += 1;
        }
        let mut scale = 1.0;
        let mut poly = [0.0; N];
        poly[0] = 1.0;
        let (mut degree, mut j) = (0, 0);
        while j < finite {
            if j != i {
                scale *= p - POINTS[j];
                times_root(&mut poly, degree, POINTS[j]);
                degree += 1;
            }
            j += 1;
        }
        let (mut k, mut power) = (0, 1.0);
        while k < r {
            g[i][k] = power / scale;
            power *= p;
            k += 1;
        }
        b_t[i] = poly;
        i += 1;
    }
    a_t[M - 1][N - 1] = 1.0;
    g[N - 1][r - 1] = 1.0;
    let mut poly = [0.0; N];
    poly[0] = 1.0;
    let mut j = 0;
    while j < finite {
        times_root(&mut poly, j, POINTS[j]);
        j += 1;
    }
    b_t[N - 1] = poly;
    Matrices { a_t, g, b_t }
}

/// The transforms of F(m, r), row-major: `a_t` (`m × n`), `g` (`n × r`), `b_t` (`n × n`).
///
/// ```
/// use convlab::conv2d::winograd::Transforms;
///
/// // Two outputs of a 3-tap correlation from 4 products instead of 6.
/// let t = Transforms::new(2, 3).unwrap();
/// let (d, g) = ([1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0]);
/// let y = t.correlate(&d, &g);
/// assert_eq!(y, [0.5 - 2.0 + 6.0, 1.0 - 3.0 + 8.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Transforms {
    /// Outputs `m`.
    pub m: usize,
    /// Filter taps `r`.
    pub r: usize,
    /// Tile inputs and products, `n = m + r − 1`.
    pub n: usize,
    /// `Aᵀ`, `m × n`.
    pub a_t: Vec<f64>,
    /// `G`, `n × r`.
    pub g: Vec<f64>,
    /// `Bᵀ`, `n × n`.
    pub b_t: Vec<f64>,
}

impl Transforms {
    /// The transforms of F(m, r) for `m` outputs of an `r`-tap filter, `2 ≤ m ≤ 3` and
    /// `2 ≤ r ≤ 5` (the points 0, 1, −1, 2, −1/2, −2, the first `m + r − 2` of them); `None` for
    /// other sizes.
    pub fn new(m: usize, r: usize) -> Option<Transforms> {
        fn flat<const M: usize, const N: usize>(t: Matrices<M, N>) -> Transforms {
            let r = N + 1 - M;
            Transforms {
                m: M,
                r,
                n: N,
                a_t: t.a_t.concat(),
                g: t.g.iter().flat_map(|row| row[..r].to_vec()).collect(),
                b_t: t.b_t.concat(),
            }
        }
        match (m, r) {
            (2, 2) => Some(flat(matrices::<2, 3>())),
            (2, 3) => Some(flat(matrices::<2, 4>())),
            (2, 4) => Some(flat(matrices::<2, 5>())),
            (2, 5) => Some(flat(matrices::<2, 6>())),
            (3, 2) => Some(flat(matrices::<3, 4>())),
            (3, 3) => Some(flat(matrices::<3, 5>())),
            (3, 4) => Some(flat(matrices::<3, 6>())),
            (3, 5) => Some(flat(matrices::<3, 7>())),
            _ => None,
        }
    }

    /// `y = Aᵀ [(G g) ⊙ (Bᵀ d)]`: the `m` outputs `y[i] = Σ_k g[k]·d[i + k]` from `n` products.
    /// Panics unless `d` has `n` values and `g` has `r`.
    pub fn correlate(&self, d: &[f64], g: &[f64]) -> Vec<f64> {
        let (m, n, r) = (self.m, self.n, self.r);
        assert!(
            d.len() == n && g.len() == r,
            "d has n = m + r − 1 values, g has r"
        );
        let products: Vec<f64> = (0..n)
            .map(|xi| {
                let filter: f64 = (0..r).map(|k| self.g[xi * r + k] * g[k]).sum();
                let data: f64 = (0..n).map(|u| self.b_t[xi * n + u] * d[u]).sum();
                filter * data
            })
            .collect();
        (0..m)
            .map(|i| (0..n).map(|xi| self.a_t[i * n + xi] * products[xi]).sum())
            .collect()
    }
}

/// Whether the route takes `c_out` filters of `kernel` taps over `c_in` channels: a square
/// kernel in [`KERNELS`] and 16 channels or more in and out.
fn takes_filters([kh, kw]: [usize; 2], c_in: usize, c_out: usize) -> bool {
    kh == kw && KERNELS.contains(&kh) && c_in >= MIN_CHANNELS && c_out >= MIN_CHANNELS
}

/// [`super::fast::conv2d`] by F(2×2, 3×3) or F(3×3, 5×5), or `Ok(None)` where it does not
/// apply (no AVX-512, not `f32`, not one group at stride 1 and dilation 1, not a square kernel
/// in [`KERNELS`] with 16 channels or more in and out) or when an output is not finite. Shapes
/// are checked first.
pub fn conv2d<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    b: Option<ArrayView1<T>>,
    params: Conv2dParams,
) -> Result<Option<Array4<T>>> {
    let geo = ConvGeometry::conv2d(x.dim(), w.dim(), b.map(|b| b.len()), params)?;
    if geo.groups != 1 || geo.stride != [1, 1] || geo.dilation != [1, 1] {
        return Ok(None);
    }
    let Some((x, w, b)) = f32_operands(x, w, b) else {
        return Ok(None);
    };
    let pads = [geo.pads[0].left, geo.pads[1].left];
    Ok(forward(x, w, b, pads, geo.output).and_then(T::from_f32))
}

/// `∂L/∂w` of [`conv2d`] for the output gradient `grad_out`, by the transpose of F(2×2, r×r)
/// (the module's introduction gives the formula), or `Ok(None)` where it does not apply (no
/// AVX-512, not `f32`, not one group at stride 1 and dilation 1, not a square kernel in
/// [`KERNELS`] with 16 channels or more in and out, a tap that meets the input at fewer than 4
/// outputs along an axis or at fewer than half as many as another tap) or when a value is not
/// finite. Only the shape of `w` is read. Shapes are checked first.
pub fn conv2d_weight_grad<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<Option<Array4<T>>> {
    let geo = ConvGeometry::conv2d(x.dim(), w.dim(), None, params)?;
    let [h_out, w_out] = geo.output;
    check_grad_shape(grad_out.shape(), &[geo.batch, geo.c_out, h_out, w_out])?;
    if geo.groups != 1 || geo.stride != [1, 1] || geo.dilation != [1, 1] {
        return Ok(None);
    }
    let (Some(x), Some(g)) = (T::as_f32(x), T::as_f32(grad_out)) else {
        return Ok(None);
    };
    let pads = [geo.pads[0].left, geo.pads[1].left];
    Ok(weight_grad(x, g, geo.kernel, pads).and_then(T::from_f32))
}

/// The convolution of `x` by `w` (one group, stride 1, dilation 1, shapes checked by the
/// caller) with `pads = [top, left]` and `output = [H_out, W_out]`; `None` where the route does
/// not take the filters ([`takes_filters`]), without AVX-512, or if an output is not finite.
pub(super) fn forward(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    b: Option<ArrayView1<f32>>,
    pads: [usize; 2],
    output: [usize; 2],
) -> Option<Array4<f32>> {
    let (c_out, c_in, kh, kw) = w.dim();
    if !is_available() || !takes_filters([kh, kw], c_in, c_out) {
        return None;
    }
    match kh {
        3 => run::<2, 4>(x, w, b, pads, output),
        5 => run::<3, 7>(x, w, b, pads, output),
        _ => None,
    }
}

/// `U[ξ][c][o] = (G g_{o,c} Gᵀ)[ξ]`, computed in `f64` and rounded once: output channels
/// side by side, so that a product tile reads the weights of its run of channels for each input
/// channel in order. Sixteen filters at a time, their taps transposed in registers.
fn transform_weights<const M: usize, const N: usize>(w: ArrayView4<f32>) -> Scratch<f32> {
    let (c_out, c_in, _, _) = w.dim();
    let r = N + 1 - M;
    assert!(r * r <= 2 * LANES);
    // The filters' taps are read as one slice.
    let w = w.as_standard_layout();
    let w = w.as_slice().expect("a standard-layout array is contiguous");
    let plane = c_in * c_out;
    let mut u = Scratch::for_overwrite(N * N * plane);
    for c in 0..c_in {
        for o0 in (0..c_out).step_by(LANES) {
            let count = (c_out - o0).min(LANES);
            let first = (o0 * c_in + c) * r * r;
            assert!(first + (count - 1) * c_in * r * r + r * r <= w.len());
            let dst = &mut u[c * c_out + o0..];
            assert!((N * N - 1) * plane + count <= dst.len());
            #[cfg(target_arch = "x86_64")]
            {
                assert!(is_available());
                let job = avx512::Filters {
                    w: w[first..].as_ptr(),
                    filter: c_in * r * r,
                    count,
                    u: dst.as_mut_ptr(),
                    plane,
                };
                // SAFETY: AVX-512F was detected; the kernel reads the `r²` taps of `count`
                // filters `c_in·r²` apart from `first`, inside `w`, and writes `count` elements
                // at `ξ·plane` for `ξ < N²`, inside `dst` (asserted above).
                unsafe { avx512::filters::<M, N>(&job) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("the Winograd route runs only where is_available() holds");
        }
    }
    u
}

/// [`forward`] for `N = r + 1`: jobs of a few images each, and in each job blocks of tile rows
/// that go through the three steps (input transform, products, output transform) together.
fn run<const M: usize, const N: usize>(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    b: Option<ArrayView1<f32>>,
    [top, left]: [usize; 2],
    [h_out, w_out]: [usize; 2],
) -> Option<Array4<f32>> {
    let (batch, c_in, h, width) = x.dim();
    let c_out = w.dim().0;
    let mut out = crate::buffers::for_overwrite::<f32, _>((batch, c_out, h_out, w_out));
    if out.is_empty() {
        return Some(out);
    }
    // Rows are read as slices.
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("a standard-layout array is contiguous");
    // The output channels of a product tile, for each width of 1 to 4 registers of tiles: as
    // many as the registers hold.
    let tiles: Vec<Vec<(usize, usize)>> = (1..=MAX_VECTORS)
        .map(|vectors| pieces(c_out, max_channels(vectors)))
        .collect();
    let u = transform_weights::<M, N>(w);
    let bias: Vec<f32> = b.map_or_else(|| vec![0.0; c_out], |b| b.to_vec());
    let (th, tw) = (h_out.div_ceil(M), w_out.div_ceil(M));
    // Whole registers of short tile rows: a multiple of the rows a register takes.
    let rows_per_unit = Unit::rows_per_register(tw, M);
    let rows_per_block = (block_tiles(M) / tw / rows_per_unit).max(1) * rows_per_unit;
    // Jobs of whole registers of tile rows where the images allow (a register left part empty
    // wastes lanes of the products: 2 images of L2 per job, 10 tile rows in registers of 3,
    // ran 15 % slower than 6), and a block's tiles or more, but no more: the fewer images a
    // job takes, the more evenly the threads share them (L2's forward on two threads took
    // 2.61–2.71 ms with jobs of 3 images, 2.72–2.86 ms with jobs of 6, whole blocks).
    let threads = rayon::current_num_threads();
    let images_per_job = (rows_per_unit / gcd(rows_per_unit, th))
        .max(block_tiles(M).div_ceil(th * tw))
        .min(batch.div_ceil(threads))
        .max(1);
    // Each position's plane of tiles starts on a cache line, so that the products' registers
    // of 16 tiles are whole lines.
    let most = (rows_per_block * tw).next_multiple_of(LANES);
    let image_out = c_out * h_out * w_out;
    let not_finite = AtomicBool::new(false);
    let jobs: Vec<(usize, &mut [f32])> = out
        .as_slice_mut()
        .expect("a new array is contiguous")
        .chunks_mut(images_per_job * image_out)
        .enumerate()
        .collect();
    jobs.into_par_iter().for_each_init(
        || {
            (
                Scratch::for_overwrite(N * N * c_in * most + LANES),
                Scratch::for_overwrite(N * N * c_out * most + LANES),
            )
        },
        |(v, m), (job, dst)| {
            let (v, m) = (from_line(v), from_line(m));
            let first = job * images_per_job;
            let tile_rows: Vec<(usize, usize)> = (first..first + dst.len() / image_out)
                .flat_map(|image| (0..th).map(move |a| (image, a)))
                .collect();
            for block in tile_rows.chunks(rows_per_block) {
                let p = block.len() * tw;
                let plane = p.next_multiple_of(LANES);
                let units = Unit::plan(block.len(), tw, M, left, width);
                let places: Vec<Place> = units
                    .iter()
                    .map(|unit| {
                        let starts = [first * image_out, image_out];
                        Place::new(unit, block, [top, h], [h_out, w_out], M, starts)
                    })
                    .collect();
                // 1. The input tiles: V[c][ξ][tile], a channel's positions side by side.
                let nnp = N * N * plane;
                for (unit, place) in units.iter().zip(&places) {
                    let planes = place
                        .inputs
                        .map(|part| part.map(|(image, _)| image * c_in * h * width));
                    let channels = [c_in, h * width, nnp];
                    let dst = &mut v[unit.p0..];
                    input::<M, N>(x, planes, unit, &place.inputs, channels, dst, plane);
                }
                // 2. The products, one per tile position ξ:
                // M[o][ξ][tile] = Σ_c U[ξ][c][o]·V[c][ξ][tile].
                let mut taps = Taps::default();
                for c in 0..c_in {
                    taps.push(c * nnp, c);
                }
                for xi in 0..N * N {
                    let v = &v[xi * plane..(c_in - 1) * nnp + (xi + 1) * plane];

                    let u = &u[xi * c_in * c_out..][..c_in * c_out];
                    let m = &mut m[xi * plane..];
                    for q0 in (0..p).step_by(LANES * MAX_VECTORS) {
                        // Whole registers: the planes hold `plane` tiles, a multiple of 16.
                        // The lanes past the block's last tile hold whatever the buffer held;
                        // the products keep each lane to itself and the output transform
                        // reads only the tiles' lanes, so no result depends on them.
                        let vectors = (p - q0).min(LANES * MAX_VECTORS).div_ceil(LANES);
                        let valid = vectors * LANES;
                        for &(o0, mr) in &tiles[vectors - 1] {
                            RowJob {
                                x: v,
                                start: q0,
                                taps: &taps,
                                weights: &u[o0..],
                                tap_stride: c_out,
                                bias: &ZEROS[..mr],
                                vectors,
                                mr,
                                valid,
                                repeat: 1,
                            }
                            .run(&mut m[o0 * nnp + q0..], nnp);
                        }
                    }
                }
                // 3. The outputs: Y = Aᵀ M A + b, m output rows of each channel per tile row.
                for (unit, place) in units.iter().zip(&places) {
                    let channels = [c_out, nnp, h_out * w_out];
                    let src = &m[unit.p0..];
                    if !output::<M, N>(src, plane, unit, &bias, channels, place, dst) {
                        not_finite.store(true, Ordering::Relaxed);
                    }
                }
            }
        },
    );
    if not_finite.load(Ordering::Relaxed) {
        crate::buffers::recycle(out);
        return None;
    }
    Some(out)
}

/// The greatest common divisor of `a` and `b`.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Fewest tiles per job of the weight gradient.
const WEIGHT_JOB_TILES: usize = 256;
/// Most jobs of the weight gradient. The jobs are fixed by the shapes alone, so that the sums'
/// order (and the result) does not depend on the thread count; each keeps its own sums.
const MAX_WEIGHT_JOBS: usize = 8;
/// Bytes of a weight-gradient block's transformed inputs and gradients, kept in L2.
const WEIGHT_BLOCK_BYTES: usize = 1 << 20;

/// `∂L/∂w` of the convolution of `x` by `kernel`-sized filters (one group, stride 1, dilation
/// 1, shapes checked by the caller) whose output gradient is `g`, with `pads = [top, left]`;
/// `None` where the route does not take the filters (a square kernel in [`KERNELS`], 16
/// channels or more in and out), without AVX-512, or if a value is not finite.
///
/// The transpose of F(2×2, r×r): a tile of `x` meets a 2 × 2 tile of `g` in every tap, and
/// since `Σ_{i,j} g[i][j]·Y[i][j]` for `Y = Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A` is
/// `Σ_{ξ,ν} (A g Aᵀ)[ξ][ν]·(G w Gᵀ)[ξ][ν]·(Bᵀ d B)[ξ][ν]`, the tap sums are
///
/// `∂L/∂w[o][c] = Gᵀ Q[o][c] G` with `Q[ξ][ν][o][c] = Σ_tiles (A g_o Aᵀ)[ξ][ν]·(Bᵀ d_c B)[ξ][ν]`,
///
/// one matrix product per position `ξ` summed over every tile of the batch.
pub(super) fn weight_grad(
    x: ArrayView4<f32>,
    g: ArrayView4<f32>,
    [kh, kw]: [usize; 2],
    pads: [usize; 2],
) -> Option<Array4<f32>> {
    let (_, c_in, h, width) = x.dim();
    let (_, c_out, h_out, w_out) = g.dim();
    let [top, left] = pads;
    if !is_available()
        || kh != kw
        || !KERNELS.contains(&kh)
        || c_in < MIN_CHANNELS
        || c_out < MIN_CHANNELS
        || !even_taps(kh, top, h, h_out)
        || !even_taps(kw, left, width, w_out)
    {
        return None;
    }
    match kh {
        3 => weight_run::<4>(x, g, pads),
        5 => weight_run::<6>(x, g, pads),
        _ => None,
    }
}

/// Bytes of a cache line.
const LINE: usize = 64;

/// `buf` from its first element on a cache line, so that each register of 16 elements at a
/// multiple of 16 from there is one line (a buffer of the allocator starts 16 bytes past one,
/// and a load or store across two lines costs two). `buf` must hold `LANES − 1` spare elements.
fn from_line(buf: &mut [f32]) -> &mut [f32] {
    let start = buf.as_ptr().align_offset(LINE);
    &mut buf[start..]
}

/// Fewest outputs along an axis that every tap of the weight gradient must meet.
const MIN_TAP_OUTPUTS: usize = 4;

/// Whether every tap `k < taps` along an axis of `len` inputs, `pad` of padding before them and
/// `out` outputs meets the input at [`MIN_TAP_OUTPUTS`] outputs or more, and at least half as
/// many as the tap that meets it most. The transforms mix every tap of a tile, so a tap's
/// rounding error is of the size of the busiest tap's sums: where a tap meets the input at few
/// outputs (a small image with wide padding), its own sum can be far smaller than that.
fn even_taps(taps: usize, pad: usize, len: usize, out: usize) -> bool {
    // Output `i` reads input `i + k − pad` with tap `k`.
    let meets = |k: usize| (k + out).min(pad + len).saturating_sub(k.max(pad));
    let (least, most) = (0..taps)
        .map(meets)
        .fold((usize::MAX, 0), |(lo, hi), m| (lo.min(m), hi.max(m)));
    least >= MIN_TAP_OUTPUTS && 2 * least >= most
}

/// [`weight_grad`] for `N = r + 1`: fixed jobs of tile rows, each summing its blocks' products
/// into its own `Q`; the jobs' `Q` are added in order and transformed once.
fn weight_run<const N: usize>(
    x: ArrayView4<f32>,
    g: ArrayView4<f32>,
    [top, left]: [usize; 2],
) -> Option<Array4<f32>> {
    let r = N - 1;
    let (batch, c_in, h, width) = x.dim();
    let (_, c_out, h_out, w_out) = g.dim();
    let mut weight = crate::buffers::zeros::<f32, _>((c_out, c_in, r, r));
    if batch == 0 || h_out * w_out == 0 {
        return Some(weight);
    }
    // Rows are read as slices.
    let x = x.as_standard_layout();
    let x = x.as_slice().expect("a standard-layout array is contiguous");
    let g = g.as_standard_layout();
    let g = g.as_slice().expect("a standard-layout array is contiguous");
    // Output channels in the lanes, whole registers of them.
    let o_pad = c_out.next_multiple_of(LANES);
    // Product tiles: runs of output registers, each with its runs of input channels.
    let tiles: Vec<_> = pieces(o_pad / LANES, MAX_VECTORS)
        .into_iter()
        .map(|(v0, vectors)| ((v0, vectors), pieces(c_in, max_channels(vectors))))
        .collect();
    let (th, tw) = (h_out.div_ceil(2), w_out.div_ceil(2));
    let tile_rows: Vec<(usize, usize)> = (0..batch)
        .flat_map(|image| (0..th).map(move |a| (image, a)))
        .collect();
    let jobs = (tile_rows.len() * tw / WEIGHT_JOB_TILES).clamp(1, MAX_WEIGHT_JOBS);
    // Even numbers of tile rows, so that rows of 8 tiles or fewer pair up in a register.
    let rows_per_job = tile_rows.len().div_ceil(jobs).next_multiple_of(2);
    let rows_per_block = (WEIGHT_BLOCK_BYTES / (N * N * (c_in + o_pad) * 4) / tw)
        .max(2)
        .min(rows_per_job)
        / 2
        * 2;
    let most = rows_per_block * tw;
    // A block's gradient rows, channels last: two output rows per tile row, of `2·tw` columns
    // (the one past an odd `W_out` stays zero).
    let dy_row = 2 * tw * o_pad;
    let q_len = N * N * c_in * o_pad;
    let mut partials: Vec<(Scratch<f32>, usize)> = tile_rows
        .par_chunks(rows_per_job)
        .map_init(
            || {
                (
                    Scratch::for_overwrite(N * N * c_in * most),
                    Scratch::for_overwrite(N * N * most * o_pad + LANES),
                    Scratch::full(2 * rows_per_block * dy_row + LANES, 0.0f32),
                )
            },
            |(v, u, dy), rows| {
                let (u, dy) = (from_line(u), from_line(dy));
                let mut partial = Scratch::full(q_len + LANES, 0.0f32);
                let start = partial.as_ptr().align_offset(LINE);
                let q = &mut partial[start..];
                for block in rows.chunks(rows_per_block) {
                    let p = block.len() * tw;
                    let nnp = N * N * p;
                    // 1. The input tiles: V[c][ξ][tile], as in the forward.
                    let units = Unit::plan(block.len(), tw, 2, left, width);
                    let inputs: Vec<Inputs> = units
                        .iter()
                        .map(|unit| Place::inputs(unit, block, [top, h], 2))
                        .collect();
                    for (unit, inputs) in units.iter().zip(&inputs) {
                        let planes =
                            inputs.map(|part| part.map(|(image, _)| image * c_in * h * width));
                        let channels = [c_in, h * width, nnp];
                        input::<2, N>(x, planes, unit, inputs, channels, &mut v[unit.p0..], p);
                    }
                    // 2. The gradient's tiles, channels last: U[ξ][tile][o] = (A g_o Aᵀ)[ξ].
                    for (k, &(image, a)) in block.iter().enumerate() {
                        for i in 0..2 {
                            let dst = &mut dy[(2 * k + i) * dy_row..][..w_out * o_pad];
                            let row = 2 * a + i;
                            if row >= h_out {
                                dst.fill(0.0);
                                continue;
                            }
                            let first = image * c_out * h_out * w_out + row * w_out;
                            channels_last(g, first, [c_out, h_out * w_out], w_out, dst, o_pad);
                        }
                        for b in 0..tw {
                            gradient::<N>(
                                &dy[2 * k * dy_row + 2 * b * o_pad..],
                                dy_row,
                                o_pad,
                                &mut u[(k * tw + b) * o_pad..],
                                p * o_pad,
                            );
                        }
                    }
                    // 3. The products: Q[ξ][c][o] += Σ_tiles V[c][ξ][tile]·U[ξ][tile][o].
                    for xi in 0..N * N {
                        for ((v0, vectors), c_tiles) in &tiles {
                            let (v0, vectors) = (*v0, *vectors);
                            for &(c0, mr) in c_tiles {
                                ProductJob {
                                    v: &v[c0 * nnp + xi * p..],
                                    v_stride: nnp,
                                    u: &u[xi * p * o_pad + v0 * LANES..],
                                    u_stride: o_pad,
                                    tiles: p,
                                    q: &mut q[(xi * c_in + c0) * o_pad + v0 * LANES..],
                                    q_stride: o_pad,
                                    vectors,
                                    mr,
                                }
                                .run();
                            }
                        }
                    }
                }
                (partial, start)
            },
        )
        .collect();
    // Σ over the jobs in order, then ∂L/∂w[o][c] = Gᵀ Q[o][c] G, in f64 and rounded once.
    let (first, rest) = partials.split_first_mut().expect("one job or more");
    let total = &mut first.0[first.1..][..q_len];
    total
        .par_chunks_mut(LANES * LANES)
        .enumerate()
        .for_each(|(i, chunk)| {
            for (part, start) in rest.iter() {
                let part = &part[start + i * LANES * LANES..][..chunk.len()];
                for (t, &v) in chunk.iter_mut().zip(part) {
                    *t += v;
                }
            }
        });
    let total = &*total;
    let m = const { matrices::<2, N>() };
    let per_channel: Vec<Vec<f32>> = (0..c_in)
        .into_par_iter()
        .map(|c| {
            let mut sums = vec![0.0f64; N * N * c_out];
            for (xi, sum) in sums.chunks_exact_mut(c_out).enumerate() {
                let part = &total[(xi * c_in + c) * o_pad..][..c_out];
                for (s, &v) in sum.iter_mut().zip(part) {
                    *s = v as f64;
                }
            }
            // H[ξ][l] = Σ_ν Q[ξ][ν] G[ν][l], then ∂L/∂w[k][l] = Σ_ξ G[ξ][k] H[ξ][l], `o` last.
            let mut half = vec![0.0f64; N * r * c_out];
            for xi in 0..N {
                for l in 0..r {
                    let dst = &mut half[(xi * r + l) * c_out..][..c_out];
                    for nu in 0..N {
                        let coefficient = m.g[nu][l];
                        if coefficient != 0.0 {
                            let src = &sums[(xi * N + nu) * c_out..][..c_out];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d += coefficient * s;
                            }
                        }
                    }
                }
            }
            let mut taps = vec![0.0f64; r * r * c_out];
            for k in 0..r {
                for xi in 0..N {
                    let coefficient = m.g[xi][k];
                    if coefficient == 0.0 {
                        continue;
                    }
                    for l in 0..r {
                        let dst = &mut taps[(k * r + l) * c_out..][..c_out];
                        let src = &half[(xi * r + l) * c_out..][..c_out];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += coefficient * s;
                        }
                    }
                }
            }
            taps.into_iter().map(|t| t as f32).collect()
        })
        .collect();
    for ((o, c, k, l), d) in weight.indexed_iter_mut() {
        *d = per_channel[c][(k * r + l) * c_out + o];
    }
    if weight.iter().all(|v| v.is_finite()) {
        Some(weight)
    } else {
        crate::buffers::recycle(weight);
        None
    }
}

/// One row of `C` channels of `g` to channels last: `dst[j·o_pad + o] = g[first + o·plane + j]`
/// for `o < C` and `j < W_out`, where `[C, plane] = channels`; 16 channels × 16 columns are
/// transposed at a time in registers. The lanes `o ≥ C` of each column written are zero.
fn channels_last(
    g: &[f32],
    first: usize,
    [c, plane]: [usize; 2],
    w_out: usize,
    dst: &mut [f32],
    o_pad: usize,
) {
    assert!(c > 0 && c <= o_pad && w_out > 0 && w_out <= plane);
    assert!(first + (c - 1) * plane + w_out <= g.len() && (w_out - 1) * o_pad + o_pad <= dst.len());
    for o0 in (0..c).step_by(LANES) {
        for j0 in (0..w_out).step_by(LANES) {
            #[cfg(target_arch = "x86_64")]
            {
                assert!(is_available());
                let job = avx512::ChannelsLast {
                    src: g[first + o0 * plane + j0..].as_ptr(),
                    channel: plane,
                    channels: (c - o0).min(LANES),
                    cols: (w_out - j0).min(LANES),
                    dst: dst[j0 * o_pad + o0..].as_mut_ptr(),
                    col: o_pad,
                };
                // SAFETY: AVX-512F was detected; the kernel reads `cols` elements of each of
                // `channels` rows of `plane` from `first + o0·plane + j0`, inside `g`, and
                // writes 16 elements of each of `cols` columns of `o_pad` from
                // `j0·o_pad + o0`, inside `dst` (`o0 + 16 ≤ o_pad`; asserted above).
                unsafe { avx512::channels_last(&job) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("the Winograd route runs only where is_available() holds");
        }
    }
}

/// `dst[(ξ·N + ν)·plane + o] = Σ_{i,j} Aᵀ[i][ξ]·dy[i][j]·Aᵀ[j][ν]` for the `o_pad` channels of
/// one tile of the output gradient, `dy[i][j][o] = src[i·row + j·o_pad + o]`.
fn gradient<const N: usize>(src: &[f32], row: usize, o_pad: usize, dst: &mut [f32], plane: usize) {
    assert!(o_pad.is_multiple_of(LANES) && o_pad > 0 && N <= MAX_N);
    assert!(row + 2 * o_pad <= src.len() && (N * N - 1) * plane + o_pad <= dst.len());
    #[cfg(target_arch = "x86_64")]
    {
        assert!(is_available());
        let job = avx512::Gradient {
            src: src.as_ptr(),
            row,
            vectors: o_pad / LANES,
            col: o_pad,
            dst: dst.as_mut_ptr(),
            plane,
        };
        // SAFETY: AVX-512F was detected; the kernel reads `o_pad` elements at `i·row + j·o_pad`
        // for `i, j < 2`, inside `src`, and writes `o_pad` at `ξ·plane` for `ξ < N²`, inside
        // `dst` (asserted above).
        unsafe { avx512::gradient::<N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

/// One product tile of the weight gradient: `mr` input channels × `16·vectors` output
/// channels, `q[m·q_stride + o] += Σ_{t < tiles} v[m·v_stride + t]·u[t·u_stride + o]`.
struct ProductJob<'a> {
    v: &'a [f32],
    v_stride: usize,
    u: &'a [f32],
    u_stride: usize,
    tiles: usize,
    q: &'a mut [f32],
    q_stride: usize,
    vectors: usize,
    mr: usize,
}

impl ProductJob<'_> {
    /// Add the tile into `q`. Panics if a read or write would leave the slices (a bug in the
    /// caller, not bad input).
    fn run(self) {
        let width = self.vectors * LANES;
        assert!(
            (1..=MAX_VECTORS).contains(&self.vectors)
                && (1..=max_channels(self.vectors)).contains(&self.mr)
                && self.tiles > 0
        );
        assert!((self.mr - 1) * self.v_stride + self.tiles <= self.v.len());
        assert!((self.tiles - 1) * self.u_stride + width <= self.u.len());
        assert!((self.mr - 1) * self.q_stride + width <= self.q.len());
        #[cfg(target_arch = "x86_64")]
        {
            assert!(is_available());
            let job = avx512::Products {
                v: self.v.as_ptr(),
                v_stride: self.v_stride,
                u: self.u.as_ptr(),
                u_stride: self.u_stride,
                tiles: self.tiles,
                q: self.q.as_mut_ptr(),
                q_stride: self.q_stride,
            };
            // SAFETY: AVX-512F was detected; the assertions above bound every element read from
            // `v` and `u` and written to `q`, and `mr`, `vectors` are instantiated.
            unsafe { row_shapes!(products, &job, self.vectors, self.mr) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the Winograd route runs only where is_available() holds");
    }
}

/// Zero biases for the products' row tiles.
static ZEROS: [f32; LANES] = [0.0; LANES];

/// Most parts of a register (see [`Unit`]).
const MAX_PARTS: usize = 3;

/// Most tiles of a part for `m` outputs per tile: a part's outputs fill at most one register of
/// each output row (`m·tiles ≤ 16`).
const fn part_tiles(m: usize) -> usize {
    LANES / m
}

/// Parts of a register for `m` outputs per tile: as many parts as whole parts fit.
const fn parts(m: usize) -> usize {
    let parts = LANES / part_tiles(m);
    if parts < MAX_PARTS { parts } else { MAX_PARTS }
}

/// One register of neighbouring tiles in a block, in parts: part `h` holds `tiles[h]` tiles
/// from tile `b0[h]` of the block's tile row `rows[h]`, in lanes `lane[h]..`. A tile row is cut
/// into parts of at most [`part_tiles`] tiles, and a register takes the next parts in order
/// while they fit: rows of 16 tiles or more take two parts of 8 (`m = 2`), shorter rows share a
/// register, such as three rows of 5 tiles.
///
/// Patch column `v` of a part is lanes `0, m, 2m, …` of a load of 16 columns from
/// `col[h] + v`, `col` being its first tile's column 0 (negative in the left padding);
/// `masks[v][h]` keeps the lanes of the load inside the row's `0..width`, and `gather` puts
/// the parts' lanes in place (see [`avx512::input`]).
#[derive(Debug, Clone)]
struct Unit {
    p0: usize,
    count: usize,
    parts: usize,
    rows: [usize; MAX_PARTS],
    b0: [usize; MAX_PARTS],
    tiles: [usize; MAX_PARTS],
    lane: [usize; MAX_PARTS],
    col: [isize; MAX_PARTS],
    width: usize,
    masks: [[u16; MAX_PARTS]; MAX_N],
    gather: [[i32; LANES]; 2],
}

impl Unit {
    /// A register of `parts`, each `(tile row, first tile, tiles)`, for `m` outputs per tile;
    /// its first tile is tile `p0` of the block.
    fn new(
        p0: usize,
        parts: &[(usize, usize, usize)],
        m: usize,
        left: usize,
        width: usize,
    ) -> Unit {
        assert!((1..=MAX_PARTS).contains(&parts.len()));
        let mut unit = Unit {
            p0,
            count: 0,
            parts: parts.len(),
            rows: [0; MAX_PARTS],
            b0: [0; MAX_PARTS],
            tiles: [0; MAX_PARTS],
            lane: [0; MAX_PARTS],
            col: [0; MAX_PARTS],
            width,
            masks: [[0; MAX_PARTS]; MAX_N],
            gather: [std::array::from_fn(|k| k as i32); 2],
        };
        // Lanes `k < 16` of a load from column `start` that fall inside `0..width`.
        let inside = |start: isize| {
            let lo = (-start).clamp(0, LANES as isize);
            let hi = (width as isize - start).clamp(0, LANES as isize);
            if hi <= lo {
                return 0;
            }
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        };
        for (h, &(row, b0, tiles)) in parts.iter().enumerate() {
            assert!(tiles >= 1 && m * (tiles - 1) < LANES);
            let lane = unit.count;
            unit.rows[h] = row;
            unit.b0[h] = b0;
            unit.tiles[h] = tiles;
            unit.lane[h] = lane;
            unit.col[h] = (m * b0) as isize - left as isize;
            for (v, masks) in unit.masks.iter_mut().enumerate() {
                masks[h] = inside(unit.col[h] + v as isize);
            }
            // Part 0 and 1 from the first two loads, part 2 into that from the third.
            for k in lane..lane + tiles {
                let at = (m * (k - lane)) as i32;
                match h {
                    0 => unit.gather[0][k] = at,
                    1 => unit.gather[0][k] = LANES as i32 + at,
                    _ => unit.gather[1][k] = LANES as i32 + at,
                }
            }
            unit.count += tiles;
        }
        assert!(unit.count <= LANES);
        unit
    }

    /// The registers of a block of `rows` tile rows of `tw` tiles for `m` outputs per tile, in
    /// the order of their tiles.
    fn plan(rows: usize, tw: usize, m: usize, left: usize, width: usize) -> Vec<Unit> {
        let step = part_tiles(m);
        let mut units = Vec::new();
        let most = parts(m);
        let mut taken: Vec<(usize, usize, usize)> = Vec::new();
        let (mut p0, mut count) = (0, 0);
        for k in 0..rows {
            for b in (0..tw).step_by(step) {
                let tiles = step.min(tw - b);
                if taken.len() == most || count + tiles > LANES {
                    units.push(Unit::new(p0, &taken, m, left, width));
                    taken.clear();
                    (p0, count) = (k * tw + b, 0);
                }
                taken.push((k, b, tiles));
                count += tiles;
            }
        }
        if !taken.is_empty() {
            units.push(Unit::new(p0, &taken, m, left, width));
        }
        units
    }

    /// How many whole tile rows of `tw` tiles [`Unit::plan`] puts in one register for `m` outputs
    /// per tile: as many as fit where a row is one part, else one.
    fn rows_per_register(tw: usize, m: usize) -> usize {
        if tw <= part_tiles(m) {
            (LANES / tw).min(parts(m))
        } else {
            1
        }
    }

    /// Part `h`'s tile row, first tile and number of tiles; `None` when the unit has no part
    /// `h`.
    fn part(&self, h: usize) -> Option<(usize, usize, usize)> {
        (h < self.parts).then(|| (self.rows[h], self.b0[h], self.tiles[h]))
    }
}

/// For each part of a unit, its image and the input row each patch row reads.
type Inputs = [Option<(usize, [Option<usize>; MAX_N])>; MAX_PARTS];

/// One output row a unit writes: `(part, row in the tile, start, len)`, `start` being its first
/// element in the job's outputs for channel 0.
type OutputRow = (usize, usize, usize, usize);

/// Where a unit's tiles lie in a block: for each part, the image and the input row each patch
/// row reads (`None` in the padding), and the output rows it writes, in the order they lie there.
struct Place {
    inputs: Inputs,
    outputs: [OutputRow; MAX_PARTS * MAX_M],
    count: usize,
}

impl Place {
    fn new(
        unit: &Unit,
        block: &[(usize, usize)],
        [top, h]: [usize; 2],
        [h_out, w_out]: [usize; 2],
        m: usize,
        [job_start, image_out]: [usize; 2],
    ) -> Place {
        let inputs = Place::inputs(unit, block, [top, h], m);
        let mut outputs = [(0, 0, 0, 0); MAX_PARTS * MAX_M];
        let mut count = 0;
        for part in 0..unit.parts {
            let (k, b0, tiles) = (unit.rows[part], unit.b0[part], unit.tiles[part]);
            let (image, a) = block[k];
            for i in 0..m {
                let row = m * a + i;
                if row < h_out {
                    let start = image * image_out - job_start + row * w_out + m * b0;
                    outputs[count] = (part, i, start, (m * tiles).min(w_out - m * b0));
                    count += 1;
                }
            }
        }
        outputs[..count].sort_by_key(|&(_, _, start, _)| start);
        Place {
            inputs,
            outputs,
            count,
        }
    }

    /// For each part of `unit`, its image and the input row each patch row reads (`None` in
    /// the padding), for `m` outputs per tile.
    fn inputs(unit: &Unit, block: &[(usize, usize)], [top, h]: [usize; 2], m: usize) -> Inputs {
        std::array::from_fn(|part| {
            let (k, _, _) = unit.part(part)?;
            let (image, a) = block[k];
            let rows = std::array::from_fn(|u| (m * a + u).checked_sub(top).filter(|&i| i < h));
            Some((image, rows))
        })
    }
}

/// Strides between the channels of a transform: `[channels, source, destination]`.
type Channels = [usize; 3];

/// Transform the tiles of `unit` for `channels` channels (`[channels, source, destination]`)
/// with F(M, N + 1 − M): for channel `c`, part `h` reads the rows `inputs` gives of the plane of
/// `x` that starts at `planes[h] + c·source` (rows of the unit's `width`), and `V[ξ][t]` goes to
/// `dst[c·destination + ξ·plane + t]` for the unit's `count` tiles.
fn input<const M: usize, const N: usize>(
    x: &[f32],
    planes: [Option<usize>; MAX_PARTS],
    unit: &Unit,
    inputs: &Inputs,
    [channels, source, destination]: Channels,
    dst: &mut [f32],
    plane: usize,
) {
    let count = unit.count;
    assert!((1..=LANES).contains(&count) && unit.parts <= parts(M) && M <= MAX_M && N <= MAX_N);
    assert!(
        channels > 0 && (channels - 1) * destination + (N * N - 1) * plane + count <= dst.len()
    );
    let last = (channels - 1) * source;
    let mut rows = [[std::ptr::null(); MAX_N]; MAX_PARTS];
    for (part, (start, source)) in planes.iter().zip(inputs).enumerate() {
        let (Some(start), Some((_, lines))) = (start, source) else {
            continue;
        };
        for (u, line) in lines.iter().enumerate().take(N) {
            if let Some(line) = line {
                let at = start + line * unit.width;
                assert!(at + last + unit.width <= x.len());
                rows[part][u] = x[at..].as_ptr();
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(is_available());
        let job = avx512::Input {
            rows,
            col: unit.col,
            masks: unit.masks,
            gather: unit.gather,
            count,
            channels,
            source,
            dst: dst.as_mut_ptr(),
            destination,
            plane,
        };
        // SAFETY: AVX-512F was detected; for each channel the kernel reads only the lanes
        // `Unit::new` keeps in each part's rows (inside their `width` elements, which every
        // row of every channel has in `x`: asserted above for the last), and writes `count`
        // elements at `c·destination + ξ·plane` for `ξ < N²`, inside `dst` (asserted above).
        unsafe { avx512::input::<M, N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

/// Transform the tiles of `unit` back with F(M, N + 1 − M) for `channels` output channels
/// (`[channels, source, destination]`): `src[c·source + ξ·plane + t]` holds `M[ξ][t]` of
/// channel `c`; writes `Y + bias[c]` to the output rows `place` gives in `dst` for channel 0,
/// `c·destination` further on for channel `c`. Whether every output written is finite.
fn output<const M: usize, const N: usize>(
    src: &[f32],
    plane: usize,
    unit: &Unit,
    bias: &[f32],
    [channels, source, destination]: Channels,
    place: &Place,
    dst: &mut [f32],
) -> bool {
    let count = unit.count;
    assert!((1..=LANES).contains(&count) && unit.parts <= parts(M) && M <= MAX_M && N <= MAX_N);
    assert!(channels > 0 && channels <= bias.len());
    assert!((channels - 1) * source + (N * N - 1) * plane + count <= src.len());
    let mut cols = [0; MAX_PARTS];
    let mut rows = [[std::ptr::null_mut(); MAX_M]; MAX_PARTS];
    for &(h, i, start, len) in &place.outputs[..place.count] {
        assert!(h < unit.parts && i < M);
        assert!(len <= M * unit.tiles[h] && (cols[h] == 0 || cols[h] == len));
        assert!(start + (channels - 1) * destination + len <= dst.len());
        cols[h] = len;
        rows[h][i] = dst[start..].as_mut_ptr();
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(is_available());
        let job = avx512::Output {
            src: src.as_ptr(),
            plane,
            count,
            lane: unit.lane,
            bias: bias.as_ptr(),
            channels,
            source,
            rows,
            destination,
            cols,
        };
        // SAFETY: AVX-512F was detected; for each channel `c` the kernel reads `count` elements
        // at `c·source + ξ·plane` for `ξ < N²`, inside `src`, reads `bias[c]`, and writes the
        // first `cols[h]` elements (at most 16) of each row of part `h` that is not null,
        // `c·destination` past its channel-0 start, inside `dst` (all asserted above).
        unsafe { avx512::output::<M, N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

/// Run `$body` with `$i` bound to each of `0, 1, …, MAX_N − 1` below `$n`, written out rather
/// than looped, so that the constant matrices' entries indexed by `$i` fold into the code.
#[cfg(target_arch = "x86_64")]
macro_rules! unrolled {
    ($i:ident < $n:expr => $body:block) => {
        unrolled!(@ $i, $n, $body, [0 1 2 3 4 5 6])
    };
    (@ $i:ident, $n:expr, $body:block, [$($k:literal)*]) => {
        const { assert!(MAX_N == 7, "unrolled! writes out indices below MAX_N") };
        $(
            if $k < $n {
                let $i: usize = $k;
                $body
            }
        )*
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::direct::avx512::transpose;
    use super::{LANES, MAX_M, MAX_N, MAX_PARTS, matrices, parts};
    use std::arch::x86_64::*;

    /// An input transform's pointers (see [`super::input`]).
    pub(super) struct Input {
        pub rows: [[*const f32; MAX_N]; MAX_PARTS],
        pub col: [isize; MAX_PARTS],
        pub masks: [[u16; MAX_PARTS]; MAX_N],
        pub gather: [[i32; LANES]; 2],
        pub count: usize,
        pub channels: usize,
        pub source: usize,
        pub dst: *mut f32,
        pub destination: usize,
        pub plane: usize,
    }

    /// For each channel `c < channels`: `V[ξ][ν][t] = Σ_{u,v} Bᵀ[ξ][u] d_t[u][v] Bᵀ[ν][v]` with
    /// the `Bᵀ` of F(M, N + 1 − M) for 16 tiles `t`: load `h` holds
    /// `rows[h][u][c·source + col[h] + v + k]` in lane `k` (zero where `masks[v][h]` leaves
    /// the lane out and for null rows), and `d_t[u][v]` is lane `t` of the permutation of
    /// loads 0 and 1 by `gather[0]`, then of that and load 2 by `gather[1]`; stored to
    /// `dst[c·destination + (ξ·N + ν)·plane + t]` for `t < count`. The constant matrices' zeros
    /// are skipped when the code is generated.
    ///
    /// # Safety
    /// The processor must have AVX-512F; for every channel, every lane `masks` keeps must lie
    /// in its row when the row is not null, and `dst` must hold
    /// `(channels − 1)·destination + (N² − 1)·plane + count`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input<const M: usize, const N: usize>(t: &Input) {
        let m = const { matrices::<M, N>() };
        let parts = const { parts(M) };
        // SAFETY: unaligned loads of 16 i32 from arrays of 16.
        let gather = t
            .gather
            .map(|lanes| unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) });
        let store = ((1u32 << t.count) - 1) as __mmask16;
        // Rows of the tile that some part reads; the others are zero and drop out of the sums.
        let present: [bool; N] =
            std::array::from_fn(|u| t.rows[..parts].iter().any(|rows| !rows[u].is_null()));
        for c in 0..t.channels {
            let mut e = [[_mm512_setzero_ps(); N]; N];
            // SAFETY: the loads are masked to the lanes `masks` keeps in channel `c`'s rows (the
            // masked-off lanes are not read, and their addresses are only computed), the stores
            // to `count` elements of each of the `N²` planes of channel `c` in `dst`.
            unsafe {
                unrolled!(u < N => {
                    if present[u] {
                        let mut d = [_mm512_setzero_ps(); N];
                        unrolled!(v < N => {
                            let mut loads = [_mm512_setzero_ps(); MAX_PARTS];
                            for (h, load) in loads.iter_mut().enumerate().take(parts) {
                                let row = t.rows[h][u];
                                if !row.is_null() {
                                    let start = row
                                        .wrapping_add(c * t.source)
                                        .wrapping_offset(t.col[h] + v as isize);
                                    *load = _mm512_maskz_loadu_ps(t.masks[v][h], start);
                                }
                            }
                            let mut value = _mm512_permutex2var_ps(loads[0], gather[0], loads[1]);
                            if parts > 2 {
                                value = _mm512_permutex2var_ps(value, gather[1], loads[2]);
                            }
                            d[v] = value;
                        });
                        // e[u][ν] = Σ_v d[u][v]·Bᵀ[ν][v].
                        unrolled!(nu < N => {
                            e[u][nu] = combine(m.b_t[nu], &d);
                        });
                    }
                });
                // Absent rows are zero in `e` and add nothing.
                let dst = t.dst.add(c * t.destination);
                unrolled!(xi < N => {
                    unrolled!(nu < N => {
                        let mut column = [_mm512_setzero_ps(); N];
                        unrolled!(u < N => {
                            column[u] = e[u][nu];
                        });
                        let value = combine(m.b_t[xi], &column);
                        _mm512_mask_storeu_ps(dst.add((xi * N + nu) * t.plane), store, value);
                    });
                });
            }
        }
    }

    /// [`combine`] in `f64`: `Σ_k coefficients[k]·values[k]` for `k < N`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn combine_f64<const N: usize>(coefficients: [f64; N], values: &[__m512d; MAX_N]) -> __m512d {
        let mut acc = _mm512_setzero_pd();
        unrolled!(k < N => {
            let c = coefficients[k];
            if c != 0.0 {
                acc = _mm512_fmadd_pd(_mm512_set1_pd(c), values[k], acc);
            }
        });
        acc
    }

    /// `Σ_k coefficients[k]·values[k]`, skipping the zero coefficients: once the calls are
    /// unrolled the coefficients are constants, so the zeros drop out when the code is
    /// generated.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn combine<const N: usize>(coefficients: [f64; N], values: &[__m512; N]) -> __m512 {
        let mut acc = _mm512_setzero_ps();
        unrolled!(k < N => {
            let c = coefficients[k] as f32;
            if c != 0.0 {
                acc = _mm512_fmadd_ps(_mm512_set1_ps(c), values[k], acc);
            }
        });
        acc
    }

    /// An output transform's pointers (see [`super::output`]).
    pub(super) struct Output {
        pub src: *const f32,
        pub plane: usize,
        pub count: usize,
        pub lane: [usize; MAX_PARTS],
        pub bias: *const f32,
        pub channels: usize,
        pub source: usize,
        pub rows: [[*mut f32; MAX_M]; MAX_PARTS],
        pub destination: usize,
        pub cols: [usize; MAX_PARTS],
    }

    /// For each channel `c < channels`, with the `Aᵀ` of F(M, N + 1 − M):
    /// `rows[h][i][c·destination + M·t + j] = bias[c] + Σ_{ξ,ν} Aᵀ[i][ξ] M_s[ξ][ν] Aᵀ[j][ν]`
    /// for the tiles `s = lane[h] + t` of part `h`, with
    /// `M_s[ξ][ν] = src[c·source + (ξ·N + ν)·plane + s]` (`s < count`), writing the first
    /// `cols[h]` columns (at most 16) of each row that is not null.
    /// Whether every value written is finite.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `bias` must hold `channels` elements, `src`
    /// `(channels − 1)·source + (N² − 1)·plane + count`, and each row of part `h` that is not
    /// null `(channels − 1)·destination + cols[h]`, `cols[h] ≤ 16`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output<const M: usize, const N: usize>(t: &Output) -> bool {
        let m = const { matrices::<M, N>() };
        let parts = const { parts(M) };
        let lanes = ((1u32 << t.count) - 1) as __mmask16;
        // Part `h`'s tiles of output columns `j < M`, interleaved into `M·tiles` columns:
        // columns `j < 2` from `y[0]` and `y[1]`, then column 2 from `y[2]`.
        let index = |lanes: [i32; LANES]| {
            // SAFETY: an unaligned load of 16 i32 from an array of 16.
            unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
        };
        let interleave: [[__m512i; 2]; MAX_PARTS] = std::array::from_fn(|h| {
            let tile = |k: usize| (t.lane[h] + k / M).min(LANES - 1) as i32;
            let first = std::array::from_fn(|k| tile(k) + (LANES * (k % M).min(1)) as i32);
            let second = std::array::from_fn(|k| {
                if k % M == 2 {
                    LANES as i32 + tile(k)
                } else {
                    k as i32
                }
            });
            [index(first), index(second)]
        });
        let masks = t.cols.map(|cols| ((1u32 << cols) - 1) as __mmask16);
        let mut finite = true;
        for c in 0..t.channels {
            // SAFETY: the loads are masked to `count` elements of each plane of channel `c` in
            // `src`, the stores to the first `cols[h]` elements of each row that is not null,
            // `c·destination` on; `bias` holds `channels`.
            unsafe {
                let src = t.src.add(c * t.source);
                // s[i][ν] = Σ_ξ Aᵀ[i][ξ]·M[ξ][ν].
                let mut s = [[_mm512_setzero_ps(); N]; M];
                for xi in 0..N {
                    for nu in 0..N {
                        let v = _mm512_maskz_loadu_ps(lanes, src.add((xi * N + nu) * t.plane));
                        for (i, s_i) in s.iter_mut().enumerate() {
                            let c = m.a_t[i][xi] as f32;
                            if c != 0.0 {
                                s_i[nu] = _mm512_fmadd_ps(_mm512_set1_ps(c), v, s_i[nu]);
                            }
                        }
                    }
                }
                let bias = _mm512_set1_ps(*t.bias.add(c));
                for (i, s_i) in s.iter().enumerate() {
                    let mut y = [bias; M];
                    for (j, y_j) in y.iter_mut().enumerate() {
                        for (nu, &s_in) in s_i.iter().enumerate() {
                            let c = m.a_t[j][nu] as f32;
                            if c != 0.0 {
                                *y_j = _mm512_fmadd_ps(_mm512_set1_ps(c), s_in, *y_j);
                            }
                        }
                    }
                    for h in 0..parts {
                        let row = t.rows[h][i];
                        if row.is_null() {
                            continue;
                        }
                        let mut values = _mm512_permutex2var_ps(y[0], interleave[h][0], y[1]);
                        if M > 2 {
                            values = _mm512_permutex2var_ps(values, interleave[h][1], y[M - 1]);
                        }
                        _mm512_mask_storeu_ps(row.add(c * t.destination), masks[h], values);
                        // v − v is NaN exactly where v is infinite or NaN.
                        let ordered =
                            _mm512_cmp_ps_mask::<_CMP_ORD_Q>(_mm512_sub_ps(values, values), values);
                        finite &= ordered & masks[h] == masks[h];
                    }
                }
            }
        }
        finite
    }

    /// A filter transform's pointers (see [`super::transform_weights`]).
    pub(super) struct Filters {
        pub w: *const f32,
        pub filter: usize,
        pub count: usize,
        pub u: *mut f32,
        pub plane: usize,
    }

    /// `u[(ξ·N + ν)·plane + o] = Σ_{k,l} G[ξ][k]·g_o[k][l]·G[ν][l]` in `f64`, rounded once, with
    /// the `G` of F(M, r), for the filters `g_o[k][l] = w[o·filter + k·r + l]`, `o < count`,
    /// `r = N + 1 − M`: the taps of
    /// 16 filters are transposed in registers (output channels in the lanes), widened to two
    /// registers of 8 `f64` and transformed by the constant matrices, whose zeros are skipped.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `w` must hold `(count − 1)·filter + r²` elements, `u`
    /// `(N² − 1)·plane + count`; `1 ≤ count ≤ 16` and `r² ≤ 32`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn filters<const M: usize, const N: usize>(t: &Filters) {
        let m = const { matrices::<M, N>() };
        let r = N + 1 - M;
        let taps = r * r;
        let low = ((1u32 << taps.min(LANES)) - 1) as __mmask16;
        let high = ((1u32 << taps.saturating_sub(LANES)) - 1) as __mmask16;
        // SAFETY: the loads are masked to the `r²` taps of the first `count` filters, the stores
        // to `count` elements of each of the `N²` planes.
        unsafe {
            let rows = |mask: __mmask16, shift: usize| -> [__m512; LANES] {
                std::array::from_fn(|o| {
                    if o < t.count && mask != 0 {
                        _mm512_maskz_loadu_ps(mask, t.w.add(o * t.filter + shift))
                    } else {
                        _mm512_setzero_ps()
                    }
                })
            };
            let (first, second) = (transpose(&rows(low, 0)), transpose(&rows(high, LANES)));
            let tap = |k: usize| {
                if k < LANES {
                    first[k]
                } else {
                    second[k - LANES]
                }
            };
            // Lanes 8·p.. of a register as 8 f64.
            let widen = |v: __m512, p: usize| {
                let half = if p == 0 {
                    _mm512_castps512_ps256(v)
                } else {
                    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
                };
                _mm512_cvtps_pd(half)
            };
            let store = ((1u32 << t.count) - 1) as __mmask16;
            // Two halves of 8 filters each, so that the sums are in `f64`; each half's
            // results go to its 8 lanes of the planes.
            for part in 0..2 {
                let mut g = [_mm512_setzero_pd(); 2 * LANES];
                unrolled!(k < r => {
                    unrolled!(l < r => {
                        g[k * r + l] = widen(tap(k * r + l), part);
                    });
                });
                let lanes = ((store >> (8 * part)) & 0xff) as __mmask16;
                // half[ξ][l] = Σ_k G[ξ][k]·g[k][l].
                let mut half = [[_mm512_setzero_pd(); MAX_N]; MAX_N];
                unrolled!(xi < N => {
                    unrolled!(l < r => {
                        let mut column = [_mm512_setzero_pd(); MAX_N];
                        unrolled!(k < r => {
                            column[k] = g[k * r + l];
                        });
                        half[xi][l] = combine_f64(m.g[xi], &column);
                    });
                });
                unrolled!(xi < N => {
                    unrolled!(nu < N => {
                        let v = combine_f64(m.g[nu], &half[xi]);
                        let v = _mm512_castps256_ps512(_mm512_cvtpd_ps(v));
                        let at = t.u.add((xi * N + nu) * t.plane + 8 * part);
                        _mm512_mask_storeu_ps(at, lanes, v);
                    });
                });
            }
        }
    }

    /// An output-gradient transform's pointers (see [`super::gradient`]).
    pub(super) struct Gradient {
        pub src: *const f32,
        pub row: usize,
        pub col: usize,
        pub vectors: usize,
        pub dst: *mut f32,
        pub plane: usize,
    }

    /// `dst[(ξ·N + ν)·plane + o] = Σ_{i,j} Aᵀ[i][ξ]·dy[i][j][o]·Aᵀ[j][ν]` for `o < 16·vectors`,
    /// with `dy[i][j][o] = src[i·row + j·col + o]`.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `src` must hold `row + col + 16·vectors` elements and
    /// `dst` `(N² − 1)·plane + 16·vectors`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gradient<const N: usize>(t: &Gradient) {
        let m = const { matrices::<2, N>() };
        for k in 0..t.vectors {
            // SAFETY: the loads read 16 elements at `i·row + j·col + 16k < row + col + 16·vectors`
            // and the stores write 16 at `ξ·plane + 16k`, inside the slices (the caller's bounds).
            unsafe {
                let d: [[__m512; 2]; 2] = std::array::from_fn(|i| {
                    std::array::from_fn(|j| {
                        _mm512_loadu_ps(t.src.add(i * t.row + j * t.col + k * LANES))
                    })
                });
                // s[ξ][j] = Σ_i Aᵀ[i][ξ]·dy[i][j].
                let mut s = [[_mm512_setzero_ps(); 2]; N];
                for (xi, s_xi) in s.iter_mut().enumerate() {
                    for (j, s_xj) in s_xi.iter_mut().enumerate() {
                        for (i, d_i) in d.iter().enumerate() {
                            let c = m.a_t[i][xi] as f32;
                            if c != 0.0 {
                                *s_xj = _mm512_fmadd_ps(_mm512_set1_ps(c), d_i[j], *s_xj);
                            }
                        }
                    }
                }
                for (xi, s_xi) in s.iter().enumerate() {
                    for nu in 0..N {
                        let mut acc = _mm512_setzero_ps();
                        for (j, &s_xj) in s_xi.iter().enumerate() {
                            let c = m.a_t[j][nu] as f32;
                            if c != 0.0 {
                                acc = _mm512_fmadd_ps(_mm512_set1_ps(c), s_xj, acc);
                            }
                        }
                        _mm512_storeu_ps(t.dst.add((xi * N + nu) * t.plane + k * LANES), acc);
                    }
                }
            }
        }
    }

    /// A transposition's pointers (see [`super::channels_last`]).
    pub(super) struct ChannelsLast {
        pub src: *const f32,
        pub channel: usize,
        pub channels: usize,
        pub cols: usize,
        pub dst: *mut f32,
        pub col: usize,
    }

    /// `dst[j·col + o] = src[o·channel + j]` for `j < cols` and `o < 16`, zero for
    /// `o ≥ channels`.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `src` must hold `(channels − 1)·channel + cols`
    /// elements and `dst` `(cols − 1)·col + 16`; `1 ≤ cols ≤ 16`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn channels_last(t: &ChannelsLast) {
        let lanes = ((1u32 << t.cols) - 1) as __mmask16;
        // SAFETY: the loads are masked to `cols` elements of each of the first `channels` rows,
        // the stores write 16 elements at each of the first `cols` columns.
        unsafe {
            let rows: [__m512; LANES] = std::array::from_fn(|o| {
                if o < t.channels {
                    _mm512_maskz_loadu_ps(lanes, t.src.add(o * t.channel))
                } else {
                    _mm512_setzero_ps()
                }
            });
            for (j, &column) in transpose(&rows).iter().enumerate().take(t.cols) {
                _mm512_storeu_ps(t.dst.add(j * t.col), column);
            }
        }
    }

    /// A weight-gradient product tile's pointers (see [`super::ProductJob`]).
    pub(super) struct Products {
        pub v: *const f32,
        pub v_stride: usize,
        pub u: *const f32,
        pub u_stride: usize,
        pub tiles: usize,
        pub q: *mut f32,
        pub q_stride: usize,
    }

    /// `q[m·q_stride + 16k + l] += Σ_{s < tiles} v[m·v_stride + s]·u[s·u_stride + 16k + l]` for
    /// `m < MR`, `k < V`, `l < 16`: the sums stay in registers over all the tiles.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `v` must hold `(MR − 1)·v_stride + tiles` elements, `u`
    /// `(tiles − 1)·u_stride + 16·V` and `q` `(MR − 1)·q_stride + 16·V`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn products<const MR: usize, const V: usize>(t: &Products) {
        // SAFETY: every access is inside the bounds the caller guarantees.
        unsafe {
            let mut acc: [[__m512; V]; MR] = std::array::from_fn(|m| {
                std::array::from_fn(|k| _mm512_loadu_ps(t.q.add(m * t.q_stride + k * LANES)))
            });
            for s in 0..t.tiles {
                let u: [__m512; V] =
                    std::array::from_fn(|k| _mm512_loadu_ps(t.u.add(s * t.u_stride + k * LANES)));
                for (m, acc_m) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*t.v.add(m * t.v_stride + s));
                    for (a, &u_k) in acc_m.iter_mut().zip(&u) {
                        *a = _mm512_fmadd_ps(b, u_k, *a);
                    }
                }
            }
            for (m, acc_m) in acc.iter().enumerate() {
                for (k, &a) in acc_m.iter().enumerate() {
                    _mm512_storeu_ps(t.q.add(m * t.q_stride + k * LANES), a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrices against the worked F(2, 3) of Lavin and Gray (2016), up to the signs of a
    /// row of `Bᵀ` and `G` (their product is the same): points 0, 1, −1 and infinity.
    #[test]
    fn f2_3_matrices_are_the_known_ones() {
        let t = Transforms::new(2, 3).unwrap();
        assert_eq!(t.a_t, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, -1.0, 1.0]);
        assert_eq!(
            t.g,
            [-1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0.0, 0.0, 1.0]
        );
        assert_eq!(
            t.b_t,
            [
                -1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0, -1.0, 0.0, 1.0
            ]
        );
    }

    /// F(m, r) gives the `m` outputs of the formula for every `m` and `r` it is built for, on
    /// random data in `f64` (exact up to rounding).
    #[test]
    fn minimal_filtering_equals_the_formula() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        for m in 2..=3 {
            for r in 2..=5 {
                let t = Transforms::new(m, r).unwrap();
                assert_eq!((t.m, t.r, t.n), (m, r, m + r - 1));
                for _ in 0..100 {
                    let d: Vec<f64> = (0..m + r - 1).map(|_| next()).collect();
                    let g: Vec<f64> = (0..r).map(|_| next()).collect();
                    let y = t.correlate(&d, &g);
                    assert_eq!(y.len(), m);
                    for (i, &y_i) in y.iter().enumerate() {
                        let formula: f64 = (0..r).map(|k| g[k] * d[i + k]).sum();
                        assert!(
                            (y_i - formula).abs() < 1e-12,
                            "F({m}, {r}): {y_i} vs {formula}"
                        );
                    }
                }
            }
        }
        assert_eq!(Transforms::new(4, 3), None);
        assert_eq!(Transforms::new(2, 6), None);
    }
}
