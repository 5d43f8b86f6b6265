//! Chapters 3–4: conv2d, conv3d, unfold/fold and SciPy's convolve2d/correlate2d, against PyTorch
//! and SciPy fixtures, naive against fast with every GEMM engine, and the course's worked examples.

mod common;

use common::*;
use convlab::conv2d::fast::DEFAULT_ENGINE;
use convlab::conv2d::{fast, naive};
use convlab::gemm::{Engine, Isa, Scalar};
use convlab::im2col::{fold, unfold};
use convlab::shape::{Conv2dParams, Conv3dParams, ConvGeometry, ConvNdParams, Mode, Padding};
use ndarray::{
    Array, Array1, Array2, Array4, ArrayView, ArrayView1, ArrayView2, Dimension, Ix4, IxDyn, array,
};
use proptest::prelude::*;
use serde::Deserialize;
use std::ops::Range;

fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::MatrixMultiply, Engine::Naive];
    engines.extend(Isa::available().into_iter().map(Engine::Blocked));
    engines
}

// ---------------------------------------------------------------- PyTorch conv2d / conv3d

#[derive(Deserialize)]
struct ConvFile {
    cases: Vec<ConvCase>,
    errors: Vec<ConvCase>,
}

#[derive(Deserialize)]
struct ConvCase {
    x: Vec<f64>,
    x_shape: Vec<usize>,
    w: Vec<f64>,
    w_shape: Vec<usize>,
    b: Option<Vec<f64>>,
    strides: Vec<usize>,
    paddings: Vec<PaddingSpec>,
    pads: Vec<[usize; 2]>,
    dilations: Vec<usize>,
    groups: usize,
    #[serde(default)]
    y: Vec<f64>,
    #[serde(default)]
    y_shape: Vec<usize>,
    #[serde(default)]
    grad_out: Vec<f64>,
    #[serde(default)]
    grad_x: Vec<f64>,
    #[serde(default)]
    grad_w: Vec<f64>,
    #[serde(default)]
    grad_b: Option<Vec<f64>>,
}

/// Input, weight and optional bias of a case.
type Tensors<T, D> = (Array<T, D>, Array<T, D>, Option<Array1<T>>);

impl ConvCase {
    fn params<const D: usize>(&self) -> ConvNdParams<D> {
        ConvNdParams::default()
            .strides(self.strides.clone().try_into().unwrap())
            .paddings(
                self.paddings
                    .iter()
                    .map(PaddingSpec::padding)
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap(),
            )
            .dilations(self.dilations.clone().try_into().unwrap())
            .groups(self.groups)
    }

    fn arrays<T: Scalar, D: Dimension>(&self) -> Tensors<T, D> {
        let array = |v: &[f64], shape: &[usize]| {
            Array::from_shape_vec(IxDyn(shape), cast::<T>(v))
                .unwrap()
                .into_dimensionality::<D>()
                .unwrap()
        };
        (
            array(&self.x, &self.x_shape),
            array(&self.w, &self.w_shape),
            self.b.as_ref().map(|b| Array1::from(cast::<T>(b))),
        )
    }
}

/// A convolution entry point: input, weight, bias, parameters.
type ConvFn<T, D, const N: usize> = fn(
    ArrayView<T, D>,
    ArrayView<T, D>,
    Option<ArrayView1<T>>,
    ConvNdParams<N>,
) -> convlab::Result<Array<T, D>>;
/// The same with the GEMM engine first.
type ConvWithFn<T, D, const N: usize> = fn(
    Engine,
    ArrayView<T, D>,
    ArrayView<T, D>,
    Option<ArrayView1<T>>,
    ConvNdParams<N>,
) -> convlab::Result<Array<T, D>>;

/// Every case of `file` through the naive kernel and the fast one with every engine, against
/// PyTorch; every refusal of PyTorch's refused too; the padding each rule resolves to.
fn check_fixtures<T: Scalar, D: Dimension, const N: usize>(
    file: &str,
    min_cases: usize,
    naive: ConvFn<T, D, N>,
    fast_with: ConvWithFn<T, D, N>,
    rtol: f64,
) {
    let file: ConvFile = fixture(file);
    assert!(file.cases.len() >= min_cases && !file.errors.is_empty());
    for (i, case) in file.cases.iter().enumerate() {
        let (x, w, b) = case.arrays::<T, D>();
        let p: ConvNdParams<N> = case.params();
        let b = b.as_ref().map(|b| b.view());
        let y = naive(x.view(), w.view(), b, p).unwrap();
        assert_eq!(y.shape(), case.y_shape.as_slice(), "case {i}");
        assert_close(
            y.as_slice().unwrap(),
            &case.y,
            rtol,
            &format!("case {i} naive {p:?}"),
        );
        for engine in engines() {
            let y = fast_with(engine, x.view(), w.view(), b, p).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &case.y,
                rtol,
                &format!("case {i} {engine:?} {p:?}"),
            );
        }
        let spatial = |s: &[usize]| -> [usize; N] { s[2..].try_into().unwrap() };
        let (xs, ws) = (&case.x_shape, &case.w_shape);
        let geo = ConvGeometry::new(
            (xs[0], xs[1], spatial(xs)),
            (ws[0], ws[1], spatial(ws)),
            None,
            p,
        )
        .unwrap();
        let pads: Vec<[usize; 2]> = geo.pads.iter().map(|p| [p.left, p.right]).collect();
        assert_eq!(pads, case.pads, "case {i}");
    }
    for case in &file.errors {
        let (x, w, b) = case.arrays::<T, D>();
        let p: ConvNdParams<N> = case.params();
        let b = b.as_ref().map(|b| b.view());
        assert!(naive(x.view(), w.view(), b, p).is_err(), "{p:?}");
        assert!(
            fast_with(DEFAULT_ENGINE, x.view(), w.view(), b, p).is_err(),
            "{p:?}"
        );
    }
}

