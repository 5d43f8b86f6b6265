//! The `convlab` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use convlab::data::batch::Augment;
use convlab::data::{self, Dataset, Split};
use convlab::error::{Error, Result};
use convlab::nn::optim::Optimizer;
use convlab::nn::sequential::thousands;
use convlab::nn::{Architecture, Init, Sequential};
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
    say!("model:   {}", files.model.display())?;
    say!("resume:  {}", files.resume.display())?;
    say!(
        "history: {}, {}",
        files.history_csv.display(),
        files.history_json.display()
    )?;
    Ok(())
}

fn run_evaluate(
    checkpoint: &Path,
    model: Option<Model>,
    data: Option<&Path>,
    split: Part,
    validation: Option<usize>,
) -> Result<()> {
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
