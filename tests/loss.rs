//! Chapter 7: losses against PyTorch, the course's numbers, stability and refusals.

mod common;

use common::*;
use convlab::activation::{log_softmax, sigmoid};
use convlab::loss::{
    self, LossOptions, LossOutput, Reduction, Target, binary_cross_entropy,
    binary_cross_entropy_with_logits, cross_entropy, nll_loss,
};
use ndarray::{Array1, ArrayD, IxDyn, array};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    logits: Vec<f64>,
    shape: Vec<usize>,
    classes: Vec<i64>,
    probabilities: Vec<f64>,
    weight: Option<Vec<f64>>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: String,
    #[serde(default, deserialize_with = "optional_reals")]
    cross_entropy: Option<Vec<f64>>,
    #[serde(deserialize_with = "reals")]
    cross_entropy_probs: Vec<f64>,
    log_probs: Vec<f64>,
    #[serde(deserialize_with = "reals")]
    nll_loss: Vec<f64>,
    p: Vec<f64>,
    y: Vec<f64>,
    element_weight: Option<Vec<f64>>,
    pos_weight: Option<Vec<f64>>,
    bce: Vec<f64>,
    bce_logits: Vec<f64>,
    upstream: Option<Vec<f64>>,
    binary_upstream: Vec<f64>,
    grad_cross_entropy: Vec<f64>,
    grad_cross_entropy_probs: Vec<f64>,
    grad_nll_loss: Vec<f64>,
    grad_bce: Vec<f64>,
    grad_bce_logits: Vec<f64>,
}

fn values(out: LossOutput<f64>) -> Vec<f64> {
    match out {
        LossOutput::Reduced(v) => vec![v],
        LossOutput::PerElement(a) => a.iter().copied().collect(),
    }
}

#[test]
fn losses_match_pytorch() {
    let file: File = fixture("loss.json");
    for (i, c) in file.cases.iter().enumerate() {
        let arr =
            |v: &[f64], shape: &[usize]| ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap();
        let logits = arr(&c.logits, &c.shape);
        let mut sample_shape = c.shape.clone();
        sample_shape.remove(1);
        let classes = ArrayD::from_shape_vec(IxDyn(&sample_shape), c.classes.clone()).unwrap();
        let weight = c
            .weight
            .as_ref()
            .map(|w| Array1::from(w.clone()).into_dyn());
        let reduction = match c.reduction.as_str() {
            "none" => Reduction::None,
            "sum" => Reduction::Sum,
            _ => Reduction::Mean,
        };
        let mut opts = LossOptions::default()
            .reduction(reduction)
            .ignore_index(c.ignore_index)
            .label_smoothing(c.label_smoothing);
        if let Some(w) = &weight {
            opts = opts.weight(w.view());
        }
        let what = |op: &str| {
            format!(
                "case {i} {op} {:?} {:?} ε={} w={}",
                c.shape,
                reduction,
                c.label_smoothing,
                weight.is_some()
            )
        };
        let ce = cross_entropy(logits.view(), Target::Classes(classes.view()), &opts).unwrap();
        assert_close(
            &values(ce),
            c.cross_entropy.as_ref().unwrap(),
            RTOL_F64,
            &what("cross_entropy"),
        );
        let probs = arr(&c.probabilities, &c.shape);
        let ce = cross_entropy(logits.view(), Target::Probabilities(probs.view()), &opts).unwrap();
        assert_close(
            &values(ce),
            &c.cross_entropy_probs,
            RTOL_F64,
            &what("cross_entropy probs"),
        );
        let log_p = arr(&c.log_probs, &c.shape);
        assert_close(
            log_softmax(logits.view(), 1).unwrap().as_slice().unwrap(),
            &c.log_probs,
            RTOL_F64,
            &what("log_softmax"),
        );
        let nll = nll_loss(log_p.view(), classes.view(), &opts).unwrap();
        assert_close(&values(nll), &c.nll_loss, RTOL_F64, &what("nll_loss"));

        let (p, y) = (arr(&c.p, &c.shape), arr(&c.y, &c.shape));
        let ew = c
            .element_weight
            .as_ref()
            .map(|w| Array1::from(w.clone()).into_dyn());
        let pw = c.pos_weight.as_ref().map(|w| Array1::from(w.clone()));
        let mut bopts = LossOptions::default().reduction(reduction);
        if let Some(w) = &ew {
            bopts = bopts.weight(w.view());
        }
        let bce = binary_cross_entropy(p.view(), y.view(), &bopts).unwrap();
        assert_close(&values(bce), &c.bce, RTOL_F64, &what("bce"));
        if let Some(pw) = &pw {
            bopts = bopts.pos_weight(pw.view());
        }
        let bce = binary_cross_entropy_with_logits(logits.view(), y.view(), &bopts).unwrap();
        assert_close(
            &values(bce),
            &c.bce_logits,
            RTOL_F64,
            &what("bce with logits"),
        );

        // Backward against autograd: the gradient of the loss itself, or of Σ loss·G.
        let up = match &c.upstream {
            Some(u) => LossOutput::PerElement(arr(u, &sample_shape)),
            None => LossOutput::Reduced(1.0),
        };
        let binary_up = match reduction {
            Reduction::None => LossOutput::PerElement(arr(&c.binary_upstream, &c.shape)),
            _ => LossOutput::Reduced(1.0),
        };
        let grad = |g: ArrayD<f64>| g.iter().copied().collect::<Vec<_>>();
        let target = Target::Classes(classes.view());
        let d = loss::cross_entropy_backward(logits.view(), target, &opts, &up).unwrap();
        assert_close(
            &grad(d),
            &c.grad_cross_entropy,
            RTOL_F64,
            &what("∂ cross_entropy"),
        );
        let target = Target::Probabilities(probs.view());
        let d = loss::cross_entropy_backward(logits.view(), target, &opts, &up).unwrap();
        let expected = &c.grad_cross_entropy_probs;
        assert_close(&grad(d), expected, RTOL_F64, &what("∂ cross_entropy probs"));
        let d = loss::nll_loss_backward(log_p.view(), classes.view(), &opts, &up).unwrap();
        assert_close(&grad(d), &c.grad_nll_loss, RTOL_F64, &what("∂ nll_loss"));
        let d = loss::binary_cross_entropy_with_logits_backward(
            logits.view(),
            y.view(),
            &bopts,
            &binary_up,
        )
        .unwrap();
        assert_close(
            &grad(d),
            &c.grad_bce_logits,
            RTOL_F64,
            &what("∂ bce with logits"),
        );
        let mut bopts = LossOptions::default().reduction(reduction);
        if let Some(w) = &ew {
            bopts = bopts.weight(w.view());
        }
        let d =
            loss::binary_cross_entropy_backward(p.view(), y.view(), &bopts, &binary_up).unwrap();
        assert_close(&grad(d), &c.grad_bce, RTOL_F64, &what("∂ bce"));
    }
}

