//! Chapter 9: layers and models. The course's CNN against PyTorch autograd and torch.optim.Adam
//! with the same weights and batch; naive against fast kernels through a whole model; the
//! state_dict names, summaries, dropout, and checkpoints.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use convlab::gemm::Scalar;
use convlab::nn::optim::{Adam, AdamOptions, Optimizer};
use convlab::nn::{
    Architecture, Conv2d, Dropout, Flatten, Init, Kernels, Layer, Linear, MaxPool2d, Mode, ReLU,
    Sequential,
};
use convlab::shape::{Conv2dParams, Pool2dParams};
use convlab::train::checkpoint;
use ndarray::{Array2, ArrayD, Axis, IxDyn};

/// The course's CNN, layer by layer as in `tools/gen_model_fixtures.py`, with dropout's
/// probability as given (its masks come from each library's own generator, so the parity test
/// turns it off).
fn course_cnn<T: Scalar>(dropout: f64) -> Sequential<T> {
    let conv = |i, o| Conv2d::new(i, o, [5, 5], Conv2dParams::default().padding(2)).unwrap();
    let pool = || MaxPool2d::new(Pool2dParams::new([2, 2]));
    let layers: Vec<Box<dyn Layer<T>>> = vec![
        Box::new(conv(1, 32)),
        Box::new(ReLU::new()),
        Box::new(pool()),
        Box::new(conv(32, 64)),
        Box::new(ReLU::new()),
        Box::new(pool()),
        Box::new(Flatten::new()),
        Box::new(Linear::new(3136, 1024).unwrap()),
        Box::new(ReLU::new()),
        Box::new(Dropout::new(dropout).unwrap()),
        Box::new(Linear::new(1024, 10).unwrap()),
    ];
    Sequential::new("course CNN", &[1, 28, 28], layers, Init::PyTorch, 0).unwrap()
}

/// The weights of the fixture's formula: parameter `j` of the state_dict, element `k`,
/// `((k·7919 + 101·j) mod 2003 / 1001.5 − 1) / √fan_in`, evaluated in f64 as NumPy does.
fn formula_weights<T: Scalar>(model: &mut Sequential<T>) {
    let tensors: Vec<(String, ArrayD<T>)> = model
        .state_dict()
        .iter()
        .enumerate()
        .map(|(j, (name, v))| {
            let fan_in = match name.split('.').next().unwrap() {
                "0" => 25.0,
                "3" => 800.0,
                "7" => 3136.0,
                _ => 1024.0,
            };
            let scale = 1.0 / f64::sqrt(fan_in);
            let mut k = 0usize;
            let t = ArrayD::from_shape_simple_fn(v.raw_dim(), || {
                let v = (((k * 7919 + 101 * j) % 2003) as f64 / 1001.5 - 1.0) * scale;
                k += 1;
                T::from(v).unwrap()
            });
            (name.to_string(), t)
        })
        .collect();
    model.load_state_dict(tensors).unwrap();
}

fn formula_batch<T: Scalar>() -> (ArrayD<T>, Vec<usize>) {
    let mut k = 0usize;
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[4, 1, 28, 28]), || {
        let v = ((k * 131 + 7) % 256) as f64 / 255.0;
        k += 1;
        T::from(v).unwrap()
    });
    (x, vec![0, 3, 7, 9])
}

fn fixture_tensors() -> HashMap<String, ArrayD<f64>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/course_cnn.safetensors");
    checkpoint::load::<f64>(&path)
        .unwrap()
        .0
        .into_iter()
        .collect()
}