#[test]
fn conv2d_matches_pytorch_f64() {
    check_fixtures(
        "conv2d.json",
        100,
        naive::conv2d::<f64>,
        fast::conv2d_with::<f64>,
        RTOL_F64,
    );
}

#[test]
fn conv2d_matches_pytorch_f32() {
    check_fixtures(
        "conv2d.json",
        100,
        naive::conv2d::<f32>,
        fast::conv2d_with::<f32>,
        RTOL_F32,
    );
}

#[test]
fn conv3d_matches_pytorch_f64() {
    check_fixtures(
        "conv3d.json",
        30,
        naive::conv3d::<f64>,
        fast::conv3d_with::<f64>,
        RTOL_F64,
    );
}

#[test]
fn conv3d_matches_pytorch_f32() {
    check_fixtures(
        "conv3d.json",
        30,
        naive::conv3d::<f32>,
        fast::conv3d_with::<f32>,
        RTOL_F32,
    );
}

/// Input, weight and bias gradients of a backward pass, flattened.
type GradVecs = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Every case's backward through `backward` against PyTorch autograd's gradients of
/// `L = Σ y·G`.
fn check_backward_fixtures<const N: usize>(
    file: &str,
    backward: impl Fn(&ConvCase, ConvNdParams<N>) -> GradVecs,
) {
    let file: ConvFile = fixture(file);
    for (i, case) in file.cases.iter().enumerate() {
        let p: ConvNdParams<N> = case.params();
        let (gx, gw, gb) = backward(case, p);
        assert_close(
            &gx,
            &case.grad_x,
            RTOL_F64,
            &format!("case {i} ∂L/∂x {p:?}"),
        );
        assert_close(
            &gw,
            &case.grad_w,
            RTOL_F64,
            &format!("case {i} ∂L/∂w {p:?}"),
        );
        if let Some(expected) = &case.grad_b {
            assert_close(&gb, expected, RTOL_F64, &format!("case {i} ∂L/∂b {p:?}"));
        }
    }
}

#[test]
fn conv2d_backward_matches_pytorch_autograd() {
    for fast_kernel in [false, true] {
        check_backward_fixtures::<2>("conv2d.json", |case, p| {
            let (x, w, _) = case.arrays::<f64, ndarray::Ix4>();
            let g = Array::from_shape_vec(IxDyn(&case.y_shape), case.grad_out.clone())
                .unwrap()
                .into_dimensionality::<ndarray::Ix4>()
                .unwrap();
            let grads = if fast_kernel {
                fast::conv2d_backward(x.view(), w.view(), g.view(), p).unwrap()
            } else {
                naive::conv2d_backward(x.view(), w.view(), g.view(), p).unwrap()
            };
            (
                to_f64(&grads.input),
                to_f64(&grads.weight),
                to_f64(&grads.bias),
            )
        });
    }
}

#[test]
fn conv3d_backward_matches_pytorch_autograd() {
    for fast_kernel in [false, true] {
        check_backward_fixtures::<3>("conv3d.json", |case, p| {
            let (x, w, _) = case.arrays::<f64, ndarray::Ix5>();
            let g = Array::from_shape_vec(IxDyn(&case.y_shape), case.grad_out.clone())
                .unwrap()
                .into_dimensionality::<ndarray::Ix5>()
                .unwrap();
            let grads = if fast_kernel {
                fast::conv3d_backward(x.view(), w.view(), g.view(), p).unwrap()
            } else {
                naive::conv3d_backward(x.view(), w.view(), g.view(), p).unwrap()
            };
            (
                to_f64(&grads.input),
                to_f64(&grads.weight),
                to_f64(&grads.bias),
            )
        });
    }
}

#[test]
fn wrong_shapes_say_what_was_expected() {
    let x = Array4::<f32>::zeros((2, 4, 6, 6));
    let p = Conv2dParams::default();
    let msg = |w: Array4<f32>, b: Option<Array1<f32>>, p: Conv2dParams| {
        fast::conv2d(x.view(), w.view(), b.as_ref().map(|b| b.view()), p)
            .unwrap_err()
            .to_string()
    };
    let m = msg(Array4::zeros((3, 4, 3, 3)), None, p.groups(2));
    assert!(m.contains("groups = 2") && m.contains("C_out = 3"), "{m}");
    let m = msg(Array4::zeros((4, 3, 3, 3)), None, p);
    assert!(
        m.contains("expects input with 3 channels") && m.contains("has 4"),
        "{m}"
    );
    let m = msg(Array4::zeros((4, 4, 3, 3)), Some(Array1::zeros(3)), p);
    assert!(m.contains("bias has 3 elements, expected C_out = 4"), "{m}");
    let m = msg(Array4::zeros((4, 4, 7, 3)), None, p);
    assert!(
        m.contains("spans 7 elements, but the padded input has only 6"),
        "{m}"
    );
}

// ---------------------------------------------------------------- unfold / fold

#[derive(Deserialize)]
struct UnfoldFile {
    cases: Vec<UnfoldCase>,
}

#[derive(Deserialize)]
struct UnfoldCase {
    x: Vec<f64>,
    x_shape: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    unfold: Vec<f64>,
    unfold_shape: [usize; 3],
    cols: Vec<f64>,
    fold: Vec<f64>,
}

#[test]
fn unfold_and_fold_match_pytorch() {
    let file: UnfoldFile = fixture("unfold.json");
    for (i, c) in file.cases.iter().enumerate() {
        let p = Conv2dParams::default()
            .strides(c.stride)
            .paddings(c.padding.map(Padding::Explicit))
            .dilations(c.dilation);
        let x = Array4::from_shape_vec(c.x_shape, c.x.clone()).unwrap();
        let cols = unfold(x.view(), c.kernel, p).unwrap();
        assert_eq!(cols.shape(), c.unfold_shape, "case {i}");
        assert_close(
            cols.as_slice().unwrap(),
            &c.unfold,
            RTOL_F64,
            &format!("unfold {i}"),
        );
        let y = ndarray::Array3::from_shape_vec(c.unfold_shape, c.cols.clone()).unwrap();
        let [_, _, h, w] = c.x_shape;
        let folded = fold(y.view(), [h, w], c.kernel, p).unwrap();
        assert_close(
            folded.as_slice().unwrap(),
            &c.fold,
            RTOL_F64,
            &format!("fold {i}"),
        );
    }
}

