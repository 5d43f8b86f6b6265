//! The training loop: mini-batches, the loss and its gradient, an optimizer step, evaluation,
//! history, early stopping, step decay and checkpoints. Chapter 10, which explains them, is the
//! documentation of [`crate::data`].

pub mod checkpoint;
pub mod history;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{ArrayD, Axis, IxDyn};

pub use history::{EpochRecord, History};

use crate::data::Dataset;
use crate::data::batch::{Augment, BatchParams, Batches};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::loss::{LossOptions, LossOutput, Target, cross_entropy, cross_entropy_backward};
use crate::nn::optim::Optimizer;
use crate::nn::{Mode, NamedTensors, Sequential};

/// How to train: PyTorch's training loop of the course, with its options.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// The seed of the batches' order and augmentation (the model has its own).
    pub seed: u64,
    /// Random flips and shifts of the training images.
    pub augment: Augment,
    /// Stop when the validation loss has not improved for this many epochs, and restore the
    /// weights of the best epoch.
    pub patience: Option<usize>,
    /// Multiply the learning rate by `gamma` every `step_size` epochs (PyTorch's `StepLR`).
    pub lr_step: Option<(usize, f64)>,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 64,
            seed: 1,
            augment: Augment::none(),
            patience: None,
            lr_step: None,
            progress: true,
        }
    }
}

/// Images per batch when evaluating: large enough to keep the kernels busy, small enough that
/// the first convolution's output (`N × 32 × 28 × 28` floats in the course CNN) stays near 13 MB.
pub const EVAL_BATCH: usize = 128;

/// The mean cross-entropy and the accuracy of `model` on `data`, in evaluation mode, in
/// batches of `batch_size`.
pub fn evaluate<T: Scalar>(
    model: &mut Sequential<T>,
    data: &Dataset,
    batch_size: usize,
) -> Result<(f64, f64)> {
    let params = BatchParams::new(batch_size).shuffle(false);
    let (mut loss, mut correct) = (0.0, 0usize);
    for batch in Batches::<T>::new(data, params, 0)? {
        let logits = logits(model, batch.images.into_dyn(), Mode::Eval)?;
        let (l, c) = loss_and_correct(&logits, &class_targets(&batch.labels), &batch.labels)?;
        loss += l * batch.labels.len() as f64;
        correct += c;
    }
    let n = data.len().max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// The layers up to the logits: a final `Softmax` is left out, since the loss takes logits (a
/// Keras model's softmax and categorical cross-entropy are the same function, computed stably).
pub(crate) fn logit_layers<T: Scalar>(model: &Sequential<T>) -> usize {
    let n = model.layers().len();
    match model.layers().last() {
        Some(l) if l.describe().starts_with("Softmax") => n - 1,
        _ => n,
    }
}

fn logits<T: Scalar>(model: &mut Sequential<T>, x: ArrayD<T>, mode: Mode) -> Result<ArrayD<T>> {
    let end = logit_layers(model);
    model.forward_layers(x, mode, end)
}

/// The mean cross-entropy of `logits` `(N, C)` against `labels`, and how many are right.
fn loss_and_correct<T: Scalar>(
    logits: &ArrayD<T>,
    targets: &ArrayD<i64>,
    labels: &[usize],
) -> Result<(f64, usize)> {
    let loss = cross_entropy(
        logits.view(),
        Target::Classes(targets.view()),
        &LossOptions::default(),
    )?;
    let loss = loss
        .reduced()
        .expect("the mean is one number")
        .to_f64()
        .unwrap_or(f64::NAN);
    let correct = logits
        .axis_iter(Axis(0))
        .zip(labels)
        .filter(|(row, label)| argmax(row.iter().copied()) == Some(**label))
        .count();
    Ok((loss, correct))
}

fn class_targets(labels: &[usize]) -> ArrayD<i64> {
    ArrayD::from_shape_vec(
        IxDyn(&[labels.len()]),
        labels.iter().map(|&l| l as i64).collect(),
    )
    .expect("one target per label")
}

/// The index of the largest value (the first of equals, as `torch.argmax`); `None` if empty.
/// A NaN counts as the largest, as in PyTorch.
pub fn argmax<T: Scalar>(values: impl Iterator<Item = T>) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for (i, v) in values.enumerate() {
        match best {
            None => best = Some((i, v)),
            Some((_, b)) if !b.is_nan() && (v > b || v.is_nan()) => best = Some((i, v)),
            _ => {}
        }
    }
    best.map(|(i, _)| i)
}

/// One training step on a batch: forward, mean cross-entropy, backward, optimizer step.
/// Returns the batch's loss and how many it classified right.
pub fn train_step<T: Scalar>(
    model: &mut Sequential<T>,
    optimizer: &mut dyn Optimizer<T>,
    images: ArrayD<T>,
    labels: &[usize],
    step: u64,
) -> Result<(f64, usize)> {
    let end = logit_layers(model);
    model.zero_grad();
    let logits = model.forward_layers(images, Mode::Train { step }, end)?;
    let targets = class_targets(labels);
    let (loss, correct) = loss_and_correct(&logits, &targets, labels)?;
    let grad = cross_entropy_backward(
        logits.view(),
        Target::Classes(targets.view()),
        &LossOptions::default(),
        &LossOutput::Reduced(T::one()),
    )?;
    model.backward_parameters(grad, end)?;
    optimizer.step(&mut model.params_mut())?;
    Ok((loss, correct))
}

