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
    (
        (1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (1usize..4, 1usize..4, 1usize..7, 1usize..7),
        (1usize..3, 1usize..3, 1usize..3, 1usize..3),
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

fn fast_equals_naive<T: Scalar>(case: &Case, rtol: f64) -> Result<(), TestCaseError> {
    let (x, w, _, g, p, layout) = case;
    let cast = |a: &Array4<f64>| a.mapv(|v| T::from(v).unwrap());
    let (x, w, g) = (cast(x), cast(w), cast(g));
    let expected = naive::conv2d_backward(x.view(), w.view(), g.view(), *p).unwrap();
    let (xs, ws, gs) = (
        Stored::new(&x, *layout),
        Stored::new(&w, *layout),
        Stored::new(&g, *layout),
    );
    for engine in engines() {
        let got = fast::conv2d_backward_with(engine, xs.view(), ws.view(), gs.view(), *p).unwrap();
        for (name, a, e) in [
            ("input", to_f64(&got.input), to_f64(&expected.input)),
            ("weight", to_f64(&got.weight), to_f64(&expected.weight)),
            ("bias", to_f64(&got.bias), to_f64(&expected.bias)),
        ] {
            if let Some(m) = mismatch(&a, &e, rtol) {
                return Err(TestCaseError::fail(format!("{engine:?} ∂L/∂{name}: {m}")));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The hand-derived conv2d gradients equal central differences of the forward, for the
    /// input, the weight and the bias.
    #[test]
    fn conv2d_backward_is_the_derivative(case in conv_case()) {
        let (x, w, b, g, p, _) = &case;
        let grads = naive::conv2d_backward(x.view(), w.view(), g.view(), *p).unwrap();
        let eps = 1e-6;
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