#[test]
fn fold_refuses_columns_that_do_not_fit() {
    let cols = ndarray::Array3::<f64>::zeros((1, 10, 16));
    let p = Conv2dParams::default();
    let m = fold(cols.view(), [6, 6], [3, 3], p)
        .unwrap_err()
        .to_string();
    assert!(m.contains("multiple of kH·kW = 9"), "{m}");
    let cols = ndarray::Array3::<f64>::zeros((1, 9, 15));
    let m = fold(cols.view(), [6, 6], [3, 3], p)
        .unwrap_err()
        .to_string();
    assert!(m.contains("4 × 4 = 16"), "{m}");
}

// ---------------------------------------------------------------- SciPy convolve2d / correlate2d

#[derive(Deserialize)]
struct Signal2dFile {
    cases: Vec<Signal2dCase>,
}

#[derive(Deserialize)]
struct Signal2dCase {
    x: Vec<f64>,
    x_shape: [usize; 2],
    w: Vec<f64>,
    w_shape: [usize; 2],
    mode: String,
    #[serde(default)]
    convolve: Vec<f64>,
    #[serde(default)]
    correlate: Vec<f64>,
    #[serde(default)]
    shape: Vec<usize>,
    #[serde(default)]
    error: Option<String>,
}

fn check_signal2d<T: Scalar>(rtol: f64) {
    let file: Signal2dFile = fixture("signal2d.json");
    for (i, c) in file.cases.iter().enumerate() {
        let x = Array2::from_shape_vec(c.x_shape, cast::<T>(&c.x)).unwrap();
        let w = Array2::from_shape_vec(c.w_shape, cast::<T>(&c.w)).unwrap();
        let mode = match c.mode.as_str() {
            "full" => Mode::Full,
            "same" => Mode::Same,
            _ => Mode::Valid,
        };
        type F<T> =
            fn(ndarray::ArrayView2<T>, ndarray::ArrayView2<T>, Mode) -> convlab::Result<Array2<T>>;
        let pairs: [(&str, F<T>, &[f64]); 4] = [
            ("naive convolve2d", naive::convolve2d::<T>, &c.convolve),
            ("fast convolve2d", fast::convolve2d::<T>, &c.convolve),
            ("naive correlate2d", naive::correlate2d::<T>, &c.correlate),
            ("fast correlate2d", fast::correlate2d::<T>, &c.correlate),
        ];
        for (name, f, expected) in pairs {
            let what = format!("case {i} {name} {:?} * {:?} {mode:?}", c.x_shape, c.w_shape);
            match (&c.error, f(x.view(), w.view(), mode)) {
                (None, Ok(y)) => {
                    assert_eq!(y.shape(), c.shape.as_slice(), "{what}");
                    assert_close(y.as_slice().unwrap(), expected, rtol, &what);
                }
                (Some(_), Err(_)) => {}
                (e, r) => panic!("{what}: SciPy {e:?}, convlab {:?}", r.err()),
            }
        }
    }
}

#[test]
fn signal2d_matches_scipy_f64() {
    check_signal2d::<f64>(RTOL_F64);
}

#[test]
fn signal2d_matches_scipy_f32() {
    check_signal2d::<f32>(RTOL_F32);
}

// ---------------------------------------------------------------- the course's worked examples

/// SciPy's full convolution of the course's 3×3 image with the 2×2 kernel [[1, −1], [−1, 1]].
#[test]
fn scipy_full_convolution_from_the_course() {
    let x = array![
        [255.0, 7.0, 3.0],
        [212.0, 240.0, 4.0],
        [218.0, 216.0, 230.0]
    ];
    let w = array![[1.0, -1.0], [-1.0, 1.0]];
    let expected = array![
        [255.0, -248.0, -4.0, -3.0],
        [-43.0, 276.0, -232.0, -1.0],
        [6.0, -30.0, 250.0, -226.0],
        [-218.0, 2.0, -14.0, 230.0]
    ];
    assert_eq!(
        naive::convolve2d(x.view(), w.view(), Mode::Full).unwrap(),
        expected
    );
    assert_eq!(
        fast::convolve2d(x.view(), w.view(), Mode::Full).unwrap(),
        expected
    );
}

fn course_image() -> Array4<f64> {
    let x = array![
        [7.0, 6.0, 8.0, 5.0, 1.0, 3.0],
        [8.0, 6.0, 5.0, 3.0, 5.0, 5.0],
        [9.0, 1.0, 1.0, 5.0, 3.0, 5.0],
        [4.0, 5.0, 5.0, 9.0, 2.0, 6.0],
        [9.0, 5.0, 3.0, 1.0, 2.0, 2.0],
        [4.0, 4.0, 8.0, 8.0, 9.0, 8.0]
    ];
    x.into_shape_with_order((1, 1, 6, 6)).unwrap()
}

fn course_filters() -> Array4<f64> {
    let w = array![
        [[1.0, 1.0, 0.0], [-1.0, 1.0, -1.0], [0.0, -1.0, -1.0]],
        [[1.0, 1.0, 0.0], [-1.0, 1.0, -1.0], [-1.0, 0.0, -1.0]]
    ];
    w.into_shape_with_order((2, 1, 3, 3)).unwrap()
}

