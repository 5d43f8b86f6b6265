//! Direct convolution on AVX-512: output channels in the lanes of the vector registers, the input
//! read where it lies, no column matrix.
//!
//! im2col copies every window of the input into a column matrix that the matrix product then
//! reads back, and for the course's CNN that copy costs nearly as much as the product. Here a
//! 512-bit register holds 16 output channels, and a tile of `MR` neighbouring windows of one
//! output row × `16·V` channels (`V ≤ 4`) lives in `MR·V` registers. Each tap `(c, k_i, k_j)`
//! loads the `V` weight vectors `W[o…, c, k_i, k_j]` once and adds them, times the input value
//! each window sees at that tap broadcast to all lanes, into the tile:
//!
//! `y[n, o, i, j] = b[o] + Σ_c Σ_{k_i} Σ_{k_j} W[o, c, k_i, k_j] · x[n, c, i·s_h + k_i·d_h − p_t, j·s_w + k_j·d_w − p_l]`
//!
//! The rows of an image are first copied into a buffer with the left and right padding written
//! as zeros (and, for `s_w > 1`, columns of one phase side by side, so that the windows of a tile
//! read neighbouring elements). A row of taps that falls in the top or bottom padding is
//! skipped, not multiplied by zeros; so, in tiles of 48 or 64 channels, is a window's tap column
//! that falls in the left or right padding (a test and a branch per window and tap, cheap beside
//! its 3 or 4 multiply-adds).
//!
//! With fewer than 64 taps per output (`C_in/g · kH · kW`, the course's first layer has 25) the
//! sums are too short for that tile to pay for transposing it into the channel rows of the
//! output; there the lanes hold 16 neighbouring windows of an output row instead, a tile is up
//! to 6 output channels × 64 windows (or 12 × 32, 16 × 16), each tap loads the windows' inputs
//! once and multiplies them by one weight per channel broadcast to all lanes, and the tile is
//! stored straight into the output's rows. At stride 1 the input is first copied once per kernel
//! column, shifted by that column, in rows as wide as the output's; every tap then lies at one
//! offset from every window of the image, so a tile takes consecutive windows across the ends of
//! the rows and a row of 28 windows no longer leaves 4 of its 32 lanes idle. One kernel call
//! runs a whole run of tiles with the same taps.
//!
//! The backward pass uses the same tiles:
//! * at stride 1, `∂L/∂x` is itself a convolution: of `G` with the weights flipped along both
//!   spatial axes and their two channel axes swapped, padded by `(k − 1)·d − p` on each side;
//! * `∂L/∂W[o, c, k_i, k_j] = Σ_{n, i, j} G[n, o, i, j] · x[n, c, i·s_h + k_i·d_h − p_t, j + k_j − p_l]`
//!   is a tile of `MR` taps × `16·V` channels summed over the windows, with `G` packed window by
//!   window so that each window's channels are one load.
//!
//! Every sum runs in an order fixed by the shapes alone: the same inputs give the same bits on
//! any number of threads. The functions return `Ok(None)` when the processor lacks AVX-512, the
//! scalar is not `f32`, or the shapes are outside what the kernels cover; [`super::fast`] then
//! takes its im2col + GEMM path.

use std::ops::Range;

use ndarray::parallel::prelude::*;
use ndarray::{Array4, ArrayView1, ArrayView3, ArrayView4, Axis, s};

use super::naive::{Conv2dGrads, check_grad_shape};
use crate::buffers::Scratch;
use crate::error::Result;
use crate::gemm::Scalar;
use crate::im2col::inside;
use crate::shape::{Conv2dParams, ConvGeometry};

/// Call `avx512::$kernel::<MR, V>($job)` for the runtime `($vectors, $mr)`: every tile shape the
/// drivers use (`mr ≤ max_mr(vectors)`).
macro_rules! tile_shapes {
    ($kernel:ident, $job:expr, $vectors:expr, $mr:expr) => {
        tile_shapes!(@ $kernel, $job, $vectors, $mr, [
            1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14;
            2: 1 2 3 4 5 6 7 8 9 10 11 12;
            3: 1 2 3 4 5 6 7 8;
            4: 1 2 3 4 5 6;
        ])
    };
    (@ $kernel:ident, $job:expr, $vectors:expr, $mr:expr, [$($v:literal: $($m:literal)*;)*]) => {
        match ($vectors, $mr) {
            $($(($v, $m) => avx512::$kernel::<$m, $v>($job),)*)*
            _ => unreachable!("tiles are at most max_mr(vectors) wide"),
        }
    };
}

/// Call `avx512::$kernel::<MR, V>($job)` (of the calling module) for the runtime
/// `($vectors, $mr)`: every tile shape with `mr ≤ max_channels(vectors)` (the row tiles here,
/// the Winograd weight gradient's product tiles).
macro_rules! row_shapes {
    ($kernel:ident, $job:expr, $vectors:expr, $mr:expr) => {
        row_shapes!(@ $kernel, $job, $vectors, $mr, [
            1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16;
            2: 1 2 3 4 5 6 7 8 9 10 11 12;
            3: 1 2 3 4 5 6 7 8;
            4: 1 2 3 4 5 6;
        ])
    };
    (@ $kernel:ident, $job:expr, $vectors:expr, $mr:expr, [$($v:literal: $($m:literal)*;)*]) => {
        match ($vectors, $mr) {
            $($(($v, $m) => avx512::$kernel::<$m, $v>($job),)*)*
            _ => unreachable!("tiles are at most max_channels(vectors) tall"),
        }
    };
}
pub(super) use row_shapes;

/// `f32` lanes of a 512-bit register.
pub(super) const LANES: usize = 16;
/// Registers of output channels per tile: 64 channels.
pub(super) const MAX_VECTORS: usize = 4;
/// Widest tile, in windows (forward) or taps (weight gradient).
const MAX_MR: usize = 14;
/// Fewest output channels per group for which a tile is worth its lanes.
const MIN_CHANNELS: usize = 8;
/// Fewest taps per output (`C_in/g · kH · kW`) for which the forward kernel beats im2col: with
/// fewer, turning the window-major sums into channel-major rows costs more than the product
/// saves (the course's first layer, 25 taps, measured faster by im2col + GEMM).
const MIN_TAPS: usize = 64;
/// Windows per fixed piece of the weight gradient's sum over the batch.
const WINDOWS_PER_BLOCK: usize = 800;
/// Fewest registers of channels for which a forward tile skips the products with the left and
/// right padding.
const MASKED_VECTORS: usize = 3;
/// Bytes a forward pass over an image's tiles keeps in L1: its packed weights and the input rows
/// one output row reads (three quarters of L1: fewer channels per pass cost more in reloading
/// the tiles between passes, more evict the rows; measured on the course's layers).
const L1_PASS_BYTES: usize = 36 * 1024;
/// Bytes of packed output gradient one weight tile streams through (about L1's size).
const SUB_BLOCK_BYTES: usize = 24 * 1024;
/// Largest buffer of shifted copies of an image ([`Flat`]), which holds `kW` copies where the
/// padded rows hold one: past this (large images, wide kernels) the rows' idle lanes cost less
/// than the copies' memory. The first layer's copies take 18 kB.
const FLAT_BYTES: usize = 1 << 20;

/// Whether this processor has AVX-512F, which the kernels need.
pub fn is_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest tile for `vectors` registers of channels: at most 24 accumulators for wide tiles,
/// so that the `vectors` weights (or gradients) of one tap and two broadcasts fit beside them in
/// the 32 registers without spilling.
fn max_mr(vectors: usize) -> usize {
    match vectors {
        1 => MAX_MR,
        2 => 12,
        3 => 8,
        _ => 6,
    }
}

/// `0..len` cut into the fewest pieces of at most `max`, as equal as possible: `(start, size)`.
pub(super) fn pieces(len: usize, max: usize) -> Vec<(usize, usize)> {
    let count = len.div_ceil(max.max(1));
    let (base, extra) = (len / count.max(1), len % count.max(1));
    let mut start = 0;
    (0..count)
        .map(|t| {
            let size = base + usize::from(t < extra);
            start += size;
            (start - size, size)
        })
        .collect()
}

/// The shapes of one convolution, with the padding before each axis (the padding after it
/// follows from the output size).
#[derive(Debug, Clone, Copy)]
struct Plan {
    batch: usize,
    c_in: usize,
    c_out: usize,
    groups: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    top: usize,
    left: usize,
}

impl Plan {
    fn new(g: &ConvGeometry<2>) -> Plan {
        Plan {
            batch: g.batch,
            c_in: g.c_in,
            c_out: g.c_out,
            groups: g.groups,
            input: g.input,
            kernel: g.kernel,
            output: g.output,
            stride: g.stride,
            dilation: g.dilation,
            top: g.pads[0].left,
            left: g.pads[1].left,
        }
    }

    fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }

    fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }

    /// The convolution whose output is `∂L/∂x` at stride 1: input `G`, output `x`'s shape,
    /// padding `(k − 1)·d − p` before each axis. `None` if that padding would be negative.
    fn transposed(&self) -> Option<Plan> {
        let reach = |axis: usize| (self.kernel[axis] - 1) * self.dilation[axis];
        Some(Plan {
            c_in: self.c_out,
            c_out: self.c_in,
            input: self.output,
            output: self.input,
            top: reach(0).checked_sub(self.top)?,
            left: reach(1).checked_sub(self.left)?,
            ..*self
        })
    }
}

/// Where the padded rows of an image's channels lie in a buffer: column `col` (counted from the
/// left edge of the padding) of row `r` of channel `c` is at
/// `c·channel + r·row + (col mod s)·phase + ⌊col / s⌋`, so the windows of a tile, `s` columns
/// apart in the image, are neighbours in the buffer.
#[derive(Debug, Clone, Copy)]
struct Rows {
    stride: usize,
    phase: usize,
    row: usize,
    channel: usize,
    channels: usize,
}

impl Rows {
    fn new(plan: &Plan, channels: usize) -> Rows {
        let ([h, w], [_, w_out], [_, kw]) = (plan.input, plan.output, plan.kernel);
        let (s_w, d_w) = (plan.stride[1], plan.dilation[1]);
        let width = (plan.left + w).max((w_out - 1) * s_w + (kw - 1) * d_w + 1);
        let phase = width.div_ceil(s_w);
        Rows {
            stride: s_w,
            phase,
            row: s_w * phase,
            channel: h * s_w * phase,
            channels,
        }
    }

    fn len(&self) -> usize {
        self.channels * self.channel
    }

    /// Position of padded column `col` within a row.
    fn at(&self, col: usize) -> usize {
        (col % self.stride) * self.phase + col / self.stride
    }

    /// A buffer for [`Rows::fill`], all zeros, with a register's worth of zeros past the last
    /// row, so that a row tile may load whole registers where its last windows are not valid.
    fn buffer(&self) -> Scratch<f32> {
        Scratch::full(self.len() + LANES, 0.0)
    }

    /// Copy rows `lines` of the channels of one image `(C, H, W)` into `buf` (from
    /// [`Rows::buffer`]), `left` zeros before each row. The padding positions are never
    /// written, so they stay zero from the buffer's start on.
    fn fill(&self, x: ArrayView3<f32>, lines: Range<usize>, left: usize, buf: &mut [f32]) {
        assert!(buf.len() >= self.len(), "a row buffer of the rows' length");
        for (c, channel) in x.outer_iter().enumerate() {
            for (r, line) in channel
                .outer_iter()
                .enumerate()
                .skip(lines.start)
                .take(lines.len())
            {
                let dst = &mut buf[c * self.channel + r * self.row..][..self.row];
                match line.as_slice() {
                    Some(src) if self.stride == 1 => {
                        dst[left..left + src.len()].copy_from_slice(src);
                    }
                    _ => {
                        for (j, &v) in line.iter().enumerate() {
                            dst[self.at(left + j)] = v;
                        }
                    }
                }
            }
        }
    }
}

/// Output channels `first..first + lanes` (all in `group`), in `vectors` registers.
#[derive(Debug, Clone, Copy)]
struct Channels {
    group: usize,
    first: usize,
    lanes: usize,
    vectors: usize,
}

impl Channels {
    fn width(&self) -> usize {
        self.vectors * LANES
    }

    /// Every group's output channels in runs of at most `16·max_vectors`.
    fn split(plan: &Plan, max_vectors: usize) -> Vec<Channels> {
        let per_group = plan.c_out_per_group();
        (0..plan.groups)
            .flat_map(|group| {
                (0..per_group)
                    .step_by(LANES * max_vectors)
                    .map(move |start| {
                        let lanes = (per_group - start).min(LANES * max_vectors);
                        Channels {
                            group,
                            first: group * per_group + start,
                            lanes,
                            vectors: lanes.div_ceil(LANES),
                        }
                    })
            })
            .collect()
    }
}

/// A run of output channels with its weights packed tap by tap, `[c][k_i][k_j][lane]`, and its
/// bias, zero in the lanes past the run.
struct Packed {
    channels: Channels,
    weights: Scratch<f32>,
    bias: Vec<f32>,
}

impl Packed {
    fn new(channels: Channels, w: ArrayView4<f32>, b: Option<ArrayView1<f32>>) -> Packed {
        let (_, per_group, kh, kw) = w.dim();
        let width = channels.width();
        let mut weights = Scratch::full(per_group * kh * kw * width, 0.0);
        let mut bias = vec![0.0; width];
        let run = channels.first..channels.first + channels.lanes;
        // One row per filter, its taps in logical order (c, k_i, k_j): tap (c·kH + k_i)·kW + k_j.
        let filters = w.slice_move(s![run.clone(), .., .., ..]);
        let filters = filters
            .to_shape((channels.lanes, per_group * kh * kw))
            .expect("a filter's taps fit one row");
        // Tap by tap, so that the packed weights are written in order.
        for (tap, column) in filters.columns().into_iter().enumerate() {
            for (dst, &v) in weights[tap * width..].iter_mut().zip(column) {
                *dst = v;
            }
        }
        if let Some(b) = b {
            for (dst, &v) in bias.iter_mut().zip(b.slice(s![run])) {
                *dst = v;
            }
        }
        Packed {
            channels,
            weights,
            bias,
        }
    }
}

/// The direct convolution of `x` by `w` (shapes already checked by `plan`).
fn forward(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    b: Option<ArrayView1<f32>>,
    plan: &Plan,
) -> Array4<f32> {
    let [h_out, w_out] = plan.output;
    let windows = h_out * w_out;
    // The last pass over the input channels (there is one: this route has 64 taps or more per
    // output) writes every output of every tile.
    let mut out = crate::buffers::for_overwrite::<f32, _>((plan.batch, plan.c_out, h_out, w_out));
    if out.is_empty() {
        return out;
    }
    // With few images, narrower runs of channels give every thread work.
    let max_vectors = if plan.batch >= 2 * rayon::current_num_threads() {
        MAX_VECTORS
    } else {
        2
    };
    let packed: Vec<Packed> = Channels::split(plan, max_vectors)
        .into_iter()
        .map(|channels| Packed::new(channels, w, b))
        .collect();
    let per_group = plan.c_in_per_group();
    let rows = Rows::new(plan, per_group);
    let offsets: Vec<usize> = (0..plan.kernel[1])
        .map(|k_j| rows.at(k_j * plan.dilation[1]))
        .collect();
    let sums_len = windows
        * packed
            .iter()
            .map(|run| run.channels.width())
            .max()
            .unwrap_or(0);
    let mut jobs = Vec::with_capacity(plan.batch * packed.len());
    let images = out
        .as_slice_mut()
        .expect("a new array is contiguous")
        .chunks_mut(plan.c_out * windows);
    for (image, mut rest) in images.enumerate() {
        for run in &packed {
            let (dst, tail) = rest.split_at_mut(run.channels.lanes * windows);
            jobs.push((image, run, dst));
            rest = tail;
        }
    }
    jobs.into_par_iter().for_each_init(
        || (rows.buffer(), Scratch::for_overwrite(sums_len)),
        |(buf, sums), (image, run, dst)| {
            let group = run.channels.group;
            let x_g = x.slice(s![
                image,
                group * per_group..(group + 1) * per_group,
                ..,
                ..
            ]);
            rows.fill(x_g, 0..plan.input[0], plan.left, buf);
            forward_run(plan, &rows, &offsets, run, buf, sums, dst);
        },
    );
    out
}

