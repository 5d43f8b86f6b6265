//! Chapter 3 and 8 benchmarks: conv2d forward naive vs fast (with a new output each call, and
//! `fast-kept` with the output's buffer handed back as the layers do), and the fast backward, on
//! the course's layers, on one thread and on two. Throughput: one element = one floating-point
//! operation, 2·N·C_out·H_out·W_out·(C_in/groups)·kH·kW for the forward and twice that for the
//! backward (two products), so `Gelem/s` reads as GFLOP/s (PyTorch's convention in
//! `tools/bench_pytorch.py`).
//!
//!     cargo bench --bench conv2d
//!     cargo bench --bench conv2d -- L2     # one layer

use convlab::conv2d::{fast, naive};
use convlab::shape::Conv2dParams;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array4};
use std::hint::black_box;
use std::time::Duration;

fn tensor(shape: (usize, usize, usize, usize), seed: usize) -> Array4<f32> {
    Array4::from_shape_fn(shape, |(a, b, c, d)| {
        ((a * 131 + b * 31 + c * 17 + d * 7 + seed) % 23) as f32 / 11.0 - 1.0
    })
}

fn layer(
    c: &mut Criterion,
    name: &str,
    input: (usize, usize, usize, usize),
    filters: usize,
    k: usize,
    pad: usize,
) {
    let x = tensor(input, 1);
    let w = tensor((filters, input.1, k, k), 2);
    let b = Array1::from_shape_fn(filters, |i| i as f32 / filters as f32);
    let params = Conv2dParams::default().padding(pad);
    let (h_out, w_out) = (
        params.axis(0).output_len(input.2, k).unwrap(),
        params.axis(1).output_len(input.3, k).unwrap(),
    );
    let flops = 2 * input.0 * filters * h_out * w_out * input.1 * k * k;
    let mut group = c.benchmark_group(format!(
        "conv2d {name} {input:?} x {filters} {k}x{k} p{pad}"
    ));
    group.throughput(Throughput::Elements(flops as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // The naive kernel is single-threaded: measure it once.
        if threads == 1 {
            group.bench_function(BenchmarkId::new("naive", "1t"), |bench| {
                bench.iter(|| {
                    naive::conv2d(black_box(x.view()), w.view(), Some(b.view()), params).unwrap()
                })
            });
        }
        group.bench_function(BenchmarkId::new("fast", format!("{threads}t")), |bench| {
            pool.install(|| {
                bench.iter(|| {
                    fast::conv2d(black_box(x.view()), w.view(), Some(b.view()), params).unwrap()
                })
            })
        });
        // As a layer runs it in training: the output handed back after use, so that the next
        // call takes its buffer again instead of new, zeroed pages (PyTorch's tensors come from
        // malloc, which hands a freed block back out without zeroing it).
        group.bench_function(
            BenchmarkId::new("fast-kept", format!("{threads}t")),
            |bench| {
                pool.install(|| {
                    bench.iter(|| {
                        let y = fast::conv2d(black_box(x.view()), w.view(), Some(b.view()), params)
                            .unwrap();
                        convlab::buffers::recycle(black_box(y));
                    })
                })
            },
        );
    }
    group.finish();

    // Backward: gradients of input, weight and bias for an upstream gradient of ones.
    let g = Array4::<f32>::ones((input.0, filters, h_out, w_out));
    let mut group = c.benchmark_group(format!(
        "conv2d backward {name} {input:?} x {filters} {k}x{k} p{pad}"
    ));
    group.throughput(Throughput::Elements(2 * flops as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("fast", format!("{threads}t")), |bench| {
            pool.install(|| {
                bench.iter(|| {
                    fast::conv2d_backward(black_box(x.view()), w.view(), g.view(), params).unwrap()
                })
            })
        });
    }
    group.finish();
}

fn layers(c: &mut Criterion) {
    layer(c, "L1", (64, 1, 28, 28), 32, 5, 2);
    layer(c, "L2", (64, 32, 14, 14), 64, 5, 2);
    layer(c, "L3", (8, 64, 56, 56), 64, 3, 1);
}

criterion_group! {
    name = benches;
    // Criterion draws its report charts with plotters, in the font the crate bundles.
    config = {
        convlab::plot::register_font().expect("the bundled font parses");
        Criterion::default()
    };
    targets = layers
}
criterion_main!(benches);
