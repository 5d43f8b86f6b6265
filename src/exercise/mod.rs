//! The checker for the course's exercises: a student's kernel against convlab's reference.
//!
//! Each `check_*` function takes a student's function with the signature of the reference
//! kernel (in `f64`), runs it on seeded random cases and on the chapters' worked examples,
//! compares every output with the reference, and returns a [`Report`]: cases passed, the worst
//! relative error, and for the first failure its parameters, the expected and obtained values and,
//! when the failure is one of the usual mistakes, a hint. A hint is given only when the mistaken
//! kernel, run on the failing case, gives exactly what the student's function gave.
//!
//! ```
//! use convlab::conv2d::naive;
//! use convlab::exercise::{Status, check_conv2d};
//!
//! let report = check_conv2d(naive::conv2d::<f64>);
//! assert_eq!(report.status(), Status::Passed);
//! println!("{report}");
//! ```
//!
//! A function that returns [`Error::NotImplemented`] on every case is "not done yet" (on some
//! cases only, those cases fail); one that panics is reported with the case and the panic's message, and the other cases
//! still run. The exercises crate (`exercises/` in the repository) runs every checker on a
//! student's files; `chapters/README.md` has a section for teachers on reading the reports.

mod cases;
mod checks;
pub mod mistakes;

pub use checks::{
    AvgPoolFn, Conv2dBackwardFn, Conv2dFn, ConvOutputLenFn, ConvolveFn, CrossEntropyFn,
    MaxPoolBackwardFn, MaxPoolFn, SoftmaxFn, UnfoldFn, check_avg_pool2d, check_conv_output_len,
    check_conv2d, check_conv2d_backward, check_convolve, check_cross_entropy,
    check_max_pool2d_backward, check_max_pool2d_with_indices, check_softmax, check_unfold,
};

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{ArrayD, Dimension, IxDyn};

use crate::error::{Error, Result};

/// Largest error a passing output may have: `|got − expected| / max(|expected|, |got|, 1)`, the
/// relative error of values above 1 and the absolute error of smaller ones. In `f64` a kernel
/// that adds the same products in another order stays near 1e-15.
pub const TOLERANCE: f64 = 1e-9;

/// Arrays with this many elements or fewer are printed whole in a report.
const PRINT_WHOLE: usize = 64;

/// The named outputs of one call, as `f64` arrays (indices and lengths too: they are exact in
/// `f64`).
pub(crate) type Parts = Vec<(&'static str, ArrayD<f64>)>;

/// A scalar as a 0-dimensional part.
pub(crate) fn scalar(v: f64) -> ArrayD<f64> {
    ArrayD::from_elem(IxDyn(&[]), v)
}

/// The verdict on a student's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every case gave the reference's result.
    Passed,
    /// At least one case did not.
    Failed,
    /// The function returns [`Error::NotImplemented`] on every case.
    NotDone,
}

/// What was wrong with the first failing case.
// One per report: the size of the arrays it holds does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// An output has another shape than the reference's.
    Shape {
        /// Which output (`"output"`, `"indices"`, `"∂L/∂x"`, …).
        part: &'static str,
        /// The reference's shape.
        expected: Vec<usize>,
        /// The student's.
        got: Vec<usize>,
    },
    /// An output has the right shape but values off by more than [`TOLERANCE`].
    Values {
        /// Which output.
        part: &'static str,
        /// The reference's values.
        expected: ArrayD<f64>,
        /// The student's.
        got: ArrayD<f64>,
        /// Index of the worst value.
        at: Vec<usize>,
        /// Its error.
        error: f64,
    },
    /// The reference rejects this input, the student's function returned a result.
    MissingError {
        /// The reference's error message.
        expected: String,
    },
    /// The student's function returned an error where the reference computes a result.
    UnexpectedError {
        /// The student's error message.
        got: String,
    },
    /// The student's function returned [`Error::NotImplemented`] on this case but answered
    /// others.
    NotImplemented,
    /// The student's function panicked.
    Panicked {
        /// The panic's message.
        message: String,
    },
}

/// The first failing case of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Number of the case (from 1) among the exercise's cases.
    pub case: usize,
    /// The case's parameters, and its inputs when they are small.
    pub description: String,
    /// What went wrong.
    pub problem: Problem,
    /// The usual mistake that gives exactly the student's result on this case, if one does.
    pub hint: Option<&'static str>,
}

/// The result of running a checker.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The exercise's name (the reference kernel's).
    pub exercise: &'static str,
    /// The chapter it belongs to.
    pub chapter: u32,
    /// Cases the student's function got right.
    pub passed: usize,
    /// Cases run (all of them, unless the exercise is not done).
    pub total: usize,
    /// Worst error over every output compared (see [`TOLERANCE`]).
    pub worst_error: f64,
    /// Cases in which the student's function panicked.
    pub panics: usize,
    /// The first failing case.
    pub failure: Option<Failure>,
    /// `true` when the function returned [`Error::NotImplemented`] on every case.
    pub not_done: bool,
}

