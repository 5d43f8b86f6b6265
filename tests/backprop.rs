//! Chapter 8: every backward against central differences of its forward (f64), and fast
//! backward passes against naive ones.

mod common;

use common::*;
use convlab::conv2d::{fast, naive};
use convlab::gemm::{Engine, Isa, Scalar};
use convlab::grad::{check_gradient, numerical_gradient};
use convlab::shape::{Conv2dParams, Padding};
use ndarray::{Array1, Array4, ArrayViewD, Ix1, Ix4};
use proptest::prelude::*;
use std::ops::Range;

type Case = (
    Array4<f64>,
    Array4<f64>,
    Array1<f64>,
    Array4<f64>,
    Conv2dParams,
    Layout,
);

/// A small random conv2d call, its bias, and an upstream gradient of the output's shape.
fn conv_case() -> impl Strategy<Value = Case> {
    conv_case_in(
        [1..3, 1..3, 1..3, 1..3],
        [1..4, 1..4, 1..7, 1..7],
        [1..3, 1..3],
        [1..3, 1..3],
    )
}

/// A random conv2d call with batch, groups, input and output channels per group drawn from
/// `counts`, kernel height and width, input height and width from `sizes`, and row and column
/// strides and dilations from `strides` and `dilations`; padding Valid, KerasSame, Full, or
/// explicit 0 or 1.
fn conv_case_in(
    counts: [Range<usize>; 4],
    sizes: [Range<usize>; 4],
    strides: [Range<usize>; 2],
    dilations: [Range<usize>; 2],
) -> impl Strategy<Value = Case> {
    let [n, g, cpg, opg] = counts;
    let [kh, kw, h, w] = sizes;
    let [sh, sw] = strides;
    let [dh, dw] = dilations;
    (
        (n, g, cpg, opg),
        (kh, kw, h, w),
        (sh, sw, dh, dw),
        (0usize..5, 0usize..5, 0usize..3),
    )
        .prop_filter_map(
            "the kernel must fit",
            |((n, g, cpg, opg), (kh, kw, h, w), (sh, sw, dh, dw), (ph, pw, layout))| {
                let rule = |p: usize| match p {
                    0 => Padding::Valid,
                    1 => Padding::KerasSame,
                    2 => Padding::Full,
                    p => Padding::Explicit(p - 3),
                };
                let p = Conv2dParams::default()
                    .strides([sh, sw])
                    .paddings([rule(ph), rule(pw)])
                    .dilations([dh, dw])
                    .groups(g);
                let [ho, wo] = [
                    p.axis(0).output_len(h, kh).ok()?,
                    p.axis(1).output_len(w, kw).ok()?,
                ];
                Some((n, g, cpg, opg, kh, kw, h, w, ho, wo, p, layout))
            },
        )
        .prop_flat_map(|(n, g, cpg, opg, kh, kw, h, w, ho, wo, p, layout)| {
            let v = |len| proptest::collection::vec(-1.0f64..1.0, len);
            (
                v(n * g * cpg * h * w),
                v(g * opg * cpg * kh * kw),
                v(g * opg),
                v(n * g * opg * ho * wo),
            )
                .prop_map(move |(x, wt, b, go)| {
                    (
                        Array4::from_shape_vec((n, g * cpg, h, w), x).unwrap(),
                        Array4::from_shape_vec((g * opg, cpg, kh, kw), wt).unwrap(),
                        Array1::from(b),
                        Array4::from_shape_vec((n, g * opg, ho, wo), go).unwrap(),
                        p,
                        LAYOUTS[layout],
                    )
                })
        })
}

/// `L = Σ out · G`, so that `∂L/∂out = G`.
fn loss(
    x: &Array4<f64>,
    w: &Array4<f64>,
    b: &Array1<f64>,
    g: &Array4<f64>,
    p: Conv2dParams,
) -> f64 {
    (naive::conv2d(x.view(), w.view(), Some(b.view()), p).unwrap() * g).sum()
}

fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::MatrixMultiply, Engine::Naive];
    engines.extend(Isa::available().into_iter().map(Engine::Blocked));
    engines
}

