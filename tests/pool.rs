//! Chapter 5: pooling against PyTorch fixtures, naive against fast, and the course's examples.

mod common;

use common::*;
use convlab::pool::{fast, naive};
use convlab::shape::{Padding, Pool1dParams, Pool2dParams, PoolNdParams};
use ndarray::{Array, Array3, Array4, Dimension, IxDyn, array};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct PoolFile {
    pool1d: Vec<PoolCase>,
    pool2d: Vec<PoolCase>,
}

#[derive(Deserialize)]
struct PoolCase {
    x: Vec<f64>,
    x_shape: Vec<usize>,
    kernel: Vec<usize>,
    stride: Option<Vec<usize>>,
    padding: Vec<usize>,
    dilation: Vec<usize>,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Option<usize>,
    adaptive: Vec<usize>,
    #[serde(default, deserialize_with = "optional_reals")]
    max: Option<Vec<f64>>,
    #[serde(default)]
    max_index: Vec<usize>,
    #[serde(default)]
    max_shape: Vec<usize>,
    #[serde(default, deserialize_with = "optional_reals")]
    avg: Option<Vec<f64>>,
    #[serde(default)]
    avg_shape: Vec<usize>,
    #[serde(deserialize_with = "reals")]
    adaptive_max: Vec<f64>,
    #[serde(default)]
    max_grad_out: Vec<f64>,
    #[serde(default)]
    max_grad_x: Vec<f64>,
    #[serde(default)]
    avg_grad_out: Vec<f64>,
    #[serde(default)]
    avg_grad_x: Vec<f64>,
    adaptive_max_index: Vec<usize>,
    adaptive_avg: Vec<f64>,
}

impl PoolCase {
    fn x<D: Dimension>(&self) -> Array<f64, D> {
        Array::from_shape_vec(IxDyn(&self.x_shape), self.x.clone())
            .unwrap()
            .into_dimensionality()
            .unwrap()
    }

    fn params<const N: usize>(&self, dilated: bool) -> PoolNdParams<N> {
        let arr = |v: &[usize]| -> [usize; N] { v.try_into().unwrap() };
        let mut p = PoolNdParams::new(arr(&self.kernel))
            .paddings(arr(&self.padding).map(Padding::Explicit))
            .ceil_mode(self.ceil_mode)
            .count_include_pad(self.count_include_pad);
        if let Some(s) = &self.stride {
            p = p.strides(arr(s));
        }
        if dilated {
            p = p.dilations(arr(&self.dilation));
        }
        p.divisor_override = self.divisor_override;
        p
    }
}

fn check<T: PartialEq + std::fmt::Debug>(what: &str, got: Vec<T>, expected: &[T]) {
    assert_eq!(got, expected, "{what}");
}

