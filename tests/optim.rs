//! Chapter 9: the optimizers against `torch.optim` runs in f64 and f32, state saved and resumed
//! bit for bit, refusals, and first steps derived by hand.

mod common;

use std::collections::BTreeMap;

use common::*;
use convlab::Error;
use convlab::gemm::Scalar;
use convlab::nn::Param;
use convlab::nn::optim::{
    Adam, AdamOptions, AdamW, AdamWOptions, Optimizer, RmsProp, RmsPropOptions, Sgd, SgdOptions,
};
use ndarray::{Array, ArrayD, IxDyn, arr0};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct OptimFile {
    generator: String,
    params: Vec<ParamSpec>,
    /// Per step, per parameter, the gradient in row-major order.
    grads: Vec<Vec<Vec<f64>>>,
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct ParamSpec {
    name: String,
    shape: Vec<usize>,
    value: Vec<f64>,
}

#[derive(Deserialize)]
struct Run {
    optimizer: String,
    label: String,
    options: Options,
    /// `(step index, learning rate)`: the rate set before that step.
    lr_changes: Vec<(usize, f64)>,
    /// Per step, per parameter, the values after the step in float64.
    #[serde(rename = "f64")]
    values_f64: Vec<Vec<Vec<f64>>>,
    /// The same run in float32.
    #[serde(rename = "f32")]
    values_f32: Vec<Vec<Vec<f64>>>,
    /// The float64 optimizer's state after the last step, by convlab's names.
    state: BTreeMap<String, Vec<f64>>,
    /// The float32 optimizer's.
    state_f32: BTreeMap<String, Vec<f64>>,
}

/// The options as given to `torch.optim`; absent ones are PyTorch's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    lr: Option<f64>,
    momentum: Option<f64>,
    dampening: Option<f64>,
    nesterov: Option<bool>,
    weight_decay: Option<f64>,
    betas: Option<(f64, f64)>,
    eps: Option<f64>,
    amsgrad: Option<bool>,
    alpha: Option<f64>,
    centered: Option<bool>,
}

impl Run {
    fn what(&self) -> String {
        format!("{} ({})", self.optimizer, self.label)
    }

    /// A fresh optimizer with the run's options over the crate's defaults, which must be
    /// PyTorch's for the runs that leave options out to agree.
    fn optimizer<T: Scalar>(&self) -> Box<dyn Optimizer<T>> {
        let o = &self.options;
        let built: convlab::Result<Box<dyn Optimizer<T>>> = match self.optimizer.as_str() {
            "sgd" => {
                let mut s = SgdOptions::default();
                s.lr = o.lr.unwrap_or(s.lr);
                s.momentum = o.momentum.unwrap_or(s.momentum);
                s.dampening = o.dampening.unwrap_or(s.dampening);
                s.nesterov = o.nesterov.unwrap_or(s.nesterov);
                s.weight_decay = o.weight_decay.unwrap_or(s.weight_decay);
                Sgd::new(s).map(|s| Box::new(s) as Box<dyn Optimizer<T>>)
            }
            "adam" => {
                let mut a = AdamOptions::default();
                a.lr = o.lr.unwrap_or(a.lr);
                a.betas = o.betas.unwrap_or(a.betas);
                a.eps = o.eps.unwrap_or(a.eps);
                a.weight_decay = o.weight_decay.unwrap_or(a.weight_decay);
                a.amsgrad = o.amsgrad.unwrap_or(a.amsgrad);
                Adam::new(a).map(|a| Box::new(a) as Box<dyn Optimizer<T>>)
            }
            "adamw" => {
                let mut a = AdamWOptions::default();
                a.lr = o.lr.unwrap_or(a.lr);
                a.betas = o.betas.unwrap_or(a.betas);
                a.eps = o.eps.unwrap_or(a.eps);
                a.weight_decay = o.weight_decay.unwrap_or(a.weight_decay);
                a.amsgrad = o.amsgrad.unwrap_or(a.amsgrad);
                AdamW::new(a).map(|a| Box::new(a) as Box<dyn Optimizer<T>>)
            }
            "rmsprop" => {
                let mut r = RmsPropOptions::default();
                r.lr = o.lr.unwrap_or(r.lr);
                r.alpha = o.alpha.unwrap_or(r.alpha);
                r.eps = o.eps.unwrap_or(r.eps);
                r.weight_decay = o.weight_decay.unwrap_or(r.weight_decay);
                r.momentum = o.momentum.unwrap_or(r.momentum);
                r.centered = o.centered.unwrap_or(r.centered);
                RmsProp::new(r).map(|r| Box::new(r) as Box<dyn Optimizer<T>>)
            }
            other => panic!("unknown optimizer {other} in the fixture"),
        };
        built.unwrap_or_else(|e| panic!("{}: {e}", self.what()))
    }