/// Fast backward passes against the naive one in f64 on the same values. Gradients are sums of
/// products that can cancel, so each element is judged against the sum of the magnitudes of its
/// terms (the naive backward of `|x|`, `|w|`, `|g|`), the size its rounding error scales with.
fn fast_equals_naive<T: Scalar>(case: &Case, rtol: f64) -> Result<(), TestCaseError> {
    let (x, w, _, g, p, layout) = case;
    let cast = |a: &Array4<f64>| a.mapv(|v| T::from(v).unwrap());
    let (xt, wt, gt) = (cast(x), cast(w), cast(g));
    let back = |a: &Array4<T>| a.mapv(|v| v.to_f64().unwrap());
    let (x, w, g) = (back(&xt), back(&wt), back(&gt));
    let expected = naive::conv2d_backward(x.view(), w.view(), g.view(), *p).unwrap();
    let abs = |a: &Array4<f64>| a.mapv(f64::abs);
    let size = naive::conv2d_backward(abs(&x).view(), abs(&w).view(), abs(&g).view(), *p).unwrap();
    let (xs, ws, gs) = (
        Stored::new(&xt, *layout),
        Stored::new(&wt, *layout),
        Stored::new(&gt, *layout),
    );
    for engine in engines() {
        let got = fast::conv2d_backward_with(engine, xs.view(), ws.view(), gs.view(), *p).unwrap();
        agree(
            &format!("{engine:?} ∂L/∂input"),
            &got.input,
            &expected.input,
            &size.input,
            rtol,
        )?;
        agree(
            &format!("{engine:?} ∂L/∂weight"),
            &got.weight,
            &expected.weight,
            &size.weight,
            rtol,
        )?;
        agree(
            &format!("{engine:?} ∂L/∂bias"),
            &got.bias,
            &expected.bias,
            &size.bias,
            rtol,
        )?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(64))]

    /// The hand-derived conv2d gradients equal central differences of the forward, for the
    /// input, the weight and the bias.
    #[test]
    fn conv2d_backward_is_the_derivative(case in conv_case()) {
        let (x, w, b, g, p, _) = &case;
        let grads = naive::conv2d_backward(x.view(), w.view(), g.view(), *p).unwrap();
        let eps = AFFINE_STEP;
        let by_x = numerical_gradient(|xv: ArrayViewD<f64>| loss(&xv.into_dimensionality::<Ix4>().unwrap().to_owned(), w, b, g, *p), x.view().into_dyn(), eps);
        let by_w = numerical_gradient(|wv: ArrayViewD<f64>| loss(x, &wv.into_dimensionality::<Ix4>().unwrap().to_owned(), b, g, *p), w.view().into_dyn(), eps);
        let by_b = numerical_gradient(|bv: ArrayViewD<f64>| loss(x, w, &bv.into_dimensionality::<Ix1>().unwrap().to_owned(), g, *p), b.view().into_dyn(), eps);
        for (name, a, n) in [("input", grads.input.into_dyn(), by_x), ("weight", grads.weight.into_dyn(), by_w), ("bias", grads.bias.into_dyn(), by_b)] {
            if let Err(m) = check_gradient(a.view(), n.view(), 1e-7, 1e-6) {
                return Err(TestCaseError::fail(format!("∂L/∂{name}: {m}")));
            }
        }
    }

    /// The fast backward (im2col, GEMM, col2im) equals the naive one with every GEMM engine, in
    /// f64 and f32, on any memory layout.
    #[test]
    fn conv2d_backward_fast_equals_naive(case in conv_case()) {
        fast_equals_naive::<f64>(&case, RTOL_F64)?;
        fast_equals_naive::<f32>(&case, RTOL_F32)?;
    }
}

#[test]
fn gradient_check_catches_a_wrong_gradient() {
    let x = ndarray::array![1.0, 2.0, 3.0].into_dyn();
    let n = numerical_gradient(|v| v.iter().map(|t| t * t).sum(), x.view(), 1e-6);
    assert!(check_gradient((&x * 2.0).view(), n.view(), 1e-7, 1e-6).is_ok());
    assert!(check_gradient((&x * 2.001).view(), n.view(), 1e-7, 1e-6).is_err());
}

#[test]
fn backward_refuses_a_gradient_of_the_wrong_shape() {
    let x = Array4::<f64>::zeros((1, 1, 5, 5));
    let w = Array4::<f64>::zeros((2, 1, 3, 3));
    let g = Array4::<f64>::zeros((1, 2, 4, 4));
    let p = Conv2dParams::default();
    let e = naive::conv2d_backward(x.view(), w.view(), g.view(), p).unwrap_err();
    assert!(e.to_string().contains("[1, 2, 3, 3]"), "{e}");
    assert!(fast::conv2d_backward(x.view(), w.view(), g.view(), p).is_err());
}

mod pooling {
    use super::*;
    use convlab::pool::{fast as pool_fast, naive as pool_naive};
    use convlab::shape::Pool2dParams;
    use ndarray::ArrayView4;

    type PoolCase = (Array4<f64>, Pool2dParams, [usize; 2], u64);

    /// `len` distinct values spread evenly over (−1, 1) in a random order: any two differ by at
    /// least `2/len`, far more than the central differences' step, so no window ever holds a
    /// tie (where the maximum is not differentiable) and no step changes a window's winner.
    /// Shrinking permutes them and keeps them distinct.
    fn distinct_values(len: usize) -> impl Strategy<Value = Vec<f64>> {
        Just((0..len).collect::<Vec<usize>>())
            .prop_shuffle()
            .prop_map(move |order| {
                order
                    .into_iter()
                    .map(|k| (2 * k + 1) as f64 / len as f64 - 1.0)
                    .collect()
            })
    }