/// The 6×6 image, two 3×3 filters and bias 1 of the course: the 4×4×2 feature maps and the
/// 9×16 `X_col` matrix as printed in the notes, then 2×2 max-pooling (done with unfold, as the
/// notes do), flatten and a linear layer of ones with bias 1: 18.
#[test]
fn the_six_by_six_example() {
    let (x, w) = (course_image(), course_filters());
    let b = array![1.0, 1.0];
    let expected = array![
        [
            [5.0, 5.0, -1.0, -4.0],
            [-4.0, -7.0, -1.0, -6.0],
            [-1.0, -10.0, 6.0, -8.0],
            [-9.0, -8.0, -6.0, -6.0]
        ],
        [
            [-3.0, 5.0, 3.0, -6.0],
            [-3.0, -7.0, 3.0, -13.0],
            [-5.0, -12.0, 4.0, -7.0],
            [-9.0, -4.0, -6.0, -5.0]
        ]
    ]
    .into_shape_with_order((1, 2, 4, 4))
    .unwrap();
    let p = Conv2dParams::default();
    assert_eq!(
        naive::conv2d(x.view(), w.view(), Some(b.view()), p).unwrap(),
        expected
    );
    for engine in engines() {
        let h = fast::conv2d_with(engine, x.view(), w.view(), Some(b.view()), p).unwrap();
        assert_eq!(h, expected, "{engine:?}");
    }

    let x_col = unfold(x.view(), [3, 3], p).unwrap();
    let printed = array![
        [
            7., 6., 8., 5., 8., 6., 5., 3., 9., 1., 1., 5., 4., 5., 5., 9.
        ],
        [
            6., 8., 5., 1., 6., 5., 3., 5., 1., 1., 5., 3., 5., 5., 9., 2.
        ],
        [
            8., 5., 1., 3., 5., 3., 5., 5., 1., 5., 3., 5., 5., 9., 2., 6.
        ],
        [
            8., 6., 5., 3., 9., 1., 1., 5., 4., 5., 5., 9., 9., 5., 3., 1.
        ],
        [
            6., 5., 3., 5., 1., 1., 5., 3., 5., 5., 9., 2., 5., 3., 1., 2.
        ],
        [
            5., 3., 5., 5., 1., 5., 3., 5., 5., 9., 2., 6., 3., 1., 2., 2.
        ],
        [
            9., 1., 1., 5., 4., 5., 5., 9., 9., 5., 3., 1., 4., 4., 8., 8.
        ],
        [
            1., 1., 5., 3., 5., 5., 9., 2., 5., 3., 1., 2., 4., 8., 8., 9.
        ],
        [
            1., 5., 3., 5., 5., 9., 2., 6., 3., 1., 2., 2., 8., 8., 9., 8.
        ]
    ];
    assert_eq!(x_col.index_axis(ndarray::Axis(0), 0), printed);

    // H_col = W_row · X_col + b, reshaped to the feature maps.
    let w_row = w.into_shape_with_order((2, 9)).unwrap();
    let h_col =
        w_row.dot(&x_col.index_axis(ndarray::Axis(0), 0)) + &b.insert_axis(ndarray::Axis(1));
    assert_eq!(h_col.into_shape_with_order((1, 2, 4, 4)).unwrap(), expected);

    // Max-pooling 2×2 with stride 2 through unfold: each column holds one window per channel.
    let windows = unfold(expected.view(), [2, 2], p.stride(2)).unwrap();
    let windows = windows.into_shape_with_order((1, 2, 4, 4)).unwrap();
    let pooled = windows.fold_axis(ndarray::Axis(2), f64::NEG_INFINITY, |&m, &v| m.max(v));
    assert_eq!(
        pooled,
        array![[[5.0, -1.0, -1.0, 6.0], [5.0, 3.0, -4.0, 4.0]]]
    );
    let linear = pooled.sum() * 1.0 + 1.0;
    assert_eq!(linear, 18.0);
}

// ---------------------------------------------------------------- properties

fn conv2d_case() -> impl Strategy<Value = Conv2dCase> {
    conv2d_case_in(
        [1..3, 1..4, 1..3, 1..3],
        [1..6, 1..6, 1..12, 1..12],
        [1..4, 1..3],
    )
}

type Conv2dCase = (
    Array4<f64>,
    Array4<f64>,
    Option<Array1<f64>>,
    Conv2dParams,
    Layout,
);

/// A random conv2d call with batch, groups, input and output channels per group drawn from
/// `counts`, and kernel height and width, input height and width from `sizes`; strides 1 to 3,
/// dilations 1 and 2, any padding rule.
/// Random cases with `counts` = (batch, groups, input and output channels per group), `sizes` =
/// (kernel, input), and `steps` = (strides, dilations) drawn per axis.
fn conv2d_case_in(
    counts: [Range<usize>; 4],
    sizes: [Range<usize>; 4],
    steps: [Range<usize>; 2],
) -> impl Strategy<Value = Conv2dCase> {
    let [n, g, cpg, opg] = counts;
    let [kh, kw, h, w] = sizes;
    let [stride, dilation] = steps;
    (
        (n, g, cpg, opg),
        (kh, kw, h, w),
        (stride.clone(), stride, dilation.clone(), dilation),
        (0usize..7, 0usize..7, any::<bool>(), 0usize..3),
    )
        .prop_flat_map(
            |((n, g, cpg, opg), (kh, kw, h, w), (sh, sw, dh, dw), (ph, pw, bias, layout))| {
                let rule = |p: usize| match p {
                    0 => Padding::Valid,
                    1 => Padding::Same,
                    2 => Padding::KerasSame,
                    3 => Padding::Full,
                    p => Padding::Explicit(p - 4),
                };
                let p = Conv2dParams::default()
                    .strides([sh, sw])
                    .paddings([rule(ph), rule(pw)])
                    .dilations([dh, dw])
                    .groups(g);
                let v = |len| proptest::collection::vec(-1.0f64..1.0, len);
                (
                    v(n * g * cpg * h * w),
                    v(g * opg * cpg * kh * kw),
                    v(g * opg),
                )
                    .prop_map(move |(x, wt, b)| {
                        (
                            Array4::from_shape_vec((n, g * cpg, h, w), x).unwrap(),
                            Array4::from_shape_vec((g * opg, cpg, kh, kw), wt).unwrap(),
                            bias.then(|| Array1::from(b)),
                            p,
                            LAYOUTS[layout],
                        )
                    })
            },
        )
}

