//! GEMM engines on square sizes and on the im2col products of the course's CNN, on one thread and
//! on all cores. Throughput: one element = one floating-point operation, so `Gelem/s` = GFLOP/s.
//!
//!     cargo bench --bench gemm
//!     cargo bench --bench gemm -- 512     # one size

use convlab::gemm::{Engine, Isa, gemm};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use std::hint::black_box;
use std::time::Duration;

fn matrix(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 31 + j * 17 + seed) % 23) as f32 / 11.0 - 1.0
    })
}

fn bench_shape(c: &mut Criterion, name: &str, m: usize, k: usize, n: usize) {
    let (a, b) = (matrix(m, k, 1), matrix(k, n, 2));
    let mut out = Array2::<f32>::zeros((m, n));
    let mut group = c.benchmark_group(format!("sgemm {name}"));
    group.throughput(Throughput::Elements((2 * m * k * n) as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut engines = vec![("matrixmultiply", Engine::MatrixMultiply)];
    engines.extend(Isa::available().into_iter().map(|isa| match isa {
        Isa::Portable => ("blocked-portable", Engine::Blocked(isa)),
        Isa::Avx2Fma => ("blocked-avx2", Engine::Blocked(isa)),
    }));
    if m * k * n <= 256 * 256 * 256 {
        engines.push(("naive", Engine::Naive));
    }
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for &(label, engine) in &engines {
            // matrixmultiply is built without its own threading: one thread either way.
            if threads == 2 && engine == Engine::MatrixMultiply {
                continue;
            }
            let id = BenchmarkId::new(format!("{label} {threads}t"), format!("{m}x{k}x{n}"));
            group.bench_function(id, |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        gemm(
                            engine,
                            1.0,
                            black_box(a.view()),
                            b.view(),
                            0.0,
                            out.view_mut(),
                        )
                        .unwrap()
                    })
                })
            });
        }
    }
    group.finish();
}

fn square(c: &mut Criterion) {
    for size in [64, 128, 256, 512, 1024] {
        bench_shape(c, &size.to_string(), size, size, size);
    }
}

/// Per image of the Fashion-MNIST CNN at batch 64: weight (C_out × C_in·25) times columns
/// (C_in·25 × H·W).
fn im2col_shapes(c: &mut Criterion) {
    bench_shape(c, "L1 im2col", 32, 25, 784);
    bench_shape(c, "L2 im2col", 64, 800, 196);
}

criterion_group! {
    name = benches;
    // Criterion draws its report charts with plotters, in the font the crate bundles.
    config = {
        convlab::plot::register_font().expect("the bundled font parses");
        Criterion::default()
    };
    targets = square, im2col_shapes
}
criterion_main!(benches);
