//! Chapter 1: signal convolution / correlation and the `conv1d` layer, against NumPy and PyTorch
//! fixtures, naive against fast, and the algebra of convolution.

mod common;

use common::*;
use convlab::conv1d::{fast, naive};
use convlab::shape::{Conv1dGeometry, ConvParams, Mode, Padding, SignalOp, SignalParams};
use convlab::{Error, Result};
use ndarray::{Array1, Array3, ArrayView1, ArrayView3, NdFloat};
use proptest::prelude::*;
use serde::Deserialize;

type ConvFn<T> =
    fn(ArrayView3<T>, ArrayView3<T>, Option<ArrayView1<T>>, ConvParams) -> Result<Array3<T>>;
type SignalFn<T> = fn(ArrayView1<T>, ArrayView1<T>, SignalParams) -> Result<Array1<T>>;

fn conv_engines<T: NdFloat>() -> [(&'static str, ConvFn<T>); 2] {
    [("naive", naive::conv1d::<T>), ("fast", fast::conv1d::<T>)]
}

fn signal_engines<T: NdFloat>() -> [(&'static str, SignalFn<T>, SignalFn<T>); 2] {
    [
        ("naive", naive::convolve::<T>, naive::correlate::<T>),
        ("fast", fast::convolve::<T>, fast::correlate::<T>),
    ]
}

// ---------------------------------------------------------------- NumPy signal fixtures

#[derive(Deserialize)]
struct SignalFile {
    cases: Vec<SignalCase>,
}

#[derive(Deserialize)]
struct SignalCase {
    x: Vec<f64>,
    w: Vec<f64>,
    mode: String,
    stride: usize,
    dilation: usize,
    convolve: Vec<f64>,
    correlate: Vec<f64>,
}

fn mode(name: &str) -> Mode {
    match name {
        "full" => Mode::Full,
        "same" => Mode::Same,
        "valid" => Mode::Valid,
        other => panic!("unknown mode {other}"),
    }
}

fn check_signal_fixtures<T: NdFloat>(rtol: f64) {
    let file: SignalFile = fixture("signal.json");
    for (i, case) in file.cases.iter().enumerate() {
        let x = Array1::from(cast::<T>(&case.x));
        let w = Array1::from(cast::<T>(&case.w));
        let params = mode(&case.mode).stride(case.stride).dilation(case.dilation);
        for (name, convolve, correlate) in signal_engines::<T>() {
            let what = |op: &str| {
                format!(
                    "case {i} {name}::{op} n={} m={} {:?}",
                    case.x.len(),
                    case.w.len(),
                    params
                )
            };
            let y = convolve(x.view(), w.view(), params).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &case.convolve,
                rtol,
                &what("convolve"),
            );
            let y = correlate(x.view(), w.view(), params).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &case.correlate,
                rtol,
                &what("correlate"),
            );
        }
    }
}

#[test]
fn signal_matches_numpy_f64() {
    check_signal_fixtures::<f64>(RTOL_F64);
}

#[test]
fn signal_matches_numpy_f32() {
    check_signal_fixtures::<f32>(RTOL_F32);
}

// ---------------------------------------------------------------- PyTorch conv1d fixtures

#[derive(Deserialize)]
struct ConvFile {
    cases: Vec<ConvCase>,
    errors: Vec<ConvError>,
    accepted: Vec<ConvAccepted>,
}

