//! Chapter 10: the training loop on slices of the Fashion-MNIST subset in `data/`:
//! repeatable runs, resuming, early stopping, step decay, checkpoints that PyTorch can read,
//! and files that lie.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use convlab::data::{self, Dataset, Split};
use convlab::nn::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use convlab::nn::{Architecture, Init, Mode, Sequential};
use convlab::train::{self, History, RunFiles, TrainConfig, checkpoint};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

fn subset() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist")
}

/// A small slice of the subset: `n` training images after the first 200 (which validate).
fn slices(n: usize) -> (Dataset, Dataset) {
    let all = data::fashion_mnist(subset(), Split::Train).unwrap();
    let (valid, rest) = all.split_at(200).unwrap();
    (rest.subset(..n).unwrap(), valid)
}

fn quiet(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        seed: 5,
        progress: false,
        ..TrainConfig::default()
    }
}

fn adam() -> Adam<f32> {
    Adam::new(AdamOptions::default().lr(1e-3)).unwrap()
}

/// Train `model` with `optimizer` on `n` images, carrying `history` on, writing into `dir`.
fn fit_on(
    model: &mut Sequential<f32>,
    optimizer: &mut dyn Optimizer<f32>,
    n: usize,
    config: &TrainConfig,
    history: &mut History,
    dir: &Path,
) -> convlab::Result<()> {
    let (train_set, valid) = slices(n);
    let files = RunFiles::in_dir(dir);
    train::fit(
        model,
        optimizer,
        "fashion-mnist-cnn",
        &train_set,
        &valid,
        config,
        history,
        Some(&files),
        &mut |_| {},
    )
}

/// Train the course CNN on `n` images for `config.epochs` epochs into `dir`.
fn run(dir: &Path, n: usize, config: &TrainConfig) -> (Sequential<f32>, History) {
    let mut model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 3)
        .unwrap();
    let mut history = History::new(1e-3);
    fit_on(&mut model, &mut adam(), n, config, &mut history, dir).unwrap();
    (model, history)
}

fn without_times(h: &History) -> Vec<[f64; 5]> {
    h.epochs
        .iter()
        .map(|r| {
            [
                r.train_loss,
                r.train_accuracy,
                r.val_loss,
                r.val_accuracy,
                r.learning_rate,
            ]
        })
        .collect()
}

/// The same seed and thread count give the same history and the same checkpoint, bit for bit.
#[test]
fn a_run_is_repeatable_bit_for_bit() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, ha) = run(a.path(), 160, &quiet(2));
    let (_, hb) = run(b.path(), 160, &quiet(2));
    assert_eq!(without_times(&ha), without_times(&hb));
    let read = |d: &Path| std::fs::read(RunFiles::in_dir(d).model).unwrap();
    assert!(read(a.path()) == read(b.path()), "the checkpoints differ");
    // It learned something: the second epoch's training loss is below the first's.
    assert!(
        ha.epochs[1].train_loss < ha.epochs[0].train_loss,
        "{:?}",
        without_times(&ha)
    );
}

/// Two epochs straight and one epoch, then a resume for the second, end with the same weights
/// and history: the resume file holds the optimizer's state, the batches of an epoch depend
/// only on the seed and the epoch, dropout's masks only on the seed and the step.
#[test]
fn resume_continues_exactly() {
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (m_straight, h_straight) = run(straight.path(), 96, &quiet(2));
    run(split.path(), 96, &quiet(1));

    let files = RunFiles::in_dir(split.path());
    let saved = train::resume::<f32>(&files.resume).unwrap();
    assert_eq!(saved.architecture, "fashion-mnist-cnn");
    assert_eq!(saved.history.epochs.len(), 1);
    // Built with the run's seed, which also seeds dropout; the weights come from the file.
    let mut model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::Glorot, 3)
        .unwrap();
    model.load_state_dict(saved.model).unwrap();
    let mut optimizer = adam();
    optimizer.load_state(saved.optimizer).unwrap();
    let mut history = saved.history;
    fit_on(
        &mut model,
        &mut optimizer,
        96,
        &quiet(2),
        &mut history,
        split.path(),
    )
    .unwrap();
    assert_eq!(without_times(&history), without_times(&h_straight));
    assert_eq!(model.state_dict(), m_straight.state_dict());
}

