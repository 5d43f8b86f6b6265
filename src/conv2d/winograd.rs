//! Winograd's minimal filtering F(2×2, r×r): a convolution at stride 1 with fewer
//! multiplications than the formula (chapter 4). The fast route takes 3 × 3 and 5 × 5 kernels
//! ([`KERNELS`]).
//!
//! Two neighbouring outputs of a 1-D correlation with an `r`-tap filter `g` read `n = r + 1`
//! inputs `d`. The formula spends `2r` multiplications on them; F(2, r) spends `n`:
//!
//! `y = Aᵀ [(G g) ⊙ (Bᵀ d)]`
//!
//! where `Bᵀ` (`n × n`), `G` (`n × r`) and `Aᵀ` (`2 × n`) hold only small rationals. They come
//! from the Chinese remainder theorem for polynomials: `G g` and `Bᵀ d` evaluate the filter and
//! the data as polynomials at `n − 1` points (the first `r` of 0, 1, −1, 2, −2) and at
//! infinity, the product
//! of the evaluations is the product polynomial evaluated there, and `Aᵀ` reads the two outputs
//! off it. In 2-D the same matrices act on rows and on columns: a tile of 2 × 2 outputs needs
//! `n × n` products instead of `4r²`, 16 for 36 at `r = 3`, 36 for 100 at `r = 5`:
//!
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//!
//! Summed over the input channels the products become `n²` matrix products, one per position
//! `ξ` of the `n × n` tile: `M[ξ] = U[ξ] · V[ξ]` with `U[ξ]` (`C_out × C_in`) the transformed
//! filters and `V[ξ]` (`C_in × tiles`) the transformed input tiles. The route:
//! 1. transforms every filter once per call (`U`, in `f64` then rounded);
//! 2. for a block of tile rows, transforms each input tile, 16 neighbouring tiles per register
//!    (rows of 8 tiles or fewer, such as the 7 of a 14 × 14 output, two rows per register);
//! 3. multiplies `V` by `U` with the direct kernels' row tiles (16 tiles per lane register);
//! 4. transforms `M` back to 2 × 2 outputs, adds the bias and stores whole output rows.
//!
//! The transforms add and subtract the pixels of a tile, so a value that is not finite spreads
//! to outputs of its tile that never read it; when an output comes out infinite or NaN the
//! route gives the call back, and [`super::fast::conv2d`] takes the direct kernels, which keep
//! the formula's semantics there.
//! Its rounding differs from the formula's order of sums; the property tests hold it, against
//! `f64`, to 10⁻⁵ of the sum of the terms' magnitudes, as every fast route.

use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::parallel::prelude::*;
use ndarray::{Array4, ArrayView1, ArrayView4};

use super::direct::{LANES, MAX_VECTORS, RowJob, Taps, f32_operands, is_available, pieces};
use crate::buffers::Scratch;
use crate::error::Result;
use crate::gemm::Scalar;
use crate::shape::{Conv2dParams, ConvGeometry};

/// The kernel sizes this route takes (square, stride 1, dilation 1, one group).
pub const KERNELS: [usize; 2] = [3, 5];
/// Interpolation points; F(2, r) uses the first `r`.
const POINTS: [f64; 5] = [0.0, 1.0, -1.0, 2.0, -2.0];
/// Fewest input and output channels for which the products outweigh the transforms.
const MIN_CHANNELS: usize = 16;
/// Tiles per block: the transformed inputs and products of a block stay in L2.
const BLOCK_TILES: usize = 128;
/// Output channels per product tile (`max_channels` allows 6 for every width of 16 to 64 tiles).
const CHANNEL_TILE: usize = 6;
/// Largest `n` of the route's transforms.
const MAX_N: usize = 6;