#[derive(Deserialize)]
struct ConvCase {
    x: Vec<f64>,
    x_shape: [usize; 3],
    w: Vec<f64>,
    w_shape: [usize; 3],
    b: Option<Vec<f64>>,
    stride: usize,
    padding: PaddingSpec,
    pads: [usize; 2],
    dilation: usize,
    groups: usize,
    y: Vec<f64>,
    y_shape: [usize; 3],
    grad_out: Vec<f64>,
    grad_x: Vec<f64>,
    grad_w: Vec<f64>,
    grad_b: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct ConvError {
    x_shape: [usize; 3],
    w_shape: [usize; 3],
    #[serde(default)]
    b_len: Option<usize>,
    #[serde(default)]
    b: Option<Vec<f64>>,
    stride: usize,
    padding: PaddingSpec,
    dilation: usize,
    groups: usize,
    error: String,
}

#[derive(Deserialize)]
struct ConvAccepted {
    x_shape: [usize; 3],
    w_shape: [usize; 3],
    b: Vec<f64>,
    y: Vec<f64>,
    y_shape: [usize; 3],
}

fn array3<T: NdFloat>(values: &[f64], shape: [usize; 3]) -> Array3<T> {
    Array3::from_shape_vec(shape, cast(values)).expect("fixture shape matches its data")
}

fn params(stride: usize, padding: &PaddingSpec, dilation: usize, groups: usize) -> ConvParams {
    ConvParams::default()
        .stride(stride)
        .padding(padding.padding())
        .dilation(dilation)
        .groups(groups)
}

fn check_conv_fixtures<T: NdFloat>(rtol: f64) {
    let file: ConvFile = fixture("conv1d.json");
    assert!(file.cases.len() >= 100);
    for (i, case) in file.cases.iter().enumerate() {
        let x = array3::<T>(&case.x, case.x_shape);
        let w = array3::<T>(&case.w, case.w_shape);
        let b = case.b.as_ref().map(|b| Array1::from(cast::<T>(b)));
        let p = params(case.stride, &case.padding, case.dilation, case.groups);
        let ([n, c, l], [o, c_g, k]) = (case.x_shape, case.w_shape);
        let geo = Conv1dGeometry::new((n, c, [l]), (o, c_g, [k]), b.as_ref().map(|b| b.len()), p)
            .unwrap();
        assert_eq!(
            [geo.pads[0].left, geo.pads[0].right],
            case.pads,
            "case {i}: padding {:?}",
            p.padding
        );
        for (name, conv) in conv_engines::<T>() {
            let y = conv(x.view(), w.view(), b.as_ref().map(|b| b.view()), p).unwrap();
            assert_eq!(y.shape(), case.y_shape, "case {i} {name}");
            assert_close(
                y.as_slice().unwrap(),
                &case.y,
                rtol,
                &format!(
                    "case {i} {name} {p:?} x{:?} w{:?}",
                    case.x_shape, case.w_shape
                ),
            );
        }
    }
}

#[test]
fn conv1d_matches_pytorch_f64() {
    check_conv_fixtures::<f64>(RTOL_F64);
}

#[test]
fn conv1d_matches_pytorch_f32() {
    check_conv_fixtures::<f32>(RTOL_F32);
}

/// conv1d's backward, naive and fast, against PyTorch autograd's gradients of `L = Σ y·G`.
#[test]
fn conv1d_backward_matches_pytorch_autograd() {
    let file: ConvFile = fixture("conv1d.json");
    for (i, case) in file.cases.iter().enumerate() {
        let x = array3::<f64>(&case.x, case.x_shape);
        let w = array3::<f64>(&case.w, case.w_shape);
        let g = array3::<f64>(&case.grad_out, case.y_shape);
        let p = params(case.stride, &case.padding, case.dilation, case.groups);
        for grads in [
            naive::conv1d_backward(x.view(), w.view(), g.view(), p).unwrap(),
            fast::conv1d_backward(x.view(), w.view(), g.view(), p).unwrap(),
        ] {
            let what = |of: &str| format!("case {i} ∂L/∂{of} {p:?}");
            assert_close(&to_f64(&grads.input), &case.grad_x, RTOL_F64, &what("x"));
            assert_close(&to_f64(&grads.weight), &case.grad_w, RTOL_F64, &what("w"));
            if let Some(expected) = &case.grad_b {
                assert_close(&to_f64(&grads.bias), expected, RTOL_F64, &what("b"));
            }
        }
    }
}

#[test]
fn conv1d_refuses_what_pytorch_refuses() {
    let file: ConvFile = fixture("conv1d.json");
    assert!(file.errors.len() >= 14);
    for case in &file.errors {
        let x = Array3::<f64>::zeros(case.x_shape);
        let w = Array3::<f64>::zeros(case.w_shape);
        let b_len = case.b_len.or(case.b.as_ref().map(Vec::len));
        let b = b_len.map(Array1::<f64>::zeros);
        let p = params(case.stride, &case.padding, case.dilation, case.groups);
        for (name, conv) in conv_engines::<f64>() {
            let result = conv(x.view(), w.view(), b.as_ref().map(|b| b.view()), p);
            assert!(
                result.is_err(),
                "{name} accepted x{:?} w{:?} {p:?}, which PyTorch refuses: {}",
                case.x_shape,
                case.w_shape,
                case.error
            );
        }
    }
}

#[test]
fn conv1d_accepts_an_empty_batch_like_pytorch() {
    let file: ConvFile = fixture("conv1d.json");
    for case in &file.accepted {
        let x = Array3::<f64>::zeros(case.x_shape);
        let w = Array3::<f64>::zeros(case.w_shape);
        let b = Array1::from(case.b.clone());
        for (name, conv) in conv_engines::<f64>() {
            let y = conv(x.view(), w.view(), Some(b.view()), ConvParams::default()).unwrap();
            assert_eq!(y.shape(), case.y_shape, "{name}");
            assert_close(y.as_slice().unwrap(), &case.y, RTOL_F64, name);
        }
    }
}

/// With no input channels the sum over channels is empty, so every output is its bias. (PyTorch
/// returns an `(N, 0, L_out)` tensor here instead; chapter 1 explains the difference.)
#[test]
fn zero_input_channels_give_the_bias() {
    let x = Array3::<f64>::zeros((2, 0, 5));
    let w = Array3::<f64>::zeros((3, 0, 3));
    let b = ndarray::array![0.5, -1.0, 2.0];
    for (name, conv) in conv_engines::<f64>() {
        let y = conv(x.view(), w.view(), Some(b.view()), ConvParams::default()).unwrap();
        assert_eq!(y.dim(), (2, 3, 3), "{name}");
        for ((_, c, _), &v) in y.indexed_iter() {
            assert_eq!(v, b[c], "{name}");
        }
    }
}

#[test]
fn errors_name_the_numbers() {
    let x = Array3::<f32>::zeros((2, 4, 5));
    let w = Array3::<f32>::zeros((3, 4, 3));
    let e = naive::conv1d(x.view(), w.view(), None, ConvParams::default().dilation(3)).unwrap_err();
    assert_eq!(
        e,
        Error::KernelTooLarge {
            kernel: 3,
            dilation: 3,
            span: 7,
            padded: 5
        }
    );
    let w = Array3::<f32>::zeros((4, 4, 3));
    let msg = fast::conv1d(x.view(), w.view(), None, ConvParams::default().groups(2))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("8 channels") && msg.contains("has 4"), "{msg}");
    let msg = fast::conv1d(
        x.view(),
        w.view(),
        None,
        ConvParams::default().stride(2).padding(Padding::Same),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("stride 2") && msg.contains("'same'"), "{msg}");
}