    /// Random maps without ties and pooling parameters.
    fn pool_case() -> impl Strategy<Value = PoolCase> {
        (
            (1usize..3, 1usize..3, 1usize..8, 1usize..8),
            (1usize..4, 1usize..4, 0usize..3, 0usize..3),
            (0usize..2, 0usize..2, any::<bool>(), any::<bool>()),
            (1usize..4, 1usize..4, any::<u64>()),
        )
            .prop_flat_map(
                |((n, c, h, w), (kh, kw, sh, sw), (ph, pw, ceil, include), (oh, ow, seed))| {
                    let stride = |s: usize, k: usize| if s == 0 { k } else { s };
                    let p = Pool2dParams::new([kh, kw])
                        .strides([stride(sh, kh), stride(sw, kw)])
                        .paddings([
                            Padding::Explicit(ph.min(kh / 2)),
                            Padding::Explicit(pw.min(kw / 2)),
                        ])
                        .ceil_mode(ceil)
                        .count_include_pad(include);
                    distinct_values(n * c * h * w).prop_map(move |v| {
                        (
                            Array4::from_shape_vec((n, c, h, w), v).unwrap(),
                            p,
                            [oh, ow],
                            seed,
                        )
                    })
                },
            )
    }

    /// A fixed pseudo-random upstream gradient of the given shape.
    fn upstream(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f64> {
        let mut state = seed | 1;
        Array4::from_shape_fn(shape, |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f64 / 1000.0 - 1.0
        })
    }

    /// The analytic gradient of `L = Σ forward(x) · G` and its central differences.
    fn gradients(
        x: &Array4<f64>,
        forward: impl Fn(ArrayView4<f64>) -> Array4<f64>,
        backward: impl Fn(&Array4<f64>) -> Array4<f64>,
        seed: u64,
    ) -> (Array4<f64>, Array4<f64>) {
        let g = upstream(forward(x.view()).dim(), seed);
        let analytic = backward(&g);
        let numerical = numerical_gradient(
            |v: ArrayViewD<f64>| (forward(v.into_dimensionality::<Ix4>().unwrap()) * &g).sum(),
            x.view().into_dyn(),
            AFFINE_STEP,
        );
        (analytic, numerical.into_dimensionality().unwrap())
    }

    fn check(
        name: &str,
        x: &Array4<f64>,
        forward: impl Fn(ArrayView4<f64>) -> Array4<f64>,
        backward: impl Fn(&Array4<f64>) -> Array4<f64>,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let (analytic, numerical) = gradients(x, forward, backward, seed);
        check_gradient(
            analytic.view().into_dyn(),
            numerical.view().into_dyn(),
            1e-7,
            1e-6,
        )
        .map_err(|m| TestCaseError::fail(format!("{name}: {m}")))
    }

    proptest! {
        #![proptest_config(cases(96))]

        /// Max, average and adaptive pooling gradients equal central differences, and the fast
        /// backward passes equal the naive ones.
        #[test]
        fn pooling_backward_is_the_derivative((x, p, adaptive, seed) in pool_case()) {
            let [h, w] = [x.dim().2, x.dim().3];
            if pool_naive::max_pool2d(x.view(), p).is_err() {
                return Ok(());
            }
            let (_, idx) = pool_naive::max_pool2d_with_indices(x.view(), p).unwrap();
            check("max", &x, |v| pool_naive::max_pool2d(v, p).unwrap(),
                |g| pool_naive::max_pool2d_backward(g.view(), idx.view(), [h, w]).unwrap(), seed)?;
            check("avg", &x, |v| pool_naive::avg_pool2d(v, p).unwrap(),
                |g| pool_naive::avg_pool2d_backward(g.view(), [h, w], p).unwrap(), seed)?;
            check("adaptive avg", &x, |v| pool_naive::adaptive_avg_pool2d(v, adaptive).unwrap(),
                |g| pool_naive::adaptive_avg_pool2d_backward(g.view(), [h, w]).unwrap(), seed)?;
            let (_, aidx) = pool_naive::adaptive_max_pool2d_with_indices(x.view(), adaptive).unwrap();
            check("adaptive max", &x, |v| pool_naive::adaptive_max_pool2d(v, adaptive).unwrap(),
                |g| pool_naive::max_pool2d_backward(g.view(), aidx.view(), [h, w]).unwrap(), seed)?;

            // Fast against naive; the average backward passes are linear in g, so their terms'
            // size is the same pass on |g|.
            let g = upstream(idx.dim(), seed);
            prop_assert_eq!(
                pool_naive::max_pool2d_backward(g.view(), idx.view(), [h, w]),
                pool_fast::max_pool2d_backward(g.view(), idx.view(), [h, w])
            );
            let e = pool_naive::avg_pool2d_backward(g.view(), [h, w], p).unwrap();
            let f = pool_fast::avg_pool2d_backward(g.view(), [h, w], p).unwrap();
            let size = pool_naive::avg_pool2d_backward(g.mapv(f64::abs).view(), [h, w], p).unwrap();
            agree("fast avg_pool2d_backward", &f, &e, &size, RTOL_F64)?;
            let g = upstream((x.dim().0, x.dim().1, adaptive[0], adaptive[1]), seed);
            let e = pool_naive::adaptive_avg_pool2d_backward(g.view(), [h, w]).unwrap();
            let f = pool_fast::adaptive_avg_pool2d_backward(g.view(), [h, w]).unwrap();
            let size = pool_naive::adaptive_avg_pool2d_backward(g.mapv(f64::abs).view(), [h, w]).unwrap();
            agree("fast adaptive_avg_pool2d_backward", &f, &e, &size, RTOL_F64)?;
        }
    }