#[test]
fn pool1d_matches_pytorch() {
    let file: PoolFile = fixture("pool.json");
    for (i, c) in file.pool1d.iter().enumerate() {
        let x: Array3<f64> = c.x();
        let what = |op: &str| format!("case {i} {op} x{:?} {:?}", c.x_shape, c.params::<1>(true));
        for (name, max, avg, amax, aavg) in [
            (
                "naive",
                naive::max_pool1d_with_indices::<f64> as fn(_, _) -> _,
                naive::avg_pool1d::<f64> as fn(_, _) -> _,
                naive::adaptive_max_pool1d_with_indices::<f64> as fn(_, _) -> _,
                naive::adaptive_avg_pool1d::<f64> as fn(_, _) -> _,
            ),
            (
                "fast",
                fast::max_pool1d_with_indices::<f64>,
                fast::avg_pool1d::<f64>,
                fast::adaptive_max_pool1d_with_indices::<f64>,
                fast::adaptive_avg_pool1d::<f64>,
            ),
        ] {
            let result: convlab::Result<(Array3<f64>, Array3<usize>)> =
                max(x.view(), c.params::<1>(true));
            match (&c.max, result) {
                (Some(expected), Ok((y, idx))) => {
                    assert_eq!(y.shape(), c.max_shape.as_slice(), "{}", what(name));
                    assert_close(y.as_slice().unwrap(), expected, RTOL_F64, &what(name));
                    check(&what(name), idx.into_raw_vec_and_offset().0, &c.max_index);
                }
                (None, Err(_)) => {}
                (e, r) => panic!(
                    "{}: PyTorch {:?}, convlab {:?}",
                    what(name),
                    e.is_some(),
                    r.err()
                ),
            }
            let result: convlab::Result<Array3<f64>> = avg(x.view(), c.params::<1>(false));
            match (&c.avg, result) {
                (Some(expected), Ok(y)) => {
                    assert_eq!(y.shape(), c.avg_shape.as_slice(), "{}", what(name));
                    assert_close(y.as_slice().unwrap(), expected, RTOL_F64, &what(name));
                }
                (None, Err(_)) => {}
                (e, r) => panic!(
                    "{}: PyTorch {:?}, convlab {:?}",
                    what(name),
                    e.is_some(),
                    r.err()
                ),
            }
            let (y, idx): (Array3<f64>, Array3<usize>) = amax(x.view(), c.adaptive[0]).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &c.adaptive_max,
                RTOL_F64,
                &what("adaptive max"),
            );
            check(
                &what("adaptive max"),
                idx.into_raw_vec_and_offset().0,
                &c.adaptive_max_index,
            );
            let y: Array3<f64> = aavg(x.view(), c.adaptive[0]).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &c.adaptive_avg,
                RTOL_F64,
                &what("adaptive avg"),
            );
        }
    }
}

/// Max and average pooling backward against PyTorch autograd's gradients of `L = Σ y·G`, in
/// 1-D and 2-D, naive and fast.
#[test]
fn pooling_backward_matches_pytorch_autograd() {
    let file: PoolFile = fixture("pool.json");
    for (i, c) in file.pool1d.iter().enumerate() {
        let x: Array3<f64> = c.x();
        let l = x.dim().2;
        if !c.max_grad_out.is_empty() {
            let (_, idx) = naive::max_pool1d_with_indices(x.view(), c.params::<1>(true)).unwrap();
            let g = Array3::from_shape_vec(idx.raw_dim(), c.max_grad_out.clone()).unwrap();
            for f in [
                naive::max_pool1d_backward::<f64>,
                fast::max_pool1d_backward::<f64>,
            ] {
                let dx = f(g.view(), idx.view(), l).unwrap();
                assert_close(
                    dx.as_slice().unwrap(),
                    &c.max_grad_x,
                    RTOL_F64,
                    &format!("1-D max case {i}"),
                );
            }
        }
        if c.avg.is_some() {
            let shape: [usize; 3] = c.avg_shape.clone().try_into().unwrap();
            let g = Array3::from_shape_vec(shape, c.avg_grad_out.clone()).unwrap();
            for f in [
                naive::avg_pool1d_backward::<f64>,
                fast::avg_pool1d_backward::<f64>,
            ] {
                let dx = f(g.view(), l, c.params::<1>(false)).unwrap();
                assert_close(
                    dx.as_slice().unwrap(),
                    &c.avg_grad_x,
                    RTOL_F64,
                    &format!("1-D avg case {i}"),
                );
            }
        }
    }
    for (i, c) in file.pool2d.iter().enumerate() {
        let x: Array4<f64> = c.x();
        let hw = [x.dim().2, x.dim().3];
        if !c.max_grad_out.is_empty() {
            let (_, idx) = naive::max_pool2d_with_indices(x.view(), c.params::<2>(true)).unwrap();
            let g = Array4::from_shape_vec(idx.raw_dim(), c.max_grad_out.clone()).unwrap();
            for f in [
                naive::max_pool2d_backward::<f64>,
                fast::max_pool2d_backward::<f64>,
            ] {
                let dx = f(g.view(), idx.view(), hw).unwrap();
                assert_close(
                    dx.as_slice().unwrap(),
                    &c.max_grad_x,
                    RTOL_F64,
                    &format!("2-D max case {i}"),
                );
            }
        }
        if c.avg.is_some() {
            let shape: [usize; 4] = c.avg_shape.clone().try_into().unwrap();
            let g = Array4::from_shape_vec(shape, c.avg_grad_out.clone()).unwrap();
            for f in [
                naive::avg_pool2d_backward::<f64>,
                fast::avg_pool2d_backward::<f64>,
            ] {
                let dx = f(g.view(), hw, c.params::<2>(false)).unwrap();
                assert_close(
                    dx.as_slice().unwrap(),
                    &c.avg_grad_x,
                    RTOL_F64,
                    &format!("2-D avg case {i}"),
                );
            }
        }
    }
}