// ---------------------------------------------------------------- naive == fast

fn conv_case() -> impl Strategy<
    Value = (
        Array3<f64>,
        Array3<f64>,
        Option<Array1<f64>>,
        ConvParams,
        Layout,
    ),
> {
    (
        1usize..4,  // batch
        1usize..4,  // groups
        1usize..4,  // input channels per group
        1usize..4,  // output channels per group
        1usize..8,  // kernel (odd and even)
        1usize..40, // length
        1usize..4,  // stride
        1usize..4,  // dilation
        0usize..7,  // padding choice
        any::<bool>(),
        0usize..3,
    )
        .prop_flat_map(|(n, g, cpg, opg, k, l, s, d, pad, bias, layout)| {
            let padding = match pad {
                0 => Padding::Valid,
                1 => Padding::Same,
                2 => Padding::KerasSame,
                3 => Padding::Full,
                p => Padding::Explicit(p - 4),
            };
            let p = ConvParams::default()
                .stride(s)
                .padding(padding)
                .dilation(d)
                .groups(g);
            let x = proptest::collection::vec(-1.0f64..1.0, n * g * cpg * l);
            let w = proptest::collection::vec(-1.0f64..1.0, g * opg * cpg * k);
            let b = proptest::collection::vec(-1.0f64..1.0, if bias { g * opg } else { 0 });
            (x, w, b).prop_map(move |(x, w, b)| {
                let x = Array3::from_shape_vec((n, g * cpg, l), x).unwrap();
                let w = Array3::from_shape_vec((g * opg, cpg, k), w).unwrap();
                let b = bias.then(|| Array1::from(b));
                (x, w, b, p, LAYOUTS[layout])
            })
        })
}

