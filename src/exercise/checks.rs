//! One checker per exercise: its cases (the chapter's worked examples first, then seeded random
//! ones and inputs the reference refuses), its reference kernel, and how its outputs compare.

use ndarray::{
    Array1, Array2, Array3, Array4, ArrayD, ArrayView1, ArrayView2, ArrayView4, ArrayViewD, array,
    s,
};

use super::cases::{Draw, input};
use super::{Case, Parts, Report, mistakes, run, scalar};
use crate::activation::softmax;
use crate::conv1d::naive as conv1d;
use crate::conv2d::naive::{self as conv2d_naive, Conv2dGrads};
use crate::error::Result;
use crate::im2col;
use crate::loss::{self, LossOptions, LossOutput, Reduction, Target};
use crate::pool::naive as pool;
use crate::shape::{self, Conv2dParams, Mode, Padding, Pads, Pool2dParams, SignalParams};

/// `convolve(x, w, params)`: chapter 1's signal convolution.
pub type ConvolveFn = fn(ArrayView1<f64>, ArrayView1<f64>, SignalParams) -> Result<Array1<f64>>;
/// `conv_output_len(n, kernel, stride, pads, dilation)`: chapter 2's output-size formula.
pub type ConvOutputLenFn = fn(usize, usize, usize, Pads, usize) -> Result<usize>;
/// `conv2d(x, w, b, params)`: chapter 3's convolution layer.
pub type Conv2dFn = fn(
    ArrayView4<f64>,
    ArrayView4<f64>,
    Option<ArrayView1<f64>>,
    Conv2dParams,
) -> Result<Array4<f64>>;
/// `unfold(x, kernel, params)`: chapter 4's im2col.
pub type UnfoldFn = fn(ArrayView4<f64>, [usize; 2], Conv2dParams) -> Result<Array3<f64>>;
/// `max_pool2d_with_indices(x, params)`: chapter 5's max pooling.
pub type MaxPoolFn = fn(ArrayView4<f64>, Pool2dParams) -> Result<(Array4<f64>, Array4<usize>)>;
/// `avg_pool2d(x, params)`: chapter 5's average pooling.
pub type AvgPoolFn = fn(ArrayView4<f64>, Pool2dParams) -> Result<Array4<f64>>;
/// `softmax(x, axis)` on a matrix: chapter 6.
pub type SoftmaxFn = fn(ArrayView2<f64>, usize) -> Result<Array2<f64>>;
/// `cross_entropy(logits, target, options)`: chapter 7.
pub type CrossEntropyFn =
    fn(ArrayViewD<f64>, Target<f64>, &LossOptions<f64>) -> Result<LossOutput<f64>>;
/// `conv2d_backward(x, w, grad_out, params)`: chapter 8.
pub type Conv2dBackwardFn =
    fn(ArrayView4<f64>, ArrayView4<f64>, ArrayView4<f64>, Conv2dParams) -> Result<Conv2dGrads<f64>>;
/// `max_pool2d_backward(grad_out, indices, input_size)`: chapter 8.
pub type MaxPoolBackwardFn =
    fn(ArrayView4<f64>, ArrayView4<usize>, [usize; 2]) -> Result<Array4<f64>>;

/// Random cases per exercise, besides the worked examples and refused inputs.
const RANDOM_CASES: usize = 40;

fn output(a: ArrayD<f64>) -> Parts {
    vec![("output", a)]
}

fn indices<D: ndarray::Dimension>(a: ndarray::Array<usize, D>) -> ArrayD<f64> {
    a.mapv(|v| v as f64).into_dyn()
}

// ---------------------------------------------------------------------------------------------
// Chapter 1: convolve

pub(crate) struct ConvolveIn {
    x: Array1<f64>,
    w: Array1<f64>,
    params: SignalParams,
}

fn convolve_case(
    x: Array1<f64>,
    w: Array1<f64>,
    params: SignalParams,
    what: &str,
) -> Case<ConvolveIn> {
    let description = format!(
        "{what}mode {:?}, stride {}, dilation {}{}{}",
        params.mode,
        params.stride,
        params.dilation,
        input("x", &x),
        input("w", &w)
    );
    Case {
        description,
        input: ConvolveIn { x, w, params },
    }
}