    /// Why the property's maps have no ties: on an all-zero map (the case it once shrank to),
    /// every window is a tie, the maximum has no derivative, and central differences see half
    /// of the slope the winner gets (x + ε wins the window, x − ε loses it to another zero).
    #[test]
    fn at_a_tie_central_differences_see_half_the_gradient() {
        let x = Array4::<f64>::zeros((1, 1, 2, 2));
        let p = Pool2dParams::new([2, 2]);
        let (_, idx) = pool_naive::max_pool2d_with_indices(x.view(), p).unwrap();
        let (analytic, numerical) = gradients(
            &x,
            |v| pool_naive::max_pool2d(v, p).unwrap(),
            |g| pool_naive::max_pool2d_backward(g.view(), idx.view(), [2, 2]).unwrap(),
            7,
        );
        let g = upstream((1, 1, 1, 1), 7)[[0, 0, 0, 0]];
        // The forward picks the first zero, as PyTorch does; every input's difference quotient is
        // (g·ε − 0)/(2ε) = g/2.
        assert_eq!(analytic, ndarray::array![[[[g, 0.0], [0.0, 0.0]]]]);
        for n in numerical.iter() {
            assert!((n - g / 2.0).abs() < 1e-12, "{n} vs {}", g / 2.0);
        }
    }
}

mod activations_and_losses {
    use super::*;
    use convlab::activation as act;
    use convlab::loss::{self, LossOptions, LossOutput, Reduction, Target};
    use ndarray::{ArrayD, IxDyn};

    fn array(values: Vec<f64>, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()
    }