#[test]
fn pool2d_matches_pytorch() {
    let file: PoolFile = fixture("pool.json");
    for (i, c) in file.pool2d.iter().enumerate() {
        let x: Array4<f64> = c.x();
        let what = |op: &str| format!("case {i} {op} x{:?} {:?}", c.x_shape, c.params::<2>(true));
        let adaptive: [usize; 2] = c.adaptive.clone().try_into().unwrap();
        for (name, max, avg, amax, aavg) in [
            (
                "naive",
                naive::max_pool2d_with_indices::<f64> as fn(_, _) -> _,
                naive::avg_pool2d::<f64> as fn(_, _) -> _,
                naive::adaptive_max_pool2d_with_indices::<f64> as fn(_, _) -> _,
                naive::adaptive_avg_pool2d::<f64> as fn(_, _) -> _,
            ),
            (
                "fast",
                fast::max_pool2d_with_indices::<f64>,
                fast::avg_pool2d::<f64>,
                fast::adaptive_max_pool2d_with_indices::<f64>,
                fast::adaptive_avg_pool2d::<f64>,
            ),
        ] {
            let result: convlab::Result<(Array4<f64>, Array4<usize>)> =
                max(x.view(), c.params::<2>(true));
            match (&c.max, result) {
                (Some(expected), Ok((y, idx))) => {
                    assert_eq!(y.shape(), c.max_shape.as_slice(), "{}", what(name));
                    assert_close(y.as_slice().unwrap(), expected, RTOL_F64, &what(name));
                    check(&what(name), idx.into_raw_vec_and_offset().0, &c.max_index);
                }
                (None, Err(_)) => {}
                (e, r) => panic!(
                    "{}: PyTorch {:?}, convlab {:?}",
                    what(name),
                    e.is_some(),
                    r.err()
                ),
            }
            let result: convlab::Result<Array4<f64>> = avg(x.view(), c.params::<2>(false));
            match (&c.avg, result) {
                (Some(expected), Ok(y)) => {
                    assert_eq!(y.shape(), c.avg_shape.as_slice(), "{}", what(name));
                    assert_close(y.as_slice().unwrap(), expected, RTOL_F64, &what(name));
                }
                (None, Err(_)) => {}
                (e, r) => panic!(
                    "{}: PyTorch {:?}, convlab {:?}",
                    what(name),
                    e.is_some(),
                    r.err()
                ),
            }
            let (y, idx): (Array4<f64>, Array4<usize>) = amax(x.view(), adaptive).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &c.adaptive_max,
                RTOL_F64,
                &what("adaptive max"),
            );
            check(
                &what("adaptive max"),
                idx.into_raw_vec_and_offset().0,
                &c.adaptive_max_index,
            );
            let y: Array4<f64> = aavg(x.view(), adaptive).unwrap();
            assert_close(
                y.as_slice().unwrap(),
                &c.adaptive_avg,
                RTOL_F64,
                &what("adaptive avg"),
            );
        }
    }
}

/// PyTorch's `max_pool1d([[1, nan, 3, nan]], 4, return_indices=True)` gives `(nan, 3)`: a NaN
/// beats every number, and a later NaN replaces an earlier one.
#[test]
fn nan_wins_a_max_like_pytorch() {
    let x = array![[[1.0, f64::NAN, 3.0, f64::NAN]]];
    for f in [
        naive::max_pool1d_with_indices::<f64>,
        fast::max_pool1d_with_indices::<f64>,
    ] {
        let (y, i) = f(x.view(), Pool1dParams::new([4])).unwrap();
        assert!(y[[0, 0, 0]].is_nan());
        assert_eq!(i[[0, 0, 0]], 3);
    }
}