fn convolve_cases() -> Vec<Case<ConvolveIn>> {
    let mut cases = Vec::new();
    for mode in [Mode::Full, Mode::Same, Mode::Valid] {
        cases.push(convolve_case(
            array![1.0, 2.0, 3.0],
            array![0.0, 1.0, 0.5],
            mode.into(),
            "chapter 1's example, ",
        ));
    }
    cases.push(convolve_case(
        array![1.0, 2.0],
        array![1.0, 2.0, 3.0, 4.0],
        Mode::Same.into(),
        "kernel longer than the signal, ",
    ));
    let mut draw = Draw::new(1);
    for _ in 0..RANDOM_CASES {
        let (n, m) = (draw.int(1..=9), draw.int(1..=5));
        let mode = [Mode::Full, Mode::Same, Mode::Valid][draw.int(0..=2)];
        let stride = if draw.chance(0.4) { draw.int(2..=3) } else { 1 };
        let dilation = if draw.chance(0.3) { 2 } else { 1 };
        let params = mode.stride(stride).dilation(dilation);
        cases.push(convolve_case(draw.values(n), draw.values(m), params, ""));
    }
    cases.push(convolve_case(
        array![1.0, 2.0, 3.0],
        array![1.0, 1.0],
        Mode::Full.stride(0),
        "stride 0 (must be refused), ",
    ));
    cases.push(convolve_case(
        Array1::zeros(0),
        array![1.0, 1.0],
        Mode::Full.into(),
        "an empty signal (must be refused), ",
    ));
    cases
}

type ConvolveDyn<'a> =
    &'a dyn Fn(ArrayView1<f64>, ArrayView1<f64>, SignalParams) -> Result<Array1<f64>>;

fn apply_convolve(f: ConvolveDyn, c: &ConvolveIn) -> Result<Parts> {
    Ok(output(f(c.x.view(), c.w.view(), c.params)?.into_dyn()))
}