/// One forward and backward pass and one Adam step of the course CNN in `T`, against PyTorch's
/// in the same precision (`suffix` picks the fixture's f32 tensors), within `rtol` of each
/// tensor's largest magnitude.
fn parity<T: Scalar>(suffix: &str, rtol: f64, adam_rtol: f64) {
    let fx = fixture_tensors();
    let get = |name: &str| &fx[&format!("{name}{suffix}")];
    let mut model = course_cnn::<T>(0.0);
    formula_weights(&mut model);
    let (x, labels) = formula_batch::<T>();
    model.zero_grad();
    let logits = model.forward(x, Mode::Train { step: 0 }).unwrap();
    assert_close(
        &to_f64(&logits),
        get("logits").as_slice().unwrap(),
        rtol,
        "logits",
    );
    let targets =
        ArrayD::from_shape_vec(IxDyn(&[4]), labels.iter().map(|&l| l as i64).collect()).unwrap();
    let opts = convlab::loss::LossOptions::default();
    let target = convlab::loss::Target::Classes(targets.view());
    let loss = convlab::loss::cross_entropy(logits.view(), target.clone(), &opts).unwrap();
    let loss = loss.reduced().unwrap().to_f64().unwrap();
    assert_close(&[loss], get("loss").as_slice().unwrap(), rtol, "loss");
    let grad = convlab::loss::cross_entropy_backward(
        logits.view(),
        target,
        &opts,
        &convlab::loss::LossOutput::Reduced(T::one()),
    )
    .unwrap();
    model.backward(grad).unwrap();

    // PyTorch's gradients, which also say which weights Adam may move either way.
    let mut gradients = HashMap::new();
    for (name, g) in model.gradients() {
        let got = to_f64(&g);
        let expected: Vec<f64> = if name == "7.weight" {
            // ∂L/∂W = Gᵀ·X from PyTorch's own G (fc1's output gradient) and X (its input).
            let g_out: Array2<f64> = get("fc1_grad_output")
                .clone()
                .into_dimensionality()
                .unwrap();
            let input: Array2<f64> = get("fc1_input").clone().into_dimensionality().unwrap();
            g_out.t().dot(&input).iter().copied().collect()
        } else {
            get(&format!("grad.{name}")).iter().copied().collect()
        };
        assert_close(&got, &expected, rtol, &format!("∂L/∂{name}"));
        gradients.insert(name.to_string(), expected);
    }

    let lr = 1e-3;
    let mut adam = Adam::<T>::new(AdamOptions::default().lr(lr)).unwrap();
    adam.step(&mut model.params_mut()).unwrap();
    for (name, v) in model.state_dict() {
        let mut got = to_f64(&v);
        let mut grad = gradients[name].clone();
        if name == "7.weight" {
            got = got.into_iter().step_by(1009).collect();
            grad = grad.into_iter().step_by(1009).collect();
        }
        let expected = get(&format!("adam.{name}"));
        let expected = expected.as_slice().unwrap();
        let scale = expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        let g_scale = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (i, (&a, &e)) in got.iter().zip(expected).enumerate() {
            // A gradient within the tolerance of 0 above has no sign to agree on: Adam's first
            // step moves its weight by lr·g/(|g| + ε), anywhere in (−lr, lr).
            let tol = if grad[i].abs() <= rtol * g_scale {
                2.0 * lr
            } else {
                adam_rtol * e.abs().max(scale)
            };
            assert!(
                (a - e).abs() <= tol,
                "Adam {name}: element {i}: got {a}, expected {e} (tolerance {tol:e}; gradient {})",
                grad[i]
            );
        }
    }
}

#[test]
fn course_cnn_matches_pytorch_autograd_and_adam_f64() {
    parity::<f64>("", 1e-10, 1e-12);
}

/// In f32 both libraries round every sum; the logits, loss and gradients agree to about f32's
/// precision times the depth of the sums. Adam's first step moves each weight by about
/// `lr·sign(g)`, so the weights after it agree to f32 rounding of the weights, relative to each
/// tensor's largest weight. A gradient within rounding of 0 can point either way, which moves
/// its weight by up to 2·lr: the Winograd route (chapter 4) leaves such a residue where every
/// term of a weight's gradient is zero but its neighbours' are not (the second layer's inputs
/// are partly zero after the ReLU), and PyTorch's gradient there is exactly 0.
#[test]
fn course_cnn_matches_pytorch_autograd_and_adam_f32() {
    parity::<f32>(".f32", 2e-4, 2e-3);
}

/// The whole model run with the naive kernels equals the model run with the fast ones: the
/// forward pass, and every gradient of the backward pass.
#[test]
fn naive_and_fast_models_agree() {
    let run = |kernels: Kernels| {
        let mut model = course_cnn::<f64>(0.5);
        model.kernels = kernels;
        let (x, _) = formula_batch::<f64>();
        let x = x.slice_axis(Axis(0), (0..2).into()).to_owned();
        let y = model.forward(x, Mode::Train { step: 3 }).unwrap();
        let g = y.mapv(|v| v.sin());
        model.backward(g).unwrap();
        let grads: Vec<Vec<f64>> = model.gradients().iter().map(|(_, g)| to_f64(g)).collect();
        (to_f64(&y), grads)
    };
    let (y_fast, g_fast) = run(Kernels::Fast);
    let (y_naive, g_naive) = run(Kernels::Naive);
    assert_close(&y_fast, &y_naive, 1e-12, "forward");
    for (i, (f, n)) in g_fast.iter().zip(&g_naive).enumerate() {
        assert_close(f, n, 1e-12, &format!("gradient {i}"));
    }
}