/// Where a run writes its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFiles {
    /// The model's weights, loadable by PyTorch: the best epoch's with early stopping, else
    /// the last one's.
    pub model: PathBuf,
    /// Everything needed to continue: the last weights, the optimizer's state, the history.
    pub resume: PathBuf,
    /// The history as CSV.
    pub history_csv: PathBuf,
    /// The history as JSON.
    pub history_json: PathBuf,
    /// The training curves as PNG, drawn by `convlab train` at the end of a run
    /// ([`crate::plot::training_curves`]).
    pub curves: PathBuf,
}

impl RunFiles {
    /// The files of a run in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        RunFiles {
            model: dir.join("model.safetensors"),
            resume: dir.join("resume.safetensors"),
            history_csv: dir.join("history.csv"),
            history_json: dir.join("history.json"),
            curves: dir.join("curves.png"),
        }
    }
}

/// What a checkpoint says about itself, kept as one JSON object under the metadata key
/// `"convlab"` (one key, so that the file's bytes do not depend on the order of a map).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct About {
    /// The architecture's name ([`crate::nn::Architecture::name`]).
    pub model: String,
    /// The model's title.
    pub title: String,
    /// Resume files: the optimizer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
    /// Resume files: the run's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Resume files: the epochs so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
}

impl About {
    fn metadata(&self) -> Result<HashMap<String, String>> {
        let text =
            serde_json::to_string(self).map_err(|e| Error::param("metadata", e.to_string()))?;
        Ok(HashMap::from([("convlab".to_string(), text)]))
    }

    /// What the file at `path` says about itself, if convlab wrote it.
    pub fn of(path: &Path, metadata: &HashMap<String, String>) -> Result<Option<About>> {
        metadata
            .get("convlab")
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    Error::file(path, format!("its convlab metadata is not valid: {e}"))
                })
            })
            .transpose()
    }
}

fn about<T: Scalar>(model: &Sequential<T>, architecture: &str) -> About {
    About {
        model: architecture.to_string(),
        title: model.name.clone(),
        optimizer: None,
        seed: None,
        history: None,
    }
}

/// Save the model's weights under PyTorch's `state_dict` names.
pub fn save_model<T: Scalar>(model: &Sequential<T>, architecture: &str, path: &Path) -> Result<()> {
    let tensors: Vec<(String, _)> = model
        .state_dict()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    checkpoint::save(path, &tensors, about(model, architecture).metadata()?)
}

/// Load weights saved by [`save_model`] or by PyTorch (`safetensors.torch.save_file(
/// model.state_dict(), path)`) into `model`. A file for another architecture, or whose tensors
/// do not fit the model, is an error naming the file.
pub fn load_model<T: Scalar>(
    model: &mut Sequential<T>,
    architecture: &str,
    path: &Path,
) -> Result<()> {
    let (tensors, metadata) = checkpoint::load::<T>(path)?;
    if let Some(other) = About::of(path, &metadata)?.filter(|a| a.model != architecture) {
        return Err(Error::file(
            path,
            format!("holds a {} model, not a {architecture} model", other.model),
        ));
    }
    model
        .load_state_dict(tensors)
        .map_err(|e| Error::file(path, e.to_string()))
}

/// What the training loop reports after each epoch.
pub type EpochCallback<'a> = dyn FnMut(&EpochRecord) + 'a;