/// With patience p the run stops p epochs after its best validation loss and ends with the
/// best epoch's weights, which are also the model file's; the learning rate follows StepLR.
#[test]
fn early_stopping_restores_the_best_weights_and_step_decay_scales_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (_, valid) = slices(64);
    let mut model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 3)
        .unwrap();
    // A rate far too large makes the validation loss climb after a while.
    let mut optimizer = Sgd::new(SgdOptions::default().lr(0.5)).unwrap();
    let mut history = History::new(0.5);
    let config = TrainConfig {
        epochs: 12,
        patience: Some(2),
        lr_step: Some((3, 0.5)),
        ..quiet(12)
    };
    let files = RunFiles::in_dir(dir.path());
    let result = fit_on(
        &mut model,
        &mut optimizer,
        64,
        &config,
        &mut history,
        dir.path(),
    );
    if let Err(e) = &result {
        // Divergence is reported as an error naming the epoch, never as NaN weights.
        assert!(e.to_string().contains("diverged"), "{e}");
        return;
    }
    for r in &history.epochs {
        let expected = 0.5 * 0.5f64.powi(((r.epoch - 1) / 3) as i32);
        assert_eq!(r.learning_rate, expected, "epoch {}", r.epoch);
    }
    let best = history.best().unwrap().clone();
    let last = history.epochs.last().unwrap();
    if history.stopped_early {
        assert_eq!(last.epoch - best.epoch, 2);
    } else {
        assert_eq!(last.epoch, 12);
    }
    let (val_loss, _) = train::evaluate(&mut model, &valid, train::EVAL_BATCH).unwrap();
    assert_eq!(val_loss, best.val_loss);
    let mut saved: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 0)
        .unwrap();
    train::load_model(&mut saved, "fashion-mnist-cnn", &files.model).unwrap();
    assert_eq!(saved.state_dict(), model.state_dict());
    let written = History::read(&files.history_json).unwrap();
    assert_eq!(written.epochs.len(), history.epochs.len());
    let csv = std::fs::read_to_string(&files.history_csv).unwrap();
    assert_eq!(csv.lines().count(), history.epochs.len() + 1);
}

/// The tensors of a saved model are PyTorch's state_dict names with their shapes; a PyTorch
/// checkpoint of the Keras MNIST convnet (tools/gen_model_fixtures.py's nn.Sequential twin,
/// saved by safetensors.torch) loads, and gives PyTorch's probabilities on its batch.
#[test]
fn checkpoints_speak_pytorchs_names() {
    let dir = tempfile::tempdir().unwrap();
    let model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 1)
        .unwrap();
    let path = dir.path().join("m.safetensors");
    train::save_model(&model, "fashion-mnist-cnn", &path).unwrap();
    let (tensors, metadata) = checkpoint::load::<f32>(&path).unwrap();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.bias",
            "0.weight",
            "10.bias",
            "10.weight",
            "3.bias",
            "3.weight",
            "7.bias",
            "7.weight"
        ]
    );
    let about: serde_json::Value = serde_json::from_str(&metadata["convlab"]).unwrap();
    assert_eq!(about["model"], "fashion-mnist-cnn");

    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let torch_file = fixtures.join("keras_mnist_pytorch.safetensors");
    let mut keras: Sequential<f64> = Architecture::KerasMnist.build(Init::Glorot, 0).unwrap();
    train::load_model(&mut keras, "keras-mnist", &torch_file).unwrap();
    let (_, meta) = checkpoint::load::<f64>(&torch_file).unwrap();
    let expected: Vec<f64> = serde_json::from_str(&meta["probabilities"]).unwrap();
    let mut k = 0usize;
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[2, 1, 28, 28]), || {
        k += 1;
        ((k * 37) % 256) as f64 / 255.0
    });
    let p = keras.forward(x, Mode::Eval).unwrap();
    assert_close(
        &to_f64(&p),
        &expected,
        1e-5,
        "Keras MNIST convnet from PyTorch",
    );
}

