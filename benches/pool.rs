//! Chapter 5 and 8 benchmarks: 2×2 max and average pooling of the course CNN's first feature
//! maps, naive vs fast, and max pooling's forward+backward, on one thread and on all cores.
//! Throughput counts input elements read, so `Gelem/s` is billions of pixels pooled per second.
//!
//!     cargo bench --bench pool

use convlab::pool::{fast, naive};
use convlab::shape::Pool2dParams;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array4;
use std::hint::black_box;
use std::time::Duration;

type Pool = fn(ndarray::ArrayView4<f32>, Pool2dParams) -> convlab::Result<Array4<f32>>;

fn pooling(c: &mut Criterion) {
    let shape = (64, 32, 28, 28);
    let x = Array4::from_shape_fn(shape, |(a, b, i, j)| {
        ((a * 131 + b * 31 + i * 17 + j * 7) % 23) as f32
    });
    let params = Pool2dParams::new([2, 2]);
    let mut group = c.benchmark_group("pool 2x2 (64, 32, 28, 28)");
    group.throughput(Throughput::Elements(x.len() as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let kernels: [(&str, Pool, Pool); 2] = [
        ("max_pool2d", naive::max_pool2d, fast::max_pool2d),
        ("avg_pool2d", naive::avg_pool2d, fast::avg_pool2d),
    ];
    for (name, naive_fn, fast_fn) in kernels {
        group.bench_function(BenchmarkId::new(name, "naive 1t"), |bench| {
            bench.iter(|| naive_fn(black_box(x.view()), params).unwrap())
        });
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            group.bench_function(
                BenchmarkId::new(name, format!("fast {threads}t")),
                |bench| {
                    pool.install(|| bench.iter(|| fast_fn(black_box(x.view()), params).unwrap()))
                },
            );
        }
    }
    group.finish();

    // Forward with indices and backward, as training runs it (PyTorch's fwd+bwd figure).
    let mut group = c.benchmark_group("max_pool2d 2x2 forward+backward (64, 32, 28, 28)");
    group.throughput(Throughput::Elements(x.len() as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let g = Array4::<f32>::ones((64, 32, 14, 14));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("fast", format!("{threads}t")), |bench| {
            pool.install(|| {
                bench.iter(|| {
                    let (_, at) =
                        fast::max_pool2d_with_indices(black_box(x.view()), params).unwrap();
                    fast::max_pool2d_backward(g.view(), at.view(), [28, 28]).unwrap()
                })
            })
        });
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
    targets = pooling
}
criterion_main!(benches);
