//! The `convlab` command line.

use clap::{Parser, Subcommand, ValueEnum};
use convlab::shape::Network;
use std::process::ExitCode;

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
    /// Print the layer-by-layer output shapes, parameter counts and receptive fields of the
    /// course's networks (chapter 2).
    Shapes {
        /// Which network; all of them if omitted.
        #[arg(long, value_enum)]
        model: Option<Model>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Model {
    /// The Keras MNIST convnet (28×28×1, 93,322 parameters).
    KerasMnist,
    /// The PyTorch Fashion-MNIST CNN (1×28×28, 3,274,634 parameters).
    FashionMnist,
    /// The Keras cats-vs-dogs convnet (150×150×3, 3,453,121 parameters).
    CatsVsDogs,
}

fn print_network(net: &Network) -> convlab::Result<()> {
    let rows = net.trace()?;
    println!("{}", net.name);
    println!(
        "{:<8} {:<18} {:>11} {:>11} {:>11}",
        "layer", "kind", "C×H×W", "params", "field/jump"
    );
    let [c, h, w] = net.input;
    println!(
        "{:<8} {:<18} {:>11} {:>11} {:>11}",
        "input",
        "",
        format!("{c}×{h}×{w}"),
        "",
        "1/1"
    );
    for (row, (_, layer)) in rows.iter().zip(&net.layers) {
        let output = row
            .output
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("×");
        let field = row
            .field
            .map_or_else(|| "all".to_string(), |f| format!("{}/{}", f.size, f.jump));
        println!(
            "{:<8} {:<18} {:>11} {:>11} {:>11}",
            row.name,
            describe(layer),
            output,
            thousands(row.params),
            field
        );
    }
    let total: usize = rows.iter().map(|r| r.params).sum();
    println!(
        "{:<8} {:<18} {:>11} {:>11}\n",
        "total",
        "",
        "",
        thousands(total)
    );
    Ok(())
}

/// `3274634` → `3,274,634`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn describe(layer: &convlab::shape::Layer) -> String {
    use convlab::shape::{Layer, Padding};
    match layer {
        Layer::Conv2d {
            out_channels,
            kernel,
            params,
        } => {
            let pad = match params.padding {
                Padding::Explicit(0) | Padding::Valid => String::new(),
                Padding::Explicit(p) => format!(" p{p}"),
                other => format!(" {other:?}"),
            };
            format!("conv {kernel}×{kernel} → {out_channels}{pad}")
        }
        Layer::MaxPool2d(p) => format!("max-pool {0}×{0}", p.kernel),
        Layer::Flatten => "flatten".to_string(),
        Layer::Linear { out_features } => format!("linear → {out_features}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Shapes { model } => {
            let nets = match model {
                None => Network::course(),
                Some(Model::KerasMnist) => vec![Network::keras_mnist()],
                Some(Model::FashionMnist) => vec![Network::fashion_mnist_cnn()],
                Some(Model::CatsVsDogs) => vec![Network::cats_vs_dogs()],
            };
            nets.iter().try_for_each(print_network)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
