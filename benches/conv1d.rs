//! Chapter 1 benchmarks: naive vs fast on a `conv1d` layer and on a long signal.
//!
//! Throughput is reported in elements per second where one element is one floating-point
//! operation (a multiply-add counts as two), so `Gelem/s` reads as GFLOP/s.
//!
//!     cargo bench --bench conv1d

use convlab::conv1d::{fast, naive};
use convlab::shape::{ConvParams, Mode};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array3};
use std::hint::black_box;
use std::time::Duration;

/// Deterministic values in [−1, 1) so runs are comparable.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn layer(c: &mut Criterion) {
    let (n, c_in, l, c_out, k) = (64, 16, 1000, 32, 7);
    let params = ConvParams::default().padding(3);
    let x = Array3::from_shape_vec((n, c_in, l), values(n * c_in * l, 1)).unwrap();
    let w = Array3::from_shape_vec((c_out, c_in, k), values(c_out * c_in * k, 2)).unwrap();
    let b = Array1::from(values(c_out, 3));
    let l_out = params.output_len(l, k).unwrap();
    let flops = 2 * n * c_out * l_out * c_in * k;
    let mut group = c.benchmark_group("conv1d (64,16,1000) x 32x16x7 pad 3");
    group.throughput(Throughput::Elements(flops as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("naive", |bench| {
        bench.iter(|| naive::conv1d(black_box(x.view()), w.view(), Some(b.view()), params).unwrap())
    });
    group.bench_function("fast", |bench| {
        bench.iter(|| fast::conv1d(black_box(x.view()), w.view(), Some(b.view()), params).unwrap())
    });
    group.finish();
}

fn long_signal(c: &mut Criterion) {
    let (n, m) = (100_000, 31);
    let x = Array1::from(values(n, 4));
    let w = Array1::from(values(m, 5));
    let mut group = c.benchmark_group("convolve n=100000 m=31");
    group.sample_size(20);
    for mode in [Mode::Full, Mode::Valid] {
        let len = fast::convolve(x.view(), w.view(), mode).unwrap().len();
        group.throughput(Throughput::Elements((2 * len * m) as u64));
        group.bench_with_input(
            BenchmarkId::new("naive", format!("{mode:?}")),
            &mode,
            |bench, &mode| {
                bench.iter(|| naive::convolve(black_box(x.view()), w.view(), mode).unwrap())
            },
        );
        group.bench_with_input(
            BenchmarkId::new("fast", format!("{mode:?}")),
            &mode,
            |bench, &mode| {
                bench.iter(|| fast::convolve(black_box(x.view()), w.view(), mode).unwrap())
            },
        );
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
    targets = layer, long_signal
}
criterion_main!(benches);
