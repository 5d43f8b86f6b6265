//! The `convlab` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use convlab::data::batch::Augment;
use convlab::data::{self, Dataset, Split};
use convlab::error::{Error, Result};
use convlab::nn::optim::Optimizer;
use convlab::nn::sequential::thousands;
use convlab::nn::{Architecture, Init, LayerKind, Sequential};
use convlab::plot::{self, Figure};
use convlab::train::{self, History, RunFiles, TrainConfig};

/// Print a line on standard output; a closed pipe (`convlab summary | head`) is an error to
/// report, not a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| Error::file("standard output", format!("cannot write: {e}")))
    }};
}
#[derive(Parser)]
#[command(
    name = "convlab",
    version,
    about = "Convolutional neural networks from scratch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on Fashion-MNIST (chapter 10). With no options: the course's CNN on the
    /// Fashion-MNIST subset shipped in ./data, 8 epochs of Adam (under 3 minutes on 2 cores).
    Train(TrainArgs),
    /// Accuracy and loss of a checkpoint (convlab's or PyTorch's safetensors) on Fashion-MNIST.
    Evaluate {
        /// The model's weights, a `.safetensors` file.
        checkpoint: PathBuf,
        /// The architecture; read from the checkpoint when convlab wrote it.
        #[arg(long, value_enum)]
        model: Option<Model>,
        /// Directory with the four Fashion-MNIST IDX files (plain or .gz). Default: the first of
        /// $CONVLAB_DATA, ./data, /usr/share/datasets/fashion-mnist that holds them.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Which images: the test set, or the training file's validation or training part.
        #[arg(long, value_enum, default_value_t = Part::Test)]
        split: Part,
        /// Validation images at the start of the training file (default: a sixth of it, the
        /// course's 10,000 of 60,000).
        #[arg(long)]
        validation: Option<usize>,
    },
    /// A Keras-style summary of a model: layers, output shapes, parameters, receptive fields.
    Summary {
        /// Which model; all of them if omitted.
        #[arg(long, value_enum)]
        model: Option<Model>,
    },
    /// The layer-by-layer output shapes, parameter counts and receptive fields of the course's
    /// three networks (chapter 2).
    Shapes {
        /// Which network; the course's three if omitted.
        #[arg(long, value_enum)]
        model: Option<Model>,
    },
    /// Draw one figure of chapter 11 as PNG from a run directory or a checkpoint.
    Plot(PlotArgs),
    /// Draw every figure of chapter 11 into a directory, from a run directory or a fresh run.
    ///
    /// The figures: curves.png, filters-conv1.png, filters-conv2.png, feature-maps.png,
    /// patterns-conv2.png, confusion.png, predictions.png (named after the course CNN's layers).
    /// Without --run, `convlab train` runs first with its defaults on the Fashion-MNIST subset
    /// shipped in ./data, seeded, so the same run every time (about 3 minutes on 2 cores), into
    /// runs/figures, and the figures' test images come from the same subset.
    Figures(FiguresArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlotKind {
    /// Loss and accuracy per epoch, training and validation, from the run's history.json.
    Curves,
    /// The filters of a convolution layer (--layer, default the first), summed over input
    /// channels.
    Filters,
    /// One test image (--image) through every convolution and pooling layer, or only --layer.
    FeatureMaps,
    /// The input each channel of a layer (--layer, default the last convolution) responds to
    /// most, by gradient ascent from noise.
    Patterns,
    /// The confusion matrix on the test set.
    Confusion,
    /// Test images from --image on with their predicted and true classes.
    Predictions,
}

impl PlotKind {
    fn name(self) -> &'static str {
        match self {
            PlotKind::Curves => "curves",
            PlotKind::Filters => "filters",
            PlotKind::FeatureMaps => "feature-maps",
            PlotKind::Patterns => "patterns",
            PlotKind::Confusion => "confusion",
            PlotKind::Predictions => "predictions",
        }
    }
}