/// Train `model` with `optimizer` on `train`, validating on `valid` after every epoch, from
/// epoch `history.epochs.len() + 1` (so that a resumed run carries on). With `files`, the
/// history and checkpoints are written after every epoch.
#[allow(clippy::too_many_arguments)]
pub fn fit<T: Scalar>(
    model: &mut Sequential<T>,
    optimizer: &mut dyn Optimizer<T>,
    architecture: &str,
    train: &Dataset,
    valid: &Dataset,
    config: &TrainConfig,
    history: &mut History,
    files: Option<&RunFiles>,
    on_epoch: &mut EpochCallback<'_>,
) -> Result<()> {
    if train.is_empty() {
        return Err(Error::EmptyInput {
            op: "train",
            what: "training set",
        });
    }
    let steps_per_epoch = train.len().div_ceil(config.batch_size.max(1)) as u64;
    let mut best: Option<(f64, NamedTensors<T>)> = history.best().map(|r| (r.val_loss, Vec::new()));
    let start = history.epochs.len();
    for epoch in start + 1..=config.epochs {
        if let Some((step_size, gamma)) = config.lr_step {
            // StepLR: lr₀·γ^⌊(epoch − 1)/step_size⌋, set afresh each epoch.
            let lr = history.initial_lr * gamma.powi(((epoch - 1) / step_size.max(1)) as i32);
            optimizer.set_learning_rate(lr);
        }
        let params = BatchParams::new(config.batch_size)
            .seed(config.seed)
            .augment(config.augment);
        let batches = Batches::<T>::new(train, params, epoch as u64 - 1)?;
        let bar = progress_bar(config.progress, train.len() as u64, epoch, config.epochs);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        for (i, batch) in batches.enumerate() {
            let step = (epoch as u64 - 1) * steps_per_epoch + i as u64;
            let n = batch.labels.len();
            let (loss, right) = train_step(
                model,
                optimizer,
                batch.images.into_dyn(),
                &batch.labels,
                step,
            )?;
            if !loss.is_finite() {
                return Err(Error::param(
                    "learning rate",
                    format!(
                        "the loss became {loss} at epoch {epoch}, step {step}: training diverged \
                         (try a smaller learning rate)"
                    ),
                ));
            }
            loss_sum += loss * n as f64;
            correct += right;
            seen += n;
            bar.inc(n as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.4} {:.0} img/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                seen as f64 / started.elapsed().as_secs_f64()
            ));
        }
        let train_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let (val_loss, val_accuracy) = if valid.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            evaluate(model, valid, EVAL_BATCH)?
        };
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            val_loss,
            val_accuracy,
            learning_rate: optimizer.learning_rate(),
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds,
        };
        history.epochs.push(record.clone());
        on_epoch(&record);
        let improved = best.as_ref().is_none_or(|(b, _)| val_loss < *b);
        if improved && config.patience.is_some() {
            let weights = model
                .state_dict()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_owned()))
                .collect();
            best = Some((val_loss, weights));
        }
        if let Some(files) = files {
            save_resume(
                model,
                optimizer,
                architecture,
                config,
                history,
                &files.resume,
            )?;
            history.write(&files.history_csv, &files.history_json)?;
            if improved || config.patience.is_none() {
                save_model(model, architecture, &files.model)?;
            }
        }
        let since_best = history.epochs_since_best();
        if config.patience.is_some_and(|p| since_best >= p) {
            history.stopped_early = true;
            if let Some(files) = files {
                history.write(&files.history_csv, &files.history_json)?;
            }
            break;
        }
    }
    if config.patience.is_some() {
        match (best, files) {
            (Some((_, weights)), _) if !weights.is_empty() => model.load_state_dict(weights)?,
            // The best epoch came before a resume: its weights are in the model file.
            (Some(_), Some(files)) => load_model(model, architecture, &files.model)?,
            _ => {}
        }
    }
    Ok(())
}

fn progress_bar(show: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "epoch {epoch}/{epochs} [{{bar:30}}] {{pos}}/{{len}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Save what [`resume`] needs: the last weights as `model.{name}`, the optimizer's state as
/// `optimizer.{name}`, and the configuration and history as metadata.
pub fn save_resume<T: Scalar>(
    model: &Sequential<T>,
    optimizer: &dyn Optimizer<T>,
    architecture: &str,
    config: &TrainConfig,
    history: &History,
    path: &Path,
) -> Result<()> {
    let state = optimizer.state_views();
    let mut tensors: Vec<(String, ndarray::ArrayViewD<T>)> = model
        .state_dict()
        .into_iter()
        .map(|(n, v)| (format!("model.{n}"), v))
        .collect();
    tensors.extend(
        state
            .iter()
            .map(|(n, v)| (format!("optimizer.{n}"), v.view())),
    );
    let about = About {
        optimizer: Some(optimizer.name().to_string()),
        seed: Some(config.seed),
        history: Some(history.clone()),
        ..about(model, architecture)
    };
    checkpoint::save(path, &tensors, about.metadata()?)
}

/// What a resume file holds.
pub struct Resumed<T> {
    /// The model's last weights.
    pub model: NamedTensors<T>,
    /// The optimizer's state.
    pub optimizer: NamedTensors<T>,
    /// The optimizer's name.
    pub optimizer_name: String,
    /// The architecture's name.
    pub architecture: String,
    /// The epochs so far.
    pub history: History,
    /// The batches' seed.
    pub seed: u64,
}

/// Read a file written by [`save_resume`].
pub fn resume<T: Scalar>(path: &Path) -> Result<Resumed<T>> {
    let (tensors, metadata) = checkpoint::load::<T>(path)?;
    let not_resume =
        |what: &str| Error::file(path, format!("is not a resume file: it has no {what}"));
    let about = About::of(path, &metadata)?.ok_or_else(|| not_resume("convlab metadata"))?;
    let history = about.history.ok_or_else(|| not_resume("history"))?;
    let seed = about.seed.ok_or_else(|| not_resume("seed"))?;
    let optimizer_name = about.optimizer.ok_or_else(|| not_resume("optimizer"))?;
    let (mut model, mut optimizer) = (Vec::new(), Vec::new());
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model.push((n.to_string(), t));
        } else if let Some(n) = name.strip_prefix("optimizer.") {
            optimizer.push((n.to_string(), t));
        } else {
            return Err(Error::file(
                path,
                format!("holds an unexpected tensor {name}"),
            ));
        }
    }
    Ok(Resumed {
        model,
        optimizer,
        optimizer_name,
        architecture: about.model,
        history,
        seed,
    })
}