/// The course's Keras example: a 4×3 image pooled 2×2 gives [5, 11] with 'valid' and
/// [[5, 6], [11, 12]] with 'same' (a column of zeros added on the right, which never wins).
#[test]
fn keras_valid_and_same_pooling() {
    let x = array![
        [1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0],
        [7.0, 8.0, 9.0],
        [10.0, 11.0, 12.0]
    ]
    .into_shape_with_order((1, 1, 4, 3))
    .unwrap();
    for f in [naive::max_pool2d::<f64>, fast::max_pool2d::<f64>] {
        let valid = f(x.view(), Pool2dParams::new([2, 2]).padding(Padding::Valid)).unwrap();
        assert_eq!(valid.into_raw_vec_and_offset().0, vec![5.0, 11.0]);
        let same = f(
            x.view(),
            Pool2dParams::new([2, 2]).padding(Padding::KerasSame),
        )
        .unwrap();
        assert_eq!(same.into_raw_vec_and_offset().0, vec![5.0, 6.0, 11.0, 12.0]);
    }
    // Keras averages over the real pixels only: the right column's windows hold 3 and 6, 9 and 12.
    for f in [naive::avg_pool2d::<f64>, fast::avg_pool2d::<f64>] {
        let same = f(
            x.view(),
            Pool2dParams::new([2, 2]).padding(Padding::KerasSame),
        )
        .unwrap();
        assert_eq!(same.into_raw_vec_and_offset().0, vec![3.0, 4.5, 9.0, 10.5]);
    }
}