    /// The learning rate a schedule has set by step `k`, if it changed it.
    fn lr_at(&self, k: usize) -> Option<f64> {
        self.lr_changes
            .iter()
            .filter(|(at, _)| *at <= k)
            .max_by_key(|(at, _)| *at)
            .map(|(_, lr)| *lr)
    }
}

fn array<T: Scalar>(shape: &[usize], values: &[f64]) -> ArrayD<T> {
    Array::from_shape_vec(IxDyn(shape), cast(values)).expect("fixture shape fits its values")
}

/// The fixture's inputs are f32 values; JSON parsing may miss them by an f64 unit in the last
/// place, which rounding through f32 undoes.
fn input<T: Scalar>(shape: &[usize], values: &[f64]) -> ArrayD<T> {
    let exact: Vec<f64> = values.iter().map(|&v| v as f32 as f64).collect();
    array(shape, &exact)
}

fn initial<T: Scalar>(file: &OptimFile) -> Vec<ArrayD<T>> {
    file.params
        .iter()
        .map(|p| input(&p.shape, &p.value))
        .collect()
}

/// Step `k` of `run`: the schedule's learning rate, then one step on the fixture's gradients.
fn step_k<T: Scalar>(
    opt: &mut dyn Optimizer<T>,
    file: &OptimFile,
    run: &Run,
    k: usize,
    values: &mut [ArrayD<T>],
) {
    if let Some(lr) = run.lr_at(k) {
        opt.set_learning_rate(lr);
    }
    let grads: Vec<ArrayD<T>> = file
        .params
        .iter()
        .zip(&file.grads[k])
        .map(|(p, g)| input(&p.shape, g))
        .collect();
    let mut params: Vec<Param<'_, T>> = file
        .params
        .iter()
        .zip(values.iter_mut())
        .zip(&grads)
        .map(|((spec, value), grad)| Param {
            name: &spec.name,
            value: value.view_mut(),
            grad: grad.view(),
        })
        .collect();
    opt.step(&mut params)
        .unwrap_or_else(|e| panic!("{} step {k}: {e}", run.what()));
}

#[test]
fn fixture_covers_every_optimizer_and_option() {
    let file: OptimFile = fixture("optim.json");
    assert!(file.generator.starts_with("torch "), "{}", file.generator);
    for kind in ["sgd", "adam", "adamw", "rmsprop"] {
        let runs: Vec<&Run> = file.runs.iter().filter(|r| r.optimizer == kind).collect();
        assert!(runs.len() >= 3, "{kind}: only {} runs", runs.len());
        assert!(
            runs.iter().any(|r| !r.lr_changes.is_empty()),
            "{kind}: no lr change"
        );
    }
    let steps = file.grads.len();
    assert!(steps >= 5);
    for run in &file.runs {
        assert_eq!(run.values_f64.len(), steps, "{}", run.what());
        assert_eq!(run.values_f32.len(), steps, "{}", run.what());
    }
}

#[test]
fn f64_runs_match_torch_optim() {
    let file: OptimFile = fixture("optim.json");
    for run in &file.runs {
        let mut opt = run.optimizer::<f64>();
        let mut values = initial::<f64>(&file);
        for (k, expected) in run.values_f64.iter().enumerate() {
            step_k(opt.as_mut(), &file, run, k, &mut values);
            for ((spec, value), expected) in file.params.iter().zip(&values).zip(expected) {
                assert_close(
                    &to_f64(value),
                    expected,
                    RTOL_F64,
                    &format!("{} step {k}, {}", run.what(), spec.name),
                );
            }
        }
    }
}

/// The f32 runs, to f32 rounding: each step may add a few units in the last place of the
/// parameter's largest value. Nearly every value is torch's to the bit, since the operations and
/// their roundings are PyTorch's; the rare exception comes from PyTorch's vectorised f32 square
/// root, which is not always correctly rounded.
#[test]
fn f32_runs_match_torch_optim() {
    const ULPS_PER_STEP: f64 = 4.0;
    let file: OptimFile = fixture("optim.json");
    let (mut same, mut total) = (0usize, 0usize);
    for run in &file.runs {
        let mut opt = run.optimizer::<f32>();
        let mut values = initial::<f32>(&file);
        for (k, expected) in run.values_f32.iter().enumerate() {
            step_k(opt.as_mut(), &file, run, k, &mut values);
            let rtol = ULPS_PER_STEP * (k + 1) as f64 * f32::EPSILON as f64;
            for ((spec, value), expected) in file.params.iter().zip(&values).zip(expected) {
                assert_close(
                    &to_f64(value),
                    expected,
                    rtol,
                    &format!("{} step {k}, {} (f32)", run.what(), spec.name),
                );
                // Rounding to f32 undoes JSON's parsing error, as in `input`.
                same += value
                    .iter()
                    .zip(expected)
                    .filter(|&(&v, &e)| v == e as f32)
                    .count();
                total += expected.len();
            }
        }
        let rtol = ULPS_PER_STEP * run.values_f32.len() as f64 * f32::EPSILON as f64;
        let (state_same, state_total) = check_state(&file, run, opt.as_ref(), &run.state_f32, rtol);
        same += state_same;
        total += state_total;
    }
    eprintln!("f32: {same} of {total} values and state entries equal torch's to the bit");
    assert!(
        same as f64 >= 0.99 * total as f64,
        "only {same} of {total} f32 values and state entries equal torch's to the bit"
    );
}