/// The matrices of F(2, n − 1), padded to `n` columns: `a_t` is `2 × n`, `g` is `n × r` (its
/// last column zero), `b_t` is `n × n`.
#[derive(Debug, Clone, Copy)]
struct Matrices<const N: usize> {
    a_t: [[f64; N]; 2],
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

/// The matrices of F(2, r) for `N = r + 1`, from the points `p_i` (`i < r`) and infinity:
/// * `Aᵀ[k][i] = p_iᵏ`, and `Aᵀ[1][∞] = 1`;
/// * `G[i][k] = p_iᵏ / Π_{j≠i} (p_i − p_j)`, and `G[∞][r − 1] = 1`;
/// * row `i` of `Bᵀ` holds the coefficients of `Π_{j≠i} (x − p_j)`, row `∞` those of
///   `Π_j (x − p_j)`.
const fn matrices<const N: usize>() -> Matrices<N> {
    let r = N - 1;
    let mut a_t = [[0.0; N]; 2];
    let mut g = [[0.0; N]; N];
    let mut b_t = [[0.0; N]; N];
    let mut i = 0;
    while i < r {
        let p = POINTS[i];
        a_t[0][i] = 1.0;
        a_t[1][i] = p;
        let mut scale = 1.0;
        let mut poly = [0.0; N];
        poly[0] = 1.0;
        let (mut degree, mut j) = (0, 0);
        while j < r {
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
    a_t[1][N - 1] = 1.0;
    g[N - 1][r - 1] = 1.0;
    let mut poly = [0.0; N];
    poly[0] = 1.0;
    let mut j = 0;
    while j < r {
        times_root(&mut poly, j, POINTS[j]);
        j += 1;
    }
    b_t[N - 1] = poly;
    Matrices { a_t, g, b_t }
}

/// The transforms of F(2, r), row-major: `a_t` (`2 × n`), `g` (`n × r`), `b_t` (`n × n`).
///
/// ```
/// use convlab::conv2d::winograd::Transforms;
///
/// // Two outputs of a 3-tap correlation from 4 products instead of 6.
/// let t = Transforms::new(3).unwrap();
/// let (d, g) = ([1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0]);
/// let y = t.correlate(&d, &g);
/// assert_eq!(y, [0.5 - 2.0 + 6.0, 1.0 - 3.0 + 8.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Transforms {
    /// Filter taps `r`.
    pub r: usize,
    /// Tile inputs and products, `n = r + 1`.
    pub n: usize,
    /// `Aᵀ`, `2 × n`.
    pub a_t: Vec<f64>,
    /// `G`, `n × r`.
    pub g: Vec<f64>,
    /// `Bᵀ`, `n × n`.
    pub b_t: Vec<f64>,
}

impl Transforms {
    /// The transforms for an `r`-tap filter, `2 ≤ r ≤ 5` (the points 0, 1, −1, 2, −2); `None`
    /// for other sizes.
    pub fn new(r: usize) -> Option<Transforms> {
        fn flat<const N: usize>(m: Matrices<N>) -> Transforms {
            let r = N - 1;
            Transforms {
                r,
                n: N,
                a_t: m.a_t.concat(),
                g: m.g.iter().flat_map(|row| row[..r].to_vec()).collect(),
                b_t: m.b_t.concat(),
            }
        }
        match r {
            2 => Some(flat(matrices::<3>())),
            3 => Some(flat(matrices::<4>())),
            4 => Some(flat(matrices::<5>())),
            5 => Some(flat(matrices::<6>())),
            _ => None,
        }
    }

    /// `y = Aᵀ [(G g) ⊙ (Bᵀ d)]`: the two outputs `y[i] = Σ_k g[k]·d[i + k]` from `n` products.
    /// Panics unless `d` has `n` values and `g` has `r`.
    pub fn correlate(&self, d: &[f64], g: &[f64]) -> [f64; 2] {
        let (n, r) = (self.n, self.r);
        assert!(
            d.len() == n && g.len() == r,
            "d has n = r + 1 values, g has r"
        );
        let products: Vec<f64> = (0..n)
            .map(|xi| {
                let filter: f64 = (0..r).map(|k| self.g[xi * r + k] * g[k]).sum();
                let data: f64 = (0..n).map(|u| self.b_t[xi * n + u] * d[u]).sum();
                filter * data
            })
            .collect();
        [0, 1].map(|i| (0..n).map(|xi| self.a_t[i * n + xi] * products[xi]).sum())
    }
}

/// Whether the route takes `c_out` filters of `kernel` taps over `c_in` channels: a square
/// kernel in [`KERNELS`], 16 channels or more in and out, and for 5 × 5 at least as many
/// outputs as inputs. The input transform's cost grows with `C_in` and the products' saving
/// with `C_in·C_out`: F(2×2, 5×5) measured no faster than the direct kernels for 64 channels
/// into 32 (the input gradient of the course's second layer), and faster for 32 into 64.
fn takes_filters([kh, kw]: [usize; 2], c_in: usize, c_out: usize) -> bool {
    kh == kw
        && KERNELS.contains(&kh)
        && c_in >= MIN_CHANNELS
        && c_out >= MIN_CHANNELS
        && (kh == 3 || c_out >= c_in)
}

/// [`super::fast::conv2d`] by F(2×2, r×r), or `Ok(None)` where it does not apply (no AVX-512,
/// not `f32`, not one group at stride 1 and dilation 1, not a square kernel in [`KERNELS`]
/// with 16 channels or more in and out and, for 5 × 5, no fewer output channels than input
/// channels) or when an output is not finite. Shapes are checked first.
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
        3 => run::<4>(x, w, b, pads, output),
        5 => run::<6>(x, w, b, pads, output),
        _ => None,
    }
}