fn check_conv2d<T: Scalar>(
    x: &Array4<f64>,
    w: &Array4<f64>,
    b: &Option<Array1<f64>>,
    p: Conv2dParams,
    layout: Layout,
    rtol: f64,
) -> Result<(), TestCaseError> {
    let x = x.mapv(|v| T::from(v).unwrap());
    let w = w.mapv(|v| T::from(v).unwrap());
    let b = b.as_ref().map(|b| b.mapv(|v| T::from(v).unwrap()));
    let b = b.as_ref().map(|b| b.view());
    let (xs, ws) = (Stored::new(&x, layout), Stored::new(&w, layout));
    let expected = naive::conv2d(x.view(), w.view(), b, p);
    prop_assert_eq!(&naive::conv2d(xs.view(), ws.view(), b, p), &expected);
    // The reference in f64 on the same (rounded) values, and the size of each output's terms.
    let f = |a: &Array4<T>| a.mapv(|v| v.to_f64().unwrap());
    let (x64, w64) = (f(&x), f(&w));
    let b64 = b.map(|b| b.mapv(|v| v.to_f64().unwrap()));
    let reference = naive::conv2d(x64.view(), w64.view(), b64.as_ref().map(|b| b.view()), p);
    let b_abs = b64.as_ref().map(|b| b.mapv(f64::abs));
    let size = naive::conv2d(
        x64.mapv(f64::abs).view(),
        w64.mapv(f64::abs).view(),
        b_abs.as_ref().map(|b| b.view()),
        p,
    );
    for engine in engines() {
        let got = fast::conv2d_with(engine, xs.view(), ws.view(), b, p);
        match (&expected, got) {
            (Ok(e), Ok(g)) => {
                prop_assert_eq!(e.shape(), g.shape());
                let (reference, size) = (reference.as_ref().unwrap(), size.as_ref().unwrap());
                agree(&format!("{engine:?} {p:?}"), &g, reference, size, rtol)?;
            }
            (Err(e), Err(g)) => prop_assert_eq!(e, &g),
            (e, g) => prop_assert!(
                false,
                "naive {:?} but {:?} {:?}",
                e.as_ref().err(),
                engine,
                g.err()
            ),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn conv2d_fast_equals_naive((x, w, b, p, layout) in conv2d_case()) {
        check_conv2d::<f64>(&x, &w, &b, p, layout, RTOL_F64)?;
        check_conv2d::<f32>(&x, &w, &b, p, layout, RTOL_F32)?;
    }

    /// The output size is chapter 2's formula on each axis.
    #[test]
    fn conv2d_size_is_the_formula((x, w, b, p, _layout) in conv2d_case()) {
        let (_, _, h, wd) = x.dim();
        let (_, _, kh, kw) = w.dim();
        if let Ok(y) = naive::conv2d(x.view(), w.view(), b.as_ref().map(|b| b.view()), p) {
            prop_assert_eq!(y.dim().2, p.axis(0).output_len(h, kh).unwrap());
            prop_assert_eq!(y.dim().3, p.axis(1).output_len(wd, kw).unwrap());
        } else {
            prop_assert!(p.axis(0).output_len(h, kh).is_err() || p.axis(1).output_len(wd, kw).is_err());
        }
    }

    /// fold is the adjoint of unfold: ⟨unfold(x), y⟩ = ⟨x, fold(y)⟩.
    #[test]
    fn fold_is_the_adjoint_of_unfold(
        (x, w, _b, p, _layout) in conv2d_case(),
        seed in 0usize..1000,
    ) {
        let p = p.groups(1);
        let (_, _, kh, kw) = w.dim();
        let (_, _, h, wd) = x.dim();
        if let Ok(cols) = unfold(x.view(), [kh, kw], p) {
            let y = cols.mapv(|_| 0.0) + &Array1::from_shape_fn(cols.dim().2, |l| ((l * 7 + seed) % 5) as f64 - 2.0);
            let lhs = (&cols * &y).sum();
            let rhs = (&x * &fold(y.view(), [h, wd], [kh, kw], p).unwrap()).sum();
            // Both sides are sums of the same products x·y, grouped differently.
            let size = (cols.mapv(f64::abs) * y.mapv(f64::abs)).sum();
            agree("⟨unfold(x), y⟩ against ⟨x, fold(y)⟩", &ndarray::arr0(rhs), &ndarray::arr0(lhs), &ndarray::arr0(size), RTOL_F64)?;
        }
    }

    /// The fast SciPy-style functions equal the naive ones on any shapes, modes and layouts.
    #[test]
    fn signal2d_fast_equals_naive(
        (h, w, kh, kw, mode, layout) in (1usize..12, 1usize..12, 1usize..7, 1usize..7, 0usize..3, 0usize..3),
        seed in 0usize..1000,
    ) {
        check_signal2d_case([h, w], [kh, kw], [Mode::Full, Mode::Same, Mode::Valid][mode], LAYOUTS[layout], seed)?;
    }
}

/// The fast `convolve2d` / `correlate2d` against the naive ones on an image and kernel made from
/// `seed`, each output judged against the size of its terms (the same call on `|x|` and `|k|`).
fn check_signal2d_case(
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    mode: Mode,
    layout: Layout,
    seed: usize,
) -> Result<(), TestCaseError> {
    let x = Array2::from_shape_fn((h, w), |(i, j)| {
        ((i * 13 + j * 7 + seed) % 17) as f64 / 8.0 - 1.0
    });
    let k = Array2::from_shape_fn((kh, kw), |(i, j)| {
        ((i * 5 + j * 11 + seed) % 7) as f64 / 3.0 - 1.0
    });
    let (xs, ks) = (Stored::new(&x, layout), Stored::new(&k, layout));
    let (x_abs, k_abs) = (x.mapv(f64::abs), k.mapv(f64::abs));
    type F = fn(ArrayView2<f64>, ArrayView2<f64>, Mode) -> convlab::Result<Array2<f64>>;
    let pairs: [(&str, F, F); 2] = [
        (
            "convolve2d",
            naive::convolve2d::<f64>,
            fast::convolve2d::<f64>,
        ),
        (
            "correlate2d",
            naive::correlate2d::<f64>,
            fast::correlate2d::<f64>,
        ),
    ];
    for (name, n, f) in pairs {
        match (n(x.view(), k.view(), mode), f(xs.view(), ks.view(), mode)) {
            (Ok(a), Ok(b)) => {
                let size = n(x_abs.view(), k_abs.view(), mode).unwrap();
                agree(&format!("fast {name} {mode:?}"), &b, &a, &size, RTOL_F64)?;
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a.err(), b.err()),
        }
    }
    Ok(())
}

/// A case the property once failed on: the one output of this 'valid' correlation is exactly 0
/// in exact arithmetic (terms of total size 3.67), and naive and fast round it to ±5.6e-17.
/// Judged against the size of its terms, both are right.
#[test]
fn signal2d_output_that_cancels_to_zero() {
    let (x, k) = (
        Array2::from_shape_fn((3, 5), |(i, j)| {
            ((i * 13 + j * 7 + 290) % 17) as f64 / 8.0 - 1.0
        }),
        Array2::from_shape_fn((3, 5), |(i, j)| {
            ((i * 5 + j * 11 + 290) % 7) as f64 / 3.0 - 1.0
        }),
    );
    // Exact in rational arithmetic: x = a/8 − 1 and k = b/3 − 1 with integers a, b, so
    // 24·Σ x·k = Σ (a − 8)(b − 3) is an integer sum.
    let exact: i64 = x
        .iter()
        .zip(k.iter())
        .map(|(x, k)| {
            ((x + 1.0) * 8.0 - 8.0).round() as i64 * ((k + 1.0) * 3.0 - 3.0).round() as i64
        })
        .sum();
    assert_eq!(exact, 0);
    check_signal2d_case([3, 5], [3, 5], Mode::Valid, Layout::Standard, 290).unwrap();
}

/// conv3d on non-contiguous views, fast against naive (the fixtures cover contiguous ones).
#[test]
fn conv3d_on_views() {
    let x = Array::from_shape_fn((2, 4, 5, 6, 7), |(a, b, c, d, e)| {
        ((a * 7 + b * 5 + c * 3 + d * 2 + e) % 11) as f64 / 5.0 - 1.0
    });
    let w = Array::from_shape_fn((4, 2, 2, 3, 2), |(a, b, c, d, e)| {
        ((a + b * 3 + c * 5 + d + e * 7) % 5) as f64 / 2.0 - 1.0
    });
    let b = array![0.5, -0.25, 1.0, 0.0];
    let p = Conv3dParams::default()
        .strides([2, 1, 3])
        .paddings([Padding::Explicit(1), Padding::Same, Padding::KerasSame])
        .dilations([1, 2, 1])
        .groups(2);
    for layout in LAYOUTS {
        let (xs, ws) = (Stored::new(&x, layout), Stored::new(&w, layout));
        let e = naive::conv3d(x.view(), w.view(), Some(b.view()), p).unwrap();
        for engine in engines() {
            let g = fast::conv3d_with(engine, xs.view(), ws.view(), Some(b.view()), p).unwrap();
            assert_close(
                g.as_slice().unwrap(),
                &to_f64(&e),
                RTOL_F64,
                &format!("{layout:?} {engine:?}"),
            );
        }
    }
}

// ------------------------------------------------------- the direct (AVX-512) kernel

/// Calls for both direct kernels: fewer than 64 taps per output (`C_in/g · kH · kW`, windows in
/// the lanes, output rows up to 24 windows wide and up to 70 channels) or more (output channels
/// in the lanes, 1 to 70 of them per group), so that tiles of
/// one to four registers, partly filled registers and several runs of 64 channels all occur;
/// output rows up to 24 windows, so that rows split into several tiles.
/// Up to 6 images: from twice as many images as threads on, the forward takes tiles of 3 or 4
/// registers of channels (48 or 64), whose edge tiles skip the left and right padding.
/// A case's values rounded to f32 (the inputs also stored in `layout`), and the same values in
/// f64 for the reference.
struct Rounded {
    w32: Array4<f32>,
    b32: Option<Array1<f32>>,
    xs: Stored<f32, Ix4>,
    ws: Stored<f32, Ix4>,
    x64: Array4<f64>,
    w64: Array4<f64>,
    b64: Option<Array1<f64>>,
}

impl Rounded {
    fn new(x: &Array4<f64>, w: &Array4<f64>, b: &Option<Array1<f64>>, layout: Layout) -> Rounded {
        let x32 = x.mapv(|v| v as f32);
        let w32 = w.mapv(|v| v as f32);
        let b32 = b.as_ref().map(|b| b.mapv(|v| v as f32));
        let f = |a: &Array4<f32>| a.mapv(|v| v as f64);
        Rounded {
            xs: Stored::new(&x32, layout),
            ws: Stored::new(&w32, layout),
            x64: f(&x32),
            w64: f(&w32),
            b64: b32.as_ref().map(|b| b.mapv(|v| v as f64)),
            w32,
            b32,
        }
    }

    /// The naive convolution of the rounded values, in f64.
    fn reference(&self, p: Conv2dParams) -> convlab::error::Result<Array4<f64>> {
        naive::conv2d(
            self.x64.view(),
            self.w64.view(),
            self.b64.as_ref().map(|b| b.view()),
            p,
        )
    }

    /// The naive convolution of their magnitudes: the size of each output's terms, which the
    /// tolerance scales with.
    fn size(&self, p: Conv2dParams) -> Array4<f64> {
        let b_abs = self.b64.as_ref().map(|b| b.mapv(f64::abs));
        naive::conv2d(
            self.x64.mapv(f64::abs).view(),
            self.w64.mapv(f64::abs).view(),
            b_abs.as_ref().map(|b| b.view()),
            p,
        )
        .unwrap()
    }
}

fn direct_case() -> impl Strategy<Value = Conv2dCase> {
    conv2d_case_in(
        [1..7, 1..3, 1..12, 1..71],
        [1..6, 1..6, 1..10, 1..25],
        [1..4, 1..3],
    )
}

proptest! {
    #![proptest_config(cases(96))]

    /// The direct kernels equal the naive one wherever they run (f32 on AVX-512; with 64 taps or
    /// more, 8 output channels per group or more); elsewhere they decline and `fast::conv2d` takes im2col + GEMM, which equals naive too.
    #[test]
    fn conv2d_direct_equals_naive((x, w, b, p, layout) in direct_case()) {
        let r = Rounded::new(&x, &w, &b, layout);
        let (xs, ws, b32) = (&r.xs, &r.ws, r.b32.as_ref().map(|b| b.view()));
        let reference = r.reference(p);
        // Kept buffers of NaN the size of the output, one for each call below: a kernel that
        // took one for its output and left an element unwritten would show it.
        if let Ok(r) = &reference {
            for _ in 0..2 {
                convlab::buffers::recycle(Array4::from_elem(r.dim(), f32::NAN));
            }
        }
        let direct = convlab::conv2d::direct::conv2d(xs.view(), ws.view(), b32, p);
        let fast = fast::conv2d(xs.view(), ws.view(), b32, p);
        match reference {
            Err(e) => {
                prop_assert_eq!(&direct.unwrap_err(), &e);
                prop_assert_eq!(&fast.unwrap_err(), &e);
            }
            Ok(reference) => {
                let size = r.size(p);
                let direct = direct.unwrap();
                let (c_out, cpg, kh, kw) = r.w32.dim();
                let opg = c_out / p.groups;
                let applies = convlab::conv2d::direct::is_available() && (cpg * kh * kw < 64 || opg >= 8);
                prop_assert_eq!(direct.is_some(), applies);
                if let Some(direct) = direct {
                    agree(&format!("direct {p:?}"), &direct, &reference, &size, RTOL_F32)?;
                }
                agree(&format!("fast {p:?}"), &fast.unwrap(), &reference, &size, RTOL_F32)?;
                // f64 always takes im2col + GEMM.
                let direct64 = convlab::conv2d::direct::conv2d(r.x64.view(), r.w64.view(), r.b64.as_ref().map(|b| b.view()), p);
                prop_assert!(direct64.unwrap().is_none());
            }
        }
    }
}

/// Cases in and around the Winograd route's domain: 3 × 3 and 5 × 5 kernels at stride and
/// dilation 1, 12 to 40 channels, rows of 1 to 69 columns (up to 36 tiles of 2 × 2 or 24 of
/// 3 × 3: rows of up to 8 tiles of 2 × 2 pair up in a register and rows of up to 5 tiles of
/// 3 × 3 go three to a register, longer ones are cut into parts of 8 or 5); and kernels of 2 to
/// 5, strides and dilations of 1 or 2, and groups. Every padding rule.
fn winograd_case() -> impl Strategy<Value = Conv2dCase> {
    let square = |k: usize| {
        conv2d_case_in(
            [1..4, 1..2, 12..41, 12..41],
            [k..k + 1, k..k + 1, 1..18, 1..70],
            [1..2, 1..2],
        )
    };
    square(3)
        .prop_union(square(5))
        .or(conv2d_case_in(
            [1..3, 1..3, 12..33, 12..33],
            [2..6, 2..6, 3..12, 3..12],
            [1..3, 1..3],
        ))
        .boxed()
}

proptest! {
    #![proptest_config(cases(64))]

    /// F(2×2, 3×3) and F(3×3, 5×5) equal the naive convolution wherever they run (f32 on
    /// AVX-512, a 3 × 3 or 5 × 5 kernel at stride 1 and dilation 1, one group, 16 input and
    /// output channels or more), and decline elsewhere; the input gradient, which the backward
    /// pass computes by the same route, and the weight gradient, by the transpose of
    /// F(2×2, r×r), equal naive's.
    #[test]
    fn conv2d_winograd_equals_naive((x, w, b, p, layout) in winograd_case()) {
        let r = Rounded::new(&x, &w, &b, layout);
        let (xs, ws, b32) = (&r.xs, &r.ws, r.b32.as_ref().map(|b| b.view()));
        let (x64, w64) = (&r.x64, &r.w64);
        let Ok(reference) = r.reference(p) else {
            prop_assert!(convlab::conv2d::winograd::conv2d(xs.view(), ws.view(), b32, p).is_err());
            return Ok(());
        };
        // A kept buffer of NaN the size of the output: an output left unwritten would show.
        convlab::buffers::recycle(Array4::from_elem(reference.dim(), f32::NAN));
        let winograd = convlab::conv2d::winograd::conv2d(xs.view(), ws.view(), b32, p).unwrap();
        let size = r.size(p);
        let (c_out, c_in, kh, kw) = r.w32.dim();
        // Both routes: one group, a square 3 × 3 or 5 × 5 kernel at stride and dilation 1, 16
        // channels or more in and out.
        let shapes = convlab::conv2d::direct::is_available()
            && p.groups == 1
            && kh == kw
            && [3, 5].contains(&kh)
            && p.strides == [1, 1]
            && p.dilations == [1, 1]
            && c_in >= 16
            && c_out >= 16;
        prop_assert_eq!(winograd.is_some(), shapes);
        if let Some(winograd) = winograd {
            agree(&format!("winograd {p:?}"), &winograd, &reference, &size, RTOL_F32)?;
        }
        // The backward pass: ∂L/∂x and ∂L/∂w against f64 naive, for an upstream gradient that
        // differs at every position of a 2 × 2 tile and between channels (eighths, exact in f32).
        let g = Array4::from_shape_fn(reference.dim(), |(n, o, i, j)| {
            ((n * 7 + o * 5 + i * 3 + j * 11) % 17) as f64 / 8.0 - 1.0
        });
        let expected = naive::conv2d_backward(x64.view(), w64.view(), g.view(), p).unwrap();
        let g_size = naive::conv2d_backward(x64.mapv(f64::abs).view(), w64.mapv(f64::abs).view(), g.mapv(f64::abs).view(), p).unwrap();
        let grads = fast::conv2d_backward(xs.view(), ws.view(), g.mapv(|v| v as f32).view(), p).unwrap();
        agree(&format!("∂L/∂x {p:?}"), &grads.input, &expected.input, &g_size.input, RTOL_F32)?;
        agree(&format!("∂L/∂w {p:?}"), &grads.weight, &expected.weight, &g_size.weight, RTOL_F32)?;
        // The weight gradient's route also needs every tap to meet the input at 4 outputs or
        // more along each axis, and at least half as many as the tap that meets it most.
        let geo = ConvGeometry::conv2d(x.dim(), w.dim(), None, p).unwrap();
        let even = |axis: usize| {
            let (pad, len, out) = (geo.pads[axis].left, geo.input[axis], geo.output[axis]);
            let meets: Vec<usize> = (0..geo.kernel[axis])
                .map(|k| (0..out).filter(|&i| i + k >= pad && i + k < pad + len).count())
                .collect();
            let (least, most) = (*meets.iter().min().unwrap(), *meets.iter().max().unwrap());
            least >= 4 && 2 * least >= most
        };
        let applies_w = shapes && even(0) && even(1);
        let g32 = g.mapv(|v| v as f32);
        let weight = convlab::conv2d::winograd::conv2d_weight_grad(xs.view(), ws.view(), g32.view(), p).unwrap();
        prop_assert_eq!(weight.is_some(), applies_w);
        if let Some(weight) = weight {
            agree(&format!("winograd ∂L/∂w {p:?}"), &weight, &expected.weight, &g_size.weight, RTOL_F32)?;
        }
    }
}

/// A value that is not finite sends the call back to the direct kernels, which keep the
/// formula's semantics: an infinite input reaches only the outputs whose windows hold it
/// (F(2×2, 3×3) would spread it over its tile's neighbours).
/// A row of 944 windows of a 1 × 63 kernel at stride 1: shifted copies of the image, one per
/// kernel column, would take 9.5 MB, past the limit, so the row tiles read the padded rows
/// instead; either way they equal naive, in a standard and a permuted layout.
#[test]
fn direct_row_tiles_past_the_copies_limit_equal_naive() {
    let x = Array4::from_shape_fn((2, 1, 40, 1000), |(n, _, i, j)| {
        ((n * 7 + i * 3 + j * 5) % 11) as f64 / 11.0 - 0.5
    });
    let w = Array4::from_shape_fn((5, 1, 1, 63), |(o, _, _, j)| {
        ((o * 5 + j * 3) % 7) as f64 / 7.0 - 0.4
    });
    let b = Some(Array1::from_shape_fn(5, |o| o as f64 / 10.0));
    let p = Conv2dParams::default().paddings([Padding::Explicit(0), Padding::Explicit(3)]);
    for layout in [LAYOUTS[0], LAYOUTS[2]] {
        let r = Rounded::new(&x, &w, &b, layout);
        let (reference, size) = (r.reference(p).unwrap(), r.size(p));
        let b32 = r.b32.as_ref().map(|b| b.view());
        let direct = convlab::conv2d::direct::conv2d(r.xs.view(), r.ws.view(), b32, p).unwrap();
        assert_eq!(direct.is_some(), convlab::conv2d::direct::is_available());
        if let Some(direct) = direct {
            agree("direct", &direct, &reference, &size, RTOL_F32).unwrap();
        }
        let fast = fast::conv2d(r.xs.view(), r.ws.view(), b32, p).unwrap();
        agree("fast", &fast, &reference, &size, RTOL_F32).unwrap();
    }
}

#[test]
fn winograd_leaves_values_that_are_not_finite_to_the_direct_kernels() {
    let mut x = Array4::from_shape_fn((1, 16, 8, 8), |(_, c, i, j)| {
        ((c + i * 3 + j * 5) % 7) as f32 / 7.0 - 0.5
    });
    let w = Array4::from_shape_fn((16, 16, 3, 3), |(o, c, i, j)| {
        ((o * 5 + c + i + j * 2) % 5) as f32 / 5.0 - 0.4
    });
    let p = Conv2dParams::default().padding(1);
    if convlab::conv2d::direct::is_available() {
        assert!(
            convlab::conv2d::winograd::conv2d(x.view(), w.view(), None, p)
                .unwrap()
                .is_some()
        );
    }
    x[[0, 3, 4, 4]] = f32::INFINITY;
    assert!(
        convlab::conv2d::winograd::conv2d(x.view(), w.view(), None, p)
            .unwrap()
            .is_none()
    );
    let y = fast::conv2d(x.view(), w.view(), None, p).unwrap();
    let reference = naive::conv2d(x.view(), w.view(), None, p).unwrap();
    for (a, r) in y.iter().zip(&reference) {
        assert!(a.is_finite() == r.is_finite() && (!r.is_finite() || a.is_nan() == r.is_nan()));
    }
}
