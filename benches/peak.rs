//! The processor's f32 fused multiply-add peak, the yardstick for every other benchmark's
//! GFLOP/s: independent multiply-adds on registers only, no memory traffic, on one thread and on
//! two. Throughput: one element = one floating-point operation, so `Gelem/s` reads as GFLOP/s.
//!
//!     cargo bench --bench peak
//!
//! Twelve accumulators keep enough multiply-adds in flight to cover their latency on two FMA
//! units. The 256-bit loop is the width of the crate's own GEMM micro-kernel (AVX2); the 512-bit
//! loop runs only where the processor has AVX-512, the width matrixmultiply uses there.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

/// Rounds of the twelve multiply-adds per call.
const ROUNDS: usize = 1 << 16;
/// Independent accumulators.
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS, ROUNDS};
    use std::arch::x86_64::*;

    /// `ROUNDS × CHAINS` 8-lane multiply-adds; returns a sum so that none is optimised away.
    #[target_feature(enable = "avx2,fma")]
    pub fn fma256(x: f32) -> f32 {
        let (a, b) = (_mm256_set1_ps(x), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..ROUNDS {
            for r in acc.iter_mut() {
                *r = _mm256_fmadd_ps(*r, a, b);
            }
        }
        let mut lanes = [0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &r| _mm256_add_ps(s, r));
        // SAFETY: `lanes` holds 8 f32, the width of the store; storeu needs no alignment.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }

    /// `ROUNDS × CHAINS` 16-lane multiply-adds.
    #[target_feature(enable = "avx512f")]
    pub fn fma512(x: f32) -> f32 {
        let (a, b) = (_mm512_set1_ps(x), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..ROUNDS {
            for r in acc.iter_mut() {
                *r = _mm512_fmadd_ps(*r, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &r| _mm512_add_ps(s, r));
        _mm512_reduce_add_ps(sum)
    }
}

/// A loop: its name, its lanes, and the function that runs it.
type Loop = (&'static str, usize, fn(f32) -> f32);

/// The loops this processor can run.
fn loops() -> Vec<Loop> {
    #[allow(unused_mut)]
    let mut found: Vec<Loop> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected just above.
            found.push(("fma 256-bit", 8, |x| unsafe { x86::fma256(x) }));
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected just above.
            found.push(("fma 512-bit", 16, |x| unsafe { x86::fma512(x) }));
        }
    }
    found
}

fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("f32 FMA peak");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (name, lanes, run) in loops() {
        for threads in [1usize, 2] {
            let flops = threads * ROUNDS * CHAINS * lanes * 2;
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(BenchmarkId::new(name, format!("{threads}t")), |bench| {
                bench.iter(|| {
                    if threads == 1 {
                        run(black_box(0.999_999))
                    } else {
                        let (a, b) =
                            rayon::join(|| run(black_box(0.999_999)), || run(black_box(0.999_998)));
                        a + b
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Criterion draws its report charts with plotters, in the font the crate bundles.
    config = {
        convlab::plot::register_font().expect("the bundled font parses");
        Criterion::default()
    };
    targets = peak
}
criterion_main!(benches);