/// `opt`'s state holds what torch's optimizer held after `run`, under the same keys, within
/// `rtol`; the number of values equal to torch's to the bit (in `T`), and of all values.
fn check_state<T: Scalar>(
    file: &OptimFile,
    run: &Run,
    opt: &dyn Optimizer<T>,
    expected: &BTreeMap<String, Vec<f64>>,
    rtol: f64,
) -> (usize, usize) {
    let state: BTreeMap<String, ArrayD<T>> = opt.state().into_iter().collect();
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{}",
        run.what()
    );
    let (mut same, mut total) = (0, 0);
    for (name, expected) in expected {
        let got = &state[name];
        if name.ends_with(".step") {
            assert_eq!(got.ndim(), 0, "{}: {name}", run.what());
        } else {
            let param = name.rsplit_once('.').unwrap().0;
            let spec = file.params.iter().find(|p| p.name == param).unwrap();
            assert_eq!(got.shape(), spec.shape.as_slice(), "{}: {name}", run.what());
        }
        assert_close(
            &to_f64(got),
            expected,
            rtol,
            &format!("{}: {name}", run.what()),
        );
        same += got
            .iter()
            .zip(expected)
            .filter(|&(&g, &e)| g == T::from(e).unwrap())
            .count();
        total += expected.len();
    }
    (same, total)
}

/// After the last step, `state()` holds what torch's optimizer holds, under the same keys.
#[test]
fn state_matches_torch_optim() {
    let file: OptimFile = fixture("optim.json");
    for run in &file.runs {
        let mut opt = run.optimizer::<f64>();
        let mut values = initial::<f64>(&file);
        for k in 0..run.values_f64.len() {
            step_k(opt.as_mut(), &file, run, k, &mut values);
        }
        check_state(&file, run, opt.as_ref(), &run.state, RTOL_F64);
    }
}