#[test]
fn state_dict_names_are_pytorchs() {
    let model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 0)
        .unwrap();
    let names: Vec<&str> = model.state_dict().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "3.weight",
            "3.bias",
            "7.weight",
            "7.bias",
            "10.weight",
            "10.bias"
        ]
    );
    assert_eq!(model.num_parameters(), 3_274_634);
    let shapes: Vec<Vec<usize>> = model
        .state_dict()
        .iter()
        .map(|(_, v)| v.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], [32, 1, 5, 5]);
    assert_eq!(shapes[4], [1024, 3136]);
}

/// PyTorch's default initialisation draws weights from U(±1/√fan_in) (Kaiming-uniform with
/// a = √5) and biases from U(±1/√fan_in); Glorot from U(±√(6/(fan_in + fan_out))) with zero
/// biases. The drawn values stay within their bounds and fill them (min and max near the
/// bounds), and the same seed draws the same values.
#[test]
fn initialisation_bounds_and_seeds() {
    let model: Sequential<f64> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 7)
        .unwrap();
    for (name, v) in model.state_dict() {
        let fan_in = match name.split('.').next().unwrap() {
            "0" => 25.0,
            "3" => 800.0,
            "7" => 3136.0,
            _ => 1024.0,
        };
        let bound = 1.0 / f64::sqrt(fan_in);
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(
            lo >= -bound && hi <= bound,
            "{name}: [{lo}, {hi}] outside ±{bound}"
        );
        assert!(
            lo < -0.8 * bound && hi > 0.8 * bound,
            "{name}: [{lo}, {hi}] does not fill ±{bound}"
        );
    }
    let glorot: Sequential<f64> = Architecture::KerasMnist.build(Init::Glorot, 7).unwrap();
    for (name, v) in glorot.state_dict() {
        if name.ends_with("bias") {
            assert!(v.iter().all(|&b| b == 0.0), "{name}");
        } else {
            let s = v.shape();
            let field: usize = s[2..].iter().product();
            let bound = (6.0 / ((s[0] + s[1]) * field) as f64).sqrt();
            assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
        }
    }
    let again: Sequential<f64> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 7)
        .unwrap();
    let other: Sequential<f64> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 8)
        .unwrap();
    assert_eq!(model.state_dict(), again.state_dict());
    assert_ne!(model.state_dict()[0], other.state_dict()[0]);
}