/// The course's 6×6 example: its two 4×4 feature maps pooled 2×2.
#[test]
fn course_feature_maps_pooled() {
    let h = array![
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
    for f in [naive::max_pool2d::<f64>, fast::max_pool2d::<f64>] {
        let m = f(h.view(), Pool2dParams::new([2, 2])).unwrap();
        assert_eq!(
            m.into_raw_vec_and_offset().0,
            vec![5.0, -1.0, -1.0, 6.0, 5.0, 3.0, -4.0, 4.0]
        );
    }
}

#[test]
fn invalid_pooling_is_an_error() {
    let x = Array4::<f32>::zeros((1, 1, 6, 6));
    let e = naive::max_pool2d(x.view(), Pool2dParams::new([3, 3]).padding(2)).unwrap_err();
    assert!(e.to_string().contains("at most half"), "{e}");
    let e = fast::avg_pool2d(x.view(), Pool2dParams::new([2, 2]).dilation(2)).unwrap_err();
    assert!(e.to_string().contains("no dilation"), "{e}");
    let e = fast::avg_pool2d(x.view(), Pool2dParams::new([2, 2]).divisor_override(0)).unwrap_err();
    assert!(e.to_string().contains("divisor_override"), "{e}");
    assert!(fast::max_pool2d(x.view(), Pool2dParams::new([7, 7])).is_err());
    assert!(fast::adaptive_avg_pool2d(x.view(), [0, 3]).is_err());
    assert!(naive::max_pool2d(x.view(), Pool2dParams::new([2, 2]).padding(Padding::Same)).is_err());
}

fn pool_case() -> impl Strategy<Value = (Array4<f64>, Pool2dParams, [usize; 2], Layout)> {
    (
        (1usize..3, 1usize..4, 1usize..12, 1usize..12),
        (1usize..5, 1usize..5, 0usize..4, 0usize..4),
        (0usize..3, 0usize..3, 1usize..3, 1usize..3),
        (
            any::<bool>(),
            any::<bool>(),
            0usize..3,
            1usize..6,
            1usize..6,
            any::<bool>(),
        ),
    )
        .prop_flat_map(
            |(
                (n, c, h, w),
                (kh, kw, sh, sw),
                (ph, pw, dh, dw),
                (ceil, include, layout, oh, ow, keras),
            )| {
                let stride = |s: usize, k: usize| if s == 0 { k } else { s };
                let mut p = Pool2dParams::new([kh, kw])
                    .strides([stride(sh, kh), stride(sw, kw)])
                    .paddings([
                        Padding::Explicit(ph.min(kh / 2)),
                        Padding::Explicit(pw.min(kw / 2)),
                    ])
                    .dilations([dh, dw])
                    .ceil_mode(ceil)
                    .count_include_pad(include);
                if keras {
                    p = p.padding(Padding::KerasSame);
                }
                proptest::collection::vec(-3i32..4, n * c * h * w).prop_map(move |v| {
                    let x = Array4::from_shape_vec(
                        (n, c, h, w),
                        v.into_iter().map(f64::from).collect(),
                    )
                    .unwrap();
                    (x, p, [oh, ow], LAYOUTS[layout])
                })
            },
        )
}

proptest! {
    #![proptest_config(cases(192))]

    /// Fast pooling equals naive pooling, values and indices, ties included, on any layout.
    #[test]
    fn pooling_fast_equals_naive((x, p, adaptive, layout) in pool_case()) {
        let stored = Stored::new(&x, layout);
        let v = stored.view();
        prop_assert_eq!(
            naive::max_pool2d_with_indices(x.view(), p),
            fast::max_pool2d_with_indices(v, p)
        );
        let avg = p.dilations([1, 1]);
        let (e, g) = (naive::avg_pool2d(x.view(), avg), fast::avg_pool2d(v, avg));
        match (e, g) {
            (Ok(e), Ok(g)) => {
                let size = naive::avg_pool2d(x.mapv(f64::abs).view(), avg).unwrap();
                agree("fast avg_pool2d", &g, &e, &size, RTOL_F64)?;
            }
            (e, g) => prop_assert_eq!(e.err(), g.err()),
        }
        prop_assert_eq!(
            naive::adaptive_max_pool2d_with_indices(x.view(), adaptive),
            fast::adaptive_max_pool2d_with_indices(v, adaptive)
        );
        let e = naive::adaptive_avg_pool2d(x.view(), adaptive).unwrap();
        let g = fast::adaptive_avg_pool2d(v, adaptive).unwrap();
        let size = naive::adaptive_avg_pool2d(x.mapv(f64::abs).view(), adaptive).unwrap();
        agree("fast adaptive_avg_pool2d", &g, &e, &size, RTOL_F64)?;
    }

    /// The size pooling produces is chapter 2's formula.
    #[test]
    fn pooling_size_is_the_formula((x, p, _adaptive, _layout) in pool_case()) {
        let (_, _, h, w) = x.dim();
        match naive::max_pool2d(x.view(), p) {
            Ok(y) => prop_assert_eq!([y.dim().2, y.dim().3], p.output_size([h, w]).unwrap()),
            Err(_) => prop_assert!(p.output_size([h, w]).is_err()),
        }
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// 2×2 windows with stride 2, the pooling of most CNNs, which the fast kernel computes
    /// directly: equal to naive, values and indices, with ties and NaNs, odd sizes (the last row
    /// or column left out) and any layout.
    #[test]
    fn two_by_two_pooling_fast_equals_naive(
        (n, c, h, w) in (1usize..3, 1usize..4, 2usize..12, 2usize..12),
        values in proptest::collection::vec(0usize..5, 2 * 3 * 11 * 11),
        layout in 0usize..3,
        ceil in any::<bool>(),
    ) {
        // Values from {−1, 0, 1, 2, NaN}: many ties, and NaNs that must win.
        let x = Array4::from_shape_fn((n, c, h, w), |(a, b, i, j)| {
            match values[((a * 3 + b) * 11 + i) * 11 + j] {
                4 => f64::NAN,
                v => v as f64 - 1.0,
            }
        });
        let p = Pool2dParams::new([2, 2]).ceil_mode(ceil);
        let stored = Stored::new(&x, LAYOUTS[layout]);
        let (e, ei) = naive::max_pool2d_with_indices(x.view(), p).unwrap();
        let (g, gi) = fast::max_pool2d_with_indices(stored.view(), p).unwrap();
        prop_assert_eq!(ei, gi);
        // NaN ≠ NaN: compare the bits.
        prop_assert_eq!(e.mapv(f64::to_bits), g.mapv(f64::to_bits));
    }
}