/// One image's output channels of one run, `dst` = `(lanes, H_out·W_out)`. The taps are taken
/// a few input channels at a time, so that their weights stay in L1 while every tile of the
/// image uses them; between those passes each tile's sums wait in `sums`, window-major
/// (`sums[(i·W_out + j)·16·vectors + o]`), and the last pass turns them into the channel rows
/// of the output, 16 windows at a time. Each output still adds its taps in the one order
/// `(c, k_i, k_j)`.
fn forward_run(
    plan: &Plan,
    rows: &Rows,
    offsets: &[usize],
    run: &Packed,
    buf: &[f32],
    sums: &mut [f32],
    dst: &mut [f32],
) {
    let ([h, _], [kh, kw], [h_out, w_out]) = (plan.input, plan.kernel, plan.output);
    let (s_h, d_h) = (plan.stride[0], plan.dilation[0]);
    let (width, vectors) = (run.channels.width(), run.channels.vectors);
    let windows = h_out * w_out;
    // Every pass writes the sums before the next reads them: no need to clear them.
    assert!(
        sums.len() >= windows * width,
        "room for every window's sums"
    );
    let row_tiles = pieces(w_out, max_mr(vectors));
    // A masked window costs a test and a branch per tap: worth it beside 3 or 4 multiply-adds,
    // not beside 1 or 2 (measured: the input gradient of L2, 32 channels, got slower).
    let masks: Vec<Option<Vec<u32>>> = row_tiles
        .iter()
        .map(|&(j0, mr)| (vectors >= MASKED_VECTORS).then(|| tap_masks(plan, j0, mr))?)
        .collect();
    let per_channel = (kh * kw * width + kh * rows.row) * std::mem::size_of::<f32>();
    let pass = (L1_PASS_BYTES / per_channel).max(1);
    for c0 in (0..rows.channels).step_by(pass) {
        let channels = pass.min(rows.channels - c0);
        let last = c0 + channels == rows.channels;
        // Windows of the last pass already turned into channel rows of the output.
        let mut written = 0;
        for i in 0..h_out {
            let taps = inside(h, kh, i * s_h, plan.top, d_h);
            // The input row of the first tap inside (none is read when there is no such tap).
            let first_row = (i * s_h + taps.start * d_h).saturating_sub(plan.top);
            for (&(j0, mr), masks) in row_tiles.iter().zip(&masks) {
                let job = ForwardJob {
                    x: buf,
                    start: c0 * rows.channel + first_row * rows.row + j0,
                    channels,
                    channel: rows.channel,
                    rows: taps.len(),
                    row: d_h * rows.row,
                    offsets,
                    masks: masks.as_deref(),
                    weights: &run.weights[(c0 * kh + taps.start) * kw * width..],
                    weights_channel: kh * kw * width,
                    bias: (c0 == 0).then_some(&run.bias[..]),
                    vectors,
                    mr,
                };
                job.run(&mut sums[(i * w_out + j0) * width..][..mr * width]);
            }
            // The last pass turns the finished windows, 16 at a time, into the channel rows of
            // the output while they are still in cache.
            if last {
                let done = if i + 1 == h_out {
                    windows
                } else {
                    let skew = skew(dst);
                    ((skew + (i + 1) * w_out) / LANES * LANES)
                        .saturating_sub(skew)
                        .max(written)
                };
                unpack(sums, width, written..done, dst, run.channels.lanes);
                written = done;
            }
        }
    }
}