/// Three steps, save, a fresh optimizer loads the state, two more steps: the same bits as five
/// steps straight, values and state.
fn resume_round_trip<T: Scalar>(file: &OptimFile, run: &Run) {
    let steps = run.values_f64.len();
    let mut straight = run.optimizer::<T>();
    let mut a = initial::<T>(file);
    for k in 0..steps {
        step_k(straight.as_mut(), file, run, k, &mut a);
    }
    let mut first = run.optimizer::<T>();
    let mut b = initial::<T>(file);
    for k in 0..3 {
        step_k(first.as_mut(), file, run, k, &mut b);
    }
    let saved = first.state();
    drop(first);
    let mut resumed = run.optimizer::<T>();
    resumed
        .load_state(saved.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", run.what()));
    assert_eq!(
        resumed.state(),
        saved,
        "{}: state after loading",
        run.what()
    );
    for k in 3..steps {
        step_k(resumed.as_mut(), file, run, k, &mut b);
    }
    assert_eq!(a, b, "{}: resumed values", run.what());
    assert_eq!(
        straight.state(),
        resumed.state(),
        "{}: resumed state",
        run.what()
    );
}

#[test]
fn state_round_trip_resumes_bit_for_bit() {
    let file: OptimFile = fixture("optim.json");
    for run in &file.runs {
        resume_round_trip::<f64>(&file, run);
        resume_round_trip::<f32>(&file, run);
    }
}

/// Without loading the state a fresh optimizer does not continue the same way (so the round trip
/// above tests something), except plain SGD, which keeps no state.
#[test]
fn resuming_without_the_state_differs() {
    let file: OptimFile = fixture("optim.json");
    for run in &file.runs {
        let mut straight = run.optimizer::<f64>();
        let mut a = initial::<f64>(&file);
        for k in 0..run.values_f64.len() {
            step_k(straight.as_mut(), &file, run, k, &mut a);
        }
        let mut b = initial::<f64>(&file);
        let mut first = run.optimizer::<f64>();
        for k in 0..3 {
            step_k(first.as_mut(), &file, run, k, &mut b);
        }
        let mut cold = run.optimizer::<f64>();
        for k in 3..run.values_f64.len() {
            step_k(cold.as_mut(), &file, run, k, &mut b);
        }
        assert_eq!(
            a == b,
            straight.state().is_empty(),
            "{}: a restart without state",
            run.what()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals

fn refused<T: std::fmt::Debug>(result: convlab::Result<T>, param: &str, fragment: &str) {
    match result {
        Err(Error::InvalidParameter { name, reason }) => {
            assert_eq!(name, param, "{reason}");
            assert!(
                reason.contains(fragment),
                "{param}: '{reason}' does not say '{fragment}'"
            );
        }
        other => panic!("{param}: expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn bad_hyper_parameters_are_refused_with_pytorchs_rule() {
    let sgd = |o: SgdOptions| Sgd::<f64>::new(o);
    refused(sgd(SgdOptions::new(-0.1)), "lr", "0 ≤ lr");
    refused(sgd(SgdOptions::new(f64::NAN)), "lr", "NaN");
    refused(
        sgd(SgdOptions::new(0.1).momentum(-0.5)),
        "momentum",
        "0 ≤ momentum",
    );
    refused(
        sgd(SgdOptions::new(0.1).weight_decay(-1e-4)),
        "weight_decay",
        "-0.0001",
    );
    refused(
        sgd(SgdOptions::new(0.1).dampening(f64::NAN)),
        "dampening",
        "NaN",
    );
    refused(
        sgd(SgdOptions::new(0.1).nesterov(true)),
        "nesterov",
        "momentum > 0",
    );
    refused(
        sgd(SgdOptions::new(0.1)
            .momentum(0.9)
            .dampening(0.1)
            .nesterov(true)),
        "nesterov",
        "dampening = 0",
    );
    // PyTorch's boundaries are allowed: lr 0, any dampening.
    assert!(sgd(SgdOptions::new(0.0)).is_ok());
    assert!(sgd(SgdOptions::new(0.1).momentum(0.9).dampening(1.5)).is_ok());
    assert!(sgd(SgdOptions::new(0.1).momentum(0.9).nesterov(true)).is_ok());

    let adam = |o: AdamOptions| Adam::<f32>::new(o);
    refused(adam(AdamOptions::new(-1e-3)), "lr", "0 ≤ lr");
    refused(
        adam(AdamOptions::new(1e-3).betas(1.0, 0.999)),
        "betas",
        "betas.0 = 1",
    );
    refused(
        adam(AdamOptions::new(1e-3).betas(0.9, -0.1)),
        "betas",
        "betas.1 = -0.1",
    );
    refused(
        adam(AdamOptions::new(1e-3).betas(0.9, f64::NAN)),
        "betas",
        "[0, 1)",
    );
    refused(adam(AdamOptions::new(1e-3).eps(-1e-8)), "eps", "0 ≤ eps");
    refused(
        adam(AdamOptions::new(1e-3).weight_decay(-0.1)),
        "weight_decay",
        "0 ≤",
    );
    assert!(adam(AdamOptions::new(1e-3).betas(0.0, 0.0).eps(0.0)).is_ok());

    let adamw = |o: AdamWOptions| AdamW::<f32>::new(o);
    refused(
        adamw(AdamWOptions::new(1e-3).betas(0.9, 1.0)),
        "betas",
        "betas.1 = 1",
    );
    refused(
        adamw(AdamWOptions::new(1e-3).weight_decay(-0.01)),
        "weight_decay",
        "0 ≤",
    );
    refused(adamw(AdamWOptions::new(-1.0)), "lr", "0 ≤ lr");

    let rms = |o: RmsPropOptions| RmsProp::<f64>::new(o);
    refused(rms(RmsPropOptions::new(-0.01)), "lr", "0 ≤ lr");
    refused(
        rms(RmsPropOptions::new(0.01).alpha(-0.1)),
        "alpha",
        "0 ≤ alpha",
    );
    refused(rms(RmsPropOptions::new(0.01).eps(-1.0)), "eps", "0 ≤ eps");
    refused(
        rms(RmsPropOptions::new(0.01).momentum(-0.9)),
        "momentum",
        "0 ≤ momentum",
    );
    refused(
        rms(RmsPropOptions::new(0.01).weight_decay(-1.0)),
        "weight_decay",
        "0 ≤",
    );
    assert!(rms(RmsPropOptions::new(0.01).alpha(0.0)).is_ok());
}

#[test]
fn defaults_are_pytorchs() {
    let sgd = SgdOptions::default();
    assert_eq!(
        (
            sgd.lr,
            sgd.momentum,
            sgd.dampening,
            sgd.nesterov,
            sgd.weight_decay
        ),
        (1e-3, 0.0, 0.0, false, 0.0)
    );
    let adam = AdamOptions::default();
    assert_eq!(
        (
            adam.lr,
            adam.betas,
            adam.eps,
            adam.weight_decay,
            adam.amsgrad
        ),
        (1e-3, (0.9, 0.999), 1e-8, 0.0, false)
    );
    let adamw = AdamWOptions::default();
    assert_eq!(
        (
            adamw.lr,
            adamw.betas,
            adamw.eps,
            adamw.weight_decay,
            adamw.amsgrad
        ),
        (1e-3, (0.9, 0.999), 1e-8, 1e-2, false)
    );
    let rms = RmsPropOptions::default();
    assert_eq!(
        (
            rms.lr,
            rms.alpha,
            rms.eps,
            rms.weight_decay,
            rms.momentum,
            rms.centered
        ),
        (1e-2, 0.99, 1e-8, 0.0, 0.0, false)
    );
    assert_eq!(SgdOptions::new(0.5), SgdOptions { lr: 0.5, ..sgd });
    assert_eq!(AdamWOptions::new(0.5), AdamWOptions { lr: 0.5, ..adamw });
}

fn tensor(shape: &[usize], values: &[f64]) -> ArrayD<f64> {
    array(shape, values)
}

/// `load_state` of `entries` into `opt` fails — with `ShapeMismatch` if `shape_error`, else
/// `InvalidParameter` — with a message holding `fragment`, and leaves the state as it was.
fn load_refused(
    opt: &mut dyn Optimizer<f64>,
    entries: Vec<(&str, ArrayD<f64>)>,
    shape_error: bool,
    fragment: &str,
) {
    let before = opt.state();
    let entries: Vec<(String, ArrayD<f64>)> = entries
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    let err = opt.load_state(entries).expect_err(fragment);
    let message = err.to_string();
    match (&err, shape_error) {
        (Error::ShapeMismatch { .. }, true) | (Error::InvalidParameter { .. }, false) => {}
        _ => panic!("wrong kind of error: {err:?}"),
    }
    assert!(
        message.contains(fragment),
        "'{message}' does not say '{fragment}'"
    );
    assert_eq!(opt.state(), before, "a refused load changed the state");
}

#[test]
fn bad_state_is_refused_naming_the_entry() {
    let mut adam = Adam::<f64>::new(AdamOptions::default()).unwrap();
    let w = vec![1.0, 2.0];
    let good = || {
        vec![
            ("0.weight.step", arr0(2.0).into_dyn()),
            ("0.weight.exp_avg", tensor(&[2], &w)),
            ("0.weight.exp_avg_sq", tensor(&[2], &w)),
        ]
    };
    let entries: Vec<(String, ArrayD<f64>)> = good()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    adam.load_state(entries.clone()).unwrap();
    assert_eq!(adam.state(), entries);

    let with = |extra: (&'static str, ArrayD<f64>)| {
        let mut e = good();
        e.push(extra);
        e
    };
    let without = |name: &str| {
        let mut e = good();
        e.retain(|(n, _)| *n != name);
        e
    };
    let replaced = |name: &str, t: ArrayD<f64>| {
        let mut e = good();
        e.iter_mut().find(|(n, _)| *n == name).unwrap().1 = t;
        e
    };
    load_refused(
        &mut adam,
        with(("0.weight.exp_avgg", tensor(&[2], &w))),
        false,
        "0.weight.exp_avgg",
    );
    load_refused(
        &mut adam,
        with(("0.weight.max_exp_avg_sq", tensor(&[2], &w))),
        false,
        "0.weight.max_exp_avg_sq",
    );
    load_refused(
        &mut adam,
        with(("step", arr0(1.0).into_dyn())),
        false,
        "unknown entry step",
    );
    load_refused(
        &mut adam,
        with(("0.weight.exp_avg", tensor(&[2], &w))),
        false,
        "0.weight.exp_avg appears twice",
    );
    load_refused(
        &mut adam,
        without("0.weight.exp_avg_sq"),
        false,
        "0.weight.exp_avg_sq is missing",
    );
    load_refused(
        &mut adam,
        without("0.weight.step"),
        false,
        "0.weight.step is missing",
    );
    load_refused(
        &mut adam,
        replaced("0.weight.exp_avg_sq", tensor(&[3], &[1.0, 2.0, 3.0])),
        true,
        "0.weight.exp_avg_sq has shape [3]",
    );
    load_refused(
        &mut adam,
        replaced("0.weight.step", tensor(&[1], &[2.0])),
        true,
        "0.weight.step has shape [1]",
    );
    load_refused(
        &mut adam,
        replaced("0.weight.step", arr0(1.5).into_dyn()),
        false,
        "0.weight.step holds 1.5",
    );
    load_refused(
        &mut adam,
        replaced("0.weight.step", arr0(-1.0).into_dyn()),
        false,
        "0.weight.step holds -1",
    );

    // AMSGrad needs its maximum too.
    let mut amsgrad = Adam::<f64>::new(AdamOptions::default().amsgrad(true)).unwrap();
    load_refused(
        &mut amsgrad,
        good(),
        false,
        "0.weight.max_exp_avg_sq is missing",
    );

    // SGD without momentum keeps nothing; with momentum, a buffer.
    let mut plain = Sgd::<f64>::new(SgdOptions::new(0.1)).unwrap();
    load_refused(
        &mut plain,
        vec![("0.weight.momentum_buffer", tensor(&[2], &w))],
        false,
        "keeps no state",
    );
    let mut heavy = Sgd::<f64>::new(SgdOptions::new(0.1).momentum(0.9)).unwrap();
    heavy
        .load_state(vec![("0.weight.momentum_buffer".into(), tensor(&[2], &w))])
        .unwrap();
    load_refused(
        &mut heavy,
        vec![("0.weight.exp_avg", tensor(&[2], &w))],
        false,
        "0.weight.exp_avg",
    );

    // Centered RMSprop needs grad_avg, plain RMSprop refuses it.
    let rms_entries = || {
        vec![
            ("b.step", arr0(1.0).into_dyn()),
            ("b.square_avg", tensor(&[2], &w)),
        ]
    };
    let mut centered = RmsProp::<f64>::new(RmsPropOptions::default().centered(true)).unwrap();
    load_refused(&mut centered, rms_entries(), false, "b.grad_avg is missing");
    let mut rms = RmsProp::<f64>::new(RmsPropOptions::default()).unwrap();
    let mut extra = rms_entries();
    extra.push(("b.grad_avg", tensor(&[2], &w)));
    load_refused(&mut rms, extra, false, "b.grad_avg");
    let mut momentum = RmsProp::<f64>::new(RmsPropOptions::default().momentum(0.5)).unwrap();
    load_refused(
        &mut momentum,
        rms_entries(),
        false,
        "b.momentum_buffer is missing",
    );
}

/// One parameter named `name` for a step.
fn param<'a>(name: &'a str, value: &'a mut ArrayD<f64>, grad: &'a ArrayD<f64>) -> Param<'a, f64> {
    Param {
        name,
        value: value.view_mut(),
        grad: grad.view(),
    }
}

fn stateful_optimizers() -> Vec<Box<dyn Optimizer<f64>>> {
    vec![
        Box::new(Sgd::new(SgdOptions::new(0.1).momentum(0.9)).unwrap()),
        Box::new(Adam::new(AdamOptions::default()).unwrap()),
        Box::new(AdamW::new(AdamWOptions::default()).unwrap()),
        Box::new(RmsProp::new(RmsPropOptions::default()).unwrap()),
    ]
}

#[test]
fn shape_changes_are_refused_and_change_nothing() {
    let g6 = tensor(&[3, 2], &[0.1, -0.2, 0.3, -0.4, 0.5, -0.6]);
    for mut opt in stateful_optimizers() {
        let name = opt.name();
        let mut w = tensor(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut b = tensor(&[2], &[1.0, -1.0]);
        let gb = tensor(&[2], &[0.5, 0.5]);
        opt.step(&mut [param("0.weight", &mut w, &g6), param("0.bias", &mut b, &gb)])
            .unwrap();
        let (w_before, b_before, state_before) = (w.clone(), b.clone(), opt.state());

        // The same name with another shape: refused, the other parameter untouched.
        let mut wt = w.t().to_owned().into_dyn();
        let gt = g6.t().to_owned().into_dyn();
        let err = opt
            .step(&mut [
                param("0.bias", &mut b, &gb),
                param("0.weight", &mut wt, &gt),
            ])
            .unwrap_err();
        assert!(
            matches!(err, Error::ShapeMismatch { .. }) && err.to_string().contains("0.weight"),
            "{name}: {err}"
        );
        assert!(
            err.to_string().contains("[2, 3]") && err.to_string().contains("[3, 2]"),
            "{err}"
        );
        assert_eq!((&b, &opt.state()), (&b_before, &state_before), "{name}");

        // A gradient shaped unlike its parameter.
        let err = opt
            .step(&mut [param("0.bias", &mut b, &gb), param("0.weight", &mut w, &gt)])
            .unwrap_err();
        assert!(
            err.to_string().contains("gradient has shape [2, 3]"),
            "{name}: {err}"
        );
        assert_eq!(
            (&w, &b, &opt.state()),
            (&w_before, &b_before, &state_before),
            "{name}"
        );

        // Two parameters with one name.
        let mut w2 = w.clone();
        let err = opt
            .step(&mut [
                param("0.weight", &mut w, &g6),
                param("0.weight", &mut w2, &g6),
            ])
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "params", .. })
                && err.to_string().contains("0.weight appears twice"),
            "{name}: {err}"
        );
        assert_eq!((&w, &opt.state()), (&w_before, &state_before), "{name}");

        // A negative learning rate set by a schedule.
        opt.set_learning_rate(-0.1);
        assert_eq!(opt.learning_rate(), -0.1);
        let err = opt.step(&mut [param("0.weight", &mut w, &g6)]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "lr", .. }),
            "{name}: {err}"
        );
        assert_eq!(w, w_before, "{name}");
        opt.set_learning_rate(0.1);
        opt.step(&mut [param("0.weight", &mut w, &g6)]).unwrap();
        assert_ne!(w, w_before, "{name}");

        // A loaded state of another shape than the parameter.
        opt.load_state(vec![]).unwrap();
        assert!(opt.state().is_empty(), "{name}");
        let mut fresh = stateful_optimizers()
            .into_iter()
            .find(|o| o.name() == name)
            .unwrap();
        let mut other = tensor(&[2, 3], &[0.0; 6]);
        fresh
            .step(&mut [param("0.weight", &mut other, &gt)])
            .unwrap();
        opt.load_state(fresh.state()).unwrap();
        let before = w.clone();
        let err = opt.step(&mut [param("0.weight", &mut w, &g6)]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{name}: {err}");
        assert_eq!(w, before, "{name}");
    }

    // SGD without momentum keeps no state, so a parameter may change shape.
    let mut sgd = Sgd::<f64>::new(SgdOptions::new(0.1)).unwrap();
    let mut w = tensor(&[3, 2], &[0.0; 6]);
    sgd.step(&mut [param("w", &mut w, &g6)]).unwrap();
    let mut wt = tensor(&[2, 3], &[0.0; 6]);
    let gt = g6.t().to_owned().into_dyn();
    sgd.step(&mut [param("w", &mut wt, &gt)]).unwrap();
    assert!(sgd.state().is_empty());
}

#[test]
fn names_and_learning_rates() {
    let names: Vec<&str> = stateful_optimizers().iter().map(|o| o.name()).collect();
    assert_eq!(names, ["SGD", "Adam", "AdamW", "RMSprop"]);
    let mut adam = Adam::<f32>::new(AdamOptions::new(0.01)).unwrap();
    assert_eq!(Optimizer::<f32>::learning_rate(&adam), 0.01);
    adam.set_learning_rate(0.001);
    assert_eq!(adam.options().lr, 0.001);
}

// ---------------------------------------------------------------------------------------------
// Properties derived by hand

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=4, 1..=3)
}