/// The course's examples: BCE of logit 0.8 with target 1 is 0.3711 from probabilities and from
/// the logit; cross-entropy of logits [1.5, 0.8, 2.1] with class 2 is 0.5996, as NLL of the
/// log-softmax too.
#[test]
fn course_numbers() {
    let logit = array![0.8f64].into_dyn();
    let target = array![1.0].into_dyn();
    let opts = LossOptions::default();
    let from_p = binary_cross_entropy(sigmoid(logit.view()).view(), target.view(), &opts).unwrap();
    let from_logit = binary_cross_entropy_with_logits(logit.view(), target.view(), &opts).unwrap();
    for loss in [from_p, from_logit] {
        assert!((loss.reduced().unwrap() - 0.3711).abs() < 5e-5, "{loss:?}");
    }
    let logits = array![[1.5f64, 0.8, 2.1]].into_dyn();
    let class = array![2i64].into_dyn();
    let ce = cross_entropy(logits.view(), Target::Classes(class.view()), &opts).unwrap();
    let log_p = log_softmax(logits.view(), 1).unwrap();
    let nll = nll_loss(log_p.view(), class.view(), &opts).unwrap();
    for loss in [ce, nll] {
        assert!((loss.reduced().unwrap() - 0.5996).abs() < 5e-5, "{loss:?}");
    }
}

#[test]
fn huge_logits_give_finite_losses() {
    let x = array![1e4f32, -1e4, 1e4, -1e4].into_dyn();
    let y = array![1.0f32, 0.0, 0.0, 1.0].into_dyn();
    let per = binary_cross_entropy_with_logits(
        x.view(),
        y.view(),
        &LossOptions::default().reduction(Reduction::None),
    )
    .unwrap();
    assert_eq!(
        per.per_element()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![0.0, 0.0, 1e4, 1e4]
    );
    let logits = array![[1e4f32, -1e4, 0.0]].into_dyn();
    let ce = cross_entropy(
        logits.view(),
        Target::Classes(array![1i64].into_dyn().view()),
        &LossOptions::default(),
    )
    .unwrap();
    assert_eq!(ce.reduced(), Some(2e4));
    // Probabilities of exactly 0 and 1: PyTorch clamps the logarithm at −100.
    let p = array![0.0f64, 1.0].into_dyn();
    let y = array![1.0f64, 0.0].into_dyn();
    let bce = binary_cross_entropy(p.view(), y.view(), &LossOptions::default()).unwrap();
    assert_eq!(bce.reduced(), Some(100.0));
}

#[test]
fn bad_input_is_an_error() {
    let opts = LossOptions::default();
    let p = array![0.5, 1.5].into_dyn();
    let y = array![1.0, 0.0].into_dyn();
    let e = binary_cross_entropy(p.view(), y.view(), &opts).unwrap_err();
    assert!(e.to_string().contains("between 0 and 1"), "{e}");
    let logits = array![[1.0, 2.0, 3.0]].into_dyn();
    let e = cross_entropy(
        logits.view(),
        Target::Classes(array![3i64].into_dyn().view()),
        &opts,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("class index 3 is out of range for 3 classes"),
        "{e}"
    );
    let w = array![1.0, 2.0].into_dyn();
    let e = nll_loss(
        logits.view(),
        array![0i64].into_dyn().view(),
        &LossOptions::default().weight(w.view()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("one value per class (3)"), "{e}");
    let e = cross_entropy(
        logits.view(),
        Target::Classes(array![0i64].into_dyn().view()),
        &LossOptions::default().label_smoothing(1.5),
    )
    .unwrap_err();
    assert!(e.to_string().contains("label_smoothing"), "{e}");
    let y = array![1.0, 0.0, 1.0].into_dyn();
    assert!(binary_cross_entropy_with_logits(logits.view(), y.view(), &opts).is_err());
}
