//! The exercise checkers: the reference kernels pass every case, each known mistake fails with
//! its own hint, and a function that panics or is not written yet is reported as such.

use convlab::conv1d::naive as conv1d;
use convlab::conv2d::naive as conv2d;
use convlab::exercise::{self, Problem, Report, Status, mistakes};
use convlab::pool::naive as pool;
use convlab::shape::{Pads, SignalParams};
use convlab::{Error, activation, im2col, loss};
use ndarray::{Array1, ArrayView1};

/// The report of every checker for one of its mistakes, with the mistake's name and hint.
fn mistaken_reports() -> Vec<(Report, &'static str, &'static str)> {
    let mut reports = Vec::new();
    macro_rules! each {
        ($check:path, $mistakes:path) => {
            for m in $mistakes() {
                reports.push(($check(m.kernel), m.name, m.hint));
            }
        };
    }
    each!(exercise::check_convolve, mistakes::convolve);
    each!(exercise::check_conv_output_len, mistakes::conv_output_len);
    each!(exercise::check_conv2d, mistakes::conv2d);
    each!(exercise::check_unfold, mistakes::unfold);
    each!(
        exercise::check_max_pool2d_with_indices,
        mistakes::max_pool2d_with_indices
    );
    each!(exercise::check_avg_pool2d, mistakes::avg_pool2d);
    each!(exercise::check_softmax, mistakes::softmax);
    each!(exercise::check_cross_entropy, mistakes::cross_entropy);
    each!(exercise::check_conv2d_backward, mistakes::conv2d_backward);
    each!(
        exercise::check_max_pool2d_backward,
        mistakes::max_pool2d_backward
    );
    reports
}

fn reference_reports() -> Vec<Report> {
    fn convolve(
        x: ArrayView1<f64>,
        w: ArrayView1<f64>,
        p: SignalParams,
    ) -> convlab::Result<Array1<f64>> {
        conv1d::convolve(x, w, p)
    }
    vec![
        exercise::check_convolve(convolve),
        exercise::check_conv_output_len(convlab::shape::conv_output_len),
        exercise::check_conv2d(conv2d::conv2d::<f64>),
        exercise::check_unfold(im2col::unfold::<f64>),
        exercise::check_max_pool2d_with_indices(pool::max_pool2d_with_indices::<f64>),
        exercise::check_avg_pool2d(pool::avg_pool2d::<f64>),
        exercise::check_softmax(activation::softmax::<f64, ndarray::Ix2>),
        exercise::check_cross_entropy(loss::cross_entropy::<f64>),
        exercise::check_conv2d_backward(conv2d::conv2d_backward::<f64>),
        exercise::check_max_pool2d_backward(pool::max_pool2d_backward::<f64>),
    ]
}

#[test]
fn the_references_pass_every_case() {
    let reports = reference_reports();
    assert_eq!(reports.len(), 10);
    for report in reports {
        assert_eq!(report.status(), Status::Passed, "{report}");
        assert_eq!(report.passed, report.total);
        assert!(report.total >= 40, "{report}");
        assert!(report.worst_error <= exercise::TOLERANCE, "{report}");
    }
}

#[test]
fn every_mistake_fails_with_its_hint() {
    let reports = mistaken_reports();
    assert!(reports.len() >= 40, "{} mistakes", reports.len());
    for (report, name, hint) in reports {
        assert_eq!(report.status(), Status::Failed, "mistake {name}: {report}");
        let failure = report
            .failure
            .as_ref()
            .expect("a failed report has a failure");
        assert_eq!(failure.hint, Some(hint), "mistake {name}:\n{report}");
        assert!(report.to_string().contains(hint));
    }
}

#[test]
fn a_kernel_not_written_yet_is_not_done() {
    let report = exercise::check_conv2d(|_, _, _, _| Err(Error::NotImplemented));
    assert_eq!(report.status(), Status::NotDone);
    assert_eq!(report.to_string(), "conv2d (chapter 3): not done yet");
}

#[test]
fn a_kernel_written_for_some_cases_fails_on_the_others() {
    // Stride 1 only: the cases with a stride return NotImplemented and fail; the rest pass.
    let report = exercise::check_conv_output_len(|n, k, s, pads, d| {
        if s > 1 {
            return Err(Error::NotImplemented);
        }
        convlab::shape::conv_output_len(n, k, s, pads, d)
    });
    assert_eq!(report.status(), Status::Failed);
    assert!(
        0 < report.passed && report.passed < report.total,
        "{report}"
    );
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(failure.problem, Problem::NotImplemented);
    assert!(failure.description.contains("stride 2"), "{report}");
}

#[test]
fn a_panic_is_reported_and_the_other_cases_still_run() {
    // Right on every case but those with a stride of 2 or more, where it panics.
    let report = exercise::check_conv_output_len(|n, k, s, pads: Pads, d| {
        assert!(s < 2, "strides above 1 are not handled");
        convlab::shape::conv_output_len(n, k, s, pads, d)
    });
    assert_eq!(report.status(), Status::Failed);
    assert!(
        report.panics > 0 && report.passed + report.panics == report.total,
        "{report}"
    );
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(
        failure.problem,
        Problem::Panicked {
            message: "strides above 1 are not handled".into()
        }
    );
    assert!(
        report
            .to_string()
            .contains("panicked: strides above 1 are not handled")
    );
}

#[test]
fn a_wrong_result_prints_the_case_and_both_values() {
    // Every output 1 too large: no known mistake gives that.
    let report = exercise::check_conv2d(|x, w, b, p| Ok(conv2d::conv2d(x, w, b, p)? + 1.0));
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(failure.case, 1);
    assert_eq!(failure.hint, None);
    let Problem::Values {
        expected,
        got,
        at,
        error,
        ..
    } = &failure.problem
    else {
        panic!("values should differ: {report}");
    };
    assert_eq!(got - expected, expected.mapv(|_| 1.0));
    // The errors are 1 / max(|expected|, |got|, 1): the worst is where chapter 3's first map
    // has its first −1, row 0, column 2, which became 0.
    assert_eq!(
        (at.as_slice(), *error),
        (&[0, 0, 0, 2][..], 1.0),
        "{report}"
    );
    let text = report.to_string();
    assert!(text.contains("chapter 3's 6×6 image"), "{text}");
    assert!(
        text.contains("at [0, 0, 0, 2] expected -1, got 0"),
        "{text}"
    );
    // Only the two inputs that conv2d itself refuses pass.
    assert_eq!(report.passed, 2, "{text}");
}

#[test]
fn an_input_the_reference_refuses_must_be_refused() {
    // Pads the short image instead of refusing a kernel larger than it.
    let report = exercise::check_conv_output_len(|n, k, s, pads, d| {
        let span = d * k.saturating_sub(1) + 1;
        Ok((n + pads.total()).saturating_sub(span) / s.max(1) + 1)
    });
    let failure = report.failure.as_ref().unwrap();
    assert!(
        matches!(failure.problem, Problem::MissingError { .. }),
        "{report}"
    );
    assert!(failure.description.contains("must be refused"));
}