fn values_of(shape: Vec<usize>) -> impl Strategy<Value = (ArrayD<f64>, ArrayD<f64>)> {
    let n: usize = shape.iter().product();
    (
        prop::collection::vec(-10.0f64..10.0, n),
        prop::collection::vec(-10.0f64..10.0, n),
    )
        .prop_map(move |(p, g)| {
            (
                Array::from_shape_vec(IxDyn(&shape), p).unwrap(),
                Array::from_shape_vec(IxDyn(&shape), g).unwrap(),
            )
        })
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    prop::sample::select(LAYOUTS.to_vec())
}

/// One step of `opt` on `p` (updated through a transposed view of its storage, so the update
/// must follow logical order) with gradient `g` stored in `layout`; the new values in logical
/// order.
fn one_step<T: Scalar>(
    opt: &mut dyn Optimizer<T>,
    p: &ArrayD<f64>,
    g: &ArrayD<f64>,
    layout: Layout,
) -> ArrayD<T> {
    let p: ArrayD<T> = p.mapv(|v| T::from(v).unwrap());
    let g: ArrayD<T> = g.mapv(|v| T::from(v).unwrap());
    let mut storage = p.clone().reversed_axes().as_standard_layout().into_owned();
    let stored = Stored::new(&g, layout);
    let value = storage.view_mut().reversed_axes();
    assert_eq!(value, p);
    opt.step(&mut [Param {
        name: "p",
        value,
        grad: stored.view(),
    }])
    .unwrap();
    storage.reversed_axes()
}