/// Inverted dropout: in training about p of the elements are zeroed and the rest scaled by
/// 1/(1 − p); the same step draws the same mask; evaluation passes the input unchanged.
#[test]
fn dropout_is_inverted_seeded_and_off_in_eval() {
    let mut d = Dropout::<f64>::new(0.5).unwrap();
    let x = ArrayD::from_elem(IxDyn(&[100, 100]), 2.0);
    let y = d
        .forward(x.clone(), Mode::Train { step: 1 }, Kernels::Fast)
        .unwrap();
    let zeros = y.iter().filter(|&&v| v == 0.0).count();
    assert!(y.iter().all(|&v| v == 0.0 || v == 4.0));
    assert!((4500..5500).contains(&zeros), "{zeros} of 10000 dropped");
    let g = d
        .backward(ArrayD::from_elem(IxDyn(&[100, 100]), 1.0), Kernels::Fast)
        .unwrap();
    assert_eq!(g, y.mapv(|v| v / 2.0));
    assert_eq!(
        d.forward(x.clone(), Mode::Train { step: 1 }, Kernels::Fast)
            .unwrap(),
        y
    );
    assert_ne!(
        d.forward(x.clone(), Mode::Train { step: 2 }, Kernels::Fast)
            .unwrap(),
        y
    );
    assert_eq!(d.forward(x.clone(), Mode::Eval, Kernels::Fast).unwrap(), x);
    assert!(Dropout::<f64>::new(1.5).is_err());
    let mut all = Dropout::<f64>::new(1.0).unwrap();
    let y = all
        .forward(x, Mode::Train { step: 0 }, Kernels::Fast)
        .unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

/// A training forward pass is good for one backward pass: the second finds nothing kept and says
/// so, and the next forward pass makes backward possible again, with the same input gradient.
#[test]
fn a_second_backward_pass_is_refused() {
    let mut model = course_cnn::<f64>(0.0);
    let (x, _) = formula_batch::<f64>();
    let y = model.forward(x.clone(), Mode::Train { step: 1 }).unwrap();
    let g = y.mapv(|v| v.cos());
    let first = model.backward(g.clone()).unwrap();
    let e = model.backward(g.clone()).unwrap_err();
    assert!(
        e.to_string().contains("one backward pass per forward pass"),
        "{e}"
    );
    model.forward(x, Mode::Train { step: 1 }).unwrap();
    assert_eq!(model.backward(g).unwrap(), first);
}

#[test]
fn models_refuse_inputs_of_the_wrong_shape() {
    let mut model: Sequential<f32> = Architecture::FashionMnistCnn
        .build(Init::PyTorch, 0)
        .unwrap();
    let e = model
        .forward(ArrayD::zeros(IxDyn(&[2, 3, 28, 28])), Mode::Eval)
        .unwrap_err();
    assert!(
        e.to_string().contains("(N, 1, 28, 28)") && e.to_string().contains("[2, 3, 28, 28]"),
        "{e}"
    );
    let e = model.backward(ArrayD::zeros(IxDyn(&[2, 10]))).unwrap_err();
    assert!(e.to_string().contains("training mode"), "{e}");
    // A layer that cannot take what the previous one gives is refused when the model is built.
    let layers: Vec<Box<dyn Layer<f32>>> = vec![
        Box::new(Flatten::new()),
        Box::new(Linear::new(100, 10).unwrap()),
    ];
    let e = Sequential::new("bad", &[1, 28, 28], layers, Init::PyTorch, 0).unwrap_err();
    assert!(
        e.to_string().contains("layer 1") && e.to_string().contains("784"),
        "{e}"
    );
    assert!(Conv2d::<f32>::new(3, 4, [3, 3], Conv2dParams::default().groups(2)).is_err());
}

#[test]
fn summaries_of_the_course_models() {
    let totals: Vec<usize> = Architecture::ALL
        .iter()
        .map(|a| {
            a.build::<f32>(Init::PyTorch, 0)
                .unwrap()
                .summary()
                .unwrap()
                .total_params()
        })
        .collect();
    // 93,322, 3,274,634 and 3,453,121 are the course's own counts; CIFAR-10's convnet is
    // 896 + 18,496 + (4096·512 + 512) + (512·10 + 10), with or without dropout.
    assert_eq!(totals, [3_274_634, 93_322, 3_453_121, 2_122_186, 2_122_186]);
    let text = Architecture::KerasMnist
        .build::<f32>(Init::PyTorch, 0)
        .unwrap()
        .summary()
        .unwrap()
        .to_string();
    assert!(text.contains("Conv2d(1, 32, kernel_size=(3, 3)"), "{text}");
    assert!(text.lines().last().unwrap().contains("93,322"), "{text}");
}

/// A training step's backward ([`Sequential::backward_parameters`], which skips the first
/// layer's `∂L/∂x`) leaves every parameter's gradient as the whole backward pass does, bit for
/// bit: the course CNN, whose first layer takes the im2col route, and a model whose first layer
/// has 16 channels in (the direct kernels and the Winograd weight gradient, where AVX-512 runs
/// them).
#[test]
fn a_training_backward_gives_the_same_gradients_without_the_input_gradient() {
    let wide = || -> Sequential<f32> {
        let layers: Vec<Box<dyn Layer<f32>>> = vec![
            Box::new(Conv2d::new(16, 16, [5, 5], Conv2dParams::default().padding(2)).unwrap()),
            Box::new(ReLU::new()),
            Box::new(Flatten::new()),
            Box::new(Linear::new(16 * 8 * 8, 10).unwrap()),
        ];
        Sequential::new("wide", &[16, 8, 8], layers, Init::PyTorch, 3).unwrap()
    };
    type Build = Box<dyn Fn() -> Sequential<f32>>;
    let cases: Vec<(Build, [usize; 4])> = vec![
        (Box::new(|| course_cnn(0.0)), [3, 1, 28, 28]),
        (Box::new(wide), [2, 16, 8, 8]),
    ];
    for (build, shape) in cases {
        let x = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            ((i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3] * 11) % 17) as f32 / 8.0 - 1.0
        });
        let gradients = |parameters_only: bool| {
            let mut model = build();
            model.zero_grad();
            let y = model.forward(x.clone(), Mode::Train { step: 0 }).unwrap();
            let g = y.mapv(|v| v * 0.5 - 0.25);
            if parameters_only {
                model.backward_parameters(g, usize::MAX).unwrap();
            } else {
                model.backward(g).unwrap();
            }
            let owned: Vec<(String, ArrayD<f32>)> = model
                .gradients()
                .into_iter()
                .map(|(name, g)| (name.to_string(), g.to_owned()))
                .collect();
            owned
        };
        let (whole, parameters) = (gradients(false), gradients(true));
        assert_eq!(whole.len(), parameters.len());
        for ((name, a), (other, b)) in whole.iter().zip(&parameters) {
            assert_eq!(name, other);
            assert!(
                a.iter().any(|v| *v != 0.0),
                "{name}: a gradient of zeros proves nothing"
            );
            let same = a
                .iter()
                .zip(b.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name} differs");
        }
    }
}