impl Report {
    /// Passed, failed or not done yet.
    pub fn status(&self) -> Status {
        if self.not_done {
            Status::NotDone
        } else if self.passed == self.total && self.failure.is_none() {
            Status::Passed
        } else {
            Status::Failed
        }
    }
}

/// One input of an exercise with its description.
pub(crate) struct Case<I> {
    pub description: String,
    pub input: I,
}

/// A known mistake, as a kernel with the student's signature, and the hint for it.
pub struct Mistake<F> {
    /// A short name (`"kernel flipped"`).
    pub name: &'static str,
    /// What the student probably did and what the formula says instead.
    pub hint: &'static str,
    /// The mistaken kernel.
    pub kernel: F,
}

/// How one call went.
enum Outcome {
    Done(Parts),
    Failed(String),
    NotImplemented,
    Panicked(String),
}

fn call(f: impl FnOnce() -> Result<Parts>) -> Outcome {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(parts)) => Outcome::Done(parts),
        Ok(Err(Error::NotImplemented)) => Outcome::NotImplemented,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(payload) => Outcome::Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string()),
        ),
    }
}

/// The error of `got` against `expected` (see [`TOLERANCE`]); equal infinities and NaN against
/// NaN count as equal.
fn error(expected: f64, got: f64) -> f64 {
    if expected == got || (expected.is_nan() && got.is_nan()) {
        0.0
    } else if expected.is_finite() && got.is_finite() {
        (got - expected).abs() / expected.abs().max(got.abs()).max(1.0)
    } else {
        f64::INFINITY
    }
}

/// The first difference between `expected` and `got` beyond the tolerance, and the worst error
/// over the parts whose shapes agree.
fn compare(expected: &Parts, got: &Parts) -> (Option<Problem>, f64) {
    let mut worst = 0.0_f64;
    let mut problem = None;
    for ((part, e), (_, g)) in expected.iter().zip(got) {
        if e.shape() != g.shape() {
            problem.get_or_insert(Problem::Shape {
                part,
                expected: e.shape().to_vec(),
                got: g.shape().to_vec(),
            });
            continue;
        }
        let mut part_worst = (0.0, None);
        for ((at, &e_v), &g_v) in e.indexed_iter().zip(g.iter()) {
            let err = error(e_v, g_v);
            if err > part_worst.0 {
                part_worst = (err, Some(at.slice().to_vec()));
            }
        }
        worst = worst.max(part_worst.0);
        if part_worst.0 > TOLERANCE {
            problem.get_or_insert(Problem::Values {
                part,
                expected: e.clone(),
                got: g.clone(),
                at: part_worst.1.unwrap_or_default(),
                error: part_worst.0,
            });
        }
    }
    (problem, worst)
}

/// Whether a mistake's outcome is the student's: both results equal (same shapes, values within
/// the tolerance), or both errors.
fn same_outcome(mistake: &Outcome, student: &Outcome) -> bool {
    match (mistake, student) {
        (Outcome::Done(m), Outcome::Done(s)) => {
            m.len() == s.len()
                && m.iter().zip(s).all(|(a, b)| a.1.shape() == b.1.shape())
                && compare(m, s).0.is_none()
        }
        (Outcome::Failed(_), Outcome::Failed(_)) => true,
        _ => false,
    }
}

/// The hint of the mistake that gives the student's result on the failing case `number`; when
/// several do, the one that gives the student's outcome on the most cases.
fn diagnose<I, F>(
    number: usize,
    cases: &[Case<I>],
    outputs: &[Outcome],
    mistakes: &[Mistake<F>],
    mistaken: &impl Fn(&F, &I) -> Result<Parts>,
) -> Option<&'static str> {
    if !matches!(outputs[number], Outcome::Done(_)) {
        return None;
    }
    let reproduces = |m: &Mistake<F>, i: usize| {
        same_outcome(&call(|| mistaken(&m.kernel, &cases[i].input)), &outputs[i])
    };
    let candidates: Vec<&Mistake<F>> = mistakes.iter().filter(|m| reproduces(m, number)).collect();
    if candidates.len() < 2 {
        return candidates.first().map(|m| m.hint);
    }
    let mut best: Option<(usize, &Mistake<F>)> = None;
    for m in candidates {
        let score = (0..cases.len()).filter(|&i| reproduces(m, i)).count();
        if best.is_none_or(|(top, _)| score > top) {
            best = Some((score, m));
        }
    }
    best.map(|(_, m)| m.hint)
}