    /// Values in ±[0.05, 2) and a shape with a class axis. By construction no input is within
    /// the step of ReLU's and leaky ReLU's kink at 0, and σ(x) stays in (0.11, 0.89), far from
    /// the 0 and 1 where binary cross-entropy clamps its logarithm; every other function here is
    /// smooth everywhere.
    fn inputs() -> impl Strategy<Value = (ArrayD<f64>, ArrayD<f64>, Vec<usize>)> {
        (1usize..4, 2usize..5, 0usize..3).prop_flat_map(|(n, c, d)| {
            let shape = if d == 0 { vec![n, c] } else { vec![n, c, d] };
            let len: usize = shape.iter().product();
            let away = (0.05f64..2.0, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v });
            (
                proptest::collection::vec(away, len),
                proptest::collection::vec(-1.0f64..1.0, len),
            )
                .prop_map(move |(x, g)| (array(x, &shape), array(g, &shape), shape.clone()))
        })
    }

    fn gradcheck(
        name: &str,
        x: &ArrayD<f64>,
        f: impl Fn(ArrayViewD<f64>) -> f64,
        analytic: ArrayD<f64>,
    ) -> Result<(), TestCaseError> {
        let numerical = numerical_gradient(f, x.view(), SMOOTH_STEP);
        check_gradient(analytic.view(), numerical.view(), 1e-7, 1e-5)
            .map_err(|m| TestCaseError::fail(format!("{name}: {m}")))
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn activation_backward_is_the_derivative((x, g, _shape) in inputs()) {
            let dot = |y: ArrayD<f64>| (y * &g).sum();
            gradcheck("relu", &x, |v| dot(act::relu(v)), act::relu_backward(x.view(), g.view()).unwrap())?;
            gradcheck("leaky_relu", &x, |v| dot(act::leaky_relu(v, 0.1)), act::leaky_relu_backward(x.view(), g.view(), 0.1).unwrap())?;
            let y = act::sigmoid(x.view());
            gradcheck("sigmoid", &x, |v| dot(act::sigmoid(v)), act::sigmoid_backward(y.view(), g.view()).unwrap())?;
            let y = act::tanh(x.view());
            gradcheck("tanh", &x, |v| dot(act::tanh(v)), act::tanh_backward(y.view(), g.view()).unwrap())?;
            for axis in 0..x.ndim() {
                let y = act::softmax(x.view(), axis).unwrap();
                gradcheck("softmax", &x, |v| dot(act::softmax(v, axis).unwrap()), act::softmax_backward(y.view(), g.view(), axis).unwrap())?;
                let y = act::log_softmax(x.view(), axis).unwrap();
                gradcheck("log_softmax", &x, |v| dot(act::log_softmax(v, axis).unwrap()), act::log_softmax_backward(y.view(), g.view(), axis).unwrap())?;
            }
        }

        #[test]
        fn loss_backward_is_the_derivative(
            (x, g, shape) in inputs(),
            reduction in 0usize..3,
            smoothing in prop_oneof![Just(0.0), 0.0f64..0.5],
            weighted in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let reduction = [Reduction::None, Reduction::Mean, Reduction::Sum][reduction];
            let classes = shape[1];
            let mut sample_shape = shape.clone();
            sample_shape.remove(1);
            let count: usize = sample_shape.iter().product();
            // Class targets, one of them ignored when there are several samples.
            let targets: Vec<i64> = (0..count).map(|i| if count > 1 && i == 0 { -100 } else { ((seed as usize + 7 * i) % classes) as i64 }).collect();
            let targets = ArrayD::from_shape_vec(IxDyn(&sample_shape), targets).unwrap();
            let weight = ArrayD::from_shape_fn(IxDyn(&[classes]), |i| 0.5 + i[0] as f64);
            let mut opts = LossOptions::default().reduction(reduction).label_smoothing(smoothing);
            if weighted {
                opts = opts.weight(weight.view());
            }
            // The upstream gradient: 1 for a mean or sum, g's first values per sample otherwise.
            let upstream = match reduction {
                Reduction::None => LossOutput::PerElement(array(g.iter().take(count).copied().collect(), &sample_shape)),
                _ => LossOutput::Reduced(1.0),
            };
            let value = |out: LossOutput<f64>| match (out, &upstream) {
                (LossOutput::Reduced(v), _) => v,
                (LossOutput::PerElement(a), LossOutput::PerElement(u)) => (a * u).sum(),
                _ => unreachable!("the forward and the upstream gradient have the same form"),
            };
            let ce = |v: ArrayViewD<f64>| value(loss::cross_entropy(v, Target::Classes(targets.view()), &opts).unwrap());
            gradcheck("cross_entropy", &x, ce, loss::cross_entropy_backward(x.view(), Target::Classes(targets.view()), &opts, &upstream).unwrap())?;
            let q = act::softmax(g.view(), 1).unwrap();
            let cep = |v: ArrayViewD<f64>| value(loss::cross_entropy(v, Target::Probabilities(q.view()), &opts).unwrap());
            gradcheck("cross_entropy probabilities", &x, cep, loss::cross_entropy_backward(x.view(), Target::Probabilities(q.view()), &opts, &upstream).unwrap())?;
            let nll = |v: ArrayViewD<f64>| value(loss::nll_loss(v, targets.view(), &opts).unwrap());
            gradcheck("nll_loss", &x, nll, loss::nll_loss_backward(x.view(), targets.view(), &opts, &upstream).unwrap())?;

            // Binary losses: one value per element, so the upstream gradient is per element.
            let upstream = match reduction {
                Reduction::None => LossOutput::PerElement(g.clone()),
                _ => LossOutput::Reduced(1.0),
            };
            let value = |out: LossOutput<f64>| match out {
                LossOutput::Reduced(v) => v,
                LossOutput::PerElement(a) => (a * &g).sum(),
            };
            let y = g.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
            let pw = ndarray::Array1::from_shape_fn(*shape.last().unwrap(), |i| 0.5 + i as f64);
            let mut bopts = LossOptions::default().reduction(reduction);
            if weighted {
                bopts = bopts.pos_weight(pw.view());
            }
            let with_logits = |v: ArrayViewD<f64>| value(loss::binary_cross_entropy_with_logits(v, y.view(), &bopts).unwrap());
            gradcheck("bce with logits", &x, with_logits, loss::binary_cross_entropy_with_logits_backward(x.view(), y.view(), &bopts, &upstream).unwrap())?;
            let p = act::sigmoid(x.view());
            let bopts = LossOptions::default().reduction(reduction);
            let bce = |v: ArrayViewD<f64>| value(loss::binary_cross_entropy(v, y.view(), &bopts).unwrap());
            gradcheck("bce", &p, bce, loss::binary_cross_entropy_backward(p.view(), y.view(), &bopts, &upstream).unwrap())?;
        }
    }
}

mod course_network {
    use super::*;
    use convlab::linear::{linear, linear_backward};
    use convlab::pool::{max_pool2d_backward, max_pool2d_with_indices};
    use convlab::shape::Pool2dParams;
    use ndarray::{Array2, array};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Expected {
        y: Vec<f64>,
        grad_x: Vec<f64>,
        grad_w: Vec<f64>,
        grad_b: Vec<f64>,
        grad_fc_w: Vec<f64>,
        grad_fc_b: Vec<f64>,
    }