/// Check a student's `convolve` (full, same and valid; stride and dilation) against
/// [`conv1d::naive::convolve`](crate::conv1d::naive::convolve).
pub fn check_convolve(
    student: impl Fn(ArrayView1<f64>, ArrayView1<f64>, SignalParams) -> Result<Array1<f64>>,
) -> Report {
    fn reference(x: ArrayView1<f64>, w: ArrayView1<f64>, p: SignalParams) -> Result<Array1<f64>> {
        conv1d::convolve(x, w, p)
    }
    run(
        "convolve",
        1,
        &convolve_cases(),
        |c| apply_convolve(&reference, c),
        |c| apply_convolve(&student, c),
        &mistakes::convolve(),
        |m, c| apply_convolve(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 2: the output size

pub(crate) struct OutputLenIn {
    n: usize,
    kernel: usize,
    stride: usize,
    pads: Pads,
    dilation: usize,
}

fn output_len_case(
    n: usize,
    kernel: usize,
    stride: usize,
    pads: Pads,
    dilation: usize,
    what: &str,
) -> Case<OutputLenIn> {
    Case {
        description: format!(
            "{what}n = {n}, kernel {kernel}, stride {stride}, padding {} left and {} right, \
             dilation {dilation}",
            pads.left, pads.right
        ),
        input: OutputLenIn {
            n,
            kernel,
            stride,
            pads,
            dilation,
        },
    }
}

fn output_len_cases() -> Vec<Case<OutputLenIn>> {
    let both = |p| Pads { left: p, right: p };
    let mut cases = vec![
        output_len_case(
            28,
            5,
            1,
            both(0),
            1,
            "the course CNN's first layer, no padding: ",
        ),
        output_len_case(28, 5, 1, both(2), 1, "the course CNN's first layer: "),
        output_len_case(28, 2, 2, both(0), 1, "the course CNN's pooling: "),
        output_len_case(7, 3, 2, both(1), 1, ""),
        output_len_case(6, 3, 1, both(0), 1, "chapter 3's 6×6 image: "),
    ];
    let mut draw = Draw::new(2);
    for _ in 0..RANDOM_CASES {
        let kernel = draw.int(1..=5);
        let dilation = draw.int(1..=3);
        let pads = Pads {
            left: draw.int(0..=3),
            right: draw.int(0..=3),
        };
        let span = dilation * (kernel - 1) + 1;
        let n = draw.int(span.saturating_sub(pads.total()).max(1)..=span + 12);
        cases.push(output_len_case(
            n,
            kernel,
            draw.int(1..=4),
            pads,
            dilation,
            "",
        ));
    }
    cases.push(output_len_case(
        4,
        3,
        0,
        both(0),
        1,
        "stride 0 (must be refused): ",
    ));
    cases.push(output_len_case(
        4,
        0,
        1,
        both(0),
        1,
        "kernel 0 (must be refused): ",
    ));
    cases.push(output_len_case(
        4,
        3,
        1,
        both(0),
        3,
        "a dilated kernel longer than the input (must be refused): ",
    ));
    cases.push(output_len_case(
        2,
        5,
        1,
        both(1),
        1,
        "a kernel longer than the padded input (must be refused): ",
    ));
    cases
}

fn apply_output_len(
    f: &dyn Fn(usize, usize, usize, Pads, usize) -> Result<usize>,
    c: &OutputLenIn,
) -> Result<Parts> {
    let len = f(c.n, c.kernel, c.stride, c.pads, c.dilation)?;
    Ok(vec![("L_out", scalar(len as f64))])
}

/// Check a student's output-size formula against [`shape::conv_output_len`].
pub fn check_conv_output_len(
    student: impl Fn(usize, usize, usize, Pads, usize) -> Result<usize>,
) -> Report {
    run(
        "conv_output_len",
        2,
        &output_len_cases(),
        |c| apply_output_len(&shape::conv_output_len, c),
        |c| apply_output_len(&student, c),
        &mistakes::conv_output_len(),
        |m, c| apply_output_len(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 3: conv2d

pub(crate) struct Conv2dIn {
    x: Array4<f64>,
    /// Read `x` through a view with every other column (a non-contiguous input).
    strided: bool,
    w: Array4<f64>,
    b: Option<Array1<f64>>,
    params: Conv2dParams,
}

impl Conv2dIn {
    fn x(&self) -> ArrayView4<'_, f64> {
        if self.strided {
            self.x.slice(s![.., .., .., ..;2])
        } else {
            self.x.view()
        }
    }

    fn describe(&self, what: &str) -> String {
        let x = self.x().to_owned();
        let mut text = format!(
            "{what}x {:?}, w {:?}, {}, stride {:?}, padding {:?}, dilation {:?}, groups {}{}",
            x.shape(),
            self.w.shape(),
            if self.b.is_some() { "bias" } else { "no bias" },
            self.params.strides,
            self.params.paddings,
            self.params.dilations,
            self.params.groups,
            if self.strided {
                " (x is a view of every other column of a wider array)"
            } else {
                ""
            },
        );
        text += &input("x", &x);
        text += &input("w", &self.w);
        if let Some(b) = &self.b {
            text += &input("b", b);
        }
        text
    }
}

/// The course's 6×6 image and its two 3×3 filters, bias 1 (chapter 3).
fn course_image() -> (Array4<f64>, Array4<f64>) {
    let x = array![
        [7., 6., 8., 5., 1., 3.],
        [8., 6., 5., 3., 5., 5.],
        [9., 1., 1., 5., 3., 5.],
        [4., 5., 5., 9., 2., 6.],
        [9., 5., 3., 1., 2., 2.],
        [4., 4., 8., 8., 9., 8.]
    ]
    .into_shape_with_order((1, 1, 6, 6))
    .expect("36 values");
    let w = array![
        [[1., 1., 0.], [-1., 1., -1.], [0., -1., -1.]],
        [[1., 1., 0.], [-1., 1., -1.], [-1., 0., -1.]]
    ]
    .into_shape_with_order((2, 1, 3, 3))
    .expect("18 values");
    (x, w)
}

/// Random convolution geometry: channels, groups, an input big enough for the kernel.
fn conv_draw(
    draw: &mut Draw,
    groups_allowed: bool,
) -> (Array4<f64>, bool, Array4<f64>, Conv2dParams) {
    let groups = if groups_allowed && draw.chance(0.2) {
        2
    } else {
        1
    };
    let (n, c_in_g, c_out_g) = (draw.int(1..=2), draw.int(1..=3), draw.int(1..=2));
    let kernel = [draw.int(1..=4), draw.int(1..=4)];
    let stride = [draw.int(1..=3), draw.int(1..=2)];
    let dilation = [
        if draw.chance(0.3) { 2 } else { 1 },
        if draw.chance(0.3) { 2 } else { 1 },
    ];
    let padding = if stride == [1, 1] && draw.chance(0.2) {
        [Padding::Same; 2]
    } else {
        [
            Padding::Explicit(draw.int(0..=2)),
            Padding::Explicit(draw.int(0..=2)),
        ]
    };
    let size: Vec<usize> = (0..2)
        .map(|i| {
            let span = dilation[i] * (kernel[i] - 1) + 1;
            let pad = match padding[i] {
                Padding::Explicit(p) => 2 * p,
                _ => span - 1,
            };
            draw.int(span.saturating_sub(pad).max(1)..=span + 5)
        })
        .collect();
    let strided = draw.chance(0.25);
    let width = if strided { 2 * size[1] - 1 } else { size[1] };
    let x = draw.values((n, c_in_g * groups, size[0], width));
    let w = draw.values((c_out_g * groups, c_in_g, kernel[0], kernel[1]));
    let params = Conv2dParams::default()
        .strides(stride)
        .paddings(padding)
        .dilations(dilation)
        .groups(groups);
    (x, strided, w, params)
}

fn conv2d_cases() -> Vec<Case<Conv2dIn>> {
    let mut cases = Vec::new();
    let mut push = |c: Conv2dIn, what: &str| {
        cases.push(Case {
            description: c.describe(what),
            input: c,
        })
    };
    let (x, w) = course_image();
    push(
        Conv2dIn {
            x: x.clone(),
            strided: false,
            w: w.clone(),
            b: Some(array![1., 1.]),
            params: Conv2dParams::default(),
        },
        "chapter 3's 6×6 image, two 3×3 filters, bias 1: ",
    );
    push(
        Conv2dIn {
            x,
            strided: false,
            w,
            b: Some(array![1., 1.]),
            params: Conv2dParams::default().stride(2).padding(1),
        },
        "the same with stride 2 and padding 1: ",
    );
    let mut draw = Draw::new(3);
    for _ in 0..RANDOM_CASES {
        let (x, strided, w, params) = conv_draw(&mut draw, true);
        let b = draw.chance(0.7).then(|| draw.values(w.dim().0));
        push(
            Conv2dIn {
                x,
                strided,
                w,
                b,
                params,
            },
            "",
        );
    }
    push(
        Conv2dIn {
            x: draw.small((1, 1, 3, 3)),
            strided: false,
            w: draw.small((1, 1, 5, 5)),
            b: None,
            params: Conv2dParams::default(),
        },
        "a kernel larger than the image (must be refused): ",
    );
    push(
        Conv2dIn {
            x: draw.small((1, 2, 4, 4)),
            strided: false,
            w: draw.small((1, 3, 3, 3)),
            b: None,
            params: Conv2dParams::default(),
        },
        "weights for 3 input channels on an image with 2 (must be refused): ",
    );
    cases
}

type Conv2dDyn<'a> = &'a dyn Fn(
    ArrayView4<f64>,
    ArrayView4<f64>,
    Option<ArrayView1<f64>>,
    Conv2dParams,
) -> Result<Array4<f64>>;

fn apply_conv2d(f: Conv2dDyn, c: &Conv2dIn) -> Result<Parts> {
    let b = c.b.as_ref().map(|b| b.view());
    Ok(output(f(c.x(), c.w.view(), b, c.params)?.into_dyn()))
}

/// Check a student's `conv2d` (stride, padding, dilation, groups, bias, non-contiguous input)
/// against [`conv2d::naive::conv2d`](crate::conv2d::naive::conv2d).
pub fn check_conv2d(
    student: impl Fn(
        ArrayView4<f64>,
        ArrayView4<f64>,
        Option<ArrayView1<f64>>,
        Conv2dParams,
    ) -> Result<Array4<f64>>,
) -> Report {
    run(
        "conv2d",
        3,
        &conv2d_cases(),
        |c| apply_conv2d(&conv2d_naive::conv2d, c),
        |c| apply_conv2d(&student, c),
        &mistakes::conv2d(),
        |m, c| apply_conv2d(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 4: unfold

pub(crate) struct UnfoldIn {
    x: Array4<f64>,
    kernel: [usize; 2],
    params: Conv2dParams,
}

fn unfold_cases() -> Vec<Case<UnfoldIn>> {
    let mut cases = Vec::new();
    let mut push = |x: Array4<f64>, kernel: [usize; 2], params: Conv2dParams, what: &str| {
        cases.push(Case {
            description: format!(
                "{what}x {:?}, kernel {kernel:?}, stride {:?}, padding {:?}, dilation {:?}{}",
                x.shape(),
                params.strides,
                params.paddings,
                params.dilations,
                input("x", &x)
            ),
            input: UnfoldIn { x, kernel, params },
        })
    };
    let (x, _) = course_image();
    push(
        x,
        [3, 3],
        Conv2dParams::default(),
        "chapter 4's 6×6 image, 3×3 windows: ",
    );
    let mut draw = Draw::new(4);
    for _ in 0..RANDOM_CASES {
        let (x, _, w, params) = conv_draw(&mut draw, false);
        let (_, _, kh, kw) = w.dim();
        push(x, [kh, kw], params, "");
    }
    push(
        draw.small((1, 1, 2, 2)),
        [3, 3],
        Conv2dParams::default(),
        "windows larger than the image (must be refused): ",
    );
    cases
}

type UnfoldDyn<'a> = &'a dyn Fn(ArrayView4<f64>, [usize; 2], Conv2dParams) -> Result<Array3<f64>>;

fn apply_unfold(f: UnfoldDyn, c: &UnfoldIn) -> Result<Parts> {
    Ok(output(f(c.x.view(), c.kernel, c.params)?.into_dyn()))
}

/// Check a student's `unfold` (im2col) against [`im2col::unfold`].
pub fn check_unfold(
    student: impl Fn(ArrayView4<f64>, [usize; 2], Conv2dParams) -> Result<Array3<f64>>,
) -> Report {
    run(
        "unfold",
        4,
        &unfold_cases(),
        |c| apply_unfold(&im2col::unfold, c),
        |c| apply_unfold(&student, c),
        &mistakes::unfold(),
        |m, c| apply_unfold(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 5: pooling

pub(crate) struct PoolIn {
    x: Array4<f64>,
    params: Pool2dParams,
}

fn pool_case(x: Array4<f64>, params: Pool2dParams, what: &str) -> Case<PoolIn> {
    Case {
        description: format!(
            "{what}x {:?}, kernel {:?}, stride {}, padding {:?}, dilation {:?}, ceil_mode {}, \
             count_include_pad {}, divisor_override {:?}{}",
            x.shape(),
            params.kernel,
            params
                .strides
                .map_or("= kernel (default)".to_string(), |s| format!("{s:?}")),
            params.paddings,
            params.dilations,
            params.ceil_mode,
            params.count_include_pad,
            params.divisor_override,
            input("x", &x)
        ),
        input: PoolIn { x, params },
    }
}

fn pool_cases(max: bool) -> Vec<Case<PoolIn>> {
    let feature_map = array![
        [5., 5., -1., -4.],
        [-4., -7., -1., -6.],
        [-1., -10., 6., -8.],
        [-9., -8., -6., -6.]
    ]
    .into_shape_with_order((1, 1, 4, 4))
    .expect("16 values");
    let mut cases = vec![pool_case(
        feature_map,
        Pool2dParams::new([2, 2]),
        "chapter 5's feature map, 2×2 windows: ",
    )];
    if max {
        let ties = array![[1., 3., 3.], [3., 0., 2.]]
            .into_shape_with_order((1, 1, 2, 3))
            .expect("6 values");
        cases.push(pool_case(
            ties,
            Pool2dParams::new([2, 2]).stride(1),
            "chapter 5's ties: ",
        ));
    }
    let mut draw = Draw::new(if max { 5 } else { 6 });
    for _ in 0..RANDOM_CASES {
        let kernel = [draw.int(1..=3), draw.int(1..=3)];
        let mut params = Pool2dParams::new(kernel);
        if draw.chance(0.5) {
            params = params.strides([draw.int(1..=3), draw.int(1..=2)]);
        }
        if draw.chance(0.4) {
            params = params.paddings([
                Padding::Explicit(draw.int(0..=kernel[0] / 2)),
                Padding::Explicit(draw.int(0..=kernel[1] / 2)),
            ]);
        }
        if max && draw.chance(0.25) {
            params = params.dilation(2);
        }
        if draw.chance(0.25) {
            params = params.ceil_mode(true);
        }
        if !max && draw.chance(0.3) {
            params = params.count_include_pad(false);
        }
        if !max && draw.chance(0.1) {
            params = params.divisor_override(draw.int(1..=5));
        }
        let span = |i: usize| params.dilations[i] * (kernel[i] - 1) + 1;
        let shape = (
            draw.int(1..=2),
            draw.int(1..=2),
            draw.int(span(0)..=span(0) + 5),
            draw.int(span(1)..=span(1) + 5),
        );
        let x = draw.values(shape);
        cases.push(pool_case(x, params, ""));
    }
    cases.push(pool_case(
        draw.small((1, 1, 2, 2)),
        Pool2dParams::new([3, 3]),
        "a window larger than the image (must be refused): ",
    ));
    cases.push(pool_case(
        draw.small((1, 1, 4, 4)),
        Pool2dParams::new([2, 2]).padding(2),
        "padding more than half the window (must be refused): ",
    ));
    cases
}

type MaxPoolDyn<'a> =
    &'a dyn Fn(ArrayView4<f64>, Pool2dParams) -> Result<(Array4<f64>, Array4<usize>)>;

fn apply_max_pool(f: MaxPoolDyn, c: &PoolIn) -> Result<Parts> {
    let (y, at) = f(c.x.view(), c.params)?;
    Ok(vec![("output", y.into_dyn()), ("indices", indices(at))])
}

/// Check a student's `max_pool2d_with_indices` (values and PyTorch's indices `h·W + w`, ties to
/// the first maximum) against [`pool::naive::max_pool2d_with_indices`](crate::pool::naive::max_pool2d_with_indices).
pub fn check_max_pool2d_with_indices(
    student: impl Fn(ArrayView4<f64>, Pool2dParams) -> Result<(Array4<f64>, Array4<usize>)>,
) -> Report {
    run(
        "max_pool2d_with_indices",
        5,
        &pool_cases(true),
        |c| apply_max_pool(&pool::max_pool2d_with_indices, c),
        |c| apply_max_pool(&student, c),
        &mistakes::max_pool2d_with_indices(),
        |m, c| apply_max_pool(m, c),
    )
}

type AvgPoolDyn<'a> = &'a dyn Fn(ArrayView4<f64>, Pool2dParams) -> Result<Array4<f64>>;

fn apply_avg_pool(f: AvgPoolDyn, c: &PoolIn) -> Result<Parts> {
    Ok(output(f(c.x.view(), c.params)?.into_dyn()))
}

/// Check a student's `avg_pool2d` (padding, `ceil_mode`, `count_include_pad`,
/// `divisor_override`) against [`pool::naive::avg_pool2d`](crate::pool::naive::avg_pool2d).
pub fn check_avg_pool2d(
    student: impl Fn(ArrayView4<f64>, Pool2dParams) -> Result<Array4<f64>>,
) -> Report {
    run(
        "avg_pool2d",
        5,
        &pool_cases(false),
        |c| apply_avg_pool(&pool::avg_pool2d, c),
        |c| apply_avg_pool(&student, c),
        &mistakes::avg_pool2d(),
        |m, c| apply_avg_pool(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 6: softmax

pub(crate) struct SoftmaxIn {
    x: Array2<f64>,
    axis: usize,
}

fn softmax_cases() -> Vec<Case<SoftmaxIn>> {
    let mut cases = Vec::new();
    let mut push = |x: Array2<f64>, axis: usize, what: &str| {
        cases.push(Case {
            description: format!("{what}x {:?}, axis {axis}{}", x.shape(), input("x", &x)),
            input: SoftmaxIn { x, axis },
        })
    };
    push(array![[1.5, 0.8, 2.1]], 1, "chapter 6's logits: ");
    push(
        array![[1000.0, -1000.0, 0.0], [710.0, 709.0, 708.0]],
        1,
        "logits too large for e^x: ",
    );
    let mut draw = Draw::new(7);
    for _ in 0..RANDOM_CASES {
        let shape = (draw.int(1..=4), draw.int(1..=5));
        let x = draw.values(shape) * 3.0;
        let axis = if draw.chance(0.7) { 1 } else { 0 };
        push(x, axis, "");
    }
    push(
        array![[1.0, 2.0]],
        2,
        "axis 2 of a matrix (must be refused): ",
    );
    cases
}

type SoftmaxDyn<'a> = &'a dyn Fn(ArrayView2<f64>, usize) -> Result<Array2<f64>>;

fn apply_softmax(f: SoftmaxDyn, c: &SoftmaxIn) -> Result<Parts> {
    Ok(output(f(c.x.view(), c.axis)?.into_dyn()))
}

/// Check a student's `softmax` of a matrix along an axis against [`crate::activation::softmax`].
pub fn check_softmax(student: impl Fn(ArrayView2<f64>, usize) -> Result<Array2<f64>>) -> Report {
    run(
        "softmax",
        6,
        &softmax_cases(),
        |c| apply_softmax(&|x, axis| softmax(x, axis), c),
        |c| apply_softmax(&student, c),
        &mistakes::softmax(),
        |m, c| apply_softmax(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 7: cross_entropy

pub(crate) struct CrossEntropyIn {
    logits: Array2<f64>,
    target: Array1<i64>,
    reduction: Reduction,
}

fn cross_entropy_cases() -> Vec<Case<CrossEntropyIn>> {
    let mut cases = Vec::new();
    let mut push = |logits: Array2<f64>, target: Array1<i64>, reduction: Reduction, what: &str| {
        cases.push(Case {
            description: format!(
                "{what}logits {:?}, reduction {reduction:?}{}\ntarget {target}",
                logits.shape(),
                input("logits", &logits)
            ),
            input: CrossEntropyIn {
                logits,
                target,
                reduction,
            },
        })
    };
    push(
        array![[1.5, 0.8, 2.1]],
        array![2],
        Reduction::Mean,
        "chapter 7's example (loss 0.5996): ",
    );
    push(
        array![[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]],
        array![1, 1],
        Reduction::Mean,
        "logits too large for e^x: ",
    );
    let mut draw = Draw::new(8);
    for _ in 0..RANDOM_CASES {
        let (n, classes) = (draw.int(1..=5), draw.int(2..=5));
        let logits = draw.values((n, classes)) * 3.0;
        let target = Array1::from_shape_fn(n, |_| draw.int(0..=classes - 1) as i64);
        let reduction = [
            Reduction::Mean,
            Reduction::Mean,
            Reduction::Sum,
            Reduction::None,
        ][draw.int(0..=3)];
        push(logits, target, reduction, "");
    }
    push(
        array![[1.0, 2.0]],
        array![2],
        Reduction::Mean,
        "class 2 of 2 classes (must be refused): ",
    );
    push(
        array![[1.0, 2.0], [0.0, 0.0]],
        array![1],
        Reduction::Mean,
        "one target for two samples (must be refused): ",
    );
    cases
}

type CrossEntropyDyn<'a> =
    &'a dyn Fn(ArrayViewD<f64>, Target<f64>, &LossOptions<f64>) -> Result<LossOutput<f64>>;

fn apply_cross_entropy(f: CrossEntropyDyn, c: &CrossEntropyIn) -> Result<Parts> {
    let target = c.target.view().into_dyn();
    let options = LossOptions::default().reduction(c.reduction);
    let loss = match f(
        c.logits.view().into_dyn(),
        Target::Classes(target),
        &options,
    )? {
        LossOutput::Reduced(v) => scalar(v),
        LossOutput::PerElement(a) => a,
    };
    Ok(vec![("loss", loss)])
}

/// Check a student's `cross_entropy` of logits `(N, C)` and class indices `(N)`, with the
/// reductions mean, sum and none (no class weights, no label smoothing), against
/// [`loss::cross_entropy`].
pub fn check_cross_entropy(
    student: impl Fn(ArrayViewD<f64>, Target<f64>, &LossOptions<f64>) -> Result<LossOutput<f64>>,
) -> Report {
    run(
        "cross_entropy",
        7,
        &cross_entropy_cases(),
        |c| apply_cross_entropy(&loss::cross_entropy, c),
        |c| apply_cross_entropy(&student, c),
        &mistakes::cross_entropy(),
        |m, c| apply_cross_entropy(m, c),
    )
}

// ---------------------------------------------------------------------------------------------
// Chapter 8: backward passes

pub(crate) struct Conv2dBackwardIn {
    forward: Conv2dIn,
    g: Array4<f64>,
}

fn conv2d_backward_cases() -> Vec<Case<Conv2dBackwardIn>> {
    let mut cases = Vec::new();
    let mut draw = Draw::new(9);
    let (x, w) = course_image();
    let mut inputs = vec![(
        Conv2dIn {
            x,
            strided: false,
            w,
            b: None,
            params: Conv2dParams::default(),
        },
        "chapter 3's 6×6 image and filters: ",
    )];
    for _ in 0..RANDOM_CASES {
        let (x, strided, w, params) = conv_draw(&mut draw, true);
        inputs.push((
            Conv2dIn {
                x,
                strided,
                w,
                b: None,
                params,
            },
            "",
        ));
    }
    for (forward, what) in inputs {
        let Ok(y) = conv2d_naive::conv2d(forward.x(), forward.w.view(), None, forward.params)
        else {
            continue;
        };
        let g = draw.values(y.raw_dim());
        let description = forward.describe(what) + &input("grad_out", &g);
        cases.push(Case {
            description,
            input: Conv2dBackwardIn { forward, g },
        });
    }
    let forward = Conv2dIn {
        x: draw.small((1, 1, 4, 4)),
        strided: false,
        w: draw.small((1, 1, 3, 3)),
        b: None,
        params: Conv2dParams::default(),
    };
    let g = draw.small((1, 1, 3, 3));
    cases.push(Case {
        description: forward.describe("grad_out 3×3 where the output is 2×2 (must be refused): ")
            + &input("grad_out", &g),
        input: Conv2dBackwardIn { forward, g },
    });
    cases
}

type Conv2dBackwardDyn<'a> = &'a dyn Fn(
    ArrayView4<f64>,
    ArrayView4<f64>,
    ArrayView4<f64>,
    Conv2dParams,
) -> Result<Conv2dGrads<f64>>;

fn apply_conv2d_backward(f: Conv2dBackwardDyn, c: &Conv2dBackwardIn) -> Result<Parts> {
    let grads = f(
        c.forward.x(),
        c.forward.w.view(),
        c.g.view(),
        c.forward.params,
    )?;
    Ok(vec![
        ("∂L/∂x", grads.input.into_dyn()),
        ("∂L/∂w", grads.weight.into_dyn()),
        ("∂L/∂b", grads.bias.into_dyn()),
    ])
}

/// Check a student's `conv2d_backward` (the three gradients) against
/// [`conv2d::naive::conv2d_backward`](crate::conv2d::naive::conv2d_backward).
pub fn check_conv2d_backward(
    student: impl Fn(
        ArrayView4<f64>,
        ArrayView4<f64>,
        ArrayView4<f64>,
        Conv2dParams,
    ) -> Result<Conv2dGrads<f64>>,
) -> Report {
    run(
        "conv2d_backward",
        8,
        &conv2d_backward_cases(),
        |c| apply_conv2d_backward(&conv2d_naive::conv2d_backward, c),
        |c| apply_conv2d_backward(&student, c),
        &mistakes::conv2d_backward(),
        |m, c| apply_conv2d_backward(m, c),
    )
}

pub(crate) struct MaxPoolBackwardIn {
    g: Array4<f64>,
    at: Array4<usize>,
    size: [usize; 2],
}

fn max_pool_backward_cases() -> Vec<Case<MaxPoolBackwardIn>> {
    let mut cases = Vec::new();
    let mut push = |g: Array4<f64>, at: Array4<usize>, size: [usize; 2], what: &str| {
        cases.push(Case {
            description: format!(
                "{what}input size {size:?}{}\nindices {at}",
                input("grad_out", &g)
            ),
            input: MaxPoolBackwardIn { g, at, size },
        })
    };
    push(
        array![[10., 20.]]
            .into_shape_with_order((1, 1, 1, 2))
            .expect("2 values"),
        array![[1, 7]]
            .into_shape_with_order((1, 1, 1, 2))
            .expect("2 values"),
        [2, 4],
        "chapter 8's example (winners 4 at (0, 1) and 5 at (1, 3)): ",
    );
    for case in pool_cases(true) {
        let PoolIn { x, params } = case.input;
        let Ok((y, at)) = pool::max_pool2d_with_indices(x.view(), params) else {
            continue;
        };
        let (_, _, h, w) = x.dim();
        let g = Draw::new(y.len() as u64).values(y.raw_dim());
        push(
            g,
            at,
            [h, w],
            &format!(
                "max pooling of x {:?} with {:?}: ",
                x.shape(),
                params.kernel
            ),
        );
    }
    push(
        Array4::ones((1, 1, 2, 2)),
        Array4::zeros((1, 1, 2, 3)),
        [4, 4],
        "grad_out and indices of different shapes (must be refused): ",
    );
    cases
}

type MaxPoolBackwardDyn<'a> =
    &'a dyn Fn(ArrayView4<f64>, ArrayView4<usize>, [usize; 2]) -> Result<Array4<f64>>;

fn apply_max_pool_backward(f: MaxPoolBackwardDyn, c: &MaxPoolBackwardIn) -> Result<Parts> {
    Ok(vec![(
        "∂L/∂x",
        f(c.g.view(), c.at.view(), c.size)?.into_dyn(),
    )])
}

/// Check a student's `max_pool2d_backward` against
/// [`pool::naive::max_pool2d_backward`](crate::pool::naive::max_pool2d_backward).
pub fn check_max_pool2d_backward(
    student: impl Fn(ArrayView4<f64>, ArrayView4<usize>, [usize; 2]) -> Result<Array4<f64>>,
) -> Report {
    run(
        "max_pool2d_backward",
        8,
        &max_pool_backward_cases(),
        |c| apply_max_pool_backward(&pool::max_pool2d_backward, c),
        |c| apply_max_pool_backward(&student, c),
        &mistakes::max_pool2d_backward(),
        |m, c| apply_max_pool_backward(m, c),
    )
}
