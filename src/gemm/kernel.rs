//! Register-tile micro-kernels: `AB = Σ_p a[p] ⊗ b[p]`, an `MR × NR` tile accumulated in
//! registers from a packed `MR`-row panel of A and a packed `NR`-column panel of B.
//!
//! The portable kernel is plain Rust and runs everywhere (and in the tests on x86_64 too); the
//! AVX2 + FMA kernels are chosen at run time when the processor has those instructions.

use ndarray::{Array, ArrayView, ArrayViewMut2, Dimension, NdFloat};

/// The instruction set a micro-kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, every target.
    Portable,
    /// x86_64 AVX2 with fused multiply-add.
    Avx2Fma,
}

impl Isa {
    /// Whether this processor can run the instruction set.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma => false,
        }
    }

    /// Every instruction set this processor can run, portable first.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2Fma]
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The fastest instruction set this processor can run.
    pub fn best() -> Isa {
        *Isa::available()
            .last()
            .expect("portable is always available")
    }
}

/// `(kc, a, b, α, β, C)`: a tile folded straight into C.
type UpdateFn<T> = fn(usize, &[T], &[T], T, T, &mut ArrayViewMut2<T>);

/// The largest `MR × NR` tile of any micro-kernel.
const MAX_TILE: usize = 96;

/// A micro-kernel and its tile: `run(kc, a, b, ab)` reads `a` (`kc` groups of `mr` values) and
/// `b` (`kc` groups of `nr` values) and writes the `mr × nr` tile `ab` (row-major).
#[derive(Clone, Copy)]
pub struct MicroKernel<T> {
    /// Rows of the tile.
    pub mr: usize,
    /// Columns of the tile.
    pub nr: usize,
    run: fn(usize, &[T], &[T], &mut [T]),
    /// Computes the tile and folds it straight into a full `mr × nr` block of C whose rows are
    /// contiguous: `C ← α·AB + β·C`, saving the round trip through a buffer.
    update: Option<UpdateFn<T>>,
}

impl<T: NdFloat> MicroKernel<T> {
    /// Compute one tile into `ab`. Panics if the slices are shorter than `kc·mr`, `kc·nr` and
    /// `mr·nr`.
    pub fn run(&self, kc: usize, a: &[T], b: &[T], ab: &mut [T]) {
        assert!(
            a.len() >= kc * self.mr && b.len() >= kc * self.nr && ab.len() >= self.mr * self.nr
        );
        (self.run)(kc, a, b, ab)
    }

    /// `C ← α·AB + β·C` for one tile; with `β = 0`, `C` is not read. `c` may be any `mr' × nr'`
    /// block with `mr' ≤ mr`, `nr' ≤ nr` (the tile's top-left part is used).
    pub fn update(&self, kc: usize, a: &[T], b: &[T], alpha: T, beta: T, c: &mut ArrayViewMut2<T>) {
        let (rows, cols) = c.dim();
        assert!(rows <= self.mr && cols <= self.nr);
        if let Some(update) = self
            .update
            .filter(|_| (rows, cols) == (self.mr, self.nr) && c.strides()[1] == 1)
        {
            assert!(a.len() >= kc * self.mr && b.len() >= kc * self.nr);
            return update(kc, a, b, alpha, beta, c);
        }
        let mut ab = [T::zero(); MAX_TILE];
        self.run(kc, a, b, &mut ab);
        for ((i, j), dst) in c.indexed_iter_mut() {
            let v = alpha * ab[i * self.nr + j];
            *dst = if beta == T::zero() {
                v
            } else {
                v + beta * *dst
            };
        }
    }
}

/// Scalars with micro-kernels: `f32` and `f64`.
pub trait Scalar: NdFloat {
    /// The micro-kernel for `isa`, or `None` if this processor cannot run it.
    fn micro_kernel(isa: Isa) -> Option<MicroKernel<Self>>;

    /// The same view as `f32`, if `Self` is `f32` (kernels written for `f32` only use it).
    fn as_f32<D: Dimension>(a: ArrayView<'_, Self, D>) -> Option<ArrayView<'_, f32, D>>;

    /// The same array as `Self`, if `Self` is `f32`.
    fn from_f32<D: Dimension>(a: Array<f32, D>) -> Option<Array<Self, D>>;
}

const PORTABLE_MR: usize = 4;
const PORTABLE_NR: usize = 8;

fn portable<T: NdFloat>(kc: usize, a: &[T], b: &[T], ab: &mut [T]) {
    let mut acc = [[T::zero(); PORTABLE_NR]; PORTABLE_MR];
    for (ap, bp) in a
        .chunks_exact(PORTABLE_MR)
        .zip(b.chunks_exact(PORTABLE_NR))
        .take(kc)
    {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (c, &bj) in row.iter_mut().zip(bp) {
                *c += ai * bj;
            }
        }
    }
    for (dst, row) in ab.chunks_exact_mut(PORTABLE_NR).zip(&acc) {
        dst.copy_from_slice(row);
    }
}

