//! Chapter 12: the image kernels' properties, kernels applied against SciPy and Pillow,
//! grayscale against Pillow, PNG files, bad input, and the montage figure.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{fixture, mismatch};
use convlab::Error;
use convlab::filters::{
    BOX_BLUR, Border, Display, EDGES_DIAGONAL, EDGES_LAPLACE_4, EDGES_LAPLACE_8, EMBOSS,
    FilterParams, GAUSSIAN_BLUR_3, GAUSSIAN_BLUR_5, IDENTITY, KERNELS, NamedKernel, SHARPEN,
    SOBEL_X, SOBEL_Y, UNSHARP_MASKING_5, apply_kernel, encode_png_gray, filter_for_display,
    grayscale, luma, read_png_gray, read_png_rgb, sample_photo, sample_photo_gray, to_display,
    write_png_gray, write_png_rgb,
};
use convlab::plot::kernels::{MONTAGE_GAP, MONTAGE_LABEL_BAND, MONTAGE_TITLE_BAND, montage_size};
use convlab::plot::{MontageOptions, kernel_montage, kernels_figure};
use convlab::shape::SignalOp;
use ndarray::{Array2, Array3, ArrayView2, array, s};

fn kernel(name: &str) -> &'static NamedKernel {
    KERNELS
        .iter()
        .find(|k| k.name() == name)
        .unwrap_or_else(|| panic!("no kernel named {name}"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The kernels themselves

#[test]
fn the_list_holds_every_constant_once() {
    let arrays: [&[f64]; 12] = [
        IDENTITY.as_flattened(),
        EDGES_DIAGONAL.as_flattened(),
        EDGES_LAPLACE_4.as_flattened(),
        EDGES_LAPLACE_8.as_flattened(),
        SOBEL_X.as_flattened(),
        SOBEL_Y.as_flattened(),
        SHARPEN.as_flattened(),
        UNSHARP_MASKING_5.as_flattened(),
        EMBOSS.as_flattened(),
        BOX_BLUR.as_flattened(),
        GAUSSIAN_BLUR_3.as_flattened(),
        GAUSSIAN_BLUR_5.as_flattened(),
    ];
    for (k, w) in KERNELS.iter().zip(arrays) {
        assert_eq!(k.weights(), w, "{}", k.name());
        assert_eq!(k.size() * k.size(), k.weights().len(), "{}", k.name());
        assert_eq!(k.array().dim(), (k.size(), k.size()));
    }
    let mut names: Vec<_> = KERNELS.iter().map(|k| k.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), KERNELS.len());
}

#[test]
fn blurs_sum_to_one_edges_to_zero_sharpeners_to_one() {
    // Hand sums: 9·(1/9); (1+2+1+2+4+2+1+2+1)/16 = 16/16; (1+4+6+4+1)²/256 = 256/256;
    // unsharp: −(256 − 36 − 476)/256 = 256/256; sharpen 5 − 4; emboss −2−1−1+1+1+1+2 = 1.
    let one = [
        "Identity",
        "Box blur",
        "Gaussian blur 3×3",
        "Gaussian blur 5×5",
        "Sharpen",
        "Unsharp masking 5×5",
        "Emboss",
    ];
    let zero = [
        "Edges (diagonal)",
        "Edges (Laplace 4)",
        "Edges (Laplace 8)",
        "Sobel x",
        "Sobel y",
    ];
    for name in one {
        let sum = kernel(name).sum();
        assert!((sum - 1.0).abs() < 1e-14, "{name} sums to {sum}");
        assert_eq!(kernel(name).display(), Display::Clip, "{name}");
    }
    for name in zero {
        assert_eq!(kernel(name).sum(), 0.0, "{name}");
        assert_eq!(kernel(name).display(), Display::AbsStretched, "{name}");
    }
    assert_eq!(one.len() + zero.len(), KERNELS.len());
    // Blurs are averages: no negative weight.
    for name in ["Box blur", "Gaussian blur 3×3", "Gaussian blur 5×5"] {
        assert!(kernel(name).weights().iter().all(|&w| w > 0.0), "{name}");
    }
}

#[test]
fn the_course_values_are_in_place() {
    // Straight from the course notes: the unsharp mask's centre −476·(−1/256), the 5×5
    // Gaussian's corner 1/256 and centre 36/256, the box blur's 1/9.
    assert_eq!(UNSHARP_MASKING_5[2][2], 476.0 / 256.0);
    assert_eq!(UNSHARP_MASKING_5[0][0], -1.0 / 256.0);
    assert_eq!(UNSHARP_MASKING_5[1][2], -24.0 / 256.0);
    assert_eq!(GAUSSIAN_BLUR_5[0][0], 1.0 / 256.0);
    assert_eq!(GAUSSIAN_BLUR_5[2][2], 36.0 / 256.0);
    assert_eq!(GAUSSIAN_BLUR_5[1][3], 16.0 / 256.0);
    assert_eq!(BOX_BLUR[1][2], 1.0 / 9.0);
    // Unsharp masking is 2·identity − Gaussian 5×5; sharpen is identity − Laplace 4.
    for i in 0..5 {
        for j in 0..5 {
            let id = if (i, j) == (2, 2) { 2.0 } else { 0.0 };
            assert!((UNSHARP_MASKING_5[i][j] - (id - GAUSSIAN_BLUR_5[i][j])).abs() < 1e-15);
        }
    }
    for i in 0..3 {
        for j in 0..3 {
            assert_eq!(SHARPEN[i][j], IDENTITY[i][j] - EDGES_LAPLACE_4[i][j]);
        }
    }
    // Sobel y is Sobel x transposed; the Laplace 8 edge kernel is minus the 8-neighbour
    // Laplacian (all ones, centre −8).
    assert_eq!(kernel("Sobel y").array(), kernel("Sobel x").array().t());
    assert_eq!(EDGES_LAPLACE_8[1][1], 8.0);
}

fn rot180(k: &Array2<f64>) -> Array2<f64> {
    k.slice(s![..;-1, ..;-1]).to_owned()
}

#[test]
fn symmetries_decide_whether_flipping_matters() {
    // Symmetric under a half turn: convolution (which flips) equals correlation.
    for name in [
        "Identity",
        "Edges (diagonal)",
        "Edges (Laplace 4)",
        "Edges (Laplace 8)",
        "Sharpen",
        "Unsharp masking 5×5",
        "Box blur",
        "Gaussian blur 3×3",
        "Gaussian blur 5×5",
    ] {
        let k = kernel(name).array();
        assert_eq!(rot180(&k), k, "{name}");
    }
    // Sobel turns into its negative: convolving gives minus the correlation.
    for name in ["Sobel x", "Sobel y"] {
        let k = kernel(name).array();
        assert_eq!(rot180(&k), -&k, "{name}");
    }
    // Emboss turned half way lights from the other corner: a different kernel.
    let e = kernel("Emboss").array();
    assert_ne!(rot180(&e), e);
    assert_eq!(e.t(), e, "emboss is symmetric about its main diagonal");

    let x = sample_photo_gray().unwrap().mapv(f64::from);
    let x = x.slice(s![40..80, 100..150]);
    let corr = |k: &Array2<f64>| apply_kernel(x, k.view(), FilterParams::default()).unwrap();
    let conv =
        |k: &Array2<f64>| apply_kernel(x, k.view(), FilterParams::default().convolve()).unwrap();
    let sharpen = kernel("Sharpen").array();
    assert_eq!(conv(&sharpen), corr(&sharpen));
    let sobel = kernel("Sobel x").array();
    assert_eq!(conv(&sobel), -corr(&sobel));
    let differ = (&conv(&e) - &corr(&e))
        .iter()
        .filter(|v| v.abs() > 1.0)
        .count();
    assert!(differ > 1000, "only {differ} pixels of emboss differ");
}

// ---------------------------------------------------------------------------------------------
// Applying kernels

#[test]
fn identity_leaves_the_image_unchanged() {
    let x = sample_photo_gray().unwrap().mapv(f64::from);
    for params in [
        FilterParams::default(),
        FilterParams::default().convolve(),
        FilterParams::default().border(Border::Replicate),
    ] {
        let y = apply_kernel(x.view(), kernel("Identity").array().view(), params).unwrap();
        assert_eq!(y, x, "{params:?}");
    }
    let gray = sample_photo_gray().unwrap();
    assert_eq!(
        filter_for_display(gray.view(), kernel("Identity"), Border::Zero).unwrap(),
        gray
    );
}

#[test]
fn sobel_on_a_ramp_is_its_slope_times_eight() {
    // x[i, j] = 3·j + 5·i + 7. Sobel x as correlation at an interior pixel:
    //   Σ_r w_r·(x[i+r, j+1] − x[i+r, j−1]) with row weights w = (1, 2, 1)
    //   = (1 + 2 + 1)·(3·(j+1) − 3·(j−1)) = 4·6 = 24 = 8·3;
    // Sobel y likewise gives 8·5 = 40; convolution flips the kernel and the sign: −24.
    let x = Array2::from_shape_fn((9, 12), |(i, j)| 3.0 * j as f64 + 5.0 * i as f64 + 7.0);
    let interior = s![1..8, 1..11];
    let sobel_x = kernel("Sobel x").array();
    let sx = apply_kernel(x.view(), sobel_x.view(), FilterParams::default()).unwrap();
    assert!(sx.slice(interior).iter().all(|&v| v == 24.0), "{sx}");
    let sy = apply_kernel(
        x.view(),
        kernel("Sobel y").array().view(),
        FilterParams::default(),
    )
    .unwrap();
    assert!(sy.slice(interior).iter().all(|&v| v == 40.0), "{sy}");
    let cx = apply_kernel(x.view(), sobel_x.view(), FilterParams::default().convolve()).unwrap();
    assert!(cx.slice(interior).iter().all(|&v| v == -24.0), "{cx}");
    // With the border replicated, the first column sees x[i, −1] = x[i, 0]: a one-sided
    // difference, (1 + 2 + 1)·(x[i, 1] − x[i, 0]) = 4·3 = 12, in every row but the first and
    // last (where the rows replicate too, and the column difference is still 3: also 12).
    let rx = apply_kernel(
        x.view(),
        sobel_x.view(),
        FilterParams::default().border(Border::Replicate),
    )
    .unwrap();
    assert!(rx.column(0).iter().all(|&v| v == 12.0), "{rx}");
    assert!(rx.slice(s![.., 1..11]).iter().all(|&v| v == 24.0), "{rx}");
}

#[test]
fn the_diagonal_edge_kernel_ignores_straight_edges() {
    // x[i, j] = f(j) only: the kernel reads f(j−1) − f(j+1) on the row above and
    // −f(j−1) + f(j+1) on the row below, which cancel; the same for f(i) only.
    let stripes = Array2::from_shape_fn((8, 10), |(_, j)| if j < 5 { 0.0 } else { 200.0 });
    let bands = stripes.t().to_owned();
    for x in [stripes, bands] {
        let y = apply_kernel(
            x.view(),
            kernel("Edges (diagonal)").array().view(),
            FilterParams::default().border(Border::Replicate),
        )
        .unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{y}");
        // The Laplacian sees the same edge: ±200 on either side of it.
        let l = apply_kernel(
            x.view(),
            kernel("Edges (Laplace 4)").array().view(),
            FilterParams::default().border(Border::Replicate),
        )
        .unwrap();
        assert_eq!(l.iter().fold(0.0f64, |m, v| m.max(v.abs())), 200.0);
    }
}

#[test]
fn zero_padding_darkens_a_blur_at_the_border() {
    // A constant image of 90. Inside, a blur (weights summing to 1) keeps 90. With zeros beyond
    // the frame, the box blur's corner window holds 4 of its 9 pixels: 4·90/9 = 40; an edge
    // pixel's window 6 of 9: 60. The Gaussian 3×3 at a corner keeps the weights
    // (4 + 2 + 2 + 1)/16 = 9/16 of 90 = 50.625. Replicating the border keeps 90 everywhere.
    let x = Array2::from_elem((6, 7), 90.0);
    let box_blur = kernel("Box blur").array();
    let boxed = apply_kernel(x.view(), box_blur.view(), FilterParams::default()).unwrap();
    assert!((boxed[[0, 0]] - 40.0).abs() < 1e-12);
    assert!((boxed[[0, 3]] - 60.0).abs() < 1e-12);
    assert!((boxed[[5, 6]] - 40.0).abs() < 1e-12);
    assert!(
        boxed
            .slice(s![1..5, 1..6])
            .iter()
            .all(|v| (v - 90.0).abs() < 1e-12)
    );
    let gauss = apply_kernel(
        x.view(),
        kernel("Gaussian blur 3×3").array().view(),
        FilterParams::default(),
    )
    .unwrap();
    assert_eq!(gauss[[0, 0]], 50.625);
    for k in &KERNELS {
        let y = apply_kernel(
            x.view(),
            k.array().view(),
            FilterParams::default().border(Border::Replicate),
        )
        .unwrap();
        let expected = 90.0 * k.sum();
        assert!(
            y.iter().all(|v| (v - expected).abs() < 1e-9),
            "{}: {y}",
            k.name()
        );
    }
}

#[derive(serde::Deserialize)]
struct FiltersFile {
    generator: String,
    grayscale: Vec<GrayCase>,
    filters: FilterCases,
}

#[derive(serde::Deserialize)]
struct GrayCase {
    shape: [usize; 3],
    rgb: Vec<u8>,
    gray: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct FilterCases {
    x_shape: [usize; 2],
    x: Vec<u8>,
    kernels: HashMap<String, KernelCase>,
}

#[derive(serde::Deserialize)]
struct KernelCase {
    weights: Vec<f64>,
    size: usize,
    correlate_zero: Vec<f64>,
    convolve_zero: Vec<f64>,
    correlate_replicate: Vec<f64>,
    convolve_replicate: Vec<f64>,
    pil: Option<Vec<u8>>,
}

/// The fixture's key for each kernel of the list.
const FIXTURE_NAMES: [(&str, &str); 12] = [
    ("identity", "Identity"),
    ("edges_diagonal", "Edges (diagonal)"),
    ("edges_laplace4", "Edges (Laplace 4)"),
    ("edges_laplace8", "Edges (Laplace 8)"),
    ("sharpen", "Sharpen"),
    ("box_blur", "Box blur"),
    ("gaussian3", "Gaussian blur 3×3"),
    ("gaussian5", "Gaussian blur 5×5"),
    ("unsharp5", "Unsharp masking 5×5"),
    ("emboss", "Emboss"),
    ("sobel_x", "Sobel x"),
    ("sobel_y", "Sobel y"),
];

#[test]
fn kernels_applied_equal_scipy() {
    let file: FiltersFile = fixture("filters.json");
    assert!(file.generator.contains("scipy"), "{}", file.generator);
    let f = &file.filters;
    let x = Array2::from_shape_vec(f.x_shape, f.x.clone())
        .unwrap()
        .mapv(f64::from);
    assert_eq!(f.kernels.len(), KERNELS.len());
    for (key, name) in FIXTURE_NAMES {
        let case = &f.kernels[key];
        let k = kernel(name);
        // The fixture's kernels were typed from the course notes separately: they must agree.
        assert_eq!(k.size(), case.size, "{name}");
        assert!(
            mismatch(k.weights(), &case.weights, 1e-15).is_none(),
            "{name}: weights {:?} but the fixture has {:?}",
            k.weights(),
            case.weights
        );
        let runs = [
            (
                FilterParams::default(),
                &case.correlate_zero,
                "correlate2d, zero fill",
            ),
            (
                FilterParams::default().convolve(),
                &case.convolve_zero,
                "convolve2d, zero fill",
            ),
            (
                FilterParams::default().border(Border::Replicate),
                &case.correlate_replicate,
                "ndimage.correlate, nearest",
            ),
            (
                FilterParams::default().border(Border::Replicate).convolve(),
                &case.convolve_replicate,
                "ndimage.convolve, nearest",
            ),
        ];
        for (params, expected, what) in runs {
            let y = apply_kernel(x.view(), k.array().view(), params).unwrap();
            assert_eq!(y.dim(), x.dim(), "{name} {what}");
            if let Some(m) = mismatch(y.as_slice().unwrap(), expected, 1e-12) {
                panic!("{name} against SciPy's {what}: {m}");
            }
        }
    }
}

#[test]
fn pillow_flips_the_rows_and_leaves_the_border() {
    // Pillow's ImageFilter.Kernel applies the kernel's first row to the row below each pixel
    // and its first column to the column left of it: a correlation with the kernel flipped
    // upside down. It rounds half up, clips to 0..255 and leaves the outer pixels as they were.
    let file: FiltersFile = fixture("filters.json");
    let f = &file.filters;
    let x8 = Array2::from_shape_vec(f.x_shape, f.x.clone()).unwrap();
    let x = x8.mapv(f64::from);
    let mut checked = 0;
    for (key, name) in FIXTURE_NAMES {
        let Some(pil) = &f.kernels[key].pil else {
            continue;
        };
        let pil = Array2::from_shape_vec(f.x_shape, pil.clone()).unwrap();
        let k = kernel(name).array();
        let upside_down = k.slice(s![..;-1, ..]).to_owned();
        let y = apply_kernel(x.view(), upside_down.view(), FilterParams::default()).unwrap();
        let r = (k.nrows() / 2) as isize;
        let inside = s![r..-r, r..-r];
        let expected = y
            .slice(inside)
            .mapv(|v| (v + 0.5).floor().clamp(0.0, 255.0) as u8);
        assert_eq!(pil.slice(inside), expected, "{name} inside");
        let mut border = pil.clone();
        border.slice_mut(inside).assign(&x8.slice(inside));
        assert_eq!(border, x8, "{name}: Pillow left the border as it was");
        checked += 1;
        if name == "Emboss" || name == "Sobel y" {
            // For these two the flip matters: plain correlation would not match.
            let plain = apply_kernel(x.view(), k.view(), FilterParams::default()).unwrap();
            let plain = plain
                .slice(inside)
                .mapv(|v| (v + 0.5).floor().clamp(0.0, 255.0) as u8);
            assert_ne!(pil.slice(inside), plain, "{name}");
        }
    }
    assert_eq!(checked, 9);
}

// ---------------------------------------------------------------------------------------------
// Display

#[test]
fn display_rounds_clips_and_stretches() {
    let y = array![[-3.2, 12.5, 254.6], [300.0, f64::NAN, -12.4]];
    assert_eq!(
        to_display(y.view(), Display::Clip),
        array![[0, 13, 255], [255, 0, 0]]
    );
    assert_eq!(
        to_display(y.view(), Display::Abs),
        array![[3, 13, 255], [255, 0, 12]]
    );
    // 100 values |y| = 0, 1, …, 99: the 99th percentile (index ⌊99·99/100⌋ = 98) is 98, so the
    // gain is 255/98; 49 → 127.5 → 128, 98 → 255, 99 → 257.6 → clipped to 255.
    let ramp = Array2::from_shape_fn((10, 10), |(i, j)| -((10 * i + j) as f64));
    let d = to_display(ramp.view(), Display::AbsStretched);
    assert_eq!(d[[4, 9]], 128);
    assert_eq!(d[[9, 8]], 255);
    assert_eq!(d[[9, 9]], 255);
    assert_eq!(d[[0, 0]], 0);
    let zeros = Array2::<f64>::zeros((3, 3));
    assert_eq!(
        to_display(zeros.view(), Display::AbsStretched),
        Array2::<u8>::zeros((3, 3))
    );
}

// ---------------------------------------------------------------------------------------------
// Grayscale and PNG

#[test]
fn grayscale_equals_pillow() {
    let file: FiltersFile = fixture("filters.json");
    assert!(file.generator.contains("Pillow"), "{}", file.generator);
    for case in &file.grayscale {
        let rgb = Array3::from_shape_vec(case.shape, case.rgb.clone()).unwrap();
        let gray = grayscale(rgb.view()).unwrap();
        assert_eq!(
            gray.as_slice().unwrap(),
            case.gray.as_slice(),
            "{:?}",
            case.shape
        );
    }
    // The photograph: convlab's grayscale of the bundled PNG against Pillow's convert('L') of
    // the same file, every one of its 43,520 pixels.
    let pil = read_png_gray(root().join("tests/fixtures/chelsea_gray_pil.png")).unwrap();
    assert_eq!(pil.dim(), (170, 256));
    assert_eq!(sample_photo_gray().unwrap(), pil);
    assert_eq!(
        read_png_gray(root().join("assets/images/chelsea.png")).unwrap(),
        pil
    );
}

#[test]
fn luma_is_pillows_fixed_point_formula() {
    // (19595·R + 38470·G + 7471·B + 32768) >> 16, worked by hand:
    // (128, 64, 32): 2,508,160 + 2,462,080 + 239,072 + 32,768 = 5,242,080 → 79 (79.99).
    assert_eq!(luma(128, 64, 32), 79);
    assert_eq!(luma(0, 0, 0), 0);
    assert_eq!(luma(255, 255, 255), 255);
    assert_eq!(luma(0, 0, 255), 29); // 7471·255 + 32768 = 1,937,873 → 29.57 → 29
    // Here the rounding term decides: 38470·255 = 9,809,850 is 149.69 times 65536, and adding
    // 32,768 lifts it to 150.19, so pure green becomes 150, not 149.
    assert_eq!(luma(0, 255, 0), 150);
}

#[test]
fn png_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = sample_photo().unwrap();
    assert_eq!(rgb.dim(), (170, 256, 3));
    let path = dir.path().join("photo.png");
    write_png_rgb(&path, rgb.view()).unwrap();
    assert_eq!(read_png_rgb(&path).unwrap(), rgb);

    let gray = Array2::from_shape_fn((5, 7), |(i, j)| (i * 40 + j * 3) as u8);
    let gpath = dir.path().join("gray.png");
    write_png_gray(&gpath, gray.view()).unwrap();
    assert_eq!(read_png_gray(&gpath).unwrap(), gray);
    // A gray PNG read as RGB repeats the gray value in each channel.
    let as_rgb = read_png_rgb(&gpath).unwrap();
    assert_eq!(as_rgb.dim(), (5, 7, 3));
    for c in 0..3 {
        assert_eq!(as_rgb.slice(s![.., .., c]), gray);
    }
    // A non-contiguous view is written in its logical order.
    let t = dir.path().join("transposed.png");
    write_png_gray(&t, gray.t()).unwrap();
    assert_eq!(read_png_gray(&t).unwrap(), gray.t());
    // Only the two PNGs and the view's remain: no temporary files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

fn file_error(e: Error, path: &Path, why: &str) {
    let msg = e.to_string();
    assert!(matches!(e, Error::File { .. }), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(why), "{msg}");
}

#[test]
fn bad_files_are_errors_that_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    file_error(
        read_png_gray(&missing).unwrap_err(),
        &missing,
        "cannot read",
    );
    file_error(read_png_rgb(&missing).unwrap_err(), &missing, "cannot read");

    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image at all").unwrap();
    file_error(
        read_png_gray(&text).unwrap_err(),
        &text,
        "not a readable PNG",
    );

    // A PNG cut short: its header promises pixels that are not there.
    let png = encode_png_gray(Array2::from_elem((20, 20), 7u8).view()).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
    file_error(read_png_rgb(&cut).unwrap_err(), &cut, "not a readable PNG");

    let gray = Array2::from_elem((4, 4), 200u8);
    let nowhere = dir.path().join("no/such/dir/out.png");
    file_error(
        write_png_gray(&nowhere, gray.view()).unwrap_err(),
        &nowhere,
        "cannot write",
    );
    // The target is a directory: the write fails and leaves nothing behind.
    let taken = dir.path().join("taken.png");
    std::fs::create_dir(&taken).unwrap();
    file_error(
        write_png_gray(&taken, gray.view()).unwrap_err(),
        &taken,
        "cannot write",
    );
    // An existing file is left whole when a later write fails before it: encoding an empty
    // image is refused before anything is written.
    let kept = dir.path().join("kept.png");
    write_png_gray(&kept, gray.view()).unwrap();
    let before = std::fs::read(&kept).unwrap();
    assert!(write_png_gray(&kept, Array2::<u8>::zeros((0, 3)).view()).is_err());
    assert_eq!(std::fs::read(&kept).unwrap(), before);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cut.png", "kept.png", "notes.png", "taken.png"]);
}

#[test]
fn bad_shapes_are_errors() {
    let rgba = Array3::<u8>::zeros((2, 2, 4));
    assert!(grayscale(rgba.view()).is_err());
    assert!(write_png_rgb(std::env::temp_dir().join("x.png"), rgba.view()).is_err());
    let x = Array2::<f64>::zeros((5, 5));
    let even = Array2::<f64>::ones((2, 3));
    let err = apply_kernel(x.view(), even.view(), FilterParams::default()).unwrap_err();
    assert!(err.to_string().contains("2 × 3"), "{err}");
    let empty = Array2::<f64>::zeros((0, 4));
    let k = kernel("Box blur").array();
    assert!(apply_kernel(empty.view(), k.view(), FilterParams::default()).is_err());
    assert_eq!(FilterParams::default().op, SignalOp::Correlate);
}

// ---------------------------------------------------------------------------------------------
// The montage

fn cell(fig: &convlab::plot::Figure, n: usize, h: usize, w: usize, columns: usize) -> Array2<u8> {
    // Cell n's top-left pixel, by the documented layout.
    let (gap, label, title) = (
        MONTAGE_GAP as usize,
        MONTAGE_LABEL_BAND as usize,
        MONTAGE_TITLE_BAND as usize,
    );
    let x0 = gap + (n % columns) * (w + gap);
    let y0 = title + (n / columns) * (label + h + gap) + label;
    let width = fig.width as usize;
    Array2::from_shape_fn((h, w), |(i, j)| {
        let p = 3 * ((y0 + i) * width + x0 + j);
        let (r, g, b) = (fig.pixels[p], fig.pixels[p + 1], fig.pixels[p + 2]);
        assert!(r == g && g == b, "cell {n} pixel ({i}, {j}) is not gray");
        r
    })
}

#[test]
fn the_montage_shows_every_kernel_with_its_name() {
    let gray = sample_photo_gray().unwrap();
    let options = MontageOptions::default();
    let fig = kernel_montage(gray.view(), &KERNELS, &options).unwrap();
    // 4 columns of 256-pixel cells with 12-pixel gaps: 4·(256 + 12) + 12 = 1084 wide; 3 rows
    // under a 44-pixel title band, each a 26-pixel label, 170 pixels and a 12-pixel gap:
    // 44 + 3·(26 + 170 + 12) = 668 high.
    assert_eq!((fig.width, fig.height), (1084, 668));
    assert_eq!(montage_size(170, 256, 12, 4).unwrap(), (1084, 668));
    assert!(fig.variance() > 1000.0, "variance {}", fig.variance());
    for (n, k) in KERNELS.iter().enumerate() {
        let expected = filter_for_display(gray.view(), k, Border::Replicate).unwrap();
        let shown = cell(&fig, n, 170, 256, 4);
        assert_eq!(shown, expected, "cell {n}, {}", k.name());
        let mean = shown.iter().map(|&v| f64::from(v)).sum::<f64>() / shown.len() as f64;
        let var = shown
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / shown.len() as f64;
        assert!(var > 100.0, "{} is nearly flat: variance {var}", k.name());
    }
    assert_eq!(cell(&fig, 0, 170, 256, 4), gray);

    // Text: the same figure without it differs only in the title and label bands.
    let bare = kernel_montage(gray.view(), &KERNELS, &options.clone().text(false)).unwrap();
    assert_eq!((bare.width, bare.height), (fig.width, fig.height));
    let differing = fig
        .pixels
        .chunks(3)
        .zip(bare.pixels.chunks(3))
        .filter(|(a, b)| a != b)
        .count();
    // The title and twelve labels cover thousands of pixels, and far fewer than a cell's 43,520.
    assert!(
        (2_000..40_000).contains(&differing),
        "{differing} pixels differ"
    );
    for n in 0..KERNELS.len() {
        assert_eq!(cell(&bare, n, 170, 256, 4), cell(&fig, n, 170, 256, 4));
    }

    // The PNG on disk decodes to the same pixels.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernels.png");
    fig.save(&path).unwrap();
    let back = read_png_rgb(&path).unwrap();
    assert_eq!(back.dim(), (668, 1084, 3));
    assert_eq!(back.as_slice().unwrap(), fig.pixels.as_slice());
}

#[test]
fn the_montage_refuses_what_it_cannot_draw() {
    let gray = sample_photo_gray().unwrap();
    let options = MontageOptions::default();
    assert!(kernel_montage(gray.view(), &[], &options).is_err());
    assert!(kernel_montage(gray.view(), &KERNELS, &options.clone().columns(0)).is_err());
    let empty: ArrayView2<u8> = gray.slice(s![0..0, ..]);
    assert!(kernel_montage(empty, &KERNELS, &options).is_err());
    // Two columns: 6 rows.
    let two = kernel_montage(gray.view(), &KERNELS[..3], &options.columns(2)).unwrap();
    assert_eq!(
        (two.width, two.height),
        (2 * (256 + 12) + 12, 44 + 2 * (26 + 170 + 12))
    );
}

#[test]
fn the_committed_figure_is_current() {
    let committed = read_png_rgb(root().join("figures/kernels.png")).unwrap();
    let fig = kernels_figure().unwrap();
    assert_eq!(
        committed.dim(),
        (fig.height as usize, fig.width as usize, 3)
    );
    assert!(
        committed.as_slice().unwrap() == fig.pixels.as_slice(),
        "figures/kernels.png is out of date: convlab figures redraws it"
    );
}