/// Write the sums of `windows` (window-major, `sums[t·width + o]`) to the channel rows of `dst`:
/// `dst[o·stride + t] = sums[t·width + o]` for `o < lanes`, where `stride = dst.len() / lanes`.
/// Sixteen windows × sixteen channels are transposed at a time in registers, so that every
/// store writes neighbouring windows of one channel.
fn unpack(sums: &[f32], width: usize, windows: Range<usize>, dst: &mut [f32], lanes: usize) {
    let stride = dst.len() / lanes.max(1);
    assert!(lanes <= width && width.is_multiple_of(LANES) && windows.end <= stride);
    assert!(windows.end * width <= sums.len());
    // Blocks start where the first row's elements start a cache line, so that its stores (and
    // every row's, when `stride` is a multiple of 16) each write one line.
    let skew = skew(dst);
    let mut first = windows.start;
    while first < windows.end {
        let count = (LANES - (skew + first) % LANES).min(windows.end - first);
        #[cfg(target_arch = "x86_64")]
        {
            assert!(is_available());
            let job = avx512::Unpack {
                src: sums[first * width..].as_ptr(),
                width,
                count,
                lanes,
                dst: dst[first..].as_mut_ptr(),
                stride,
            };
            // SAFETY: AVX-512F was detected; the kernel reads `count` windows of `width` sums
            // from `first` (inside `sums`, asserted above) and writes `count` elements from
            // `first` in each of the `lanes` rows of `stride` elements of `dst`
            // (`first + count ≤ stride`).
            unsafe { avx512::unpack(&job) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the direct kernels run only where is_available() holds");
        first += count;
    }
}

/// How many elements `dst` starts past a 64-byte boundary.
fn skew(dst: &[f32]) -> usize {
    (dst.as_ptr() as usize / std::mem::size_of::<f32>()) % LANES
}

/// For the row tile of windows `j0..j0 + mr`, one mask per tap column `k_j` whose bit `t` says
/// that window `j0 + t` reads that column inside the image, not in the left or right padding;
/// `None` when every window of the tile reads every column inside. The products with the
/// padding's zeros are skipped, as the formula (and oneDNN) skips them: they add nothing.
fn tap_masks(plan: &Plan, j0: usize, mr: usize) -> Option<Vec<u32>> {
    let ([_, w], [_, kw]) = (plan.input, plan.kernel);
    let (s_w, d_w) = (plan.stride[1], plan.dilation[1]);
    let mut masks = vec![0u32; kw];
    for t in 0..mr {
        for k_j in inside(w, kw, (j0 + t) * s_w, plan.left, d_w) {
            masks[k_j] |= 1 << t;
        }
    }
    let all = (1u32 << mr) - 1;
    masks.iter().any(|&m| m != all).then_some(masks)
}

/// One forward tile: `mr` windows from `start` (at tap `(c₀, first row inside, 0)`) ×
/// `16·vectors` channels, over `channels` input channels. It starts from the bias, or, when
/// `bias` is `None`, from the sums already in the tile.
struct ForwardJob<'a> {
    x: &'a [f32],
    start: usize,
    channels: usize,
    channel: usize,
    rows: usize,
    row: usize,
    offsets: &'a [usize],
    /// Per tap column, the windows that read it inside the image (see [`tap_masks`]); `None`
    /// for all of them.
    masks: Option<&'a [u32]>,
    weights: &'a [f32],
    weights_channel: usize,
    bias: Option<&'a [f32]>,
    vectors: usize,
    mr: usize,
}

impl ForwardJob<'_> {
    /// Add the taps into `tile` (window-major, `tile[t·16·vectors + o]`). Panics if a read would
    /// leave the slices (a bug in the caller, not bad input).
    fn run(&self, tile: &mut [f32]) {
        let width = self.vectors * LANES;
        assert!(
            (1..=MAX_VECTORS).contains(&self.vectors)
                && (1..=max_mr(self.vectors)).contains(&self.mr)
        );
        assert!(tile.len() >= self.mr * width);
        assert!(self.bias.is_none_or(|b| b.len() >= width));
        assert!(self.masks.is_none_or(|m| m.len() >= self.offsets.len()));
        let reads = self.rows > 0 && self.channels > 0;
        if reads {
            let last = self.start
                + (self.channels - 1) * self.channel
                + (self.rows - 1) * self.row
                + self.offsets.iter().max().copied().unwrap_or(0)
                + self.mr
                - 1;
            assert!(last < self.x.len());
            assert!(
                (self.channels - 1) * self.weights_channel + self.rows * self.offsets.len() * width
                    <= self.weights.len()
            );
        }
        #[cfg(target_arch = "x86_64")]
        {
            assert!(is_available());
            let job = avx512::Forward {
                x: self.x[self.start.min(self.x.len())..].as_ptr(),
                channels: if reads { self.channels } else { 0 },
                channel: self.channel,
                rows: self.rows,
                row: self.row,
                offsets: self.offsets.as_ptr(),
                taps: self.offsets.len(),
                masks: self.masks.map_or(std::ptr::null(), <[u32]>::as_ptr),
                w: self.weights.as_ptr(),
                w_channel: self.weights_channel,
                bias: self.bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
                tile: tile.as_mut_ptr(),
            };
            // SAFETY: AVX-512F was detected; the assertions above bound every element the kernel
            // reads (x up to `last`, the weights of every channel and row inside, the bias's
            // `16·vectors` lanes when there is a bias), the tile's `mr·16·vectors` elements it
            // reads and writes, the masks of every tap column when there are masks (a masked
            // window reads a subset of those elements), and `mr`, `vectors` are instantiated.
            unsafe {
                if self.masks.is_some() {
                    tile_shapes!(forward_masked, &job, self.vectors, self.mr)
                } else {
                    tile_shapes!(forward, &job, self.vectors, self.mr)
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the direct kernels run only where is_available() holds");
    }
}

/// Widest row tile for `vectors` registers of windows: the accumulators, the `vectors` inputs of
/// a tap and a broadcast weight fit in the 32 registers.
pub(super) fn max_channels(vectors: usize) -> usize {
    match vectors {
        1 => 16,
        2 => 12,
        3 => 8,
        _ => 6,
    }
}

/// The direct convolution with windows in the lanes, for calls with few taps per output
/// (`C_in/g · kH · kW < 64`, such as the course's first layer): a tile is `MR` output channels ×
/// up to 64 neighbouring windows, of one row ([`RowLayout::Rows`]) or, at stride 1 where rows do
/// not fill whole registers, of the whole image ([`RowLayout::Flat`]). Each tap loads the
/// windows' input values (neighbours in the buffer) and adds them, times each channel's weight
/// broadcast to all lanes, to the tile, which is stored straight into the output's planes.
fn forward_rows(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    b: Option<ArrayView1<f32>>,
    plan: &Plan,
) -> Array4<f32> {
    let ([kh, kw], [h_out, w_out]) = (plan.kernel, plan.output);
    let windows = h_out * w_out;
    // Every output is stored by its row tile (the bias alone where no tap is inside).
    let mut out = crate::buffers::for_overwrite::<f32, _>((plan.batch, plan.c_out, h_out, w_out));
    if out.is_empty() {
        return out;
    }
    let (per_group, out_per_group) = (plan.c_in_per_group(), plan.c_out_per_group());
    // Weights `[group][c][k_i][k_j][o]`: a tap's output channels side by side.
    let taps = per_group * kh * kw;
    let mut weights = Scratch::full(plan.groups * taps * out_per_group, 0.0f32);
    for ((o, c, k_i, k_j), &v) in w.indexed_iter() {
        let (group, o) = (o / out_per_group, o % out_per_group);
        weights[(group * taps + (c * kh + k_i) * kw + k_j) * out_per_group + o] = v;
    }
    let bias: Vec<f32> = match b {
        Some(b) => b.to_vec(),
        None => vec![0.0; plan.c_out],
    };
    let layout = RowLayout::new(plan, per_group);
    let (lists, tiles) = layout.tiles(plan);
    let channel_tiles = pieces(
        out_per_group,
        max_channels(tiles.iter().map(|t| t.vectors).max().unwrap_or(1)),
    );
    let mut jobs = Vec::with_capacity(plan.batch * plan.groups);
    let images = out
        .as_slice_mut()
        .expect("a new array is contiguous")
        .chunks_mut(plan.c_out * windows);
    for (image, planes) in images.enumerate() {
        for (group, dst) in planes.chunks_mut(out_per_group * windows).enumerate() {
            jobs.push((image, group, dst));
        }
    }
    jobs.into_par_iter().for_each_init(
        || layout.buffer(),
        |buf, (image, group, dst)| {
            let x_g = x.slice(s![
                image,
                group * per_group..(group + 1) * per_group,
                ..,
                ..
            ]);
            layout.fill(x_g, plan, buf);
            let weights = &weights[group * taps * out_per_group..][..taps * out_per_group];
            let bias = &bias[group * out_per_group..][..out_per_group];
            for tile in &tiles {
                for &(o0, mr) in &channel_tiles {
                    RowJob {
                        x: buf,
                        start: tile.start,
                        taps: &lists[tile.taps],
                        weights: &weights[o0..],
                        tap_stride: out_per_group,
                        bias: &bias[o0..o0 + mr],
                        vectors: tile.vectors,
                        mr,
                        valid: tile.valid,
                        repeat: tile.repeat,
                    }
                    .run(&mut dst[o0 * windows + tile.out..], windows);
                }
            }
        },
    );
    out
}

/// How [`forward_rows`] lays an image out for its row tiles.
///
/// * `Rows`: the padded rows of [`Rows`]; a tile is up to `16·V` windows of one output row, so
///   a row of 28 windows takes two registers of which 4 lanes stay idle.
/// * `Flat` (stride 1, `W_out` not a multiple of 16, copies within [`FLAT_BYTES`]): [`Flat`]'s
///   copies of each channel, one per kernel column, so that the taps of an output lie at the same
///   offsets from it whichever row it is in, and a tile takes `16·V` consecutive outputs of the
///   image's `H_out·W_out`, across the rows' ends.
enum RowLayout {
    Rows(Rows),
    Flat(Flat),
}

/// A row tile of [`forward_rows`]: `valid` outputs in `vectors` registers, from `out` in each
/// output channel's plane, reading the buffer from `start` at the taps of `lists[taps]`; and
/// `repeat − 1` more like it, each `16·vectors` outputs further on.
struct RowTile {
    taps: usize,
    start: usize,
    out: usize,
    valid: usize,
    vectors: usize,
    repeat: usize,
}

impl RowLayout {
    fn new(plan: &Plan, channels: usize) -> RowLayout {
        let flat = Flat::new(plan, channels);
        if plan.stride == [1, 1]
            && !plan.output[1].is_multiple_of(LANES)
            && flat.len() * size_of::<f32>() <= FLAT_BYTES
        {
            RowLayout::Flat(flat)
        } else {
            RowLayout::Rows(Rows::new(plan, channels))
        }
    }

    fn buffer(&self) -> Scratch<f32> {
        match self {
            RowLayout::Rows(rows) => rows.buffer(),
            RowLayout::Flat(flat) => flat.buffer(),
        }
    }

    fn fill(&self, x: ArrayView3<f32>, plan: &Plan, buf: &mut [f32]) {
        match self {
            RowLayout::Rows(rows) => rows.fill(x, 0..plan.input[0], plan.left, buf),
            RowLayout::Flat(flat) => flat.fill(x, plan, buf),
        }
    }

    /// The tap lists and the tiles that cover every output of an image once. A row of taps that
    /// falls in the top or bottom padding for every output of a tile is left out of its list.
    fn tiles(&self, plan: &Plan) -> (Vec<Taps>, Vec<RowTile>) {
        let ([h, _], [kh, kw], [h_out, w_out]) = (plan.input, plan.kernel, plan.output);
        let (s_h, d_h) = (plan.stride[0], plan.dilation[0]);
        let channels = plan.c_in_per_group();
        match self {
            RowLayout::Rows(rows) => {
                // Per output row, its taps inside the input: (input offset, tap index).
                let lists = (0..h_out)
                    .map(|i| {
                        let mut list = Taps::default();
                        for c in 0..channels {
                            for k_i in inside(h, kh, i * s_h, plan.top, d_h) {
                                let line =
                                    c * rows.channel + (i * s_h + k_i * d_h - plan.top) * rows.row;
                                for k_j in 0..kw {
                                    let offset = rows.at(k_j * plan.dilation[1]);
                                    list.push(line + offset, (c * kh + k_i) * kw + k_j);
                                }
                            }
                        }
                        list
                    })
                    .collect();
                let vectors = w_out.min(MAX_VECTORS * LANES).div_ceil(LANES);
                let tiles = (0..h_out)
                    .flat_map(|i| {
                        pieces(w_out, vectors * LANES)
                            .into_iter()
                            .map(move |(j0, valid)| RowTile {
                                taps: i,
                                start: j0,
                                out: i * w_out + j0,
                                valid,
                                vectors,
                                repeat: 1,
                            })
                    })
                    .collect();
                (lists, tiles)
            }
            RowLayout::Flat(flat) => {
                let windows = h_out * w_out;
                let width = MAX_VECTORS * LANES;
                let (mut lists, mut tiles): (Vec<Taps>, Vec<RowTile>) = (Vec::new(), Vec::new());
                for p0 in (0..windows).step_by(width) {
                    let valid = width.min(windows - p0);
                    let (first, last) = (p0 / w_out, (p0 + valid - 1) / w_out);
                    // The rows of taps that some output of the tile reads inside the image.
                    let reached: Vec<usize> = (0..kh)
                        .filter(|k_i| {
                            (first..=last).any(|i| inside(h, kh, i, plan.top, d_h).contains(k_i))
                        })
                        .collect();
                    let mut list = Taps::default();
                    for c in 0..channels {
                        for &k_i in &reached {
                            for k_j in 0..kw {
                                list.push(
                                    (k_j * channels + c) * flat.plane + k_i * d_h * w_out,
                                    (c * kh + k_i) * kw + k_j,
                                );
                            }
                        }
                    }
                    // Whole tiles with the taps of the one before: one more of its run.
                    if let Some(run) = tiles.last_mut()
                        && run.valid == width
                        && valid == width
                        && lists[run.taps] == list
                    {
                        run.repeat += 1;
                        continue;
                    }
                    tiles.push(RowTile {
                        taps: lists.len(),
                        start: p0,
                        out: p0,
                        valid,
                        vectors: valid.div_ceil(LANES),
                        repeat: 1,
                    });
                    lists.push(list);
                }
                (lists, tiles)
            }
        }
    }
}

/// For stride 1: copy `k_j` of channel `c` is at `(k_j·C + c)·plane`, its row `r` (counted from
/// the top edge of the padding) at `r·W_out`, and its column `j` holds the padded input's column
/// `j + k_j·d_w`, so output `p = i·W_out + j` reads tap `(c, k_i, k_j)` at
/// `(k_j·C + c)·plane + k_i·d_h·W_out + p`.
#[derive(Debug, Clone, Copy)]
struct Flat {
    width: usize,
    plane: usize,
    channels: usize,
    copies: usize,
}

impl Flat {
    fn new(plan: &Plan, channels: usize) -> Flat {
        let ([h_out, w_out], [kh, kw]) = (plan.output, plan.kernel);
        let rows = h_out + (kh - 1) * plan.dilation[0];
        Flat {
            width: w_out,
            plane: rows * w_out,
            channels,
            copies: kw,
        }
    }

    /// Elements of the copies.
    fn len(&self) -> usize {
        self.copies * self.channels * self.plane
    }

    /// A buffer for [`Flat::fill`], all zeros, with the widest tile's worth of zeros past the last
    /// copy, so that every tile loads whole registers.
    fn buffer(&self) -> Scratch<f32> {
        Scratch::full(self.len() + MAX_VECTORS * LANES, 0.0)
    }

    /// Copy the channels of one image `(C, H, W)` into `buf` (from [`Flat::buffer`]). The
    /// positions in the padding are never written, so they stay zero from the buffer's start on.
    fn fill(&self, x: ArrayView3<f32>, plan: &Plan, buf: &mut [f32]) {
        let w = plan.input[1];
        // Per copy: the output columns that read inside the row, and the first column read.
        let spans: Vec<(usize, Range<usize>, usize)> = (0..self.copies)
            .map(|k_j| {
                let shift = k_j * plan.dilation[1];
                let cols = inside(w, self.width, shift, plan.left, 1);
                let first = (cols.start + shift).saturating_sub(plan.left);
                (k_j, cols, first)
            })
            .filter(|(_, cols, _)| !cols.is_empty())
            .collect();
        for (c, channel) in x.outer_iter().enumerate() {
            for (r, line) in channel.outer_iter().enumerate() {
                let row = (r + plan.top) * self.width;
                for &(k_j, ref cols, first) in &spans {
                    let copy = (k_j * self.channels + c) * self.plane + row;
                    let dst = &mut buf[copy + cols.start..copy + cols.end];
                    match line.as_slice() {
                        Some(src) => dst.copy_from_slice(&src[first..first + cols.len()]),
                        None => dst
                            .iter_mut()
                            .enumerate()
                            .for_each(|(j, d)| *d = line[first + j]),
                    }
                }
            }
        }
    }
}

/// One row tile: `mr` output channels × `valid ≤ 16·vectors` windows from `start`, over the taps
/// of `taps`, whose weights for channel `m` are at `weights[tap·tap_stride + m]`; and `repeat − 1`
/// more tiles like it, each `16·vectors` windows further on, in the input and the output alike.
pub(super) struct RowJob<'a> {
    pub(super) x: &'a [f32],
    pub(super) start: usize,
    pub(super) taps: &'a Taps,
    pub(super) weights: &'a [f32],
    pub(super) tap_stride: usize,
    pub(super) bias: &'a [f32],
    pub(super) vectors: usize,
    pub(super) mr: usize,
    pub(super) valid: usize,
    pub(super) repeat: usize,
}

impl RowJob<'_> {
    /// Write the tiles to `out[m·stride + r·16·vectors + t]`. Panics if a read or write would
    /// leave the slices (a bug in the caller, not bad input).
    pub(super) fn run(&self, out: &mut [f32], stride: usize) {
        assert!(
            (1..=MAX_VECTORS).contains(&self.vectors)
                && (1..=max_channels(self.vectors)).contains(&self.mr)
                && (1..=self.vectors * LANES).contains(&self.valid)
                && self.repeat >= 1
        );
        // The last tile's first window, from the first tile's.
        let last = (self.repeat - 1) * self.vectors * LANES;
        assert!(self.bias.len() >= self.mr);
        assert!((self.mr - 1) * stride + last + self.valid <= out.len());
        let count = self.taps.list.len();
        if count > 0 {
            assert!(self.start + last + self.taps.x_reach + self.valid <= self.x.len());
            assert!(self.taps.w_reach * self.tap_stride + self.mr <= self.weights.len());
        }
        // Whole registers of inputs where `x` holds them: the lanes past `valid` are computed
        // and not stored, and the loads need no masks.
        let whole = self.start + last + self.taps.x_reach + self.vectors * LANES <= self.x.len();
        #[cfg(target_arch = "x86_64")]
        {
            assert!(is_available());
            let job = avx512::Row {
                x: self.x[self.start.min(self.x.len())..].as_ptr(),
                taps: self.taps.list.as_ptr(),
                count,
                w: self.weights.as_ptr(),
                tap_stride: self.tap_stride,
                bias: self.bias.as_ptr(),
                out: out.as_mut_ptr(),
                stride,
                valid: self.valid,
                repeat: self.repeat,
                whole,
            };
            // SAFETY: AVX-512F was detected; the assertions above bound every element the kernel
            // touches, for the last tile and so for every tile (`r·16·vectors` windows on): the
            // inputs `start + x + t` up to `x_reach` for `t < valid`, or for `t < 16·vectors`
            // where `whole` says `x` holds them (otherwise the loads are masked to the valid
            // windows), the weights up to `w_reach·tap_stride + mr`, `mr` biases and the
            // outputs `m·stride + t` for `t < valid`, and `mr`, `vectors` are
            // instantiated.
            unsafe { row_shapes!(rows, &job, self.vectors, self.mr) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the direct kernels run only where is_available() holds");
    }
}

/// A list of taps: where each reads the input (for the tile's first window) and its index among
/// the packed weights. It keeps the largest of each, so a job can check its reads once.
#[derive(Default, PartialEq)]
pub(super) struct Taps {
    list: Vec<Tap>,
    x_reach: usize,
    w_reach: usize,
}

impl Taps {
    pub(super) fn push(&mut self, x: usize, w: usize) {
        self.list.push(Tap { x, w });
        self.x_reach = self.x_reach.max(x);
        self.w_reach = self.w_reach.max(w);
    }
}

/// Offset of a tap's input value (for the tile's first window) and its weights' index: the
/// record the row kernel reads.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Tap {
    x: usize,
    w: usize,
}

/// `Σ` over the windows of `G ⊗ x` for every tap: the weight gradient, `(C_out, C_in/g, kH, kW)`.
/// Needs `s_w = d_w = 1`.
fn weight_grad(x: ArrayView4<f32>, g: ArrayView4<f32>, plan: &Plan) -> Array4<f32> {
    let ([h, _], [kh, kw], [h_out, w_out]) = (plan.input, plan.kernel, plan.output);
    let (s_h, d_h) = (plan.stride[0], plan.dilation[0]);
    let per_group = plan.c_in_per_group();
    let (mut g_len, mut dw_len) = (0, 0);
    let runs: Vec<WeightRun> = Channels::split(plan, MAX_VECTORS)
        .into_iter()
        .map(|channels| {
            let run = WeightRun {
                channels,
                g_at: g_len,
                dw_at: dw_len,
                tap_tiles: pieces(kw, max_mr(channels.vectors)),
            };
            g_len += h_out * w_out * channels.width();
            dw_len += per_group * kh * kw * channels.width();
            run
        })
        .collect();
    let mut weight = crate::buffers::zeros::<f32, _>((plan.c_out, per_group, kh, kw));
    if plan.batch == 0 || weight.is_empty() || h_out * w_out == 0 {
        return weight;
    }
    let rows = Rows::new(plan, plan.c_in);
    // Fixed pieces of the sum over windows: whole images, or rows of one large image.
    let windows = h_out * w_out;
    let mut slabs: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    if windows >= WINDOWS_PER_BLOCK {
        for n in 0..plan.batch {
            for (r0, count) in pieces(h_out, WINDOWS_PER_BLOCK / w_out) {
                slabs.push((n..n + 1, r0..r0 + count));
            }
        }
    } else {
        let per = WINDOWS_PER_BLOCK / windows;
        for n0 in (0..plan.batch).step_by(per) {
            slabs.push((n0..(n0 + per).min(plan.batch), 0..h_out));
        }
    }
    let partials: Vec<Scratch<f32>> = slabs
        .into_par_iter()
        .map_init(
            || (rows.buffer(), Scratch::full(g_len, 0.0f32)),
            |(buf, packed_g), (images, out_rows)| {
                let mut dw = Scratch::full(dw_len, 0.0f32);
                for n in images {
                    // The input rows these output rows read.
                    let lines = (out_rows.start * s_h).saturating_sub(plan.top)
                        ..((out_rows.end - 1) * s_h + (kh - 1) * d_h + 1)
                            .saturating_sub(plan.top)
                            .min(h);
                    rows.fill(x.index_axis(Axis(0), n), lines, plan.left, buf);
                    pack_gradient(g.index_axis(Axis(0), n), out_rows.clone(), &runs, packed_g);
                    add_weight_tiles(plan, &rows, &runs, buf, packed_g, out_rows.clone(), &mut dw);
                }
                dw
            },
        )
        .collect();
    // The pieces' sums, added in order.
    let mut total = Scratch::full(dw_len, 0.0f32);
    for partial in &partials {
        for (t, p) in total.iter_mut().zip(partial.iter()) {
            *t += p;
        }
    }
    for run in &runs {
        let (channels, width) = (run.channels, run.channels.width());
        for o in 0..channels.lanes {
            let mut filter = weight.index_axis_mut(Axis(0), channels.first + o);
            for ((c, k_i, k_j), d) in filter.indexed_iter_mut() {
                *d = total[run.dw_at + ((c * kh + k_i) * kw + k_j) * width + o];
            }
        }
    }
    weight
}

/// A run of output channels of the weight gradient: where its packed `G` (per window) and its
/// sums (per tap) begin in their buffers, and the tiles its tap columns are cut into.
struct WeightRun {
    channels: Channels,
    g_at: usize,
    dw_at: usize,
    tap_tiles: Vec<(usize, usize)>,
}

/// One image's `G` `(C_out, H_out, W_out)` on output rows `out_rows`, window by window:
/// `packed_g[g_at + (r·W_out + j)·width + o]`, a row of windows at a time so that its lines stay
/// in L1.
fn pack_gradient(
    g: ArrayView3<f32>,
    out_rows: Range<usize>,
    runs: &[WeightRun],
    packed_g: &mut [f32],
) {
    let w_out = g.dim().2;
    for run in runs {
        let (channels, width) = (run.channels, run.channels.width());
        for (r, out_row) in out_rows.clone().enumerate() {
            let dst = &mut packed_g[run.g_at + r * w_out * width..][..w_out * width];
            let plane = g.slice(s![
                channels.first..channels.first + channels.lanes,
                out_row,
                ..
            ]);
            for (o, line) in plane.outer_iter().enumerate() {
                for (window, &v) in dst.chunks_exact_mut(width).zip(line) {
                    window[o] = v;
                }
            }
        }
    }
}

/// Add one image's windows on `out_rows` to every weight tile's sums in `dw`, a few output rows
/// at a time so that their packed gradient stays in L1 while every tap uses it.
fn add_weight_tiles(
    plan: &Plan,
    rows: &Rows,
    runs: &[WeightRun],
    buf: &[f32],
    packed_g: &[f32],
    out_rows: Range<usize>,
    dw: &mut [f32],
) {
    let ([h, _], [kh, kw], [h_out, w_out]) = (plan.input, plan.kernel, plan.output);
    let (s_h, d_h) = (plan.stride[0], plan.dilation[0]);
    let per_group = plan.c_in_per_group();
    let sub_rows = (SUB_BLOCK_BYTES / (w_out * MAX_VECTORS * LANES * 4)).max(1);
    for (sub0, sub_count) in pieces(out_rows.len(), sub_rows) {
        let sub = out_rows.start + sub0..out_rows.start + sub0 + sub_count;
        for run in runs {
            let (channels, width) = (run.channels, run.channels.width());
            for c in 0..per_group {
                let channel = channels.group * per_group + c;
                for k_i in 0..kh {
                    // The output rows whose tap row k_i is inside the input, within `sub`.
                    let all = inside(h, h_out, k_i * d_h, plan.top, s_h);
                    let (from, to) = (all.start.max(sub.start), all.end.min(sub.end));
                    if from >= to {
                        continue;
                    }
                    let in_row = from * s_h + k_i * d_h - plan.top;
                    for &(k_j0, mr) in &run.tap_tiles {
                        WeightJob {
                            x: buf,
                            start: channel * rows.channel + in_row * rows.row + k_j0,
                            rows: to - from,
                            row: s_h * rows.row,
                            cols: w_out,
                            g: packed_g,
                            g_start: run.g_at + (from - out_rows.start) * w_out * width,
                            dw: &mut *dw,
                            dw_start: run.dw_at + ((c * kh + k_i) * kw + k_j0) * width,
                            vectors: channels.vectors,
                            mr,
                        }
                        .run();
                    }
                }
            }
        }
    }
}

/// One weight-gradient tile: `mr` taps (neighbouring columns of one input row, from `start`) ×
/// `16·vectors` channels, summed over `rows` output rows of `cols` windows into
/// `dw[dw_start..]` (tap-major).
struct WeightJob<'a> {
    x: &'a [f32],
    start: usize,
    rows: usize,
    row: usize,
    cols: usize,
    g: &'a [f32],
    g_start: usize,
    dw: &'a mut [f32],
    dw_start: usize,
    vectors: usize,
    mr: usize,
}

impl WeightJob<'_> {
    /// Add the tile into `dw`. Panics if a read or write would leave the slices (a bug in the
    /// caller, not bad input).
    fn run(self) {
        let width = self.vectors * LANES;
        assert!(
            (1..=MAX_VECTORS).contains(&self.vectors)
                && (1..=max_mr(self.vectors)).contains(&self.mr)
        );
        assert!(self.rows > 0 && self.cols > 0);
        assert!(self.start + (self.rows - 1) * self.row + self.cols + self.mr - 1 <= self.x.len());
        assert!(self.g_start + ((self.rows - 1) * self.cols + self.cols) * width <= self.g.len());
        assert!(self.dw_start + self.mr * width <= self.dw.len());
        #[cfg(target_arch = "x86_64")]
        {
            assert!(is_available());
            let job = avx512::Weight {
                x: self.x[self.start..].as_ptr(),
                rows: self.rows,
                row: self.row,
                cols: self.cols,
                g: self.g[self.g_start..].as_ptr(),
                dw: self.dw[self.dw_start..].as_mut_ptr(),
            };
            // SAFETY: AVX-512F was detected; the assertions above bound every element read from
            // x (up to the last row's column `cols − 1 + mr − 1`), from the packed gradient
            // (`rows·cols` windows of `16·vectors` lanes) and the `mr·16·vectors` elements of
            // dw, and `mr`, `vectors` are instantiated.
            unsafe { tile_shapes!(weight, &job, self.vectors, self.mr) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("the direct kernels run only where is_available() holds");
    }
}

/// `∂L/∂x` at stride 1: the convolution of `G` by the flipped, channel-swapped weights.
fn input_grad(
    w: ArrayView4<f32>,
    g: ArrayView4<f32>,
    plan: &Plan,
    transposed: &Plan,
) -> Array4<f32> {
    let (per_group, out_per_group) = (plan.c_in_per_group(), plan.c_out_per_group());
    let [kh, kw] = plan.kernel;
    let mut flipped = crate::buffers::for_overwrite::<f32, _>((plan.c_in, out_per_group, kh, kw));
    // `flipped[c][o][k_i][k_j] = w[o][c][kH − 1 − k_i][kW − 1 − k_j]`, group by group.
    let w = w.slice(s![.., .., ..;-1, ..;-1]);
    for group in 0..plan.groups {
        let src = w.slice(s![
            group * out_per_group..(group + 1) * out_per_group,
            ..,
            ..,
            ..
        ]);
        flipped
            .slice_mut(s![group * per_group..(group + 1) * per_group, .., .., ..])
            .assign(&src.permuted_axes([1, 0, 2, 3]));
    }
    // One group at stride 1: Winograd (F(2×2, 3×3) or F(3×3, 5×5)) where it takes the shapes
    // and every value is finite.
    let winograd = (plan.groups == 1 && plan.dilation == [1, 1])
        .then(|| {
            super::winograd::forward(
                g,
                flipped.view(),
                None,
                [transposed.top, transposed.left],
                transposed.output,
            )
        })
        .flatten();
    let grad = winograd.unwrap_or_else(|| forward(g, flipped.view(), None, transposed));
    crate::buffers::recycle(flipped);
    grad
}

/// The operands of a convolution as `f32` views; `None` unless `T` is `f32`.
#[allow(clippy::type_complexity)]
pub(super) fn f32_operands<'a, T: Scalar>(
    x: ArrayView4<'a, T>,
    w: ArrayView4<'a, T>,
    b: Option<ArrayView1<'a, T>>,
) -> Option<(
    ArrayView4<'a, f32>,
    ArrayView4<'a, f32>,
    Option<ArrayView1<'a, f32>>,
)> {
    Some((T::as_f32(x)?, T::as_f32(w)?, b.and_then(T::as_f32)))
}

/// [`super::fast::conv2d`] by the direct kernels, or `Ok(None)` where they do not apply (no
/// AVX-512, not `f32`; 64 taps per output or more but fewer than 8 output channels per group).
/// Calls with fewer than 64 taps per output (`C_in/g · kH · kW`) put the windows of a row in the
/// lanes, the others the output channels. Shapes are checked first.
pub fn conv2d<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    b: Option<ArrayView1<T>>,
    params: Conv2dParams,
) -> Result<Option<Array4<T>>> {
    let geo = ConvGeometry::conv2d(x.dim(), w.dim(), b.map(|b| b.len()), params)?;
    let plan = Plan::new(&geo);
    let [kh, kw] = plan.kernel;
    let Some((x, w, b)) = f32_operands(x, w, b).filter(|_| is_available()) else {
        return Ok(None);
    };
    let y = if plan.c_in_per_group() * kh * kw < MIN_TAPS {
        forward_rows(x, w, b, &plan)
    } else if plan.c_out_per_group() >= MIN_CHANNELS {
        forward(x, w, b, &plan)
    } else {
        return Ok(None);
    };
    Ok(T::from_f32(y))
}