/// `U[ξ] = (G g_{o,c} Gᵀ)[ξ]`, rounded from `f64`, for each position `ξ` in runs of output
/// channels `tiles`, each run `(o₀, mr)` channel by channel: `U[ξ][o₀][c][o − o₀]`, so that a
/// product tile reads its weights in order.
fn transform_weights<const N: usize>(w: ArrayView4<f32>, tiles: &[(usize, usize)]) -> Scratch<f32> {
    let m = const { matrices::<N>() };
    let (c_out, c_in, _, _) = w.dim();
    // The filter's taps are read as one slice; `r = N − 1` is known when the code is generated,
    // so the loops below unroll and skip the zeros of `G`.
    let w = w.as_standard_layout();
    let w = w.as_slice().expect("a standard-layout array is contiguous");
    let r = N - 1;
    let mut u = Scratch::for_overwrite(N * N * c_in * c_out);
    for &(o0, mr) in tiles {
        for (o, c) in (o0..o0 + mr).flat_map(|o| (0..c_in).map(move |c| (o, c))) {
            let filter = &w[(o * c_in + c) * r * r..][..r * r];
            // `G g`, then `(G g) Gᵀ`.
            let mut half = [[0.0f64; N]; N];
            for (xi, row) in half.iter_mut().enumerate() {
                for (l, v) in row.iter_mut().enumerate().take(r) {
                    for k in 0..r {
                        if m.g[xi][k] != 0.0 {
                            *v += m.g[xi][k] * filter[k * r + l] as f64;
                        }
                    }
                }
            }
            for (xi, row) in half.iter().enumerate() {
                for nu in 0..N {
                    let mut v = 0.0;
                    for (&h, &g) in row.iter().zip(&m.g[nu]).take(r) {
                        if g != 0.0 {
                            v += h * g;
                        }
                    }
                    u[(xi * N + nu) * c_in * c_out + o0 * c_in + c * mr + o - o0] = v as f32;
                }
            }
        }
    }
    u
}