/// Run `student` on every case against `reference`; on the first failure, look for the mistake
/// that gives the student's result.
pub(crate) fn run<I, F>(
    exercise: &'static str,
    chapter: u32,
    cases: &[Case<I>],
    reference: impl Fn(&I) -> Result<Parts>,
    student: impl Fn(&I) -> Result<Parts>,
    mistakes: &[Mistake<F>],
    mistaken: impl Fn(&F, &I) -> Result<Parts>,
) -> Report {
    let mut report = Report {
        exercise,
        chapter,
        passed: 0,
        total: cases.len(),
        worst_error: 0.0,
        panics: 0,
        failure: None,
        not_done: false,
    };
    let mut outputs = Vec::with_capacity(cases.len());
    let mut first_failure = None;
    for (number, case) in cases.iter().enumerate() {
        let expected = reference(&case.input);
        let got = call(|| student(&case.input));
        let problem = match (&expected, &got) {
            (_, Outcome::NotImplemented) => Some(Problem::NotImplemented),
            (_, Outcome::Panicked(message)) => {
                report.panics += 1;
                Some(Problem::Panicked {
                    message: message.clone(),
                })
            }
            (Err(_), Outcome::Failed(_)) => None,
            (Err(e), Outcome::Done(_)) => Some(Problem::MissingError {
                expected: e.to_string(),
            }),
            (Ok(_), Outcome::Failed(message)) => Some(Problem::UnexpectedError {
                got: message.clone(),
            }),
            (Ok(e), Outcome::Done(g)) => {
                let (problem, worst) = compare(e, g);
                report.worst_error = report.worst_error.max(worst);
                problem
            }
        };
        match problem {
            None => report.passed += 1,
            Some(problem) if first_failure.is_none() => first_failure = Some((number, problem)),
            Some(_) => {}
        }
        outputs.push(got);
    }
    if outputs.iter().all(|o| matches!(o, Outcome::NotImplemented)) {
        report.not_done = true;
        report.worst_error = 0.0;
        return report;
    }
    if let Some((number, problem)) = first_failure {
        let hint = diagnose(number, cases, &outputs, mistakes, &mistaken);
        report.failure = Some(Failure {
            case: number + 1,
            description: cases[number].description.clone(),
            problem,
            hint,
        });
    }
    report
}

/// An array whole if it is small, else its shape and first values.
pub(crate) fn show(a: &ArrayD<f64>) -> String {
    if a.ndim() == 0 {
        return format!("{}", a.first().copied().unwrap_or(f64::NAN));
    }
    if a.len() <= PRINT_WHOLE {
        let text = format!("{a}");
        return format!("shape {:?}\n{}", a.shape(), indent(&text, 2));
    }
    let first: Vec<String> = a.iter().take(8).map(|v| format!("{v}")).collect();
    format!(
        "shape {:?}, {} values, first in memory order: [{}, …]",
        a.shape(),
        a.len(),
        first.join(", ")
    )
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}").trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Shape {
                part,
                expected,
                got,
            } => write!(f, "{part} has shape {got:?}, expected {expected:?}"),
            Problem::Values {
                part,
                expected,
                got,
                at,
                error,
            } => {
                let e_v = expected[IxDyn(at)];
                let g_v = got[IxDyn(at)];
                writeln!(
                    f,
                    "{part} differs: at {at:?} expected {e_v}, got {g_v} (error {error:.1e})"
                )?;
                writeln!(f, "expected {}", show(expected))?;
                write!(f, "got      {}", show(got))
            }
            Problem::MissingError { expected } => write!(
                f,
                "returned a result where the reference refuses the input: {expected}"
            ),
            Problem::UnexpectedError { got } => write!(
                f,
                "returned an error where the reference computes a result: {got}"
            ),
            Problem::NotImplemented => write!(
                f,
                "returned Error::NotImplemented here, where it answers other cases"
            ),
            Problem::Panicked { message } => write!(f, "panicked: {message}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = format!("{} (chapter {})", self.exercise, self.chapter);
        match self.status() {
            Status::NotDone => return write!(f, "{title}: not done yet"),
            Status::Passed => write!(f, "{title}: passed")?,
            Status::Failed => write!(f, "{title}: FAILED")?,
        }
        write!(
            f,
            ", {} of {} cases, worst error {:.1e}",
            self.passed, self.total, self.worst_error
        )?;
        if self.panics > 0 {
            write!(f, ", {} panicked", self.panics)?;
        }
        if let Some(failure) = &self.failure {
            writeln!(f)?;
            writeln!(
                f,
                "  first failure, case {}: {}",
                failure.case,
                indent(&failure.description, 4).trim_start()
            )?;
            write!(f, "{}", indent(&failure.problem.to_string(), 4))?;
            if let Some(hint) = failure.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}