fn portable_kernel<T: NdFloat>() -> MicroKernel<T> {
    MicroKernel {
        mr: PORTABLE_MR,
        nr: PORTABLE_NR,
        run: portable::<T>,
        update: None,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::MicroKernel;
    use ndarray::ArrayViewMut2;
    use std::arch::x86_64::*;

    /// Rows of the AVX2 tile: 6 rows × 2 vectors = 12 accumulators, leaving 4 of the 16 ymm
    /// registers for the two B vectors and the broadcast of A.
    pub const MR: usize = 6;
    pub const NR_F32: usize = 16;
    pub const NR_F64: usize = 8;

    /// Defines `$kernel()`, the AVX2 micro-kernel for `$t` with its safe entry points, around
    /// `$update`, the one routine that accumulates a tile and folds it into a block of C.
    macro_rules! tile {
        ($kernel:ident, $update:ident, $t:ty, $nr:expr, $lanes:expr, $zero:ident, $load:ident,
         $set1:ident, $fma:ident, $mul:ident, $store:ident) => {
            /// `C ← α·AB + β·C` for one `MR × NR` tile (`C` not read when `β = 0`).
            ///
            /// # Safety
            /// The processor must support AVX2 and FMA; `a` and `b` must hold at least `kc·MR`
            /// and `kc·NR` elements; `c` points to an `MR × NR` block whose rows start `rs`
            /// elements apart and whose elements within a row are contiguous.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $update(
                kc: usize,
                a: *const $t,
                b: *const $t,
                alpha: $t,
                beta: $t,
                c: *mut $t,
                rs: isize,
            ) {
                let mut acc = [[$zero(); 2]; MR];
                // One step of the depth: 2 loads of B, 6 broadcasts of A, 12 multiply-adds.
                let mut step = |p: usize| {
                    // SAFETY: p < kc, so p·NR + NR ≤ kc·NR and p·MR + MR ≤ kc·MR elements are
                    // in the buffers the caller passed; loads are unaligned.
                    unsafe {
                        let b0 = $load(b.add(p * $nr));
                        let b1 = $load(b.add(p * $nr + $lanes));
                        for (i, row) in acc.iter_mut().enumerate() {
                            let ai = $set1(*a.add(p * MR + i));
                            row[0] = $fma(ai, b0, row[0]);
                            row[1] = $fma(ai, b1, row[1]);
                        }
                    }
                };
                // Four steps per trip through the loop, so its counter and branch cost less.
                let mut p = 0;
                while p + 4 <= kc {
                    step(p);
                    step(p + 1);
                    step(p + 2);
                    step(p + 3);
                    p += 4;
                }
                while p < kc {
                    step(p);
                    p += 1;
                }
                let (va, vb) = ($set1(alpha), $set1(beta));
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: row i of the block starts at c + i·rs and holds NR contiguous
                    // elements, as the caller guarantees.
                    unsafe {
                        let dst = c.offset(i as isize * rs);
                        for (h, &v) in row.iter().enumerate() {
                            let d = dst.add(h * $lanes);
                            let scaled = $mul(va, v);
                            let out = if beta == 0.0 {
                                scaled
                            } else {
                                $fma(vb, $load(d), scaled)
                            };
                            $store(d, out);
                        }
                    }
                }
            }

            /// The micro-kernel; only call after [`super::Isa::Avx2Fma`] was found available.
            pub fn $kernel() -> MicroKernel<$t> {
                fn run(kc: usize, a: &[$t], b: &[$t], ab: &mut [$t]) {
                    // SAFETY: the kernel is handed out only after `is_x86_feature_detected!`
                    // confirmed AVX2 and FMA; `MicroKernel::run` checked the slice lengths, and
                    // `ab` is an MR × NR row-major block, rows NR apart.
                    unsafe {
                        $update(
                            kc,
                            a.as_ptr(),
                            b.as_ptr(),
                            1.0,
                            0.0,
                            ab.as_mut_ptr(),
                            $nr as isize,
                        )
                    }
                }
                fn update(
                    kc: usize,
                    a: &[$t],
                    b: &[$t],
                    alpha: $t,
                    beta: $t,
                    c: &mut ArrayViewMut2<$t>,
                ) {
                    assert!(c.dim() == (MR, $nr) && c.strides()[1] == 1);
                    let (ptr, rs) = (c.as_mut_ptr(), c.strides()[0]);
                    // SAFETY: AVX2 and FMA were detected (see `run`); `MicroKernel::update`
                    // checked the lengths of `a` and `b`, and the assertion above that `c` is an
                    // MR × NR block with contiguous rows `rs` apart.
                    unsafe { $update(kc, a.as_ptr(), b.as_ptr(), alpha, beta, ptr, rs) }
                }
                MicroKernel {
                    mr: MR,
                    nr: $nr,
                    run,
                    update: Some(update),
                }
            }
        };
    }

    tile!(
        kernel_f32,
        update_f32,
        f32,
        NR_F32,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_mul_ps,
        _mm256_storeu_ps
    );
    tile!(
        kernel_f64,
        update_f64,
        f64,
        NR_F64,
        4,
        _mm256_setzero_pd,
        _mm256_loadu_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd,
        _mm256_mul_pd,
        _mm256_storeu_pd
    );
}

macro_rules! scalar {
    ($t:ty, $avx2:ident, $as_f32:expr, $from_f32:expr) => {
        impl Scalar for $t {
            fn micro_kernel(isa: Isa) -> Option<MicroKernel<$t>> {
                if !isa.is_available() {
                    return None;
                }
                match isa {
                    Isa::Portable => Some(portable_kernel()),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => Some(avx2::$avx2()),
                    #[cfg(not(target_arch = "x86_64"))]
                    Isa::Avx2Fma => None,
                }
            }

            fn as_f32<D: Dimension>(a: ArrayView<'_, $t, D>) -> Option<ArrayView<'_, f32, D>> {
                $as_f32(a)
            }

            fn from_f32<D: Dimension>(a: Array<f32, D>) -> Option<Array<$t, D>> {
                $from_f32(a)
            }
        }
    };
}

scalar!(f32, kernel_f32, Some, Some);
scalar!(f64, kernel_f64, |_| None, |_| None);
