//! Helpers shared by the integration tests: fixture loading, tolerances, non-contiguous layouts.
#![allow(dead_code)]

use convlab::shape::Padding;
use ndarray::{Array, ArrayBase, ArrayView, AxisDescription, Data, Dimension, NdFloat, Slice};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use std::path::PathBuf;

/// A property's configuration: `n` cases, or more where the `PROPTEST_CASES` environment
/// variable asks for more (it is a floor, so a stress run can raise every property at once;
/// `tools/stress-tests` does).
pub fn cases(n: u32) -> ProptestConfig {
    let floor = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    ProptestConfig {
        cases: n.max(floor),
        ..ProptestConfig::default()
    }
}

/// The step for central differences of a loss that is affine in the input being varied (a
/// convolution in its input or its weight, unfold and fold, average pooling, max pooling away
/// from ties). Its central difference is exact for any step but for rounding, whose error is
/// about 10⁻¹⁶ times the sum of the magnitudes of the loss's terms divided by the step: a large
/// step keeps that far below the tolerance.
pub const AFFINE_STEP: f64 = 1e-3;

/// The step for central differences of a smooth, non-affine loss (activations, losses):
/// PyTorch's `gradcheck` default, which balances the `O(ε²)` truncation against rounding.
pub const SMOOTH_STEP: f64 = 1e-6;

/// A padding as the fixtures write it: a number of zeros, or a rule's name.
#[derive(serde::Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum PaddingSpec {
    Number(usize),
    Rule(String),
}

impl PaddingSpec {
    pub fn padding(&self) -> Padding {
        match self {
            PaddingSpec::Number(p) => Padding::Explicit(*p),
            PaddingSpec::Rule(r) => match r.as_str() {
                "valid" => Padding::Valid,
                "same" => Padding::Same,
                "full" => Padding::Full,
                "keras_same" => Padding::KerasSame,
                other => panic!("unknown padding {other}"),
            },
        }
    }
}

/// Relative tolerance for f32 results against an f64 reference.
pub const RTOL_F32: f64 = 1e-5;
/// Relative tolerance for f64 results against an f64 reference.
pub const RTOL_F64: f64 = 1e-12;

/// Read `tests/fixtures/NAME` as JSON.
pub fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not valid: {e}", path.display()))
}