proptest! {
    #![proptest_config(cases(64))]

    /// SGD without momentum is `θ − lr·g`, in f64 and f32, on any layout.
    #[test]
    fn sgd_without_momentum_is_plain_descent(
        (p, g) in shape_strategy().prop_flat_map(values_of),
        lr in 0.0f64..2.0,
        layout in layout_strategy(),
    ) {
        let expected = &p - &(lr * &g);
        let size = p.mapv(f64::abs) + (lr * &g).mapv(f64::abs);
        let mut sgd = Sgd::<f64>::new(SgdOptions::new(lr)).unwrap();
        agree("f64", &one_step(&mut sgd, &p, &g, layout), &expected, &size, RTOL_F64)?;
        // In f32 from the same (rounded) inputs.
        let p32 = p.mapv(|v| v as f32 as f64);
        let g32 = g.mapv(|v| v as f32 as f64);
        let expected = &p32 - &((lr as f32 as f64) * &g32);
        let mut sgd = Sgd::<f32>::new(SgdOptions::new(lr)).unwrap();
        agree("f32", &one_step(&mut sgd, &p32, &g32, layout), &expected, &size, RTOL_F32)?;
    }

    /// Adam's first step: `m/bias_correction1 = g` and `v/bias_correction2 = g²`, so every
    /// coordinate moves by `lr·g/(|g| + eps)`, about `lr` against the sign of its gradient,
    /// whatever the betas. AdamW first scales `θ` by `1 − lr·weight_decay`.
    #[test]
    fn adam_first_step_moves_each_coordinate_by_lr(
        (p, g) in shape_strategy().prop_flat_map(values_of),
        lr in 1e-4f64..1.0,
        beta1 in 0.0f64..0.99,
        beta2 in 0.0f64..0.999,
        eps in 1e-8f64..1e-3,
        weight_decay in 0.0f64..0.5,
        layout in layout_strategy(),
    ) {
        let moved = g.mapv(|g| lr * g / (g.abs() + eps));
        let size = p.mapv(|p| p.abs() + lr);
        let options = AdamOptions::new(lr).betas(beta1, beta2).eps(eps);
        let mut adam = Adam::<f64>::new(options).unwrap();
        let stepped = one_step(&mut adam, &p, &g, layout);
        agree("Adam", &stepped, &(&p - &moved), &size, RTOL_F64)?;
        for ((new, old), g) in stepped.iter().zip(&p).zip(&g) {
            let step = old - new;
            prop_assert!(step.abs() <= lr * (1.0 + 1e-12));
            prop_assert!(step == 0.0 || step.signum() == g.signum());
            if g.abs() > 1e3 * eps {
                prop_assert!(step.abs() > lr * 0.999);
            }
        }
        let options = AdamWOptions::new(lr).betas(beta1, beta2).eps(eps).weight_decay(weight_decay);
        let mut adamw = AdamW::<f64>::new(options).unwrap();
        let decayed = p.mapv(|p| p * (1.0 - lr * weight_decay)) - &moved;
        agree("AdamW", &one_step(&mut adamw, &p, &g, layout), &decayed, &size, RTOL_F64)?;
        let mut adam32 = Adam::<f32>::new(AdamOptions::new(lr).betas(beta1, beta2).eps(eps)).unwrap();
        let p32 = p.mapv(|v| v as f32 as f64);
        let g32 = g.mapv(|v| v as f32 as f64);
        let moved32 = g32.mapv(|g| lr * g / (g.abs() + eps));
        agree("Adam f32", &one_step(&mut adam32, &p32, &g32, layout), &(&p32 - &moved32), &size, RTOL_F32)?;
    }
}