/// A checkpoint of another model, a truncated or corrupt file, a missing one: an error that
/// names the file and says what is wrong.
#[test]
fn wrong_checkpoints_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let keras: Sequential<f32> = Architecture::KerasMnist.build(Init::PyTorch, 0).unwrap();
    let path = dir.path().join("keras.safetensors");
    train::save_model(&keras, "keras-mnist", &path).unwrap();
    let mut cnn: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 0)
        .unwrap();
    let e = train::load_model(&mut cnn, "fashion-mnist-cnn", &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("keras.safetensors") && e.contains("keras-mnist model"),
        "{e}"
    );
    // Without convlab's metadata the tensors themselves do not fit.
    let tensors: Vec<(String, ndarray::ArrayViewD<f32>)> = keras
        .state_dict()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    checkpoint::save(&path, &tensors, Default::default()).unwrap();
    let e = train::load_model(&mut cnn, "fashion-mnist-cnn", &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("keras.safetensors") && e.contains("0.weight has shape [32, 1, 3, 3]"),
        "{e}"
    );
    let e = train::load_model(
        &mut cnn,
        "fashion-mnist-cnn",
        &dir.path().join("none.safetensors"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("none.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = train::load_model(&mut cnn, "fashion-mnist-cnn", &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("keras.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
}

/// A save that fails leaves nothing behind: no temporary file, and the old file untouched.
#[test]
fn a_failed_save_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let model: Sequential<f32> = Architecture::KerasMnist.build(Init::PyTorch, 0).unwrap();
    let e = train::save_model(
        &model,
        "keras-mnist",
        &dir.path().join("missing/m.safetensors"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing/m.safetensors"), "{e}");
    // The target is a non-empty directory: the rename fails after the data was written.
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(train::save_model(&model, "keras-mnist", &target).is_err());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("taken")]);
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"x");
}

proptest! {
    #![proptest_config(cases(64))]

    /// A checkpoint truncated anywhere, with bytes flipped anywhere, or with garbage appended
    /// loads as an error naming the file or as a model of the right shapes, never a panic.
    #[test]
    fn mutated_checkpoints_never_panic(
        cut in prop::option::of(0usize..4000),
        flips in prop::collection::vec((0usize..4000, 1u8..=255), 0..4),
        tail in prop::collection::vec(any::<u8>(), 0..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let layers: Vec<Box<dyn convlab::nn::Layer<f32>>> = vec![
            Box::new(convlab::nn::Flatten::new()),
            Box::new(convlab::nn::Linear::new(12, 5).unwrap()),
        ];
        let mut model = Sequential::new("tiny", &[1, 3, 4], layers, Init::PyTorch, 0).unwrap();
        train::save_model(&model, "tiny", &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, x) in flips {
            let at = at % bytes.len();
            bytes[at] ^= x;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        bytes.extend(tail);
        std::fs::write(&path, &bytes).unwrap();
        match train::load_model(&mut model, "tiny", &path) {
            Ok(()) => {
                let shapes: Vec<Vec<usize>> = model.state_dict().iter().map(|(_, v)| v.shape().to_vec()).collect();
                prop_assert_eq!(shapes, vec![vec![5, 12], vec![5]]);
            }
            Err(e) => prop_assert!(e.to_string().contains("m.safetensors"), "{}", e),
        }
    }
}

/// The command line: a short run on the subset, then `evaluate` on its checkpoint; bad input
/// exits non-zero with a message.
#[test]
fn command_line_train_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let exe = env!("CARGO_BIN_EXE_convlab");
    let train = std::process::Command::new(exe)
        .args([
            "train",
            "--epochs",
            "1",
            "--limit",
            "256",
            "--validation",
            "200",
            "--quiet",
            "--threads",
            "2",
        ])
        .arg("--data")
        .arg(subset())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&train.stdout);
    assert!(
        train.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&train.stderr)
    );
    assert!(stdout.contains("test accuracy"), "{stdout}");
    for f in [
        "model.safetensors",
        "resume.safetensors",
        "history.csv",
        "history.json",
        "curves.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(stdout.contains("curves.png"), "{stdout}");
    let eval = std::process::Command::new(exe)
        .arg("evaluate")
        .arg(out.join("model.safetensors"))
        .arg("--data")
        .arg(subset())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success() && text.contains("on 2000 images"),
        "{text}"
    );

    let bad = std::process::Command::new(exe)
        .args(["evaluate", "/nonexistent/model.safetensors"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
    let bad = std::process::Command::new(exe)
        .args(["train", "--data", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent"));
}