/// Where `actual` and `expected` differ by more than `rtol` relative to the larger of the
/// element and the largest magnitude in `expected` (so values that cancel to nearly zero are
/// judged on the scale of the result, not on their own), describe the first such element.
pub fn mismatch<T: NdFloat>(actual: &[T], expected: &[f64], rtol: f64) -> Option<String> {
    if actual.len() != expected.len() {
        return Some(format!(
            "length {} but expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let scale = expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    actual
        .iter()
        .zip(expected)
        .enumerate()
        .find_map(|(i, (a, &e))| {
            let a = a.to_f64().expect("float converts to f64");
            let tol = rtol * e.abs().max(scale);
            ((a - e).abs() > tol || a.is_nan() != e.is_nan())
                .then(|| format!("element {i}: got {a}, expected {e} (tolerance {tol:e})"))
        })
}

/// Deserialize a list of reals where the fixtures write infinities and NaN as strings.
pub fn reals<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Real {
        Number(f64),
        Named(String),
    }
    let values: Vec<Real> = serde::Deserialize::deserialize(d)?;
    values
        .into_iter()
        .map(|v| match v {
            Real::Number(x) => Ok(x),
            Real::Named(s) => s.parse::<f64>().map_err(serde::de::Error::custom),
        })
        .collect()
}

/// [`reals`] for an optional list.
pub fn optional_reals<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<f64>>, D::Error> {
    reals(d).map(Some)
}

/// Where `actual` differs from the f64 `reference` by more than `rtol` times `size`, the sum of
/// the magnitudes of the terms that make up each element (the same computation on absolute
/// values). Rounding errors of a sum scale with that size, not with the sum itself, which can
/// cancel to almost nothing; this is the fair measure for comparing f32 results.
pub fn sized_mismatch<T: NdFloat>(
    actual: &[T],
    reference: &[f64],
    size: &[f64],
    rtol: f64,
) -> Option<String> {
    if actual.len() != reference.len() || size.len() != reference.len() {
        return Some(format!(
            "length {} but expected {}",
            actual.len(),
            reference.len()
        ));
    }
    (0..actual.len()).find_map(|k| {
        let a = actual[k].to_f64().expect("float converts to f64");
        let gap = (a - reference[k]).abs();
        let tol = rtol * size[k] + f64::MIN_POSITIVE;
        (gap.is_nan() || gap > tol).then(|| {
            format!(
                "element {k}: got {a}, expected {} (terms of size {})",
                reference[k], size[k]
            )
        })
    })
}

/// Judge `actual` against an f64 `reference` of the same computation, element by element in
/// logical order, relative to `size`: the same computation on the magnitudes of its inputs
/// (see [`sized_mismatch`]). The one comparison for every property whose results are sums that
/// can cancel: a result that is 0 in exact arithmetic is held to the rounding its terms allow,
/// not to its own (meaningless) magnitude.
pub fn agree<T: NdFloat, D: Dimension>(
    what: &str,
    actual: &ArrayBase<impl Data<Elem = T>, D>,
    reference: &ArrayBase<impl Data<Elem = f64>, D>,
    size: &ArrayBase<impl Data<Elem = f64>, D>,
    rtol: f64,
) -> Result<(), TestCaseError> {
    if actual.shape() != reference.shape() || size.shape() != reference.shape() {
        return Err(TestCaseError::fail(format!(
            "{what}: shape {:?} but expected {:?} (sizes {:?})",
            actual.shape(),
            reference.shape(),
            size.shape()
        )));
    }
    match sized_mismatch(&to_f64(actual), &to_f64(reference), &to_f64(size), rtol) {
        Some(m) => Err(TestCaseError::fail(format!("{what}: {m}"))),
        None => Ok(()),
    }
}

/// Panic with a useful message unless `actual` is close to `expected` (see [`mismatch`]).
pub fn assert_close<T: NdFloat>(actual: &[T], expected: &[f64], rtol: f64, what: &str) {
    if let Some(m) = mismatch(actual, expected, rtol) {
        panic!("{what}: {m}");
    }
}

/// The elements of any array, in logical (row-major) order, as f64.
pub fn to_f64<T: NdFloat, D: ndarray::Dimension>(
    a: &ndarray::ArrayBase<impl ndarray::Data<Elem = T>, D>,
) -> Vec<f64> {
    a.iter()
        .map(|v| v.to_f64().expect("float converts to f64"))
        .collect()
}

/// Cast f64 values to `T`.
pub fn cast<T: NdFloat>(values: &[f64]) -> Vec<T> {
    values
        .iter()
        .map(|&v| T::from(v).expect("f64 converts to the float type"))
        .collect()
}

/// How a test array is laid out in memory.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// Row-major, contiguous.
    Standard,
    /// Every other element of a larger array along the last axis.
    Stepped,
    /// Axes stored in reverse order (column-major), then permuted back.
    Permuted,
}

pub const LAYOUTS: [Layout; 3] = [Layout::Standard, Layout::Stepped, Layout::Permuted];

/// Storage that owns the elements of an array in the given layout; `view()` shows the original
/// values. `Stepped` leaves NaN between the elements, so a kernel that reads past its view fails.
/// For 1-D arrays `Permuted` stores the elements in reverse (a negative stride).
pub struct Stored<T, D: Dimension> {
    data: Array<T, D>,
    layout: Layout,
}

fn step_last(ndim: usize) -> impl Fn(AxisDescription) -> Slice {
    move |ax| {
        if ax.axis.index() + 1 == ndim {
            Slice::new(1, None, 2)
        } else {
            Slice::from(..)
        }
    }
}

impl<T: NdFloat, D: Dimension> Stored<T, D> {
    pub fn new(a: &Array<T, D>, layout: Layout) -> Self {
        let ndim = a.ndim();
        let data = match layout {
            Layout::Standard => a.clone(),
            Layout::Stepped => {
                let mut shape = a.raw_dim();
                shape[ndim - 1] = 2 * shape[ndim - 1] + 1;
                let mut big = Array::from_elem(shape, T::nan());
                big.slice_each_axis_mut(step_last(ndim)).assign(a);
                big
            }
            Layout::Permuted if ndim == 1 => {
                a.slice_each_axis(|_| Slice::new(0, None, -1)).to_owned()
            }
            Layout::Permuted => a.clone().reversed_axes().as_standard_layout().into_owned(),
        };
        Stored { data, layout }
    }

    pub fn view(&self) -> ArrayView<'_, T, D> {
        let ndim = self.data.ndim();
        match self.layout {
            Layout::Standard => self.data.view(),
            Layout::Stepped => self.data.slice_each_axis(step_last(ndim)),
            Layout::Permuted if ndim == 1 => self.data.slice_each_axis(|_| Slice::new(0, None, -1)),
            Layout::Permuted => self.data.view().reversed_axes(),
        }
    }
}