/// State that would sink below the smallest normal f32 is set to zero: a gradient of 1e-20
/// leaves Adam's second moment at 0.001·1e-40 = 1e-43, a subnormal, so it is 0; the first moment,
/// 0.1·1e-20, is normal and kept. A first moment whose gradient then stays zero decays by 0.9 a
/// step and becomes exactly 0 once it would drop below 1.2e-38, rather than sticking at the
/// smallest subnormal (0.9 times it rounds back to it).
#[test]
fn subnormal_state_is_flushed_to_zero() {
    let mut adam = Adam::<f32>::new(AdamOptions::default()).unwrap();
    let mut value = ArrayD::<f32>::zeros(IxDyn(&[2]));
    let step = |adam: &mut Adam<f32>, value: &mut ArrayD<f32>, g: [f32; 2]| {
        let grad = ArrayD::from_shape_vec(IxDyn(&[2]), g.to_vec()).unwrap();
        let mut params = [Param {
            name: "w",
            value: value.view_mut(),
            grad: grad.view(),
        }];
        adam.step(&mut params).unwrap();
    };
    step(&mut adam, &mut value, [1e-20, 1.0]);
    let state: BTreeMap<String, ArrayD<f32>> = adam.state().into_iter().collect();
    assert_eq!(state["w.exp_avg_sq"][0], 0.0);
    assert!(state["w.exp_avg_sq"][1] > 0.0);
    assert_eq!(state["w.exp_avg"][0], 0.1f32 * 1e-20);
    for _ in 0..2000 {
        step(&mut adam, &mut value, [0.0, 1.0]);
    }
    let state: BTreeMap<String, ArrayD<f32>> = adam.state().into_iter().collect();
    assert_eq!(state["w.exp_avg"][0], 0.0);
    assert!(state["w.exp_avg"][1] > 0.5);
    assert!(value.iter().all(|v| v.is_finite()));
}
