//! Chapter 10 benchmark: one training step of the course's CNN (batch 64, Adam 1e-3) — forward,
//! cross-entropy, backward, optimizer step — on one thread and on two. Throughput in images:
//! `Kelem/s` reads as thousands of images per second. PyTorch's step on the same shapes:
//! `python3 tools/bench_pytorch.py train`.
//!
//!     cargo bench --bench train

use convlab::nn::optim::{Adam, AdamOptions};
use convlab::nn::{Architecture, Init, Sequential};
use convlab::train::train_step;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{ArrayD, IxDyn};
use std::time::Duration;

fn step(c: &mut Criterion) {
    let batch = 64;
    let mut k = 0usize;
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[batch, 1, 28, 28]), || {
        k += 1;
        ((k * 131 + 7) % 256) as f32 / 255.0
    });
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut group = c.benchmark_group("train step, course CNN, batch 64, Adam");
    group.throughput(Throughput::Elements(batch as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut model: Sequential<f32> = Architecture::FashionMnistCnn
            .build(Init::PyTorch, 1)
            .unwrap();
        let mut adam = Adam::new(AdamOptions::default().lr(1e-3)).unwrap();
        let mut step = 0u64;
        group.bench_function(
            BenchmarkId::new("convlab", format!("{threads}t")),
            |bench| {
                bench.iter(|| {
                    pool.install(|| {
                        step += 1;
                        train_step(&mut model, &mut adam, x.clone(), &labels, step).unwrap()
                    })
                })
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
    targets = step
}
criterion_main!(benches);