#[derive(clap::Args)]
struct PlotArgs {
    /// Which figure.
    #[arg(value_enum)]
    kind: PlotKind,
    /// The run directory, as `convlab train --out` wrote it: its history.json for curves, its
    /// model.safetensors for the rest.
    #[arg(long, default_value = "runs/latest")]
    run: PathBuf,
    /// The weights to draw instead of the run's model.safetensors (convlab's or PyTorch's).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The architecture; read from the checkpoint when convlab wrote it.
    #[arg(long, value_enum)]
    model: Option<Model>,
    /// The layer, numbered from 0 as in `convlab summary`. Default: the first convolution for
    /// filters, the last convolution for patterns, every convolution and pooling for
    /// feature-maps.
    #[arg(long)]
    layer: Option<usize>,
    /// The test image: the one walked through the network for feature-maps, the first shown
    /// for predictions.
    #[arg(long, default_value_t = 0)]
    image: usize,
    /// Directory with the four Fashion-MNIST IDX files (plain or .gz). Default: the first of
    /// $CONVLAB_DATA, ./data, /usr/share/datasets/fashion-mnist that holds them.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The PNG to write. Default: KIND.png in the run directory (beside the checkpoint with
    /// --checkpoint).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FiguresArgs {
    /// The run directory to draw from (its history.json and model.safetensors). Default: train
    /// one first, as `convlab train` does with no options, on the subset in ./data, into
    /// runs/figures.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Where the figures go.
    #[arg(long, default_value = "figures")]
    out: PathBuf,
    /// Directory with the four Fashion-MNIST IDX files for the test images. Default: the first
    /// of $CONVLAB_DATA, ./data, /usr/share/datasets/fashion-mnist that holds them (as for
    /// `convlab train`).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// `convlab train` alone, to run it with its own defaults from `convlab figures`.
#[derive(Parser)]
struct TrainOnly {
    #[command(flatten)]
    args: TrainArgs,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// The architecture to train.
    #[arg(long, value_enum, default_value_t = Model::FashionMnistCnn)]
    model: Model,
    /// Directory with the four Fashion-MNIST IDX files (plain or .gz). Default: the first of
    /// $CONVLAB_DATA, ./data, /usr/share/datasets/fashion-mnist that holds them.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Passes over the training images (the course trains 20).
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    optimizer: OptimizerName,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Momentum (SGD and RMSprop).
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Weight decay (L2 for SGD, Adam and RMSprop; decoupled for AdamW, whose PyTorch default is
    /// 0.01).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Seed of the initial weights, the batches' order, augmentation and dropout.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Flip training images left to right at random.
    #[arg(long)]
    hflip: bool,
    /// Shift training images by up to this many pixels in each direction at random, filling
    /// with zeros.
    #[arg(long, default_value_t = 0)]
    max_shift: usize,
    /// Stop when the validation loss has not improved for this many epochs, and keep the best
    /// epoch's weights.
    #[arg(long)]
    patience: Option<usize>,
    /// Multiply the learning rate by --lr-gamma every this many epochs.
    #[arg(long)]
    lr_step: Option<usize>,
    /// The factor of --lr-step.
    #[arg(long, default_value_t = 0.1)]
    lr_gamma: f64,
    /// Validation images at the start of the training file (default: a sixth of it, the
    /// course's 10,000 of 60,000).
    #[arg(long)]
    validation: Option<usize>,
    /// Train on at most this many of the remaining training images (for quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Initial weights: PyTorch's defaults or Keras's Glorot-uniform.
    #[arg(long, value_enum, default_value_t = InitName::Pytorch)]
    init: InitName,
    /// Where the checkpoints and history go.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Continue the run saved in --out (its resume.safetensors) up to --epochs.
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Model {
    /// The PyTorch Fashion-MNIST CNN of the course (1×28×28, 3,274,634 parameters).
    FashionMnistCnn,
    /// The Keras MNIST convnet (28×28×1, 93,322 parameters).
    KerasMnist,
    /// The Keras cats-vs-dogs convnet (150×150×3, 3,453,121 parameters).
    CatsVsDogs,
    /// The Keras CIFAR-10 convnet (32×32×3, 2,122,186 parameters).
    Cifar10,
    /// The CIFAR-10 convnet with dropout.
    Cifar10Dropout,
}

impl Model {
    fn architecture(self) -> Architecture {
        match self {
            Model::FashionMnistCnn => Architecture::FashionMnistCnn,
            Model::KerasMnist => Architecture::KerasMnist,
            Model::CatsVsDogs => Architecture::CatsVsDogs,
            Model::Cifar10 => Architecture::Cifar10,
            Model::Cifar10Dropout => Architecture::Cifar10Dropout,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OptimizerName {
    /// Adam (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8).
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    Adamw,
    /// Stochastic gradient descent.
    Sgd,
    /// RMSprop (PyTorch's alpha 0.99, eps 1e-8).
    Rmsprop,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InitName {
    /// Kaiming-uniform (a = √5) weights, U(±1/√fan_in) biases.
    Pytorch,
    /// Glorot-uniform weights, zero biases.
    Glorot,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The test file.
    Test,
    /// The validation images at the start of the training file.
    Validation,
    /// The training file after the validation images.
    Train,
}

/// The Fashion-MNIST directory: `--data`, else the usual places, else the subset beside the
/// crate's sources.
fn data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    match data::find_fashion_mnist(explicit) {
        Ok(dir) => Ok(dir),
        Err(e) if explicit.is_none() => {
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
            data::find_fashion_mnist(Some(&shipped)).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// The validation and training parts of the training file.
fn split_training(dir: &Path, validation: Option<usize>) -> Result<(Dataset, Dataset)> {
    let all = data::fashion_mnist(dir, Split::Train)?;
    let n_valid = validation.unwrap_or(all.len() / 6);
    if n_valid >= all.len() {
        return Err(Error::param(
            "validation",
            format!(
                "{n_valid} validation images leave none of the {} to train on",
                all.len()
            ),
        ));
    }
    all.split_at(n_valid)
}

fn make_optimizer(args: &TrainArgs) -> Result<Box<dyn Optimizer<f32>>> {
    use convlab::nn::optim::{Adam, AdamOptions, AdamW, AdamWOptions, RmsProp, RmsPropOptions};
    use convlab::nn::optim::{Sgd, SgdOptions};
    Ok(match args.optimizer {
        OptimizerName::Adam => Box::new(Adam::new(
            AdamOptions::default()
                .lr(args.lr)
                .weight_decay(args.weight_decay.unwrap_or(0.0)),
        )?),
        OptimizerName::Adamw => Box::new(AdamW::new(
            AdamWOptions::default()
                .lr(args.lr)
                .weight_decay(args.weight_decay.unwrap_or(0.01)),
        )?),
        OptimizerName::Sgd => Box::new(Sgd::new(
            SgdOptions::default()
                .lr(args.lr)
                .momentum(args.momentum)
                .weight_decay(args.weight_decay.unwrap_or(0.0)),
        )?),
        OptimizerName::Rmsprop => Box::new(RmsProp::new(
            RmsPropOptions::default()
                .lr(args.lr)
                .momentum(args.momentum)
                .weight_decay(args.weight_decay.unwrap_or(0.0)),
        )?),
    })
}

fn run_train(args: TrainArgs) -> Result<()> {
    let architecture = args.model.architecture();
    if architecture.input_shape() != [1, 28, 28] {
        return Err(Error::param(
            "model",
            format!(
                "{} takes {:?} images; `convlab train` reads Fashion-MNIST's 1×28×28",
                architecture.name(),
                architecture.input_shape()
            ),
        ));
    }
    let dir = data_dir(args.data.as_deref())?;
    let (valid, mut training) = split_training(&dir, args.validation)?;
    if let Some(limit) = args.limit {
        training = training.subset(..limit.min(training.len()))?;
    }
    let test = data::fashion_mnist(&dir, Split::Test)?;
    let init = match args.init {
        InitName::Pytorch => Init::PyTorch,
        InitName::Glorot => Init::Glorot,
    };
    let files = RunFiles::in_dir(&args.out);
    let saved = if args.resume {
        Some(train::resume::<f32>(&files.resume)?)
    } else {
        None
    };
    // A resumed run keeps its seed, which also seeds dropout's masks.
    let seed = saved.as_ref().map_or(args.seed, |s| s.seed);
    let mut model: Sequential<f32> = architecture.build(init, seed)?;
    let mut optimizer = make_optimizer(&args)?;
    let mut history = History::new(args.lr);
    if let Some(saved) = saved {
        if saved.architecture != architecture.name() {
            return Err(Error::file(
                &files.resume,
                format!(
                    "holds a {} run, not a {} run",
                    saved.architecture,
                    architecture.name()
                ),
            ));
        }
        if saved.optimizer_name != optimizer.name() {
            return Err(Error::file(
                &files.resume,
                format!(
                    "was trained with {}, not {}",
                    saved.optimizer_name,
                    optimizer.name()
                ),
            ));
        }
        model
            .load_state_dict(saved.model)
            .map_err(|e| Error::file(&files.resume, e.to_string()))?;
        optimizer
            .load_state(saved.optimizer)
            .map_err(|e| Error::file(&files.resume, e.to_string()))?;
        history = saved.history;
        say!(
            "resuming {} after epoch {}",
            files.resume.display(),
            history.epochs.len()
        )?;
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::file(&args.out, format!("cannot create the directory: {e}")))?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed,
        augment: Augment::none().hflip(args.hflip).max_shift(args.max_shift),
        patience: args.patience,
        lr_step: args.lr_step.map(|s| (s, args.lr_gamma)),
        progress: !args.quiet,
    };
    say!(
        "{}: {} parameters; {} training, {} validation, {} test images from {}",
        model.name,
        thousands(model.num_parameters()),
        training.len(),
        valid.len(),
        test.len(),
        dir.display()
    )?;
    train::fit(
        &mut model,
        optimizer.as_mut(),
        architecture.name(),
        &training,
        &valid,
        &config,
        &mut history,
        Some(&files),
        &mut |r| {
            // A closed standard output does not stop training: the history files have it all.
            let _ = say!(
                "epoch {:>3}  train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4}  {:.1} s  {:.0} img/s",
                r.epoch,
                r.train_loss,
                r.train_accuracy,
                r.val_loss,
                r.val_accuracy,
                r.seconds,
                r.images_per_second
            );
        },
    )?;
    let (test_loss, test_accuracy) = train::evaluate(&mut model, &test, train::EVAL_BATCH)?;
    history.test_loss = Some(test_loss);
    history.test_accuracy = Some(test_accuracy);
    history.write(&files.history_csv, &files.history_json)?;
    if let Some(best) = history.best() {
        say!(
            "best validation loss {:.4} at epoch {}{}",
            best.val_loss,
            best.epoch,
            if history.stopped_early {
                " (stopped early; its weights were restored)"
            } else {
                ""
            }
        )?;
    }
    say!("test loss {test_loss:.4}, test accuracy {test_accuracy:.4}")?;
    plot::training_curves(&history, plot::CurveOptions::default())?.save(&files.curves)?;
    say!("model:   {}", files.model.display())?;
    say!("resume:  {}", files.resume.display())?;
    say!(
        "history: {}, {}",
        files.history_csv.display(),
        files.history_json.display()
    )?;
    say!("curves:  {}", files.curves.display())?;
    Ok(())
}

fn run_evaluate(
    checkpoint: &Path,
    model: Option<Model>,
    data: Option<&Path>,
    split: Part,
    validation: Option<usize>,
) -> Result<()> {
    let (architecture, mut net) = load_checkpoint(checkpoint, model)?;
    let dir = data_dir(data)?;
    let images = match split {
        Part::Test => data::fashion_mnist(&dir, Split::Test)?,
        Part::Validation => split_training(&dir, validation)?.0,
        Part::Train => split_training(&dir, validation)?.1,
    };
    let (loss, accuracy) = train::evaluate(&mut net, &images, train::EVAL_BATCH)?;
    say!(
        "{} on {} images of {}: loss {loss:.4}, accuracy {accuracy:.4}",
        architecture.name(),
        images.len(),
        dir.display()
    )?;
    Ok(())
}

/// The model a checkpoint holds, with its weights; its architecture is `model`, or what the
/// checkpoint says it is.
fn load_checkpoint(
    checkpoint: &Path,
    model: Option<Model>,
) -> Result<(Architecture, Sequential<f32>)> {
    let (_, metadata) = convlab::train::checkpoint::load::<f32>(checkpoint)?;
    let about = train::About::of(checkpoint, &metadata)?;
    let architecture = match (model, about) {
        (Some(m), _) => m.architecture(),
        (None, Some(about)) => Architecture::from_name(&about.model)
            .map_err(|e| Error::file(checkpoint, e.to_string()))?,
        (None, None) => {
            return Err(Error::file(
                checkpoint,
                "does not say which model it holds: pass --model",
            ));
        }
    };
    let mut net: Sequential<f32> = architecture.build(Init::PyTorch, 0)?;
    train::load_model(&mut net, architecture.name(), checkpoint)?;
    Ok((architecture, net))
}

/// What the figures are drawn from: a run's history, a model, the test images, each read the
/// first time a figure needs it.
struct Source {
    run: PathBuf,
    checkpoint: PathBuf,
    model_name: Option<Model>,
    data: Option<PathBuf>,
    model: Option<Sequential<f32>>,
    test: Option<Dataset>,
    predictions: Option<Vec<plot::Prediction>>,
}

impl Source {
    fn new(
        run: &Path,
        checkpoint: Option<&Path>,
        model: Option<Model>,
        data: Option<&Path>,
    ) -> Self {
        Source {
            run: run.to_path_buf(),
            checkpoint: checkpoint.map_or_else(|| RunFiles::in_dir(run).model, Path::to_path_buf),
            model_name: model,
            data: data.map(Path::to_path_buf),
            model: None,
            test: None,
            predictions: None,
        }
    }

    fn history(&self) -> Result<History> {
        let path = RunFiles::in_dir(&self.run).history_json;
        if !path.exists() {
            return Err(Error::file(
                &path,
                "no such file: the curves are drawn from a run directory's history.json, as \
                 `convlab train --out DIR` writes it (pass the directory with --run)",
            ));
        }
        History::read(&path)
    }

    fn model(&mut self) -> Result<&mut Sequential<f32>> {
        if self.model.is_none() {
            self.model = Some(load_checkpoint(&self.checkpoint, self.model_name)?.1);
        }
        Ok(self.model.as_mut().expect("loaded above"))
    }

    fn test(&mut self) -> Result<&Dataset> {
        if self.test.is_none() {
            let dir = data_dir(self.data.as_deref())?;
            self.test = Some(data::fashion_mnist(&dir, Split::Test)?);
        }
        Ok(self.test.as_ref().expect("loaded above"))
    }

    /// The test images and the model's predictions for them, computed once.
    fn predictions(&mut self) -> Result<(&Dataset, &[plot::Prediction])> {
        if self.predictions.is_none() {
            self.test()?;
            self.model()?;
            if let (Some(model), Some(test)) = (self.model.as_mut(), self.test.as_ref()) {
                self.predictions = Some(plot::predict(model, test)?);
            }
        }
        match (self.test.as_ref(), self.predictions.as_deref()) {
            (Some(test), Some(predictions)) => Ok((test, predictions)),
            _ => unreachable!("the test images and the model were loaded above"),
        }
    }

    /// The test image `index` as the model takes it, `(C, H, W)` scaled to `[0, 1]`.
    fn test_image(&mut self, index: usize) -> Result<ndarray::Array3<f32>> {
        let test = self.test()?;
        if index >= test.len() {
            return Err(Error::param(
                "image",
                format!(
                    "test image {index} does not exist: the test set has {} images, numbered \
                     from 0",
                    test.len()
                ),
            ));
        }
        Ok(test
            .to_tensor::<f32>(index..index + 1)?
            .index_axis_move(ndarray::Axis(0), 0))
    }

    /// The default layer of a figure: the first convolution for filters, the last for
    /// patterns.
    fn default_conv(&mut self, last: bool) -> Result<usize> {
        let model = self.model()?;
        let convs: Vec<usize> = model
            .layers()
            .iter()
            .enumerate()
            .filter(|(_, l)| l.kind() == LayerKind::Convolution)
            .map(|(i, _)| i)
            .collect();
        let pick = if last { convs.last() } else { convs.first() };
        pick.copied().ok_or_else(|| {
            Error::param("layer", format!("{} has no convolution layer", model.name))
        })
    }

    /// Draw figure `kind`; `layer` and `image` as `convlab plot` takes them.
    fn figure(&mut self, kind: PlotKind, layer: Option<usize>, image: usize) -> Result<Figure> {
        match kind {
            PlotKind::Curves => {
                plot::training_curves(&self.history()?, plot::CurveOptions::default())
            }
            PlotKind::Filters => {
                let layer = match layer {
                    Some(l) => l,
                    None => self.default_conv(false)?,
                };
                plot::filters_figure(self.model()?, layer, plot::FilterOptions::default())
            }
            PlotKind::FeatureMaps => {
                let x = self.test_image(image)?;
                let mut options = plot::FeatureMapOptions::default();
                if let Some(l) = layer {
                    options = options.layer(l);
                }
                plot::feature_maps_figure(self.model()?, x.view(), options)
            }
            PlotKind::Patterns => {
                let layer = match layer {
                    Some(l) => l,
                    None => self.default_conv(true)?,
                };
                plot::patterns_figure(self.model()?, layer, plot::PatternOptions::default())
            }
            PlotKind::Confusion => {
                let (test, predictions) = self.predictions()?;
                let predicted: Vec<usize> = predictions.iter().map(|p| p.class).collect();
                let labels: Vec<usize> = test.labels.iter().map(|&l| usize::from(l)).collect();
                let matrix = plot::ConfusionMatrix::new(test.classes.clone(), &labels, &predicted)?;
                plot::confusion_figure(&matrix, plot::ConfusionOptions::default())
            }
            PlotKind::Predictions => {
                let (test, predictions) = self.predictions()?;
                let options = plot::PredictionOptions::default().start(image);
                plot::predictions_figure(test, predictions, options)
            }
        }
    }
}

fn run_plot(args: PlotArgs) -> Result<()> {
    let mut source = Source::new(
        &args.run,
        args.checkpoint.as_deref(),
        args.model,
        args.data.as_deref(),
    );
    let out = args.out.clone().unwrap_or_else(|| {
        let dir = match &args.checkpoint {
            Some(c) => c.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => args.run.clone(),
        };
        dir.join(format!("{}.png", args.kind.name()))
    });
    let figure = source.figure(args.kind, args.layer, args.image)?;
    figure.save(&out)?;
    say!(
        "{}: {}×{} pixels",
        out.display(),
        figure.width,
        figure.height
    )?;
    Ok(())
}

/// Write `figure` as `dir/name` and say so. Every figure of `convlab figures` is one call of
/// this, so a new figure is one more line in [`run_figures`].
fn save_figure(dir: &Path, name: &str, figure: Result<Figure>) -> Result<()> {
    let path = dir.join(name);
    let figure = figure?;
    figure.save(&path)?;
    say!(
        "{}: {}×{} pixels",
        path.display(),
        figure.width,
        figure.height
    )
}

fn run_figures(args: FiguresArgs) -> Result<()> {
    let data = args.data.clone();
    let run = match &args.run {
        Some(run) => run.clone(),
        None => {
            let run = PathBuf::from("runs/figures");
            let train =
                TrainOnly::try_parse_from(["train".as_ref(), "--out".as_ref(), run.as_os_str()])
                    .map_err(|e| Error::param("train", e.to_string()))?;
            say!("training the figures' model into {}", run.display())?;
            run_train(train.args)?;
            run
        }
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::file(&args.out, format!("cannot create the directory: {e}")))?;
    let mut source = Source::new(&run, None, None, data.as_deref());
    let out = args.out.as_path();
    let (first, last) = (source.default_conv(false)?, source.default_conv(true)?);
    let conv = |source: &mut Source, layer: usize| -> Result<String> {
        Ok(plot::layer_name(source.model()?, layer))
    };
    let (first_name, last_name) = (conv(&mut source, first)?, conv(&mut source, last)?);
    save_figure(out, "curves.png", source.figure(PlotKind::Curves, None, 0))?;
    save_figure(
        out,
        &format!("filters-{first_name}.png"),
        source.figure(PlotKind::Filters, Some(first), 0),
    )?;
    if last != first {
        save_figure(
            out,
            &format!("filters-{last_name}.png"),
            source.figure(PlotKind::Filters, Some(last), 0),
        )?;
    }
    save_figure(
        out,
        "feature-maps.png",
        source.figure(PlotKind::FeatureMaps, None, 0),
    )?;
    save_figure(
        out,
        &format!("patterns-{last_name}.png"),
        source.figure(PlotKind::Patterns, Some(last), 0),
    )?;
    save_figure(
        out,
        "confusion.png",
        source.figure(PlotKind::Confusion, None, 0),
    )?;
    save_figure(
        out,
        "predictions.png",
        source.figure(PlotKind::Predictions, None, 0),
    )?;
    save_figure(out, "kernels.png", plot::kernels_figure())
}

fn models(model: Option<Model>, default: &[Architecture]) -> Vec<Architecture> {
    model.map_or_else(|| default.to_vec(), |m| vec![m.architecture()])
}

fn print_shapes(architecture: Architecture) -> Result<()> {
    let summary = architecture.build::<f32>(Init::PyTorch, 0)?.summary()?;
    say!("{}", summary.name)?;
    say!(
        "{:<6} {:<10} {:>11} {:>11} {:>11}",
        "layer",
        "kind",
        "C×H×W",
        "params",
        "field/jump"
    )?;
    let shape = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
    say!(
        "{:<6} {:<10} {:>11} {:>11} {:>11}",
        "input",
        "",
        shape(&summary.input),
        "",
        "1/1"
    )?;
    for row in &summary.rows {
        let kind = row.layer.split('(').next().unwrap_or_default();
        let field = row
            .field
            .map_or_else(|| "all".to_string(), |f| format!("{}/{}", f.size, f.jump));
        say!(
            "{:<6} {:<10} {:>11} {:>11} {:>11}",
            row.index,
            kind,
            shape(&row.output),
            thousands(row.params),
            field
        )?;
    }
    say!(
        "{:<6} {:<10} {:>11} {:>11}\n",
        "total",
        "",
        "",
        thousands(summary.total_params())
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result =
        match cli.command {
            Command::Train(args) => {
                let threads = args.threads;
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads.unwrap_or(0))
                    .build()
                    .map_err(|e| Error::param("threads", e.to_string()));
                pool.and_then(|pool| pool.install(|| run_train(args)))
            }
            Command::Plot(args) => run_plot(args),
            Command::Figures(args) => run_figures(args),
            Command::Evaluate {
                checkpoint,
                model,
                data,
                split,
                validation,
            } => run_evaluate(&checkpoint, model, data.as_deref(), split, validation),
            Command::Summary { model } => models(model, &Architecture::ALL)
                .into_iter()
                .try_for_each(|a| {
                    say!("{}\n", a.build::<f32>(Init::PyTorch, 0)?.summary()?)?;
                    Ok(())
                }),
            Command::Shapes { model } => models(
                model,
                &[
                    Architecture::KerasMnist,
                    Architecture::FashionMnistCnn,
                    Architecture::CatsVsDogs,
                ],
            )
            .into_iter()
            .try_for_each(print_shapes),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
