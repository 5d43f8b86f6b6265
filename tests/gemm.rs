//! GEMM engines against each other: random sizes (tile remainders, 1×N, M×1, K = 1, empty),
//! transposed and strided operands, α and β, every instruction set this processor runs.

mod common;

use common::{RTOL_F32, RTOL_F64, agree, cases};
use convlab::gemm::{Engine, Isa, Scalar, gemm};
use ndarray::{Array2, ArrayView2, s};
use proptest::prelude::*;

fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::MatrixMultiply];
    engines.extend(Isa::available().into_iter().map(Engine::Blocked));
    engines
}

/// An operand stored as asked: plain, transposed in memory, or every other column of a wider
/// array; the view has the same logical values in each case.
fn stored(values: &Array2<f64>, how: usize) -> Array2<f64> {
    let (r, c) = values.dim();
    match how {
        0 => values.clone(),
        1 => values.t().as_standard_layout().into_owned(),
        _ => {
            let mut wide = Array2::from_elem((r, 2 * c + 1), f64::NAN);
            wide.slice_mut(s![.., 1..;2]).assign(values);
            wide
        }
    }
}

fn view(storage: &Array2<f64>, how: usize) -> ArrayView2<'_, f64> {
    match how {
        0 => storage.view(),
        1 => storage.t(),
        _ => storage.slice(s![.., 1..;2]),
    }
}

fn check<T: Scalar>(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    c0: &Array2<f64>,
    alpha: f64,
    beta: f64,
    rtol: f64,
) -> Result<(), TestCaseError> {
    let cast = |x: ArrayView2<f64>| x.mapv(|v| T::from(v).unwrap());
    let (at, bt) = (cast(a), cast(b));
    let (alpha, beta) = (T::from(alpha).unwrap(), T::from(beta).unwrap());
    // With β = 0, C starts as NaN: an engine that reads it would leak NaN into the result.
    let start = if beta == T::zero() {
        c0.mapv(|_| T::nan())
    } else {
        cast(c0.view())
    };
    // The reference in f64 on the same (rounded) values, and the size of each element's terms:
    // |α|·|A|·|B| + |β|·|C|.
    let f = |x: &Array2<T>| x.mapv(|v| v.to_f64().unwrap());
    let (a64, b64) = (f(&at), f(&bt));
    let (alpha64, beta64) = (alpha.to_f64().unwrap(), beta.to_f64().unwrap());
    let c64 = f(&start);
    let mut reference = c64.clone();
    gemm(
        Engine::Naive,
        alpha64,
        a64.view(),
        b64.view(),
        beta64,
        reference.view_mut(),
    )
    .unwrap();
    let mut size = c64.mapv(|v| if beta64 == 0.0 { 0.0 } else { v.abs() });
    let (a_abs, b_abs) = (a64.mapv(f64::abs), b64.mapv(f64::abs));
    gemm(
        Engine::Naive,
        alpha64.abs(),
        a_abs.view(),
        b_abs.view(),
        beta64.abs(),
        size.view_mut(),
    )
    .unwrap();
    for engine in engines() {
        let mut c = start.clone();
        gemm(engine, alpha, at.view(), bt.view(), beta, c.view_mut()).unwrap();
        agree(
            &format!("{engine:?} {:?}·{:?}", a.dim(), b.dim()),
            &c,
            &reference,
            &size,
            rtol,
        )?;
    }
    Ok(())
}

fn case() -> impl Strategy<
    Value = (
        Array2<f64>,
        Array2<f64>,
        Array2<f64>,
        usize,
        usize,
        f64,
        f64,
    ),
> {
    let dim = prop_oneof![1usize..4, 1usize..40, 90usize..110, Just(0usize)];
    (
        dim.clone(),
        dim.clone(),
        dim,
        0usize..3,
        0usize..3,
        prop_oneof![Just(1.0), -2.0f64..2.0],
        prop_oneof![Just(0.0), Just(1.0), -2.0f64..2.0],
    )
        .prop_flat_map(|(m, k, n, sa, sb, alpha, beta)| {
            let v = |len| proptest::collection::vec(-1.0f64..1.0, len);
            (v(m * k), v(k * n), v(m * n)).prop_map(move |(a, b, c)| {
                (
                    Array2::from_shape_vec((m, k), a).unwrap(),
                    Array2::from_shape_vec((k, n), b).unwrap(),
                    Array2::from_shape_vec((m, n), c).unwrap(),
                    sa,
                    sb,
                    alpha,
                    beta,
                )
            })
        })
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn engines_agree((a, b, c, sa, sb, alpha, beta) in case()) {
        let (a_store, b_store) = (stored(&a, sa), stored(&b, sb));
        let (av, bv) = (view(&a_store, sa), view(&b_store, sb));
        prop_assert_eq!(av, a.view());
        check::<f64>(av, bv, &c, alpha, beta, RTOL_F64)?;
        check::<f32>(av, bv, &c, alpha, beta, RTOL_F32)?;
    }
}

/// Sizes large enough to cross every block boundary (KC = 256, MC = 96, NC = 2048) and to run
/// row blocks in parallel.
#[test]
fn large_products_agree() {
    for &(m, k, n) in &[(200, 600, 70), (97, 257, 2050), (300, 300, 300)] {
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 13) % 17) as f64 / 8.0 - 1.0);
        let c = Array2::from_shape_fn((m, n), |(i, j)| ((i + j) % 3) as f64);
        check::<f64>(a.view(), b.view(), &c, 1.5, 0.5, RTOL_F64).unwrap();
        check::<f32>(a.view(), b.view(), &c, 1.0, 0.0, RTOL_F32).unwrap();
    }
}

#[test]
fn shape_mismatch_is_an_error() {
    let a = Array2::<f32>::zeros((3, 4));
    let b = Array2::<f32>::zeros((5, 2));
    let mut c = Array2::<f32>::zeros((3, 2));
    let err = gemm(Engine::Naive, 1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap_err();
    assert!(err.to_string().contains("(3, 4)"), "{err}");
    let b = Array2::<f32>::zeros((4, 2));
    let mut c = Array2::<f32>::zeros((2, 3));
    assert!(
        gemm(
            Engine::MatrixMultiply,
            1.0,
            a.view(),
            b.view(),
            0.0,
            c.view_mut()
        )
        .is_err()
    );
}
