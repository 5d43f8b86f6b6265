//! The training step's steady state: after the first steps every tensor buffer a step needs is
//! one an earlier step handed back (`convlab::buffers`). One test in this binary, so that no
//! other test takes or returns buffers while it counts.

use convlab::buffers::{self, Stats};
use convlab::nn::optim::{Adam, AdamOptions};
use convlab::nn::{Architecture, Init, Sequential};
use convlab::train::train_step;
use ndarray::{ArrayD, IxDyn};

/// What `steps` training steps of the course CNN at batch 64 take, after `warm_up` steps.
fn count(threads: usize, warm_up: u64, steps: u64) -> Stats {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let batch = 64;
    let images = ArrayD::from_shape_fn(IxDyn(&[batch, 1, 28, 28]), |i| {
        ((i[0] * 7 + i[2] * 3 + i[3]) % 17) as f32 / 16.0
    });
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 1)
        .unwrap();
    let mut adam = Adam::new(AdamOptions::default()).unwrap();
    pool.install(|| {
        let mut run = |step| train_step(&mut model, &mut adam, images.clone(), &labels, step);
        for step in 1..=warm_up {
            run(step).unwrap();
        }
        let before = buffers::stats();
        for step in warm_up + 1..=warm_up + steps {
            run(step).unwrap();
        }
        buffers::stats().since(before)
    })
}

#[test]
fn the_steady_state_step_allocates_no_tensor() {
    let one = count(1, 2, 3);
    assert_eq!(one.fresh, 0, "one thread: {one:?}");
    assert!(
        one.reused >= 3 * 30,
        "every layer's buffers are counted: {one:?}"
    );
    // On two threads the kernels' scratch buffers are taken once per piece of work a thread
    // picks up: a later step may run more of them at once than the first three did.
    let two = count(2, 3, 5);
    assert!(two.fresh <= 2, "two threads: {two:?}");
    // A new model's first step finds the buffers the runs above kept; after `release` none is
    // kept, and the same step allocates its buffers again.
    let kept = count(1, 0, 1);
    buffers::release();
    assert_eq!(buffers::kept_bytes(), 0);
    let released = count(1, 0, 1);
    assert!(kept.fresh <= 2, "kept: {kept:?}");
    assert!(
        released.fresh > kept.fresh,
        "released: {released:?}, kept: {kept:?}"
    );
}
