//! Chapter 2: output sizes, padding rules and receptive fields, against the course's networks,
//! PyTorch fixtures and brute force.

mod common;

use common::{cases, fixture};
use convlab::Error;
use convlab::conv1d::naive;
use convlab::nn::{Architecture, Init, SummaryRow};
use convlab::shape::{
    ConvParams, Field, Mode, Padding, Pads, PoolParams, Window, conv_output_len,
    conv_transpose_output_len, receptive_fields,
};
use ndarray::Array1;
use proptest::prelude::*;
use serde::Deserialize;

/// The summary rows of the layers that change the shape (convolutions, pooling, flatten, dense),
/// as the course's tables list them.
fn trace(a: Architecture) -> Vec<SummaryRow> {
    let summary = a.build::<f32>(Init::PyTorch, 0).unwrap().summary().unwrap();
    summary
        .rows
        .into_iter()
        .filter(|r| {
            !["ReLU", "Softmax", "Sigmoid", "Dropout"]
                .iter()
                .any(|k| r.layer.starts_with(k))
        })
        .collect()
}

fn spatial(a: Architecture) -> Vec<usize> {
    let mut sizes = vec![a.input_shape()[1]];
    for row in trace(a) {
        if row.output.len() == 3 {
            assert_eq!(row.output[1], row.output[2], "square layers stay square");
            sizes.push(row.output[1]);
        }
    }
    sizes
}

fn params(a: Architecture) -> Vec<usize> {
    trace(a).iter().map(|r| r.params).collect()
}

#[test]
fn keras_mnist_convnet() {
    let net = Architecture::KerasMnist;
    assert_eq!(spatial(net), [28, 26, 13, 11, 5, 3]);
    // The course's model.summary(): 320, 18,496, 36,928, then Dense 36,928 and 650.
    assert_eq!(params(net), [320, 0, 18_496, 0, 36_928, 0, 36_928, 650]);
    assert_eq!(params(net).iter().sum::<usize>(), 93_322);
    let trace = trace(net);
    assert_eq!(trace[1].output, [32, 13, 13]); // 5,408 units after the first pooling
    assert_eq!(trace[5].output, [576]);
}

#[test]
fn pytorch_fashion_mnist_cnn() {
    let net = Architecture::FashionMnistCnn;
    assert_eq!(spatial(net), [28, 28, 14, 14, 7]);
    let trace = trace(net);
    assert_eq!(trace[3].output, [64, 7, 7]);
    assert_eq!(trace[4].output, [3136]);
    assert_eq!(params(net).iter().sum::<usize>(), 3_274_634);
}

#[test]
fn keras_cats_vs_dogs_convnet() {
    let net = Architecture::CatsVsDogs;
    assert_eq!(spatial(net), [150, 148, 74, 72, 36, 34, 17, 15, 7]);
    assert_eq!(
        params(net),
        [896, 0, 18_496, 0, 73_856, 0, 147_584, 0, 0, 3_211_776, 513]
    );
    assert_eq!(params(net).iter().sum::<usize>(), 3_453_121);
    assert_eq!(trace(net)[8].output, [6272]);
}

/// The receptive fields derived by hand in chapter 2.
#[test]
fn receptive_fields_of_the_course_networks() {
    let fields = |a: Architecture| -> Vec<(usize, usize)> {
        trace(a)
            .iter()
            .filter_map(|r| r.field.map(|f| (f.size, f.jump)))
            .collect()
    };
    assert_eq!(
        fields(Architecture::FashionMnistCnn),
        [(5, 1), (6, 2), (14, 2), (16, 4)]
    );
    assert_eq!(
        fields(Architecture::KerasMnist),
        [(3, 1), (4, 2), (8, 2), (10, 4), (18, 4)]
    );
}

#[derive(Deserialize)]
struct ShapeFile {
    pool: Vec<PoolCase>,
    conv_transpose: Vec<TransposeCase>,
}

#[derive(Deserialize)]
struct PoolCase {
    n: usize,
    kernel: usize,
    stride: Option<usize>,
    padding: usize,
    dilation: usize,
    ceil_mode: bool,
    out: Option<usize>,
}

#[derive(Deserialize)]
struct TransposeCase {
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    output_padding: usize,
    out: Option<usize>,
}

#[test]
fn pooling_lengths_match_pytorch() {
    let file: ShapeFile = fixture("shape.json");
    let (mut ok, mut refused) = (0, 0);
    for c in &file.pool {
        let mut p = PoolParams::new(c.kernel)
            .padding(c.padding)
            .dilation(c.dilation)
            .ceil_mode(c.ceil_mode);
        p.stride = c.stride;
        let got = p.output_len(c.n).ok();
        assert_eq!(got, c.out, "max_pool1d n={} {p:?}", c.n);
        if got.is_some() { ok += 1 } else { refused += 1 }
    }
    assert!(
        ok > 100 && refused > 100,
        "{ok} accepted, {refused} refused"
    );
}

#[test]
fn transposed_lengths_match_pytorch() {
    let file: ShapeFile = fixture("shape.json");
    for c in &file.conv_transpose {
        let got = conv_transpose_output_len(
            c.n,
            c.kernel,
            c.stride,
            c.padding,
            c.dilation,
            c.output_padding,
        )
        .ok();
        assert_eq!(
            got,
            c.out,
            "conv_transpose1d {:?}",
            (
                c.n,
                c.kernel,
                c.stride,
                c.padding,
                c.dilation,
                c.output_padding
            )
        );
    }
}

