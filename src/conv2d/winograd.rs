//! Winograd's minimal filtering F(2×2, r×r): a convolution at stride 1 with fewer
//! multiplications than the formula (chapter 4). The fast route takes 3 × 3 kernels
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
//! 2. for a block of tile rows, transforms each input tile, 16 neighbouring tiles per register;
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
use ndarray::{Array4, ArrayView1, ArrayView4, s};

use super::direct::{LANES, MAX_VECTORS, RowJob, Taps, is_available, pieces};
use crate::buffers::Scratch;
use crate::error::Result;
use crate::gemm::Scalar;
use crate::shape::{Conv2dParams, ConvGeometry};

/// The kernel sizes this route takes (square, stride 1, dilation 1, one group). F(2×2, 5×5)
/// measured slower than the direct kernels on the course's second layer (14 × 14 outputs):
/// rows of 7 tiles fill half the registers of its transforms, which cost as much as the
/// products they save.
pub const KERNELS: [usize; 1] = [3];
/// Interpolation points; F(2, r) uses the first `r`.
const POINTS: [f64; 5] = [0.0, 1.0, -1.0, 2.0, -2.0];
/// Fewest input and output channels for which the products outweigh the transforms.
const MIN_CHANNELS: usize = 16;
/// Tiles per block: the transformed inputs and products of a block stay in L2.
const BLOCK_TILES: usize = 128;
/// Output channels per product tile (`max_channels` allows 6 for every width of 16 to 64 tiles).
const CHANNEL_TILE: usize = 6;
/// Largest `n` of the route's transforms.
const MAX_N: usize = 4;

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

/// Whether the route takes a call with these shapes (on any processor, for `f32`).
fn takes(geo: &ConvGeometry<2>) -> bool {
    let [kh, kw] = geo.kernel;
    geo.groups == 1
        && geo.stride == [1, 1]
        && geo.dilation == [1, 1]
        && kh == kw
        && KERNELS.contains(&kh)
        && geo.c_in >= MIN_CHANNELS
        && geo.c_out >= MIN_CHANNELS
}

/// [`super::fast::conv2d`] by F(2×2, r×r), or `Ok(None)` where it does not apply (no AVX-512,
/// not `f32`, not a square kernel in [`KERNELS`] at stride 1 and dilation 1 with one group and
/// at least 16 input and output channels) or when an output is not finite. Shapes are checked
/// first.
pub fn conv2d<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    b: Option<ArrayView1<T>>,
    params: Conv2dParams,
) -> Result<Option<Array4<T>>> {
    let geo = ConvGeometry::conv2d(x.dim(), w.dim(), b.map(|b| b.len()), params)?;
    if !is_available() || !takes(&geo) {
        return Ok(None);
    }
    let (Some(x), Some(w)) = (T::as_f32(x), T::as_f32(w)) else {
        return Ok(None);
    };
    let b = b.and_then(T::as_f32);
    let pads = [geo.pads[0].left, geo.pads[1].left];
    Ok(forward(x, w, b, pads, geo.output).and_then(T::from_f32))
}

/// The convolution of `x` by `w` (one group, stride 1, dilation 1, shapes checked by the
/// caller) with `pads = [top, left]` and `output = [H_out, W_out]`; `None` where the route does
/// not take the kernel or channels, without AVX-512, or if an output is not finite.
pub(super) fn forward(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    b: Option<ArrayView1<f32>>,
    pads: [usize; 2],
    output: [usize; 2],
) -> Option<Array4<f32>> {
    let (c_out, c_in, kh, kw) = w.dim();
    if !is_available() || kh != kw || c_in < MIN_CHANNELS || c_out < MIN_CHANNELS {
        return None;
    }
    match kh {
        3 => run::<4>(x, w, b, pads, output),
        _ => None,
    }
}