    /// The course's network end to end: the 6×6 image → conv (two 3×3 filters, bias 1) →
    /// max-pool 2×2 → flatten → linear (all-ones weights, bias 1) = 18, and backpropagation
    /// through every step against PyTorch autograd.
    #[test]
    fn forward_and_backward_match_pytorch_autograd() {
        let expected: Expected = fixture("course_network.json");
        let x = array![
            [7., 6., 8., 5., 1., 3.],
            [8., 6., 5., 3., 5., 5.],
            [9., 1., 1., 5., 3., 5.],
            [4., 5., 5., 9., 2., 6.],
            [9., 5., 3., 1., 2., 2.],
            [4., 4., 8., 8., 9., 8.]
        ]
        .into_shape_with_order((1, 1, 6, 6))
        .unwrap();
        let w = array![
            [[1., 1., 0.], [-1., 1., -1.], [0., -1., -1.]],
            [[1., 1., 0.], [-1., 1., -1.], [-1., 0., -1.]]
        ]
        .into_shape_with_order((2, 1, 3, 3))
        .unwrap();
        let b = array![1., 1.];
        let (fc_w, fc_b) = (Array2::<f64>::ones((1, 8)), array![1.]);
        let p = Conv2dParams::default();

        // Forward.
        let h = fast::conv2d(x.view(), w.view(), Some(b.view()), p).unwrap();
        let (m, at) = max_pool2d_with_indices(h.view(), Pool2dParams::new([2, 2])).unwrap();
        let flat = m.clone().into_shape_with_order((1, 8)).unwrap();
        let y = linear(flat.view(), fc_w.view(), Some(fc_b.view())).unwrap();
        assert_eq!(y.into_raw_vec_and_offset().0, expected.y);

        // Backward from ∂y/∂y = 1.
        let fc = linear_backward(flat.view(), fc_w.view(), Array2::ones((1, 1)).view()).unwrap();
        assert_eq!(fc.weight.into_raw_vec_and_offset().0, expected.grad_fc_w);
        assert_eq!(fc.bias.to_vec(), expected.grad_fc_b);
        let grad_m = fc.input.into_shape_with_order(m.raw_dim()).unwrap();
        let grad_h = max_pool2d_backward(grad_m.view(), at.view(), [4, 4]).unwrap();
        for grads in [
            naive::conv2d_backward(x.view(), w.view(), grad_h.view(), p).unwrap(),
            fast::conv2d_backward(x.view(), w.view(), grad_h.view(), p).unwrap(),
        ] {
            assert_eq!(grads.input.into_raw_vec_and_offset().0, expected.grad_x);
            assert_eq!(grads.weight.into_raw_vec_and_offset().0, expected.grad_w);
            assert_eq!(grads.bias.to_vec(), expected.grad_b);
        }
    }

    /// The linear layer's backward against central differences.
    #[test]
    fn linear_backward_is_the_derivative() {
        let x = Array2::from_shape_fn((3, 4), |(i, j)| (i as f64 - 1.0) * 0.3 + j as f64 * 0.2);
        let w = Array2::from_shape_fn((2, 4), |(i, j)| (i + 2 * j) as f64 * 0.1 - 0.3);
        let b = array![0.5, -0.5];
        let g = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f64 * 0.25 - 0.5);
        let grads = linear_backward(x.view(), w.view(), g.view()).unwrap();
        let loss = |x: &Array2<f64>, w: &Array2<f64>, b: &ndarray::Array1<f64>| {
            (linear(x.view(), w.view(), Some(b.view())).unwrap() * &g).sum()
        };
        let by_x = numerical_gradient(
            |v| loss(&v.into_dimensionality().unwrap().to_owned(), &w, &b),
            x.view().into_dyn(),
            1e-6,
        );
        let by_w = numerical_gradient(
            |v| loss(&x, &v.into_dimensionality().unwrap().to_owned(), &b),
            w.view().into_dyn(),
            1e-6,
        );
        let by_b = numerical_gradient(
            |v| loss(&x, &w, &v.into_dimensionality().unwrap().to_owned()),
            b.view().into_dyn(),
            1e-6,
        );
        check_gradient(grads.input.view().into_dyn(), by_x.view(), 1e-7, 1e-6).unwrap();
        check_gradient(grads.weight.view().into_dyn(), by_w.view(), 1e-7, 1e-6).unwrap();
        check_gradient(grads.bias.view().into_dyn(), by_b.view(), 1e-7, 1e-6).unwrap();
        assert!(linear(x.view(), w.t(), None).is_err());
    }
}

mod more_convolutions {
    use super::*;
    use convlab::conv1d::{fast as fast1, naive as naive1};
    use convlab::im2col::{fold, fold_backward, unfold, unfold_backward};
    use convlab::shape::{Conv3dParams, ConvParams};
    use ndarray::{Array, Array3, Array5, Dimension, Ix3, Ix5};

    fn values<D: Dimension>(shape: D, seed: usize) -> Array<f64, D> {
        Array::from_shape_fn(shape, |i| {
            let k = i.into_pattern_index(seed);
            ((k * 7919) % 2003) as f64 / 1001.5 - 1.0
        })
    }

    trait Pattern {
        fn into_pattern_index(self, seed: usize) -> usize;
    }
    impl<P: ndarray::IntoDimension> Pattern for P {
        fn into_pattern_index(self, seed: usize) -> usize {
            self.into_dimension()
                .slice()
                .iter()
                .fold(seed, |a, &b| a * 31 + b + 1)
        }
    }

