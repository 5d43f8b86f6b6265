//! Chapter 6: activations against PyTorch, including logits of ±1e4 that overflow a careless
//! implementation.

mod common;

use common::*;
use convlab::activation::{leaky_relu, log_softmax, relu, sigmoid, softmax, tanh};
use ndarray::{ArrayD, IxDyn, NdFloat, array};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    x: Vec<f64>,
    shape: Vec<usize>,
    relu: Vec<f64>,
    leaky_relu: Vec<f64>,
    leaky_relu_0_2: Vec<f64>,
    sigmoid: Vec<f64>,
    tanh: Vec<f64>,
    softmax: Vec<Vec<f64>>,
    log_softmax: Vec<Vec<f64>>,
    grad_out: Vec<f64>,
    grad_relu: Vec<f64>,
    grad_leaky_relu: Vec<f64>,
    grad_sigmoid: Vec<f64>,
    grad_tanh: Vec<f64>,
    grad_softmax: Vec<Vec<f64>>,
    grad_log_softmax: Vec<Vec<f64>>,
}

fn check<T: NdFloat>(rtol: f64) {
    let file: File = fixture("activation.json");
    for (i, c) in file.cases.iter().enumerate() {
        let x = ArrayD::from_shape_vec(IxDyn(&c.shape), cast::<T>(&c.x)).unwrap();
        let v = || x.view();
        let what = |op: &str| format!("case {i} {op} {:?}", c.shape);
        let close = |y: ArrayD<T>, e: &[f64], op: &str| {
            assert!(y.iter().all(|v| !v.is_nan()), "{}: NaN", what(op));
            assert_close(y.as_slice().unwrap(), e, rtol, &what(op));
        };
        close(relu(v()), &c.relu, "relu");
        close(
            leaky_relu(v(), T::from(0.01).unwrap()),
            &c.leaky_relu,
            "leaky_relu",
        );
        close(
            leaky_relu(v(), T::from(0.2).unwrap()),
            &c.leaky_relu_0_2,
            "leaky_relu 0.2",
        );
        close(sigmoid(v()), &c.sigmoid, "sigmoid");
        close(tanh(v()), &c.tanh, "tanh");
        for axis in 0..c.shape.len() {
            close(
                softmax(v(), axis).unwrap(),
                &c.softmax[axis],
                &format!("softmax axis {axis}"),
            );
            // log_softmax of a probability near 0 is a large negative number: compare each
            // element against itself, not against the lane's largest magnitude.
            let y = log_softmax(v(), axis).unwrap();
            for (k, (&g, &e)) in y.iter().zip(&c.log_softmax[axis]).enumerate() {
                let g = g.to_f64().unwrap();
                assert!(
                    (g - e).abs() <= rtol * e.abs().max(1.0),
                    "{} [{k}]: {g} vs {e}",
                    what("log_softmax")
                );
            }
        }
    }
}

#[test]
fn activations_match_pytorch_f64() {
    check::<f64>(RTOL_F64);
}

#[test]
fn activations_match_pytorch_f32() {
    check::<f32>(RTOL_F32);
}

/// Every activation's backward against PyTorch autograd's gradients of `Σ f(x)·G`.
#[test]
fn activation_backward_matches_pytorch_autograd() {
    use convlab::activation::{
        leaky_relu_backward, log_softmax_backward, relu_backward, sigmoid_backward,
        softmax_backward, tanh_backward,
    };
    let file: File = fixture("activation.json");
    for (i, c) in file.cases.iter().enumerate() {
        let x = ArrayD::from_shape_vec(IxDyn(&c.shape), c.x.clone()).unwrap();
        let g = ArrayD::from_shape_vec(IxDyn(&c.shape), c.grad_out.clone()).unwrap();
        let what = |op: &str| format!("case {i} ∂{op} {:?}", c.shape);
        let close = |d: ArrayD<f64>, e: &[f64], op: &str| {
            assert_close(d.as_slice().unwrap(), e, RTOL_F64, &what(op))
        };
        close(
            relu_backward(x.view(), g.view()).unwrap(),
            &c.grad_relu,
            "relu",
        );
        close(
            leaky_relu_backward(x.view(), g.view(), 0.01).unwrap(),
            &c.grad_leaky_relu,
            "leaky_relu",
        );
        close(
            sigmoid_backward(sigmoid(x.view()).view(), g.view()).unwrap(),
            &c.grad_sigmoid,
            "sigmoid",
        );
        close(
            tanh_backward(tanh(x.view()).view(), g.view()).unwrap(),
            &c.grad_tanh,
            "tanh",
        );
        for axis in 0..c.shape.len() {
            let y = softmax(x.view(), axis).unwrap();
            close(
                softmax_backward(y.view(), g.view(), axis).unwrap(),
                &c.grad_softmax[axis],
                "softmax",
            );
            let y = log_softmax(x.view(), axis).unwrap();
            close(
                log_softmax_backward(y.view(), g.view(), axis).unwrap(),
                &c.grad_log_softmax[axis],
                "log_softmax",
            );
        }
    }
}

#[test]
fn softmax_of_huge_logits_is_finite_and_exact() {
    let x = array![[1e4f32, -1e4, 0.0], [1e4, 1e4, -1e4]];
    assert_eq!(
        softmax(x.view(), 1).unwrap(),
        array![[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]
    );
    assert_eq!(log_softmax(x.view(), 1).unwrap()[[0, 1]], -2e4);
    assert_eq!(sigmoid(x.view()).row(0).to_vec(), vec![1.0, 0.0, 0.5]);
    assert!(softmax(x.view(), 2).is_err());
}