fn check_naive_equals_fast<T: NdFloat>(
    x: &Array3<f64>,
    w: &Array3<f64>,
    b: &Option<Array1<f64>>,
    p: ConvParams,
    layout: Layout,
    rtol: f64,
) -> std::result::Result<(), TestCaseError> {
    let x = x.mapv(|v| T::from(v).unwrap());
    let w = w.mapv(|v| T::from(v).unwrap());
    let b = b.as_ref().map(|b| b.mapv(|v| T::from(v).unwrap()));
    let (xs, ws) = (Stored::new(&x, layout), Stored::new(&w, layout));
    let expected = naive::conv1d(x.view(), w.view(), b.as_ref().map(|b| b.view()), p);
    let on_layout = naive::conv1d(xs.view(), ws.view(), b.as_ref().map(|b| b.view()), p);
    let got = fast::conv1d(xs.view(), ws.view(), b.as_ref().map(|b| b.view()), p);
    match (expected, on_layout, got) {
        (Ok(e), Ok(v), Ok(g)) => {
            let e = to_f64(&e);
            prop_assert_eq!(to_f64(&v), e.clone(), "naive depends on the layout");
            prop_assert_eq!(
                g.shape(),
                &[x.dim().0, w.dim().0, e.len() / (x.dim().0 * w.dim().0)][..]
            );
            // The reference in f64 on the same (rounded) values, and the size of its terms.
            let f = |a: &Array3<T>| a.mapv(|v| v.to_f64().unwrap());
            let (x64, w64) = (f(&x), f(&w));
            let b64 = b.as_ref().map(|b| b.mapv(|v| v.to_f64().unwrap()));
            let reference =
                naive::conv1d(x64.view(), w64.view(), b64.as_ref().map(|b| b.view()), p).unwrap();
            let b_abs = b64.as_ref().map(|b| b.mapv(f64::abs));
            let size = naive::conv1d(
                x64.mapv(f64::abs).view(),
                w64.mapv(f64::abs).view(),
                b_abs.as_ref().map(|b| b.view()),
                p,
            )
            .unwrap();
            agree("fast conv1d", &g, &reference, &size, rtol)?;
        }
        (Err(e), Err(v), Err(g)) => {
            prop_assert_eq!(&e, &v);
            prop_assert_eq!(e, g);
        }
        (e, v, g) => prop_assert!(
            false,
            "naive {:?} / {:?} but fast {:?}",
            e.err(),
            v.err(),
            g.err()
        ),
    }
    Ok(())
}

fn signal_case() -> impl Strategy<Value = (Array1<f64>, Array1<f64>, SignalParams, Layout)> {
    (
        1usize..300,
        1usize..40,
        0usize..3,
        1usize..5,
        1usize..4,
        0usize..3,
    )
        .prop_flat_map(|(n, m, mode, s, d, layout)| {
            let params = [Mode::Full, Mode::Same, Mode::Valid][mode]
                .stride(s)
                .dilation(d);
            (
                proptest::collection::vec(-1.0f64..1.0, n),
                proptest::collection::vec(-1.0f64..1.0, m),
            )
                .prop_map(move |(x, w)| (Array1::from(x), Array1::from(w), params, LAYOUTS[layout]))
        })
}