/// Ceil mode keeps a last, partial window only if it starts inside the input or the left
/// padding (chapter 2's example: 5 elements, kernel 2, stride 2).
#[test]
fn ceil_mode_examples() {
    let p = PoolParams::new(2).stride(2);
    assert_eq!(p.output_len(5).unwrap(), 2);
    assert_eq!(p.ceil_mode(true).output_len(5).unwrap(), 3);
    // Padding 1: the padded length is 7, ceil((7 − 2)/2) + 1 = 4 windows would start at padded
    // positions 0, 2, 4, 6; the last starts at n + p = 6, in the right padding, so it is dropped.
    let p = PoolParams::new(2).stride(2).padding(1).ceil_mode(true);
    assert_eq!(p.output_len(5).unwrap(), 3);
}

#[test]
fn padding_rules() {
    // PyTorch 'same', even kernel: total d·(k − 1) = 3, one zero left, two right.
    assert_eq!(
        Padding::Same.resolve(10, 4, 1, 1).unwrap(),
        Pads { left: 1, right: 2 }
    );
    // Keras 'same', n = 7, k = 3, s = 2: out = ⌈7/2⌉ = 4, total = (4−1)·2 + 3 − 7 = 2.
    assert_eq!(
        Padding::KerasSame.resolve(7, 3, 2, 1).unwrap(),
        Pads { left: 1, right: 1 }
    );
    // Keras 'same', n = 8, k = 3, s = 2: out = 4, total = 6 + 3 − 8 = 1, on the right.
    assert_eq!(
        Padding::KerasSame.resolve(8, 3, 2, 1).unwrap(),
        Pads { left: 0, right: 1 }
    );
    assert_eq!(
        Padding::Full.resolve(8, 3, 1, 2).unwrap(),
        Pads { left: 4, right: 4 }
    );
    assert!(matches!(
        Padding::Same.resolve(10, 3, 2, 1),
        Err(Error::InvalidParameter {
            name: "padding",
            ..
        })
    ));
}

#[test]
fn invalid_combinations_are_errors() {
    let zero = Pads::default();
    assert!(matches!(
        conv_output_len(10, 3, 0, zero, 1),
        Err(Error::InvalidParameter { name: "stride", .. })
    ));
    assert!(matches!(
        conv_output_len(10, 3, 1, zero, 0),
        Err(Error::InvalidParameter {
            name: "dilation",
            ..
        })
    ));
    assert!(matches!(
        conv_output_len(10, 0, 1, zero, 1),
        Err(Error::InvalidParameter {
            name: "kernel size",
            ..
        })
    ));
    assert_eq!(
        conv_output_len(7, 5, 1, zero, 2),
        Err(Error::KernelTooLarge {
            kernel: 5,
            dilation: 2,
            span: 9,
            padded: 7
        })
    );
    assert_eq!(
        conv_output_len(7, 5, 1, zero, 2).unwrap_err().to_string(),
        "kernel of size 5 with dilation 2 spans 9 elements, but the padded input has only 7"
    );
    let msg = PoolParams::new(3)
        .padding(2)
        .output_len(10)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("padding 2 with kernel 3 (at most 1)"), "{msg}");
    let msg = conv_transpose_output_len(5, 3, 1, 0, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("output_padding"), "{msg}");
}

/// The receptive field of output 0 of a stack, found by brute force: push a unit impulse at
/// each input position through the stack (all-ones kernels, so nothing cancels) and measure the
/// extent from the first to the last position that reaches output 0 (with a stride larger than
/// the kernel, or a dilation, some positions inside it are skipped); also return the first
/// position that reaches output 1.
fn brute_force(layers: &[Window], n: usize) -> (usize, Option<usize>) {
    let reach = |j: usize| -> (bool, bool) {
        let mut y = Array1::<f64>::zeros(n);
        y[j] = 1.0;
        for l in layers {
            let w = Array1::<f64>::ones(l.kernel);
            let params = Mode::Valid.stride(l.stride).dilation(l.dilation);
            y = naive::correlate(y.view(), w.view(), params).unwrap();
        }
        (y[0] > 0.0, y.len() > 1 && y[1] > 0.0)
    };
    let seen: Vec<usize> = (0..n).filter(|&j| reach(j).0).collect();
    let size = seen.last().unwrap() - seen[0] + 1;
    (size, (0..n).find(|&j| reach(j).1))
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn receptive_field_matches_brute_force(
        layers in proptest::collection::vec((1usize..5, 1usize..4, 1usize..3), 1..4)
    ) {
        let layers: Vec<Window> = layers
            .into_iter()
            .map(|(kernel, stride, dilation)| Window { kernel, stride, dilation })
            .collect();
        let fields = receptive_fields(&layers).unwrap();
        let Field { size, jump } = *fields.last().unwrap();
        // An input long enough for two outputs of the last layer.
        let n = size + jump;
        let (brute_size, second_start) = brute_force(&layers, n);
        prop_assert_eq!(brute_size, size);
        prop_assert_eq!(second_start, Some(jump));
    }

    /// 'same' keeps the length (PyTorch, stride 1), Keras 'same' gives ⌈n/s⌉, 'full' n + d(k−1).
    #[test]
    fn padding_rules_give_their_lengths(n in 1usize..60, k in 1usize..8, s in 1usize..5, d in 1usize..4) {
        let p = ConvParams::default().dilation(d);
        prop_assert_eq!(p.padding(Padding::Same).output_len(n, k).unwrap(), n);
        prop_assert_eq!(p.padding(Padding::Full).output_len(n, k).unwrap(), n + d * (k - 1));
        prop_assert_eq!(p.stride(s).padding(Padding::KerasSame).output_len(n, k).unwrap(), n.div_ceil(s));
    }
}