/// [`super::fast::conv2d_backward`] by the direct kernels, or `Ok(None)` where they do not apply
/// (no AVX-512, not `f32`, a stride other than 1, a column dilation other than 1, padding beyond
/// `(k − 1)·d`, fewer than 8 input or output channels per group). Shapes are checked first.
pub fn conv2d_backward<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
) -> Result<Option<Conv2dGrads<T>>> {
    let grads = backward(x, w, grad_out, params, true)?;
    Ok(grads.map(|grads| {
        let (Some(input), weight, bias) = grads else {
            unreachable!("the input's gradient was asked for")
        };
        Conv2dGrads {
            input,
            weight,
            bias,
        }
    }))
}

/// The gradients of input (where `input` asks for it), weight and bias, for
/// [`conv2d_backward`] and [`super::fast::conv2d_parameter_grads`].
pub(super) type Grads<T> = (Option<Array4<T>>, Array4<T>, ndarray::Array1<T>);

/// [`conv2d_backward`], with the input's gradient only where `input` asks for it.
pub(super) fn backward<T: Scalar>(
    x: ArrayView4<T>,
    w: ArrayView4<T>,
    grad_out: ArrayView4<T>,
    params: Conv2dParams,
    input: bool,
) -> Result<Option<Grads<T>>> {
    let geo = ConvGeometry::conv2d(x.dim(), w.dim(), None, params)?;
    let [h_out, w_out] = geo.output;
    check_grad_shape(grad_out.shape(), &[geo.batch, geo.c_out, h_out, w_out])?;
    let plan = Plan::new(&geo);
    let Some(transposed) = plan.transposed() else {
        return Ok(None);
    };
    // The right and bottom padding must fit `(k − 1)·d` too.
    let fits = |axis: usize| geo.pads[axis].right <= (plan.kernel[axis] - 1) * plan.dilation[axis];
    if !is_available()
        || plan.stride != [1, 1]
        || plan.dilation[1] != 1
        || !fits(0)
        || !fits(1)
        || plan.c_in_per_group() < MIN_CHANNELS
        || plan.c_out_per_group() < MIN_CHANNELS
    {
        return Ok(None);
    }
    let (Some(x), Some(w), Some(g)) = (T::as_f32(x), T::as_f32(w), T::as_f32(grad_out)) else {
        return Ok(None);
    };
    // One group: the transpose of F(2×2, r×r) where it takes the shapes and every value is
    // finite.
    let winograd = (plan.groups == 1 && plan.dilation == [1, 1])
        .then(|| super::winograd::weight_grad(x, g, plan.kernel, [plan.top, plan.left]))
        .flatten();
    let weight = winograd.unwrap_or_else(|| weight_grad(x, g, &plan));
    let input = input.then(|| input_grad(w, g, &plan, &transposed));
    let bias = super::fast::bias_grad(g);
    let input = match input.map(T::from_f32) {
        Some(None) => return Ok(None),
        input => input.flatten(),
    };
    Ok(match (T::from_f32(weight), T::from_f32(bias)) {
        (Some(weight), Some(bias)) => Some((input, weight, bias)),
        _ => None,
    })
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::LANES;
    use super::Tap;
    use std::arch::x86_64::*;

    /// A forward tile's pointers: `x` at window 0 of the first row inside for channel 0, `w` at
    /// that row's first tap, `offsets[k_j]` the buffer offset of tap column `k_j`.
    pub(super) struct Forward {
        pub x: *const f32,
        pub channels: usize,
        pub channel: usize,
        pub rows: usize,
        pub row: usize,
        pub offsets: *const usize,
        pub taps: usize,
        pub masks: *const u32,
        pub w: *const f32,
        pub w_channel: usize,
        pub bias: *const f32,
        pub tile: *mut f32,
    }

    /// `tile[t][o] = s[t][o] + Σ_{c, rows, k_j} w[c][row][k_j][o] · x[c·channel + row·row +
    /// offsets[k_j] + t]` for `t < MR`, `o < 16·V`, where `s` is `bias[o]`, or the tile's own
    /// values when `bias` is null. When `out` is not null the sums go to `out[o·out_stride + t]`
    /// for `o < lanes` instead.
    ///
    /// # Safety
    /// The processor must have AVX-512F, and every address named above must lie inside the
    /// buffers behind the pointers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward<const MR: usize, const V: usize>(t: &Forward) {
        // SAFETY: the caller's guarantees are this function's.
        unsafe { forward_tile::<MR, V, false>(t) }
    }

    /// [`forward`] with the terms of window `t` and tap column `k_j` only where bit `t` of
    /// `masks[k_j]` is set.
    ///
    /// # Safety
    /// As for [`forward`], and `masks` must hold `taps` masks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_masked<const MR: usize, const V: usize>(t: &Forward) {
        // SAFETY: the caller's guarantees are this function's.
        unsafe { forward_tile::<MR, V, true>(t) }
    }

    /// The forward tile, with (`MASKED`) or without the masks of the tap columns.
    ///
    /// # Safety
    /// As for [`forward_masked`] when `MASKED`, else as for [`forward`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn forward_tile<const MR: usize, const V: usize, const MASKED: bool>(t: &Forward) {
        let width = V * LANES;
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        // SAFETY: the caller guarantees every address read and written lies in its buffer.
        unsafe {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if t.bias.is_null() {
                        _mm512_loadu_ps(t.tile.add(i * width + j * LANES))
                    } else {
                        _mm512_loadu_ps(t.bias.add(j * LANES))
                    };
                }
            }
            match t.taps {
                3 => taps::<MR, V, MASKED, 3>(t, &mut acc),
                5 => taps::<MR, V, MASKED, 5>(t, &mut acc),
                _ => taps::<MR, V, MASKED, 0>(t, &mut acc),
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    _mm512_storeu_ps(t.tile.add(i * width + j * LANES), v);
                }
            }
        }
    }

    /// The taps of a forward tile, `KW` columns per row unrolled (`0`: `t.taps`, in a loop).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn taps<const MR: usize, const V: usize, const MASKED: bool, const KW: usize>(
        t: &Forward,
        acc: &mut [[__m512; V]; MR],
    ) {
        let width = V * LANES;
        let all = (1u32 << MR) - 1;
        // SAFETY: the caller guarantees every address read lies in its buffer.
        unsafe {
            let tap =
                |acc: &mut [[__m512; V]; MR], x_row: *const f32, w: *const f32, k_j: usize| {
                    let x = x_row.add(*t.offsets.add(k_j));
                    let w = w.add(k_j * width);
                    let mut wv = [_mm512_setzero_ps(); V];
                    for (j, v) in wv.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(w.add(j * LANES));
                    }
                    let valid = if MASKED { *t.masks.add(k_j) } else { all };
                    if valid & all == all {
                        for (i, row) in acc.iter_mut().enumerate() {
                            let a = _mm512_set1_ps(*x.add(i));
                            for (r, &v) in row.iter_mut().zip(&wv) {
                                *r = _mm512_fmadd_ps(a, v, *r);
                            }
                        }
                    } else {
                        for (i, row) in acc.iter_mut().enumerate() {
                            if valid & (1 << i) != 0 {
                                let a = _mm512_set1_ps(*x.add(i));
                                for (r, &v) in row.iter_mut().zip(&wv) {
                                    *r = _mm512_fmadd_ps(a, v, *r);
                                }
                            }
                        }
                    }
                };
            let kw = if KW == 0 { t.taps } else { KW };
            for c in 0..t.channels {
                let mut x_row = t.x.add(c * t.channel);
                let mut w = t.w.add(c * t.w_channel);
                for _ in 0..t.rows {
                    // Three or five columns are unrolled by hand (LLVM keeps a loop around a
                    // body this long): no counter, test and branch per tap.
                    match KW {
                        3 => {
                            tap(acc, x_row, w, 0);
                            tap(acc, x_row, w, 1);
                            tap(acc, x_row, w, 2);
                        }
                        5 => {
                            tap(acc, x_row, w, 0);
                            tap(acc, x_row, w, 1);
                            tap(acc, x_row, w, 2);
                            tap(acc, x_row, w, 3);
                            tap(acc, x_row, w, 4);
                        }
                        _ => (0..kw).for_each(|k_j| tap(acc, x_row, w, k_j)),
                    }
                    w = w.add(kw * width);
                    x_row = x_row.add(t.row);
                }
            }
        }
    }

    /// Sums to channel rows: `src` at the first of `count ≤ 16` windows of `width` sums each,
    /// `dst` at that window in the first of `lanes` rows of `stride` elements.
    pub(super) struct Unpack {
        pub src: *const f32,
        pub width: usize,
        pub count: usize,
        pub lanes: usize,
        pub dst: *mut f32,
        pub stride: usize,
    }

    /// The 16 × 16 transposition of `r`: lane `k` of the result's register `o` is lane `o` of
    /// `r[k]` (unpack pairs of floats, then pairs of pairs, then 128-bit lanes twice).
    #[target_feature(enable = "avx512f")]
    pub(in super::super) fn transpose(r: &[__m512; LANES]) -> [__m512; LANES] {
        // r[w][o] → a[..]: per 128-bit lane, (r[2a][o], r[2a+1][o]) pairs.
        let mut a = [_mm512_setzero_ps(); LANES];
        for p in 0..LANES / 2 {
            a[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
            a[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
        }
        // b[4q + m], lane k: rows 4q..4q + 4 of column 4k + m.
        let mut b = [_mm512_setzero_ps(); LANES];
        for q in 0..LANES / 4 {
            for h in 0..2 {
                let (lo, hi) = (
                    _mm512_castps_pd(a[4 * q + h]),
                    _mm512_castps_pd(a[4 * q + 2 + h]),
                );
                b[4 * q + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
                b[4 * q + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
            }
        }
        // Column 4k + m gathers lane k of b[m], b[4 + m], b[8 + m], b[12 + m].
        let mut out = [_mm512_setzero_ps(); LANES];
        for m in 0..4 {
            let c0 = _mm512_shuffle_f32x4::<0x44>(b[m], b[4 + m]);
            let c1 = _mm512_shuffle_f32x4::<0xEE>(b[m], b[4 + m]);
            let c2 = _mm512_shuffle_f32x4::<0x44>(b[8 + m], b[12 + m]);
            let c3 = _mm512_shuffle_f32x4::<0xEE>(b[8 + m], b[12 + m]);
            out[m] = _mm512_shuffle_f32x4::<0x88>(c0, c2);
            out[4 + m] = _mm512_shuffle_f32x4::<0xDD>(c0, c2);
            out[8 + m] = _mm512_shuffle_f32x4::<0x88>(c1, c3);
            out[12 + m] = _mm512_shuffle_f32x4::<0xDD>(c1, c3);
        }
        out
    }

    /// `dst[o·stride + t] = src[t·width + o]` for `t < count`, `o < lanes`: each run of 16
    /// channels is a 16 × 16 [`transpose`] in registers.
    ///
    /// # Safety
    /// The processor must have AVX-512F, and every address named above must lie inside the
    /// buffers behind the pointers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn unpack(t: &Unpack) {
        let windows = ((1u32 << t.count) - 1) as __mmask16;
        // SAFETY: the caller guarantees every address read and written lies in its buffer; the
        // loads stop at `count` windows, the stores are masked to them.
        unsafe {
            for first in (0..t.lanes).step_by(LANES) {
                // Past `count`, the last window again: its copies are not stored.
                let mut r = [_mm512_setzero_ps(); LANES];
                for (w, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(t.src.add(w.min(t.count - 1) * t.width + first));
                }
                for (o, &v) in transpose(&r).iter().enumerate() {
                    if first + o < t.lanes {
                        _mm512_mask_storeu_ps(t.dst.add((first + o) * t.stride), windows, v);
                    }
                }
            }
        }
    }

    /// A row tile's pointers: `x` at the tile's first window, `taps` the `count` taps (input
    /// offset, weight index), `w` the weights of the tile's first channel, `out` its first
    /// output.
    pub(super) struct Row {
        pub x: *const f32,
        pub taps: *const Tap,
        pub count: usize,
        pub w: *const f32,
        pub tap_stride: usize,
        pub bias: *const f32,
        pub out: *mut f32,
        pub stride: usize,
        pub valid: usize,
        pub repeat: usize,
        pub whole: bool,
    }

    /// `out[m·stride + u + t] = bias[m] + Σ_{tap} w[tap.w·tap_stride + m] · x[tap.x + u + t]` for
    /// `m < MR`, `t < valid ≤ 16·V` and `u = r·16·V`, `r < repeat`.
    ///
    /// # Safety
    /// The processor must have AVX-512F, and every address named above must lie inside the
    /// buffers behind the pointers, and where `whole` is set, `x[tap.x + u + t]` for every tap
    /// and `t < 16·V` too.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows<const MR: usize, const V: usize>(t: &Row) {
        // SAFETY: the caller's contract is `row_tile`'s.
        unsafe {
            if t.whole {
                row_tile::<MR, V, true>(t)
            } else {
                row_tile::<MR, V, false>(t)
            }
        }
    }

    /// [`rows`] with `FULL` loads: a masked load costs a multiply-add port's slot on top of its
    /// load, so tiles whose registers of inputs all lie in the buffer load them without masks
    /// (the lanes past `valid` are computed and not stored).
    ///
    /// # Safety
    /// As [`rows`], and `FULL` only if `whole` is set.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn row_tile<const MR: usize, const V: usize, const FULL: bool>(t: &Row) {
        let mut masks = [0 as __mmask16; V];
        for (j, m) in masks.iter_mut().enumerate() {
            let rest = t.valid.saturating_sub(j * LANES).min(LANES);
            *m = ((1u32 << rest) - 1) as __mmask16;
        }
        // SAFETY: the caller guarantees every address read and written lies in its buffer; the
        // stores are masked to the `valid` windows (or all `16·V` are valid), and so are the
        // loads unless all `16·V` lie in the buffer (`FULL`).
        unsafe {
            for r in 0..t.repeat {
                let (x0, out0) = (t.x.add(r * V * LANES), t.out.add(r * V * LANES));
                let mut acc = [[_mm512_setzero_ps(); V]; MR];
                for (m, row) in acc.iter_mut().enumerate() {
                    *row = [_mm512_set1_ps(*t.bias.add(m)); V];
                }
                for k in 0..t.count {
                    let tap = *t.taps.add(k);
                    let (x, w) = (x0.add(tap.x), t.w.add(tap.w * t.tap_stride));
                    let mut xv = [_mm512_setzero_ps(); V];
                    for (j, v) in xv.iter_mut().enumerate() {
                        *v = if FULL {
                            _mm512_loadu_ps(x.add(j * LANES))
                        } else {
                            _mm512_maskz_loadu_ps(masks[j], x.add(j * LANES))
                        };
                    }
                    for (m, row) in acc.iter_mut().enumerate() {
                        let a = _mm512_set1_ps(*w.add(m));
                        for (r, &v) in row.iter_mut().zip(&xv) {
                            *r = _mm512_fmadd_ps(a, v, *r);
                        }
                    }
                }
                for (m, row) in acc.iter().enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        let out = out0.add(m * t.stride + j * LANES);
                        if t.valid == V * LANES {
                            _mm512_storeu_ps(out, v);
                        } else {
                            _mm512_mask_storeu_ps(out, masks[j], v);
                        }
                    }
                }
            }
        }
    }

    /// A weight tile's pointers: `x` at window `(first row, 0)` of the first tap, `g` at that
    /// window's packed gradient, `dw` at the first tap's `16·V` sums.
    pub(super) struct Weight {
        pub x: *const f32,
        pub rows: usize,
        pub row: usize,
        pub cols: usize,
        pub g: *const f32,
        pub dw: *mut f32,
    }

    /// `dw[t][o] += Σ_{r < rows, j < cols} g[(r·cols + j)·16·V + o] · x[r·row + j + t]` for
    /// `t < MR`, `o < 16·V`, summed window by window in that order.
    ///
    /// # Safety
    /// The processor must have AVX-512F, and every address named above must lie inside the
    /// buffers behind the pointers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight<const MR: usize, const V: usize>(t: &Weight) {
        let width = V * LANES;
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        // SAFETY: the caller guarantees every address read and written lies in its buffer.
        unsafe {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(t.dw.add(i * width + j * LANES));
                }
            }
            for r in 0..t.rows {
                let x = t.x.add(r * t.row);
                let g = t.g.add(r * t.cols * width);
                for col in 0..t.cols {
                    let mut gv = [_mm512_setzero_ps(); V];
                    for (j, v) in gv.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(g.add(col * width + j * LANES));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let a = _mm512_set1_ps(*x.add(col + i));
                        for (r, &v) in row.iter_mut().zip(&gv) {
                            *r = _mm512_fmadd_ps(a, v, *r);
                        }
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    _mm512_storeu_ps(t.dw.add(i * width + j * LANES), v);
                }
            }
        }
    }
}