fn check_signal_naive_equals_fast<T: NdFloat>(
    x: &Array1<f64>,
    w: &Array1<f64>,
    params: SignalParams,
    layout: Layout,
    rtol: f64,
) -> std::result::Result<(), TestCaseError> {
    let x = x.mapv(|v| T::from(v).unwrap());
    let w = w.mapv(|v| T::from(v).unwrap());
    let (xs, ws) = (Stored::new(&x, layout), Stored::new(&w, layout));
    // (naive, fast, naive in f64 for the reference) for convolve, then correlate.
    let kernels: [(SignalFn<T>, SignalFn<T>, SignalFn<f64>); 2] = [
        (
            naive::convolve::<T>,
            fast::convolve::<T>,
            naive::convolve::<f64>,
        ),
        (
            naive::correlate::<T>,
            fast::correlate::<T>,
            naive::correlate::<f64>,
        ),
    ];
    for (naive_fn, fast_fn, reference_fn) in kernels {
        let e = to_f64(&naive_fn(x.view(), w.view(), params).unwrap());
        prop_assert_eq!(to_f64(&naive_fn(xs.view(), ws.view(), params).unwrap()), e);
        let g = fast_fn(xs.view(), ws.view(), params).unwrap();
        let f = |a: &Array1<T>| a.mapv(|v| v.to_f64().unwrap());
        let (x64, w64) = (f(&x), f(&w));
        let reference = reference_fn(x64.view(), w64.view(), params).unwrap();
        let size =
            reference_fn(x64.mapv(f64::abs).view(), w64.mapv(f64::abs).view(), params).unwrap();
        agree("fast signal", &g, &reference, &size, rtol)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(192))]

    #[test]
    fn conv1d_fast_equals_naive((x, w, b, p, layout) in conv_case()) {
        check_naive_equals_fast::<f64>(&x, &w, &b, p, layout, RTOL_F64)?;
        check_naive_equals_fast::<f32>(&x, &w, &b, p, layout, RTOL_F32)?;
    }

    #[test]
    fn signal_fast_equals_naive((x, w, params, layout) in signal_case()) {
        check_signal_naive_equals_fast::<f64>(&x, &w, params, layout, RTOL_F64)?;
        check_signal_naive_equals_fast::<f32>(&x, &w, params, layout, RTOL_F32)?;
    }

    /// The length conv1d produces is the shape formula's
    /// `⌊(L + p_left + p_right − d·(K − 1) − 1)/s⌋ + 1`, written out here independently.
    #[test]
    fn conv1d_length_is_the_formula((x, w, b, p, _layout) in conv_case()) {
        let (l, k) = (x.dim().2, w.dim().2);
        match naive::conv1d(x.view(), w.view(), b.as_ref().map(|b| b.view()), p) {
            Ok(y) => {
                let pads = p.pads(l, k).unwrap();
                let span = p.dilation * (k - 1) + 1;
                prop_assert_eq!(y.dim().2, (l + pads.left + pads.right - span) / p.stride + 1);
                prop_assert_eq!(y.dim().2, p.output_len(l, k).unwrap());
                match p.padding {
                    Padding::Same => prop_assert_eq!(y.dim().2, l),
                    Padding::KerasSame => prop_assert_eq!(y.dim().2, l.div_ceil(p.stride)),
                    _ => {}
                }
            }
            Err(_) => prop_assert!(p.output_len(l, k).is_err()),
        }
    }

    /// The length convolve/correlate produce is NumPy's for the mode, then every s-th output.
    #[test]
    fn signal_length_is_the_formula((x, w, params, _layout) in signal_case()) {
        let (n, m) = (x.len(), params.dilation * (w.len() - 1) + 1);
        let len = match params.mode {
            Mode::Full => n + m - 1,
            Mode::Same => n.max(m),
            Mode::Valid => n.max(m) - n.min(m) + 1,
        };
        let expected = len.div_ceil(params.stride);
        prop_assert_eq!(naive::convolve(x.view(), w.view(), params).unwrap().len(), expected);
        prop_assert_eq!(naive::correlate(x.view(), w.view(), params).unwrap().len(), expected);
        prop_assert_eq!(params.frame(x.len(), w.len(), SignalOp::Convolve).unwrap().len, expected);
    }

    /// Full convolution is commutative: `x * w = w * x`.
    #[test]
    fn full_convolution_commutes((x, w, _params, _layout) in signal_case()) {
        let xw = fast::convolve(x.view(), w.view(), Mode::Full).unwrap();
        let wx = naive::convolve(w.view(), x.view(), Mode::Full).unwrap();
        let size = naive::convolve(x.mapv(f64::abs).view(), w.mapv(f64::abs).view(), Mode::Full).unwrap();
        agree("x * w against w * x", &xw, &wx, &size, RTOL_F64)?;
    }

    /// Convolution is linear in the signal: `(a·x + c·z) * w = a·(x * w) + c·(z * w)`.
    #[test]
    fn convolution_is_linear(
        (x, w, params, _layout) in signal_case(),
        a in -2.0f64..2.0,
        c in -2.0f64..2.0,
        seed in 0u64..1000,
    ) {
        let z = x.iter().enumerate().map(|(i, _)| (((i as u64 + 1) * (seed + 7)) % 13) as f64 / 6.0 - 1.0).collect::<Array1<f64>>();
        let combined = &x * a + &z * c;
        let lhs = fast::convolve(combined.view(), w.view(), params).unwrap();
        let rhs = fast::convolve(x.view(), w.view(), params).unwrap() * a
            + fast::convolve(z.view(), w.view(), params).unwrap() * c;
        let w_abs = w.mapv(f64::abs);
        let size = naive::convolve(x.mapv(f64::abs).view(), w_abs.view(), params).unwrap() * a.abs()
            + naive::convolve(z.mapv(f64::abs).view(), w_abs.view(), params).unwrap() * c.abs();
        agree("(a·x + c·z) * w", &lhs, &rhs, &size, RTOL_F64)?;
    }

    /// A unit impulse at position j returns the kernel shifted by j: `δ_j * w = w[· − j]`.
    #[test]
    fn impulse_returns_the_kernel(w in proptest::collection::vec(-1.0f64..1.0, 1..20), n in 1usize..20, j in 0usize..20) {
        let j = j % n;
        let mut delta = Array1::<f64>::zeros(n);
        delta[j] = 1.0;
        let w = Array1::from(w);
        for convolve in [naive::convolve::<f64> as SignalFn<f64>, fast::convolve::<f64>] {
            let y = convolve(delta.view(), w.view(), Mode::Full.into()).unwrap();
            let mut expected = vec![0.0; n + w.len() - 1];
            expected[j..j + w.len()].copy_from_slice(w.as_slice().unwrap());
            prop_assert_eq!(y.to_vec(), expected);
        }
    }
}

/// The worked example of chapter 1, derived by hand there.
#[test]
fn chapter_one_hand_example() {
    let x = ndarray::array![1.0, 2.0, 3.0];
    let w = ndarray::array![0.0, 1.0, 0.5];
    for (_, convolve, correlate) in signal_engines::<f64>() {
        let full = convolve(x.view(), w.view(), Mode::Full.into()).unwrap();
        assert_eq!(full.to_vec(), vec![0.0, 1.0, 2.5, 4.0, 1.5]);
        let same = convolve(x.view(), w.view(), Mode::Same.into()).unwrap();
        assert_eq!(same.to_vec(), vec![1.0, 2.5, 4.0]);
        let valid = convolve(x.view(), w.view(), Mode::Valid.into()).unwrap();
        assert_eq!(valid.to_vec(), vec![2.5]);
        let corr = correlate(x.view(), w.view(), Mode::Full.into()).unwrap();
        assert_eq!(corr.to_vec(), vec![0.5, 2.0, 3.5, 3.0, 0.0]);
        let strided = convolve(x.view(), w.view(), Mode::Full.stride(2)).unwrap();
        assert_eq!(strided.to_vec(), vec![0.0, 2.5, 1.5]);
    }
}