/// `U[ξ] = (G g_{o,c} Gᵀ)[ξ]`, rounded from `f64`, for each position `ξ` in runs of output
/// channels `tiles`, each run `(o₀, mr)` channel by channel: `U[ξ][o₀][c][o − o₀]`, so that a
/// product tile reads its weights in order.
fn transform_weights<const N: usize>(w: ArrayView4<f32>, tiles: &[(usize, usize)]) -> Scratch<f32> {
    let m = const { matrices::<N>() };
    let (c_out, c_in, r, _) = w.dim();
    let mut u = Scratch::for_overwrite(N * N * c_in * c_out);
    for &(o0, mr) in tiles {
        for (o, c) in (o0..o0 + mr).flat_map(|o| (0..c_in).map(move |c| (o, c))) {
            let filter = w.slice(s![o, c, .., ..]);
            // `G g`, then `(G g) Gᵀ`.
            let mut half = [[0.0f64; MAX_N]; MAX_N];
            for (xi, row) in half.iter_mut().enumerate().take(N) {
                for (l, v) in row.iter_mut().enumerate().take(r) {
                    *v = (0..r).map(|k| m.g[xi][k] * filter[[k, l]] as f64).sum();
                }
            }
            for xi in 0..N {
                for nu in 0..N {
                    let v: f64 = (0..r).map(|l| half[xi][l] * m.g[nu][l]).sum();
                    u[(xi * N + nu) * c_in * c_out + o0 * c_in + c * mr + o - o0] = v as f32;
                }
            }
        }
    }
    u
}

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
    // Runs of 16 tiles and the rest.
    let segments: Vec<(usize, usize)> = (0..tw)
        .step_by(LANES)
        .map(|b0| (b0, LANES.min(tw - b0)))
        .collect();
    let columns: Vec<Columns> = segments
        .iter()
        .map(|&(b0, _)| Columns::new((2 * b0) as isize - left as isize, width))
        .collect();
    let threads = rayon::current_num_threads();
    let images_per_job = BLOCK_TILES
        .div_ceil(th * tw)
        .min(batch.div_ceil(threads))
        .max(1);
    let rows_per_block = (BLOCK_TILES / tw).max(1);
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
                // 1. The input tiles: V[c][ξ][tile], a channel's positions side by side.
                let nnp = N * N * p;
                // Channel by channel, so that each plane is read from the top down.
                for c in 0..c_in {
                    for (k, &(image, a)) in block.iter().enumerate() {
                        let plane = &x[(image * c_in + c) * h * width..][..h * width];
                        let rows: [Option<&[f32]>; MAX_N] = std::array::from_fn(|u| {
                            let row = (2 * a + u).checked_sub(top).filter(|&i| u < N && i < h)?;
                            Some(&plane[row * width..][..width])
                        });
                        for (&(b0, count), columns) in segments.iter().zip(&columns) {
                            input::<N>(&rows, columns, count, &mut v[c * nnp + k * tw + b0..], p);
                        }
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
                for (k, &(image, a)) in block.iter().enumerate() {
                    let planes = &mut dst[(image - first) * image_out..][..image_out];
                    for (o, plane) in planes.chunks_mut(h_out * w_out).enumerate() {
                        let (upper, lower) = plane[2 * a * w_out..].split_at_mut(w_out);
                        let lower = if 2 * a + 1 < h_out {
                            Some(&mut lower[..w_out])
                        } else {
                            None
                        };
                        let mut rows = [Some(upper), lower];
                        for &(b0, count) in &segments {
                            let finite = output::<N>(
                                &m[o * nnp + k * tw + b0..],
                                p,
                                count,
                                bias[o],
                                &mut rows,
                                2 * b0,
                            );
                            if !finite {
                                not_finite.store(true, Ordering::Relaxed);
                            }
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

/// Where a run of neighbouring tiles reads its patch columns in rows of `width`: patch column
/// `v` of the tiles is the even lanes of two loads of 16 columns, from `col + v` and
/// `col + v + 16`, where `col` is the first tile's column 0 (negative in the left padding);
/// `masks[v]` keeps the lanes of each load inside `0..width`.
struct Columns {
    col: isize,
    width: usize,
    masks: [[u16; 2]; MAX_N],
}

impl Columns {
    fn new(col: isize, width: usize) -> Columns {
        // Lanes `k < 16` of a load from column `start` that fall inside `0..width`.
        let inside = |start: isize| {
            let lo = (-start).clamp(0, LANES as isize);
            let hi = (width as isize - start).clamp(0, LANES as isize);
            if hi <= lo {
                return 0;
            }
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        };
        let masks = std::array::from_fn(|v| {
            let start = col + v as isize;
            [inside(start), inside(start + LANES as isize)]
        });
        Columns { col, width, masks }
    }
}

/// Transform `count ≤ 16` neighbouring tiles of one channel: `rows[u]` is the input row the
/// tiles' patch row `u` reads (`None` in the padding), `columns` where their patch columns lie.
/// Writes `V[ξ][t]` to `dst[ξ·plane + t]`.
fn input<const N: usize>(
    rows: &[Option<&[f32]>; MAX_N],
    columns: &Columns,
    count: usize,
    dst: &mut [f32],
    plane: usize,
) {
    assert!((1..=LANES).contains(&count) && N <= MAX_N);
    assert!((N * N - 1) * plane + count <= dst.len());
    let width = columns.width;
    assert!(rows.iter().flatten().all(|r| r.len() == width));
    #[cfg(target_arch = "x86_64")]
    {
        assert!(is_available());
        let job = avx512::Input {
            rows: (*rows).map(|r| r.map_or(std::ptr::null(), <[f32]>::as_ptr)),
            col: columns.col,
            masks: columns.masks,
            count,
            dst: dst.as_mut_ptr(),
            plane,
        };
        // SAFETY: AVX-512F was detected; the kernel reads only the elements `0..width` of the
        // rows that are not null (every row has `width` elements; `Columns::new` masks the
        // loads to them), and writes `count` elements at `ξ·plane` for `ξ < N²`, inside `dst` (asserted
        // above).
        unsafe { avx512::input::<N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

/// Transform `count ≤ 16` neighbouring tiles of one output channel back: `src[ξ·plane + t]`
/// holds `M[ξ][t]`; writes `Y + bias` to the two output rows from column `col` (a row is `None`
/// past the output, and columns past its end are not written). Whether every output written is
/// finite.
fn output<const N: usize>(
    src: &[f32],
    plane: usize,
    count: usize,
    bias: f32,
    rows: &mut [Option<&mut [f32]>; 2],
    col: usize,
) -> bool {
    assert!((1..=LANES).contains(&count) && N <= MAX_N);
    assert!((N * N - 1) * plane + count <= src.len());
    let width = rows[0].as_ref().map_or(0, |r| r.len());
    assert!(rows.iter().flatten().all(|r| r.len() == width) && col < width);
    let cols = (2 * count).min(width - col);
    #[cfg(target_arch = "x86_64")]
    {
        assert!(is_available());
        let job = avx512::Output {
            src: src.as_ptr(),
            plane,
            count,
            bias,
            rows: [0, 1].map(|i| {
                rows[i]
                    .as_deref_mut()
                    .map_or(std::ptr::null_mut(), |r| r[col..].as_mut_ptr())
            }),
            cols,
        };
        // SAFETY: AVX-512F was detected; the kernel reads `count` elements at `ξ·plane` for
        // `ξ < N²`, inside `src` (asserted above), and writes `cols ≤ width − col` elements from
        // column `col` of each row that is not null.
        unsafe { avx512::output::<N>(&job) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the Winograd route runs only where is_available() holds");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LANES, MAX_N, matrices};
    use std::arch::x86_64::*;

    /// An input transform's pointers (see [`super::input`]).
    pub(super) struct Input {
        pub rows: [*const f32; MAX_N],
        pub col: isize,
        pub masks: [[u16; 2]; MAX_N],
        pub count: usize,
        pub dst: *mut f32,
        pub plane: usize,
    }

    /// `V[ξ][ν][t] = Σ_{u,v} Bᵀ[ξ][u] d_t[u][v] Bᵀ[ν][v]` for 16 tiles `t`, where
    /// `d_t[u][v] = rows[u][col + 2t + v]` (zero where `masks` leaves the lane out and for null
    /// rows), stored
    /// to `dst[(ξ·N + ν)·plane + t]` for `t < count`. The constant matrices' zeros are skipped
    /// when the code is generated.
    ///
    /// # Safety
    /// The processor must have AVX-512F; every lane `masks` keeps must lie in its row when the
    /// row is not null, and `dst` must hold `(N² − 1)·plane + count`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input<const N: usize>(t: &Input) {
        let m = const { matrices::<N>() };
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut e = [[_mm512_setzero_ps(); N]; N];
        // SAFETY: the loads are masked to the elements `0..width` of each row (the masked-off
        // lanes are not read, and their addresses are only computed), the stores to `count`
        // elements of each of the `N²` planes of `dst`.
        unsafe {
            for (u, e_u) in e.iter_mut().enumerate() {
                let row = t.rows[u];
                if row.is_null() {
                    continue;
                }
                let mut d = [_mm512_setzero_ps(); N];
                for (v, d_v) in d.iter_mut().enumerate() {
                    // The 32 columns from `start`: the even ones are the 16 tiles' column `v`.
                    let start = t.col + v as isize;
                    let [lo, hi] = t.masks[v];
                    let lo = _mm512_maskz_loadu_ps(lo, row.wrapping_offset(start));
                    let hi = _mm512_maskz_loadu_ps(hi, row.wrapping_offset(start + LANES as isize));
                    *d_v = _mm512_permutex2var_ps(lo, even, hi);
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
        pub bias: f32,
        pub rows: [*mut f32; 2],
        pub cols: usize,
    }

    /// `rows[i][2t + j] = bias + Σ_{ξ,ν} Aᵀ[i][ξ] M_t[ξ][ν] Aᵀ[j][ν]` for the 16 tiles `t`, with
    /// `M_t[ξ][ν] = src[(ξ·N + ν)·plane + t]` (`t < count`), writing the first `cols` columns
    /// of each row that is not null. Whether every value written is finite.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `src` must hold `(N² − 1)·plane + count` elements and
    /// each row that is not null `cols`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output<const N: usize>(t: &Output) -> bool {
        let m = const { matrices::<N>() };
        let lanes = ((1u32 << t.count) - 1) as __mmask16;
        // Two vectors of 16 tiles' even and odd columns, interleaved into 32 columns.
        let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let second =
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let masks = [
            ((1u32 << t.cols.min(LANES)) - 1) as __mmask16,
            ((1u32 << t.cols.saturating_sub(LANES)) - 1) as __mmask16,
        ];
        let mut finite = true;
        // SAFETY: the loads are masked to `count` elements of each plane of `src`, the stores
        // to the first `cols` elements of each row that is not null.
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
                let row = t.rows[i];
                if row.is_null() {
                    continue;
                }
                let mut y = [_mm512_set1_ps(t.bias); 2];
                for (j, y_j) in y.iter_mut().enumerate() {
                    for (nu, &s_in) in s_i.iter().enumerate() {
                        let c = m.a_t[j][nu] as f32;
                        if c != 0.0 {
                            *y_j = _mm512_fmadd_ps(_mm512_set1_ps(c), s_in, *y_j);
                        }
                    }
                }
                let halves = [
                    _mm512_permutex2var_ps(y[0], first, y[1]),
                    _mm512_permutex2var_ps(y[0], second, y[1]),
                ];
                for (h, (&half, &mask)) in halves.iter().zip(&masks).enumerate() {
                    _mm512_mask_storeu_ps(row.add(h * LANES), mask, half);
                    // y − y is NaN exactly where y is infinite or NaN.
                    let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(_mm512_sub_ps(half, half), half);
                    finite &= ordered & mask == mask;
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
