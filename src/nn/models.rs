//! The course's networks, each described once, as a [`Sequential`].

use super::layers::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Softmax};
use super::{Init, Layer, Sequential};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::shape::{Conv2dParams, Padding, Pool2dParams};

/// One of the course's networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// The PyTorch Fashion-MNIST CNN (Raschka, ch. 14): two 5×5 convolutions with padding 2,
    /// each followed by ReLU and 2×2 max pooling, then Linear(3136, 1024), ReLU, Dropout(0.5),
    /// Linear(1024, 10); 1×28×28 in, 10 logits out, 3,274,634 parameters.
    FashionMnistCnn,
    /// The Keras MNIST convnet of the slides: 3×3 convolutions of 32, 64, 64 filters ('valid')
    /// with 2×2 max pooling after the first two, Dense(64), Dense(10) with softmax; 93,322
    /// parameters.
    KerasMnist,
    /// The Keras cats-vs-dogs convnet of the slides: four 3×3 convolutions (32, 64, 128, 128),
    /// each followed by 2×2 max pooling, Dense(512), Dense(1) with a sigmoid; 3×150×150 in,
    /// 3,453,121 parameters.
    CatsVsDogs,
    /// The CIFAR-10 convnet of the image-kernels notes: two 3×3 'same' convolutions (32, 64),
    /// each followed by 2×2 max pooling, Dense(512), Dense(10) with softmax; 3×32×32 in,
    /// 2,122,186 parameters.
    Cifar10,
    /// [`Architecture::Cifar10`] with the notes' cure for its overfitting: Dropout(0.25) after
    /// each pooling and Dropout(0.5) after Dense(512).
    Cifar10Dropout,
}

impl Architecture {
    /// Every architecture, in the order above.
    pub const ALL: [Architecture; 5] = [
        Architecture::FashionMnistCnn,
        Architecture::KerasMnist,
        Architecture::CatsVsDogs,
        Architecture::Cifar10,
        Architecture::Cifar10Dropout,
    ];

    /// The name the command line and checkpoints use.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::FashionMnistCnn => "fashion-mnist-cnn",
            Architecture::KerasMnist => "keras-mnist",
            Architecture::CatsVsDogs => "cats-vs-dogs",
            Architecture::Cifar10 => "cifar10",
            Architecture::Cifar10Dropout => "cifar10-dropout",
        }
    }

    /// The architecture called `name` (see [`Architecture::name`]).
    pub fn from_name(name: &str) -> Result<Self> {
        Architecture::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                Error::param(
                    "model",
                    format!(
                        "unknown model {name:?}; the models are {}",
                        Architecture::ALL.map(|a| a.name()).join(", ")
                    ),
                )
            })
    }

    /// The shape of one input image, `[C, H, W]`.
    pub fn input_shape(self) -> [usize; 3] {
        match self {
            Architecture::FashionMnistCnn | Architecture::KerasMnist => [1, 28, 28],
            Architecture::CatsVsDogs => [3, 150, 150],
            Architecture::Cifar10 | Architecture::Cifar10Dropout => [3, 32, 32],
        }
    }

    /// The network, its parameters drawn by `init` from a generator seeded with `seed`.
    pub fn build<T: Scalar>(self, init: Init, seed: u64) -> Result<Sequential<T>> {
        let conv = |c_in, c_out, k, padding: Padding| -> Result<Box<dyn Layer<T>>> {
            Ok(Box::new(Conv2d::new(
                c_in,
                c_out,
                [k, k],
                Conv2dParams::default().padding(padding),
            )?))
        };
        let relu = || -> Box<dyn Layer<T>> { Box::new(ReLU::new()) };
        let pool = || -> Box<dyn Layer<T>> { Box::new(MaxPool2d::new(Pool2dParams::new([2, 2]))) };
        let flatten = || -> Box<dyn Layer<T>> { Box::new(Flatten::new()) };
        let linear = |i, o| -> Result<Box<dyn Layer<T>>> { Ok(Box::new(Linear::new(i, o)?)) };
        let dropout = |p| -> Result<Box<dyn Layer<T>>> { Ok(Box::new(Dropout::new(p)?)) };
        let valid = Padding::Valid;
        let layers: Vec<Box<dyn Layer<T>>> = match self {
            Architecture::FashionMnistCnn => vec![
                conv(1, 32, 5, Padding::Explicit(2))?,
                relu(),
                pool(),
                conv(32, 64, 5, Padding::Explicit(2))?,
                relu(),
                pool(),
                flatten(),
                linear(3136, 1024)?,
                relu(),
                dropout(0.5)?,
                linear(1024, 10)?,
            ],
            Architecture::KerasMnist => vec![
                conv(1, 32, 3, valid)?,
                relu(),
                pool(),
                conv(32, 64, 3, valid)?,
                relu(),
                pool(),
                conv(64, 64, 3, valid)?,
                relu(),
                flatten(),
                linear(576, 64)?,
                relu(),
                linear(64, 10)?,
                Box::new(Softmax::new()),
            ],
            Architecture::CatsVsDogs => vec![
                conv(3, 32, 3, valid)?,
                relu(),
                pool(),
                conv(32, 64, 3, valid)?,
                relu(),
                pool(),
                conv(64, 128, 3, valid)?,
                relu(),
                pool(),
                conv(128, 128, 3, valid)?,
                relu(),
                pool(),
                flatten(),
                linear(6272, 512)?,
                relu(),
                linear(512, 1)?,
                Box::new(Sigmoid::new()),
            ],
            Architecture::Cifar10 | Architecture::Cifar10Dropout => {
                let drop = self == Architecture::Cifar10Dropout;
                let mut layers = vec![conv(3, 32, 3, Padding::KerasSame)?, relu(), pool()];
                if drop {
                    layers.push(dropout(0.25)?);
                }
                layers.extend([conv(32, 64, 3, Padding::KerasSame)?, relu(), pool()]);
                if drop {
                    layers.push(dropout(0.25)?);
                }
                layers.extend([flatten(), linear(4096, 512)?, relu()]);
                if drop {
                    layers.push(dropout(0.5)?);
                }
                layers.extend([
                    linear(512, 10)?,
                    Box::new(Softmax::new()) as Box<dyn Layer<T>>,
                ]);
                layers
            }
        };
        Sequential::new(self.title(), &self.input_shape(), layers, init, seed)
    }

    /// A one-line description for tables.
    pub fn title(self) -> &'static str {
        match self {
            Architecture::FashionMnistCnn => "PyTorch Fashion-MNIST CNN (1×28×28)",
            Architecture::KerasMnist => "Keras MNIST convnet (28×28×1)",
            Architecture::CatsVsDogs => "Keras cats-vs-dogs convnet (150×150×3)",
            Architecture::Cifar10 => "Keras CIFAR-10 convnet (32×32×3)",
            Architecture::Cifar10Dropout => "Keras CIFAR-10 convnet with dropout (32×32×3)",
        }
    }
}