/// [`forward`] for `N = r + 1`: jobs of a few images each, and in each job blocks of tile rows
/// that go through the three steps (input transform, products, output transform) together.
fn run<const N: usize>(
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
    let tiles = pieces(c_out, CHANNEL_TILE);
    let u = transform_weights::<N>(w, &tiles);
    let bias: Vec<f32> = b.map_or_else(|| vec![0.0; c_out], |b| b.to_vec());
    let (th, tw) = (h_out.div_ceil(2), w_out.div_ceil(2));
    let threads = rayon::current_num_threads();
    let images_per_job = BLOCK_TILES
        .div_ceil(th * tw)
        .min(batch.div_ceil(threads))
        .max(1);
    // An even number of tile rows, so that rows of 8 tiles or fewer pair up in a register.
    let rows_per_block = (BLOCK_TILES / tw).max(2) / 2 * 2;
    let most = rows_per_block * tw;
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
                Scratch::for_overwrite(N * N * c_in * most),
                Scratch::for_overwrite(N * N * c_out * most),
            )
        },
        |(v, m), (job, dst)| {
            let first = job * images_per_job;
            let tile_rows: Vec<(usize, usize)> = (first..first + dst.len() / image_out)
                .flat_map(|image| (0..th).map(move |a| (image, a)))
                .collect();
            for block in tile_rows.chunks(rows_per_block) {
                let p = block.len() * tw;
                let units = Unit::plan(block.len(), tw, left, width);
                let places: Vec<Place> = units
                    .iter()
                    .map(|unit| {
                        Place::new(
                            unit,
                            block,
                            [top, h],
                            [h_out, w_out],
                            first * image_out,
                            image_out,
                        )
                    })
                    .collect();
                // 1. The input tiles: V[c][ξ][tile], a channel's positions side by side.
                let nnp = N * N * p;
                // Channel by channel, so that each plane is read from the top down.
                for c in 0..c_in {
                    for (unit, place) in units.iter().zip(&places) {
                        let planes = [0, 1].map(|half| {
                            place.inputs[half].map(|(image, _)| (image * c_in + c) * h * width)
                        });
                        input::<N>(x, planes, unit, place, &mut v[c * nnp + unit.p0..], p);
                    }
                }
                // 2. The products, one per tile position ξ:
                // M[o][ξ][tile] = Σ_c U[ξ][c][o]·V[c][ξ][tile].
                let mut taps = Taps::default();
                for c in 0..c_in {
                    taps.push(c * nnp, c);
                }
                for xi in 0..N * N {
                    let v = &v[xi * p..(c_in - 1) * nnp + (xi + 1) * p];
                    let u = &u[xi * c_in * c_out..][..c_in * c_out];
                    let m = &mut m[xi * p..];
                    for q0 in (0..p).step_by(LANES * MAX_VECTORS) {
                        let valid = (p - q0).min(LANES * MAX_VECTORS);
                        let vectors = valid.div_ceil(LANES);
                        for &(o0, mr) in &tiles {
                            RowJob {
                                x: v,
                                start: q0,
                                taps: &taps,
                                weights: &u[o0 * c_in..],
                                tap_stride: mr,
                                bias: &ZEROS[..mr],
                                vectors,
                                mr,
                                valid,
                            }
                            .run(&mut m[o0 * nnp + q0..], nnp);
                        }
                    }
                }
                // 3. The outputs: Y = Aᵀ M A + b, two rows of each channel per tile row.
                for o in 0..c_out {
                    for (unit, place) in units.iter().zip(&places) {
                        let finite = output::<N>(
                            &m[o * nnp + unit.p0..],
                            p,
                            unit,
                            bias[o],
                            place.outputs(dst, o * h_out * w_out),
                        );
                        if !finite {
                            not_finite.store(true, Ordering::Relaxed);
                        }
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

/// Zero biases for the products' row tiles.
static ZEROS: [f32; LANES] = [0.0; LANES];

/// One register of neighbouring tiles in a block: lanes `0..half` are tiles from `b0[0]` of the
/// block's tile row `rows[0]`, lanes `half..count` tiles from `b0[1]` of tile row `rows[1]`.
/// Rows of more than 8 tiles take 16 at a time, 8 per half (the halves are one run of the same
/// row); shorter rows pair up, two tile rows in a register.
///
/// Patch column `v` of a half is the even lanes of a load of 16 columns from `col[half] + v`,
/// `col` being its first tile's column 0 (negative in the left padding); `masks[v]` keeps the
/// lanes of each half's load inside the row's `0..width`.
#[derive(Debug, Clone)]
struct Unit {
    p0: usize,
    count: usize,
    half: usize,
    rows: [usize; 2],
    b0: [usize; 2],
    col: [isize; 2],
    width: usize,
    masks: [[u16; 2]; MAX_N],
}

impl Unit {
    fn new(
        p0: usize,
        count: usize,
        half: usize,
        rows: [usize; 2],
        b0: [usize; 2],
        left: usize,
        width: usize,
    ) -> Unit {
        let col = b0.map(|b| (2 * b) as isize - left as isize);
        // Lanes `k < 16` of a load from column `start` that fall inside `0..width`.
        let inside = |start: isize| {
            let lo = (-start).clamp(0, LANES as isize);
            let hi = (width as isize - start).clamp(0, LANES as isize);
            if hi <= lo {
                return 0;
            }
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        };
        let second = count > half;
        let masks = std::array::from_fn(|v| {
            let v = v as isize;
            [
                inside(col[0] + v),
                if second { inside(col[1] + v) } else { 0 },
            ]
        });
        Unit {
            p0,
            count,
            half,
            rows,
            b0,
            col,
            width,
            masks,
        }
    }

    /// The registers of a block of `rows` tile rows of `tw` tiles, in the order of their tiles.
    fn plan(rows: usize, tw: usize, left: usize, width: usize) -> Vec<Unit> {
        let half = LANES / 2;
        if tw <= half {
            (0..rows)
                .step_by(2)
                .map(|k| {
                    let count = tw * (rows - k).min(2);
                    Unit::new(k * tw, count, tw, [k, k + 1], [0, 0], left, width)
                })
                .collect()
        } else {
            (0..rows)
                .flat_map(|k| (0..tw).step_by(LANES).map(move |b| (k, b)))
                .map(|(k, b)| {
                    let count = LANES.min(tw - b);
                    Unit::new(k * tw + b, count, half, [k, k], [b, b + half], left, width)
                })
                .collect()
        }
    }

    /// Half `h`'s tile row, first tile and number of tiles; `None` when it holds none.
    fn half(&self, h: usize) -> Option<(usize, usize, usize)> {
        let tiles = if h == 0 {
            self.count.min(self.half)
        } else {
            self.count.saturating_sub(self.half)
        };
        (tiles > 0).then_some((self.rows[h], self.b0[h], tiles))
    }
}

/// Where a unit's tiles lie in a block: for each half, the image and the input row each patch row
/// reads (`None` in the padding), and the output rows it writes, `(slot, start, len)` with
/// `slot = 2·half + row` and `start` the first element in the job's outputs for channel 0, in
/// the order they lie there.
struct Place {
    inputs: [Option<(usize, [Option<usize>; MAX_N])>; 2],
    outputs: [(usize, usize, usize); 4],
    count: usize,
}

impl Place {
    fn new(
        unit: &Unit,
        block: &[(usize, usize)],
        [top, h]: [usize; 2],
        [h_out, w_out]: [usize; 2],
        job_start: usize,
        image_out: usize,
    ) -> Place {
        let inputs = [0, 1].map(|half| {
            let (k, _, _) = unit.half(half)?;
            let (image, a) = block[k];
            let rows = std::array::from_fn(|u| (2 * a + u).checked_sub(top).filter(|&i| i < h));
            Some((image, rows))
        });
        let mut outputs = [(0, 0, 0); 4];
        let mut count = 0;
        for slot in 0..4 {
            let Some((k, b0, tiles)) = unit.half(slot / 2) else {
                continue;
            };
            let (image, a) = block[k];
            let row = 2 * a + slot % 2;
            if row < h_out {
                let start = image * image_out - job_start + row * w_out + 2 * b0;
                outputs[count] = (slot, start, (2 * tiles).min(w_out - 2 * b0));
                count += 1;
            }
        }
        outputs[..count].sort_by_key(|&(_, start, _)| start);
        Place {
            inputs,
            outputs,
            count,
        }
    }

    /// The output rows of channel `shift / (H_out·W_out)` in `dst`, `[half][row]`.
    fn outputs<'a>(&self, mut dst: &'a mut [f32], shift: usize) -> [[Option<&'a mut [f32]>; 2]; 2] {
        let mut rows: [[Option<&mut [f32]>; 2]; 2] = Default::default();
        let mut at = 0;
        for &(slot, start, len) in &self.outputs[..self.count] {
            let (_, tail) = std::mem::take(&mut dst).split_at_mut(start + shift - at);
            let (piece, tail) = tail.split_at_mut(len);
            rows[slot / 2][slot % 2] = Some(piece);
            dst = tail;
            at = start + shift + len;
        }
        rows
    }
}

/// Transform the tiles of `unit` for one channel: half `h` reads the rows `place` gives of the
/// plane of `x` that starts at `planes[h]` (rows of the unit's `width`). Writes `V[ξ][t]` to
/// `dst[ξ·plane + t]` for the unit's `count` tiles.
fn input<const N: usize>(
    x: &[f32],
    planes: [Option<usize>; 2],
    unit: &Unit,
    place: &Place,
    dst: &mut [f32],
    plane: usize,
) {
    let count = unit.count;
    assert!((1..=LANES).contains(&count) && (1..=LANES / 2).contains(&unit.half) && N <= MAX_N);
    assert!((N * N - 1) * plane + count <= dst.len());
    let mut rows = [[std::ptr::null(); MAX_N]; 2];
    for (half, (start, source)) in planes.iter().zip(&place.inputs).enumerate() {
        let (Some(start), Some((_, lines))) = (start, source) else {
            continue;
        };
        for (u, line) in lines.iter().enumerate().take(N) {
            if let Some(line) = line {
                rows[half][u] = x[start + line * unit.width..][..unit.width].as_ptr();
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
            half: unit.half,
            count,
            dst: dst.as_mut_ptr(),
            plane,
        };
        // SAFETY: AVX-512F was detected; the kernel reads only the lanes `Unit::new` keeps in
        // each half's rows (inside their `width` elements, which every row has: they are
        // slices of `x`), and writes
        // `count` elements at `ξ·plane` for `ξ < N²`, inside `dst` (asserted above).
        unsafe { avx512::input::<N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

/// Transform the tiles of `unit` for one output channel back: `src[ξ·plane + t]` holds
/// `M[ξ][t]`; writes `Y + bias` to `rows[h][i]`, output row `i` of the tiles of half `h` from
/// their first column (`None` past the output; a row holds the columns to write, at most two per
/// tile). Whether every output written is finite.
fn output<const N: usize>(
    src: &[f32],
    plane: usize,
    unit: &Unit,
    bias: f32,
    mut rows: [[Option<&mut [f32]>; 2]; 2],
) -> bool {
    let (count, half) = (unit.count, unit.half);
    assert!((1..=LANES).contains(&count) && (1..=LANES / 2).contains(&half) && N <= MAX_N);
    assert!((N * N - 1) * plane + count <= src.len());
    let cols = [0, 1].map(|h| {
        let tiles = unit.half(h).map_or(0, |(_, _, tiles)| tiles);
        let len = rows[h].iter().flatten().map(|r| r.len()).max().unwrap_or(0);
        assert!(len <= 2 * tiles && rows[h].iter().flatten().all(|r| r.len() == len));
        len
    });
    #[cfg(target_arch = "x86_64")]
    {
        assert!(is_available());
        let job = avx512::Output {
            src: src.as_ptr(),
            plane,
            count,
            half,
            bias,
            rows: [0, 1].map(|h| {
                [0, 1].map(|i| {
                    rows[h][i]
                        .as_deref_mut()
                        .map_or(std::ptr::null_mut(), <[f32]>::as_mut_ptr)
                })
            }),
            cols,
        };
        // SAFETY: AVX-512F was detected; the kernel reads `count` elements at `ξ·plane` for
        // `ξ < N²`, inside `src` (asserted above), and writes the first `cols[h]` elements of
        // each row of half `h` that is not null (each row holds `cols[h]`).
        unsafe { avx512::output::<N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LANES, MAX_N, matrices};
    use std::arch::x86_64::*;

    /// The even lanes of `a` in lanes `0..half`, those of `b` in lanes `half..16`.
    #[target_feature(enable = "avx512f")]
    fn evens(half: usize) -> __m512i {
        let lanes: [i32; LANES] = std::array::from_fn(|t| {
            if t < half {
                2 * t as i32
            } else {
                (LANES + 2 * (t - half)) as i32
            }
        });
        // SAFETY: an unaligned load of 16 i32 from an array of 16.
        unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
    }

    /// An input transform's pointers (see [`super::input`]).
    pub(super) struct Input {
        pub rows: [[*const f32; MAX_N]; 2],
        pub col: [isize; 2],
        pub masks: [[u16; 2]; MAX_N],
        pub half: usize,
        pub count: usize,
        pub dst: *mut f32,
        pub plane: usize,
    }

    /// `V[ξ][ν][t] = Σ_{u,v} Bᵀ[ξ][u] d_t[u][v] Bᵀ[ν][v]` for 16 tiles `t`, where for the tiles
    /// `t` of half `h` (lanes `h·half..`) `d_t[u][v] = rows[h][u][col[h] + 2(t − h·half) + v]`
    /// (zero where `masks[v][h]` leaves the lane out and for null rows), stored to
    /// `dst[(ξ·N + ν)·plane + t]` for `t < count`. The constant matrices' zeros are skipped
    /// when the code is generated.
    ///
    /// # Safety
    /// The processor must have AVX-512F; every lane `masks` keeps must lie in its row when the
    /// row is not null, and `dst` must hold `(N² − 1)·plane + count`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input<const N: usize>(t: &Input) {
        let m = const { matrices::<N>() };
        let evens = evens(t.half);
        let mut e = [[_mm512_setzero_ps(); N]; N];
        // SAFETY: the loads are masked to the lanes `masks` keeps (the masked-off lanes are not
        // read, and their addresses are only computed), the stores to `count` elements of each
        // of the `N²` planes of `dst`.
        unsafe {
            for (u, e_u) in e.iter_mut().enumerate() {
                let rows = [t.rows[0][u], t.rows[1][u]];
                if rows.iter().all(|r| r.is_null()) {
                    continue;
                }
                let mut d = [_mm512_setzero_ps(); N];
                for (v, d_v) in d.iter_mut().enumerate() {
                    let [a, b] = [0, 1].map(|h| {
                        if rows[h].is_null() {
                            return _mm512_setzero_ps();
                        }
                        let start = rows[h].wrapping_offset(t.col[h] + v as isize);
                        _mm512_maskz_loadu_ps(t.masks[v][h], start)
                    });
                    *d_v = _mm512_permutex2var_ps(a, evens, b);
                }
                // e[u][ν] = Σ_v d[u][v]·Bᵀ[ν][v].
                for (nu, e_un) in e_u.iter_mut().enumerate() {
                    for (v, &d_v) in d.iter().enumerate() {
                        let c = m.b_t[nu][v] as f32;
                        if c != 0.0 {
                            *e_un = _mm512_fmadd_ps(_mm512_set1_ps(c), d_v, *e_un);
                        }
                    }
                }
            }
            let store = ((1u32 << t.count) - 1) as __mmask16;
            for xi in 0..N {
                for nu in 0..N {
                    let mut acc = _mm512_setzero_ps();
                    for (u, e_u) in e.iter().enumerate() {
                        let c = m.b_t[xi][u] as f32;
                        if c != 0.0 {
                            acc = _mm512_fmadd_ps(_mm512_set1_ps(c), e_u[nu], acc);
                        }
                    }
                    _mm512_mask_storeu_ps(t.dst.add((xi * N + nu) * t.plane), store, acc);
                }
            }
        }
    }

    /// An output transform's pointers (see [`super::output`]).
    pub(super) struct Output {
        pub src: *const f32,
        pub plane: usize,
        pub count: usize,
        pub half: usize,
        pub bias: f32,
        pub rows: [[*mut f32; 2]; 2],
        pub cols: [usize; 2],
    }

    /// `rows[h][i][2t + j] = bias + Σ_{ξ,ν} Aᵀ[i][ξ] M_s[ξ][ν] Aᵀ[j][ν]` for the tiles
    /// `s = h·half + t` of half `h`, with `M_s[ξ][ν] = src[(ξ·N + ν)·plane + s]` (`s < count`),
    /// writing the first `cols[h]` columns of each row that is not null. Whether every value
    /// written is finite.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `src` must hold `(N² − 1)·plane + count` elements and
    /// each row of half `h` that is not null `cols[h]`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output<const N: usize>(t: &Output) -> bool {
        let m = const { matrices::<N>() };
        let lanes = ((1u32 << t.count) - 1) as __mmask16;
        // Half `h`'s tiles of the even and odd columns, interleaved into `2·half` columns.
        let interleave = [0, 1].map(|h| {
            let base = h * t.half;
            let lanes: [i32; LANES] = std::array::from_fn(|k| {
                let tile = (base + k / 2).min(LANES - 1);
                (tile + (k % 2) * LANES) as i32
            });
            // SAFETY: an unaligned load of 16 i32 from an array of 16.
            unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) }
        });
        let masks = t.cols.map(|cols| ((1u32 << cols) - 1) as __mmask16);
        let mut finite = true;
        // SAFETY: the loads are masked to `count` elements of each plane of `src`, the stores
        // to the first `cols[h]` elements of each row that is not null.
        unsafe {
            // s[i][ν] = Σ_ξ Aᵀ[i][ξ]·M[ξ][ν].
            let mut s = [[_mm512_setzero_ps(); N]; 2];
            for xi in 0..N {
                for nu in 0..N {
                    let v = _mm512_maskz_loadu_ps(lanes, t.src.add((xi * N + nu) * t.plane));
                    for (i, s_i) in s.iter_mut().enumerate() {
                        let c = m.a_t[i][xi] as f32;
                        if c != 0.0 {
                            s_i[nu] = _mm512_fmadd_ps(_mm512_set1_ps(c), v, s_i[nu]);
                        }
                    }
                }
            }
            for (i, s_i) in s.iter().enumerate() {
                let mut y = [_mm512_set1_ps(t.bias); 2];
                for (j, y_j) in y.iter_mut().enumerate() {
                    for (nu, &s_in) in s_i.iter().enumerate() {
                        let c = m.a_t[j][nu] as f32;
                        if c != 0.0 {
                            *y_j = _mm512_fmadd_ps(_mm512_set1_ps(c), s_in, *y_j);
                        }
                    }
                }
                for h in 0..2 {
                    let row = t.rows[h][i];
                    if row.is_null() {
                        continue;
                    }
                    let values = _mm512_permutex2var_ps(y[0], interleave[h], y[1]);
                    _mm512_mask_storeu_ps(row, masks[h], values);
                    // v − v is NaN exactly where v is infinite or NaN.
                    let ordered =
                        _mm512_cmp_ps_mask::<_CMP_ORD_Q>(_mm512_sub_ps(values, values), values);
                    finite &= ordered & masks[h] == masks[h];
                }
            }
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrices against the worked F(2, 3) of Lavin and Gray (2016), up to the signs of a
    /// row of `Bᵀ` and `G` (their product is the same): points 0, 1, −1 and infinity.
    #[test]
    fn f2_3_matrices_are_the_known_ones() {
        let t = Transforms::new(3).unwrap();
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

    /// F(2, r) gives the two outputs of the formula for every `r` it is built for, on random
    /// data in `f64` (exact up to rounding).
    #[test]
    fn minimal_filtering_equals_the_formula() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        for r in 2..=5 {
            let t = Transforms::new(r).unwrap();
            for _ in 0..100 {
                let d: Vec<f64> = (0..r + 1).map(|_| next()).collect();
                let g: Vec<f64> = (0..r).map(|_| next()).collect();
                let y = t.correlate(&d, &g);
                for (i, &y_i) in y.iter().enumerate() {
                    let formula: f64 = (0..r).map(|k| g[k] * d[i + k]).sum();
                    assert!((y_i - formula).abs() < 1e-12, "r = {r}: {y_i} vs {formula}");
                }
            }
        }
    }
}