    proptest! {
        #![proptest_config(cases(48))]

        #[test]
        fn conv1d_backward_is_the_derivative(
            (n, g, cpg, opg, k, l) in (1usize..3, 1usize..3, 1usize..3, 1usize..3, 1usize..5, 1usize..12),
            (s, d, pad, seed) in (1usize..3, 1usize..3, 0usize..3, 0usize..100),
        ) {
            let p = ConvParams::default().stride(s).dilation(d).padding(pad).groups(g);
            let Ok(l_out) = p.output_len(l, k) else { return Ok(()) };
            let x: Array3<f64> = values(ndarray::Dim([n, g * cpg, l]), seed);
            let w: Array3<f64> = values(ndarray::Dim([g * opg, cpg, k]), seed + 1);
            let go: Array3<f64> = values(ndarray::Dim([n, g * opg, l_out]), seed + 2);
            let b = ndarray::Array1::<f64>::zeros(g * opg);
            let grads = naive1::conv1d_backward(x.view(), w.view(), go.view(), p).unwrap();
            let loss = |x: &Array3<f64>, w: &Array3<f64>| (naive1::conv1d(x.view(), w.view(), Some(b.view()), p).unwrap() * &go).sum();
            let by_x = numerical_gradient(|v| loss(&v.into_dimensionality::<Ix3>().unwrap().to_owned(), &w), x.view().into_dyn(), AFFINE_STEP);
            let by_w = numerical_gradient(|v| loss(&x, &v.into_dimensionality::<Ix3>().unwrap().to_owned()), w.view().into_dyn(), AFFINE_STEP);
            check_gradient(grads.input.view().into_dyn(), by_x.view(), 1e-7, 1e-6).map_err(TestCaseError::fail)?;
            check_gradient(grads.weight.view().into_dyn(), by_w.view(), 1e-7, 1e-6).map_err(TestCaseError::fail)?;
            // The bias gradient sums G over the batch and positions; its terms' size sums |G|.
            let sum = |g: &Array3<f64>| g.sum_axis(ndarray::Axis(2)).sum_axis(ndarray::Axis(0));
            agree("∂L/∂b", &grads.bias, &sum(&go), &sum(&go.mapv(f64::abs)), RTOL_F64)?;
            let f = fast1::conv1d_backward(x.view(), w.view(), go.view(), p).unwrap();
            let size = naive1::conv1d_backward(x.mapv(f64::abs).view(), w.mapv(f64::abs).view(), go.mapv(f64::abs).view(), p).unwrap();
            agree("fast ∂L/∂x", &f.input, &grads.input, &size.input, RTOL_F64)?;
            agree("fast ∂L/∂w", &f.weight, &grads.weight, &size.weight, RTOL_F64)?;
            agree("fast ∂L/∂b", &f.bias, &grads.bias, &size.bias, RTOL_F64)?;
        }

        #[test]
        fn conv3d_backward_is_the_derivative(
            (n, g, cpg, opg) in (1usize..3, 1usize..3, 1usize..3, 1usize..3),
            (kd, kh, kw, dp, h, wd) in (1usize..3, 1usize..3, 1usize..3, 1usize..5, 1usize..5, 1usize..5),
            (s, pad, seed) in (1usize..3, 0usize..2, 0usize..100),
        ) {
            let p = Conv3dParams::default().stride(s).padding(pad).groups(g);
            let out: Vec<usize> = [(dp, kd), (h, kh), (wd, kw)].iter().map(|&(n, k)| p.axis(0).output_len(n, k)).collect::<Result<_, _>>().unwrap_or_default();
            if out.len() != 3 {
                return Ok(());
            }
            let x: Array5<f64> = values(ndarray::Dim([n, g * cpg, dp, h, wd]), seed);
            let w: Array5<f64> = values(ndarray::Dim([g * opg, cpg, kd, kh, kw]), seed + 1);
            let go: Array5<f64> = values(ndarray::Dim([n, g * opg, out[0], out[1], out[2]]), seed + 2);
            let grads = naive::conv3d_backward(x.view(), w.view(), go.view(), p).unwrap();
            let loss = |x: &Array5<f64>, w: &Array5<f64>| (naive::conv3d(x.view(), w.view(), None, p).unwrap() * &go).sum();
            let by_x = numerical_gradient(|v| loss(&v.into_dimensionality::<Ix5>().unwrap().to_owned(), &w), x.view().into_dyn(), AFFINE_STEP);
            let by_w = numerical_gradient(|v| loss(&x, &v.into_dimensionality::<Ix5>().unwrap().to_owned()), w.view().into_dyn(), AFFINE_STEP);
            check_gradient(grads.input.view().into_dyn(), by_x.view(), 1e-7, 1e-6).map_err(TestCaseError::fail)?;
            check_gradient(grads.weight.view().into_dyn(), by_w.view(), 1e-7, 1e-6).map_err(TestCaseError::fail)?;
            let f = fast::conv3d_backward(x.view(), w.view(), go.view(), p).unwrap();
            let size = naive::conv3d_backward(x.mapv(f64::abs).view(), w.mapv(f64::abs).view(), go.mapv(f64::abs).view(), p).unwrap();
            agree("fast ∂L/∂x", &f.input, &grads.input, &size.input, RTOL_F64)?;
            agree("fast ∂L/∂w", &f.weight, &grads.weight, &size.weight, RTOL_F64)?;
            agree("fast ∂L/∂b", &f.bias, &grads.bias, &size.bias, RTOL_F64)?;
        }

        #[test]
        fn unfold_and_fold_backward_are_the_derivatives(
            (n, c, h, w, kh, kw) in (1usize..3, 1usize..3, 1usize..7, 1usize..7, 1usize..4, 1usize..4),
            (s, pad, d, seed) in (1usize..3, 0usize..2, 1usize..3, 0usize..100),
        ) {
            let p = Conv2dParams::default().stride(s).padding(pad).dilation(d);
            let x: Array4<f64> = values(ndarray::Dim([n, c, h, w]), seed);
            let Ok(cols) = unfold(x.view(), [kh, kw], p) else { return Ok(()) };
            let gc: Array3<f64> = values(cols.raw_dim(), seed + 1);
            let dx = unfold_backward(gc.view(), [h, w], [kh, kw], p).unwrap();
            let by_x = numerical_gradient(|v| (unfold(v.into_dimensionality::<Ix4>().unwrap(), [kh, kw], p).unwrap() * &gc).sum(), x.view().into_dyn(), AFFINE_STEP);
            check_gradient(dx.view().into_dyn(), by_x.view(), 1e-7, 1e-6).map_err(TestCaseError::fail)?;
            let gx: Array4<f64> = values(x.raw_dim(), seed + 2);
            let dcols = fold_backward(gx.view(), [kh, kw], p).unwrap();
            let by_cols = numerical_gradient(|v| (fold(v.into_dimensionality::<Ix3>().unwrap(), [h, w], [kh, kw], p).unwrap() * &gx).sum(), cols.view().into_dyn(), AFFINE_STEP);
            check_gradient(dcols.view().into_dyn(), by_cols.view(), 1e-7, 1e-6).map_err(TestCaseError::fail)?;
        }
    }
}

/// Calls the direct backward covers: stride 1, column dilation 1, padding up to `(k − 1)·d`,
/// at least 8 input and output channels per group — and now and then a row stride of 2, which
/// it declines. Up to 5 images and 47 input channels, so that the input gradient (a forward
/// with the input channels as outputs) also takes the wide tiles that skip the padding.
fn direct_case() -> impl Strategy<Value = Case> {
    conv_case_in(
        [1..6, 1..3, 8..48, 8..70],
        [1..5, 1..5, 1..9, 1..22],
        [1..3, 1..2],
        [1..3, 1..2],
    )
}

proptest! {
    #![proptest_config(cases(48))]

    /// The direct backward (AVX-512, f32) equals the naive one wherever it runs, and so does
    /// `fast::conv2d_backward`, which takes it when it can.
    #[test]
    fn conv2d_backward_direct_equals_naive(case in direct_case()) {
        let (x, w, _, g, p, layout) = &case;
        let cast = |a: &Array4<f64>| a.mapv(|v| v as f32);
        let (xt, wt, gt) = (cast(x), cast(w), cast(g));
        let back = |a: &Array4<f32>| a.mapv(|v| v as f64);
        let (x, w, g) = (back(&xt), back(&wt), back(&gt));
        let expected = naive::conv2d_backward(x.view(), w.view(), g.view(), *p).unwrap();
        let abs = |a: &Array4<f64>| a.mapv(f64::abs);
        let size = naive::conv2d_backward(abs(&x).view(), abs(&w).view(), abs(&g).view(), *p).unwrap();
        let (xs, ws, gs) = (Stored::new(&xt, *layout), Stored::new(&wt, *layout), Stored::new(&gt, *layout));
        // Kept buffers of NaN the size of ∂L/∂x, one for each call: ∂L/∂x is a forward
        // convolution, which writes every element of the buffer it takes.
        for _ in 0..2 {
            convlab::buffers::recycle(Array4::from_elem(x.dim(), f32::NAN));
        }
        let direct = convlab::conv2d::direct::conv2d_backward(xs.view(), ws.view(), gs.view(), *p).unwrap();
        let ((n, c_in, h, wd), (c_out, cpg, kh, kw)) = (x.dim(), w.dim());
        let geo = convlab::shape::ConvGeometry::new((n, c_in, [h, wd]), (c_out, cpg, [kh, kw]), None, *p).unwrap();
        let fits = (0..2).all(|a| geo.pads[a].left.max(geo.pads[a].right) <= (geo.kernel[a] - 1) * geo.dilation[a]);
        let applies = convlab::conv2d::direct::is_available() && geo.stride == [1, 1] && fits;
        prop_assert_eq!(direct.is_some(), applies);
        let fast = fast::conv2d_backward(xs.view(), ws.view(), gs.view(), *p).unwrap();
        for (name, got) in direct.into_iter().map(|d| ("direct", d)).chain([("fast", fast)]) {
            agree(&format!("{name} ∂L/∂input"), &got.input, &expected.input, &size.input, RTOL_F32)?;
            agree(&format!("{name} ∂L/∂weight"), &got.weight, &expected.weight, &size.weight, RTOL_F32)?;
            agree(&format!("{name} ∂L/∂bias"), &got.bias, &expected.bias, &size.bias, RTOL_F32)?;
        }
    }
}
