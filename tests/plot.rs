//! Figures: PNGs of the expected size, not blank, with text drawn by the bundled font; figures
//! whose pixels are checked against values worked out by hand or taken from the course; bad
//! input refused; failed writes leaving nothing behind.

use std::path::{Path, PathBuf};

use convlab::data::Dataset;
use convlab::nn::{
    Architecture, Conv2d, Dropout, Flatten, Init, Layer, Linear, MaxPool2d, ReLU, Sequential,
};
use convlab::plot::{
    self, ColorMap, ColorScale, ConfusionMatrix, ConfusionOptions, CurveOptions, FONT,
    FeatureMapOptions, Figure, FilterOptions, FilterScale, PatternOptions, Prediction,
    PredictionOptions,
};
use convlab::shape::{Conv2dParams, Pool2dParams};
use convlab::train::{EpochRecord, History};
use ndarray::{Array3, Array4, ArrayD, IxDyn, array, s};
use plotters::prelude::*;

/// A figure drawn in a few colours on white has a large pixel variance: if only 2% of its
/// bytes are 100 or more below white, the variance is already at least
/// 0.02 · 0.98 · 100² ≈ 196. A blank figure's is 0.
const NOT_BLANK: f64 = 150.0;

/// Write `figure` as PNG, read it back with the `image` crate, and check its size, its pixels
/// and that it is not blank.
fn check_png(figure: &Figure, width: u32, height: u32) {
    assert_eq!((figure.width, figure.height), (width, height));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("figure.png");
    figure.save(&path).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (width, height));
    assert_eq!(back.into_raw(), figure.pixels);
    assert!(
        figure.variance() > NOT_BLANK,
        "variance {}",
        figure.variance()
    );
}

/// The pixels where two figures of the same size differ.
fn differing(a: &Figure, b: &Figure) -> usize {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.pixels
        .chunks(3)
        .zip(b.pixels.chunks(3))
        .filter(|(p, q)| p != q)
        .count()
}

/// A figure with its text against the same figure without: the title alone is some twenty
/// glyphs, each inking well over ten pixels, so at least 200 pixels must differ.
fn check_text(with: &Figure, without: &Figure) {
    let d = differing(with, without);
    assert!(d >= 200, "only {d} pixels differ with and without text");
}

fn pixel(f: &Figure, x: u32, y: u32) -> RGBColor {
    let i = 3 * (y * f.width + x) as usize;
    RGBColor(f.pixels[i], f.pixels[i + 1], f.pixels[i + 2])
}

fn count(f: &Figure, color: RGBColor) -> usize {
    f.pixels
        .chunks(3)
        .filter(|p| (p[0], p[1], p[2]) == (color.0, color.1, color.2))
        .count()
}

fn record(
    epoch: usize,
    train_loss: f64,
    val_loss: f64,
    train_acc: f64,
    val_acc: f64,
) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss,
        train_accuracy: train_acc,
        val_loss,
        val_accuracy: val_acc,
        learning_rate: 1e-3,
        seconds: 1.0,
        images_per_second: 100.0,
    }
}

/// Four epochs: the training loss keeps falling, the validation loss is lowest at epoch 2
/// and then rises — an overfitting run in miniature.
fn overfitting_history() -> History {
    let mut h = History::new(1e-3);
    h.epochs = vec![
        record(1, 0.60, 0.45, 0.78, 0.84),
        record(2, 0.35, 0.30, 0.88, 0.89),
        record(3, 0.25, 0.33, 0.91, 0.90),
        record(4, 0.15, 0.40, 0.95, 0.89),
    ];
    h.test_accuracy = Some(0.8875);
    h
}

#[test]
fn text_is_drawn_with_the_bundled_font() {
    let blank = Figure::draw(200, 60, |_| Ok(())).unwrap();
    assert_eq!(blank.variance(), 0.0);
    let text = Figure::draw(200, 60, |area| {
        area.draw_text("Época 13", &(FONT, 24).into_font().color(&BLACK), (10, 15))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(text.pixels.len(), 3 * 200 * 60);
    let dark = text.pixels.chunks(3).filter(|p| p[0] < 128).count();
    // A 24 px line of eight glyphs covers a few hundred pixels, not none and not all.
    assert!((100..4000).contains(&dark), "{dark} dark pixels");
    let png = text.to_png().unwrap();
    let back = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (200, 60));
    assert_eq!(back.into_raw(), text.pixels);
}

#[test]
fn a_figure_without_pixels_is_an_error() {
    assert!(Figure::draw(0, 10, |_| Ok(())).is_err());
}

// ---------------------------------------------------------------- training curves

#[test]
fn curves_are_a_png_with_text_and_the_best_epoch_marked() {
    let history = overfitting_history();
    let options = CurveOptions::default().size(900, 400);
    let with = plot::training_curves(&history, options).unwrap();
    check_png(&with, 900, 400);
    let without = plot::training_curves(&history, options.text(false)).unwrap();
    check_text(&with, &without);
    // The best epoch's marks (a dashed line and a ring, in the curves' red) are in both
    // panels: the loss on the left half, the accuracy on the right.
    let red = RGBColor(200, 30, 40);
    let (mut left, mut right) = (0, 0);
    for y in 0..without.height {
        for x in 0..without.width {
            if pixel(&without, x, y) == red {
                if x < without.width / 2 {
                    left += 1;
                } else {
                    right += 1;
                }
            }
        }
    }
    assert!(
        left > 50 && right > 50,
        "red pixels: {left} left, {right} right"
    );
}

#[test]
fn curves_of_one_epoch_and_of_nan_validation_are_drawn() {
    let mut h = History::new(1e-3);
    h.epochs = vec![record(1, 0.5, 0.4, 0.8, 0.85)];
    check_png(
        &plot::training_curves(&h, CurveOptions::default()).unwrap(),
        1200,
        480,
    );
    // A run without validation images records NaN: the training curves alone are drawn.
    h.epochs = vec![
        record(1, 0.5, f64::NAN, 0.8, f64::NAN),
        record(2, 0.4, f64::NAN, 0.85, f64::NAN),
    ];
    check_png(
        &plot::training_curves(&h, CurveOptions::default()).unwrap(),
        1200,
        480,
    );
}

#[test]
fn curves_of_no_epochs_are_an_error() {
    let err = plot::training_curves(&History::new(1e-3), CurveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no epochs"), "{err}");
    let mut h = History::new(1e-3);
    h.epochs = vec![record(1, f64::NAN, f64::NAN, 0.5, 0.5)];
    let err = plot::training_curves(&h, CurveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("finite loss"), "{err}");
}

// ---------------------------------------------------------------- the course's 6×6 example

/// The course's worked example (class 6, "una imagen de 1 canal de tamaño 6x6"): two 3×3
/// filters with bias 1, then 2×2 max pooling.
fn course_model() -> Sequential<f64> {
    let layers: Vec<Box<dyn Layer<f64>>> = vec![
        Box::new(Conv2d::new(1, 2, [3, 3], Conv2dParams::default()).unwrap()),
        Box::new(MaxPool2d::new(Pool2dParams::new([2, 2]))),
    ];
    let mut model =
        Sequential::new("course example", &[1, 6, 6], layers, Init::PyTorch, 0).unwrap();
    let w = array![
        1., 1., 0., -1., 1., -1., 0., -1., -1., //
        1., 1., 0., -1., 1., -1., -1., 0., -1.
    ];
    model
        .load_state_dict(vec![
            (
                "0.weight".to_string(),
                w.into_shape_with_order(IxDyn(&[2, 1, 3, 3])).unwrap(),
            ),
            ("0.bias".to_string(), ArrayD::from_elem(IxDyn(&[2]), 1.0)),
        ])
        .unwrap();
    model
}

fn course_image() -> Array3<f64> {
    array![[
        [7., 6., 8., 5., 1., 3.],
        [8., 6., 5., 3., 5., 5.],
        [9., 1., 1., 5., 3., 5.],
        [4., 5., 5., 9., 2., 6.],
        [9., 5., 3., 1., 2., 2.],
        [4., 4., 8., 8., 9., 8.],
    ]]
}

/// The course's feature maps of that example, as its notes print them.
fn course_conv_maps() -> Array3<f64> {
    array![
        [
            [5., 5., -1., -4.],
            [-4., -7., -1., -6.],
            [-1., -10., 6., -8.],
            [-9., -8., -6., -6.]
        ],
        [
            [-3., 5., 3., -6.],
            [-3., -7., 3., -13.],
            [-5., -12., 4., -7.],
            [-9., -4., -6., -5.]
        ]
    ]
}

#[test]
fn feature_maps_of_the_course_example_are_the_course_numbers() {
    let mut model = course_model();
    let maps = plot::feature_maps(&mut model, course_image().view()).unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!((maps[0].index, maps[0].name.as_str()), (0, "conv1"));
    assert_eq!(maps[0].maps, course_conv_maps());
    assert_eq!((maps[1].index, maps[1].name.as_str()), (1, "pool1"));
    assert_eq!(
        maps[1].maps,
        array![[[5., -1.], [-1., 6.]], [[5., 3.], [-4., 4.]]]
    );
}

/// The figure's cells, read back through the colour scale, give the course's numbers: drawn
/// without text and colour bar, the only coloured (not gray) pixels of the convolution's
/// figure are its two 48×48 cells — the input is drawn in grays — and each cell is a 4×4 grid
/// of 12×12 blocks, one per value.
#[test]
fn feature_map_cells_show_the_values_on_the_colour_scale() {
    let mut model = course_model();
    let options = FeatureMapOptions::default()
        .layer(0)
        .cell(48)
        .text(false)
        .color_bar(false);
    let figure = plot::feature_maps_figure(&mut model, course_image().view(), options).unwrap();
    let coloured = |x: u32, y: u32| {
        let p = pixel(&figure, x, y);
        !(p.0 == p.1 && p.1 == p.2)
    };
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in 0..figure.height {
        for x in 0..figure.width {
            if coloured(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    // Two cells of 48 with a gap of 4 between them.
    assert_eq!((x1 - x0 + 1, y1 - y0 + 1), (2 * 48 + 4, 48));
    // One scale for the layer: from the smallest value of both maps, −13, to the largest, 6.
    let scale = ColorScale::new(-13.0, 6.0, ColorMap::Viridis);
    let expected = course_conv_maps();
    for c in 0..2u32 {
        for i in 0..4u32 {
            for j in 0..4u32 {
                let (x, y) = (x0 + c * 52 + 12 * j + 6, y0 + 12 * i + 6);
                let read = scale.value_of(pixel(&figure, x, y));
                let want = expected[[c as usize, i as usize, j as usize]];
                assert!(
                    (read - want).abs() < 0.25,
                    "map {c} ({i}, {j}): read {read}, the course has {want}"
                );
            }
        }
    }
}

#[test]
fn feature_map_figures_are_pngs_with_text() {
    let mut model = Architecture::KerasMnist
        .build::<f32>(Init::Glorot, 2)
        .unwrap();
    let image = Array3::from_shape_fn((1, 28, 28), |(_, i, j)| ((i * j) % 17) as f32 / 16.0);
    let options = FeatureMapOptions::default().cell(24).max_channels(8);
    let with = plot::feature_maps_figure(&mut model, image.view(), options).unwrap();
    check_png(&with, with.width, with.height);
    let without = plot::feature_maps_figure(&mut model, image.view(), options.text(false)).unwrap();
    check_text(&with, &without);
}

#[test]
fn feature_maps_refuse_bad_images_and_layers() {
    let mut model = course_model();
    let wrong = Array3::<f64>::zeros((1, 5, 6));
    let err = plot::feature_maps(&mut model, wrong.view())
        .unwrap_err()
        .to_string();
    assert!(err.contains("1×6×6") && err.contains("1×5×6"), "{err}");
    let err = plot::feature_maps_figure(
        &mut model,
        course_image().view(),
        FeatureMapOptions::default().layer(2),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("layer 2 does not exist"), "{err}");

    let mut keras = Architecture::KerasMnist
        .build::<f32>(Init::Glorot, 0)
        .unwrap();
    let image = Array3::<f32>::zeros((1, 28, 28));
    // Layer 1 is the ReLU after the first convolution.
    let err = plot::feature_maps_figure(
        &mut keras,
        image.view(),
        FeatureMapOptions::default().layer(1),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ReLU") && err.contains("0 (conv1)"), "{err}");
}

// ---------------------------------------------------------------- filters

#[test]
fn filter_images_sum_the_input_channels() {
    // Conv2d(2, 1, 2×2): the one filter's two input slices are [[1, 2], [3, 4]] and
    // [[10, 20], [30, 40]]; summed, [[11, 22], [33, 44]].
    let layers: Vec<Box<dyn Layer<f64>>> = vec![Box::new(
        Conv2d::new(2, 1, [2, 2], Conv2dParams::default()).unwrap(),
    )];
    let mut model = Sequential::new("two channels", &[2, 3, 3], layers, Init::PyTorch, 0).unwrap();
    let w = array![1., 2., 3., 4., 10., 20., 30., 40.];
    model
        .load_state_dict(vec![
            (
                "0.weight".to_string(),
                w.into_shape_with_order(IxDyn(&[1, 2, 2, 2])).unwrap(),
            ),
            ("0.bias".to_string(), ArrayD::zeros(IxDyn(&[1]))),
        ])
        .unwrap();
    assert_eq!(
        plot::filter_images(&model, 0).unwrap(),
        array![[[11., 22.], [33., 44.]]]
    );
}

/// Two 3×3 vertical-edge filters, the second half the first: columns −1, 0, 1 and −½, 0, ½.
fn edge_model() -> Sequential<f64> {
    let layers: Vec<Box<dyn Layer<f64>>> = vec![
        Box::new(Conv2d::new(1, 2, [3, 3], Conv2dParams::default()).unwrap()),
        Box::new(ReLU::new()),
    ];
    let mut model = Sequential::new("edges", &[1, 8, 8], layers, Init::PyTorch, 0).unwrap();
    let edge = [-1., 0., 1., -1., 0., 1., -1., 0., 1.];
    let w: Vec<f64> = edge.iter().chain(&edge.map(|v| v / 2.0)).copied().collect();
    model
        .load_state_dict(vec![
            (
                "0.weight".to_string(),
                ArrayD::from_shape_vec(IxDyn(&[2, 1, 3, 3]), w).unwrap(),
            ),
            ("0.bias".to_string(), ArrayD::zeros(IxDyn(&[2]))),
        ])
        .unwrap();
    model
}

#[test]
fn feature_maps_of_a_convolution_are_taken_after_its_relu() {
    let mut model = edge_model();
    // Dark columns 0–3, light columns 4–7. The edge filter's 3×3 window starting at column j
    // gives, on each of its three rows, x[j + 2] − x[j]: 1 for j = 2 and 3, whose windows
    // straddle the step, 0 elsewhere; so 3 in columns 2 and 3 of the 6×6 map. The second
    // filter, half the first, gives 1.5.
    let step = Array3::from_shape_fn((1, 8, 8), |(_, _, j)| if j >= 4 { 1.0 } else { 0.0 });
    let maps = plot::feature_maps(&mut model, step.view()).unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0].followed_by, vec!["ReLU()".to_string()]);
    for i in 0..6 {
        assert_eq!(
            maps[0].maps.slice(s![0, i, ..]).to_vec(),
            [0., 0., 3., 3., 0., 0.]
        );
        assert_eq!(
            maps[0].maps.slice(s![1, i, ..]).to_vec(),
            [0., 0., 1.5, 1.5, 0., 0.]
        );
    }
    // The mirrored step gives −3 and −1.5 before the ReLU: nothing is left after it.
    let mirrored = step.mapv(|v| 1.0 - v);
    let maps = plot::feature_maps(&mut model, mirrored.view()).unwrap();
    assert!(maps[0].maps.iter().all(|&v| v == 0.0));
}

#[test]
fn filter_grids_scale_per_layer_or_per_filter() {
    let model = edge_model();
    let options = FilterOptions::default().cell(60).text(false);
    let black = RGBColor(0, 0, 0);
    // Each filter's own scale: −1 and −½ are each filter's most negative weight, both black.
    // A 60-pixel cell splits into columns of 20, so each filter's left column is 20×60
    // black pixels: 2400 for the two.
    let own = plot::filters_figure(&model, 0, options.scale(FilterScale::PerFilter)).unwrap();
    assert_eq!(count(&own, black), 2 * 20 * 60);
    // One scale for the layer, ±1: only the first filter's left column is black (−½ is dark
    // gray), plus at most the bottom row of the colour bar, which is 18 pixels wide.
    let shared = plot::filters_figure(&model, 0, options.scale(FilterScale::Shared)).unwrap();
    let n = count(&shared, black);
    assert!((20 * 60..=20 * 60 + 18).contains(&n), "{n} black pixels");
    // −½ on the scale ±1 is a quarter of the way from black to white: gray 64 (63.75
    // rounded), the second filter's left column, and perhaps one row of the colour bar.
    let n = count(&shared, RGBColor(64, 64, 64));
    assert!(
        (20 * 60..=20 * 60 + 18).contains(&n),
        "{n} pixels of gray 64"
    );

    let with = plot::filters_figure(&model, 0, FilterOptions::default()).unwrap();
    check_png(&with, with.width, with.height);
    let without = plot::filters_figure(&model, 0, FilterOptions::default().text(false)).unwrap();
    check_text(&with, &without);
}

#[test]
fn filters_of_a_layer_that_is_not_a_convolution_are_an_error() {
    let model = edge_model();
    let err = plot::filters_figure(&model, 1, FilterOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 1") && err.contains("ReLU") && err.contains("convolution"),
        "{err}"
    );
    let err = plot::filter_images(&model, 9).unwrap_err().to_string();
    assert!(
        err.contains("layer 9 does not exist") && err.contains("2 layers"),
        "{err}"
    );
}

// ---------------------------------------------------------------- input patterns

/// One 3×3 convolution of ones over a 5×5 input, no padding: its mean output is linear in the
/// input, so every step of the ascent raises it by the same amount (worked out below).
fn ones_model(dropout: bool) -> Sequential<f64> {
    let mut layers: Vec<Box<dyn Layer<f64>>> = Vec::new();
    if dropout {
        layers.push(Box::new(Dropout::new(1.0).unwrap()));
    }
    layers.push(Box::new(
        Conv2d::new(1, 1, [3, 3], Conv2dParams::default()).unwrap(),
    ));
    let mut model = Sequential::new("ones", &[1, 5, 5], layers, Init::PyTorch, 0).unwrap();
    let at = usize::from(dropout);
    model
        .load_state_dict(vec![
            (format!("{at}.weight"), ArrayD::ones(IxDyn(&[1, 1, 3, 3]))),
            (format!("{at}.bias"), ArrayD::zeros(IxDyn(&[1]))),
        ])
        .unwrap();
    model
}

/// J(x) = (1/9) Σ over the 3×3 outputs of the sum of their windows, so ∂J/∂x[p][q] =
/// c_p · c_q / 9, where c = [1, 2, 3, 2, 1] counts the windows covering row (column) p.
/// Then Σ g² = (Σ c²)² / 81 = 19² / 81 and rms(g) = √(Σ g² / 25) = 19 / 45, so a step of
/// size s, x ← x + s·g / rms(g), raises J by s · Σ g² / rms(g) = s · (361/81) · (45/19)
/// = s · 95/9 — for s = 0.01, 0.10556 per step (the ε of 1e-5 in the division changes the
/// fifth digit).
#[test]
fn gradient_ascent_raises_a_linear_activation_by_the_worked_out_step() {
    let mut model = ones_model(false);
    let options = PatternOptions::default().steps(10).step(0.01).seed(3);
    let p = plot::input_pattern(&mut model, 0, 0, options).unwrap();
    assert_eq!(p.activations.len(), 11);
    for pair in p.activations.windows(2) {
        let rise = pair[1] - pair[0];
        assert!((rise - 0.01 * 95.0 / 9.0).abs() < 1e-4, "rise {rise}");
    }
    // Dropout (here p = 1, which would zero everything in training) is left out of the ascent.
    let mut with_dropout = ones_model(true);
    let q = plot::input_pattern(&mut with_dropout, 1, 0, options).unwrap();
    assert_eq!(q, p);
}

#[test]
fn gradient_ascent_raises_each_channel_of_a_real_network() {
    let mut model = Architecture::KerasMnist
        .build::<f32>(Init::Glorot, 4)
        .unwrap();
    let options = PatternOptions::default().steps(8).max_channels(3);
    let patterns = plot::input_patterns(&mut model, 3, options).unwrap();
    assert_eq!(patterns.len(), 3);
    for p in &patterns {
        let (first, last) = (p.activations[0], p.activations[8]);
        assert!(last > first, "channel {}: {first} → {last}", p.channel);
        assert_eq!(p.image.shape(), &[1, 28, 28]);
    }
    // A channel's pattern does not depend on the channels computed beside it.
    let alone = plot::input_pattern(&mut model, 3, 2, options).unwrap();
    assert_eq!(alone.channel, 2);
    let gap = alone
        .image
        .iter()
        .zip(patterns[2].image.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(gap < 1e-4, "{gap}");
    // The ascent leaves no gradient behind in the model.
    assert!(
        model
            .gradients()
            .iter()
            .all(|(_, g)| g.iter().all(|&v| v == 0.0))
    );
}

#[test]
fn pattern_figures_are_pngs_with_text_and_refuse_other_layers() {
    let mut model = Architecture::KerasMnist
        .build::<f32>(Init::Glorot, 4)
        .unwrap();
    let options = PatternOptions::default().steps(3).max_channels(4).cell(40);
    let with = plot::patterns_figure(&mut model, 0, options).unwrap();
    check_png(&with, with.width, with.height);
    let without = plot::patterns_figure(&mut model, 0, options.text(false)).unwrap();
    check_text(&with, &without);
    // Layer 9 of the Keras convnet is Dense(64).
    let err = plot::patterns_figure(&mut model, 9, options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Linear"), "{err}");
    let err = plot::input_pattern(&mut model, 0, 32, options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("32 channels"), "{err}");
    let err = plot::input_pattern(&mut model, 0, 0, options.step(0.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("step"), "{err}");
}

// ---------------------------------------------------------------- predictions and confusion

/// Images of 1×2×2 pixels classified by the first two pixels: Flatten, then a Linear layer
/// whose logits are pixel (0, 0) and pixel (0, 1).
fn pixel_classifier() -> Sequential<f32> {
    let layers: Vec<Box<dyn Layer<f32>>> = vec![
        Box::new(Flatten::new()),
        Box::new(Linear::new(4, 2).unwrap()),
    ];
    let mut model = Sequential::new("pixels", &[1, 2, 2], layers, Init::PyTorch, 0).unwrap();
    let w = array![[1f32, 0., 0., 0.], [0., 1., 0., 0.]].into_dyn();
    model
        .load_state_dict(vec![
            ("1.weight".to_string(), w),
            ("1.bias".to_string(), ArrayD::zeros(IxDyn(&[2]))),
        ])
        .unwrap();
    model
}

fn pixel_data() -> Dataset {
    let images =
        Array4::from_shape_vec((3, 1, 2, 2), vec![255, 0, 9, 9, 0, 255, 9, 9, 0, 0, 9, 9]).unwrap();
    Dataset::new(images, vec![0, 0, 1], vec!["left".into(), "right".into()]).unwrap()
}

#[test]
fn predictions_take_the_largest_logit_and_its_softmax_probability() {
    let mut model = pixel_classifier();
    let p = plot::predict(&mut model, &pixel_data()).unwrap();
    // Logits (1, 0), (0, 1), (0, 0): softmax e/(e + 1) = 0.7311 for the larger; a tie goes to
    // the first class, with probability ½.
    let classes: Vec<usize> = p.iter().map(|p| p.class).collect();
    assert_eq!(classes, [0, 1, 0]);
    let e = std::f64::consts::E;
    assert!((p[0].confidence - e / (e + 1.0)).abs() < 1e-6);
    assert!((p[1].confidence - e / (e + 1.0)).abs() < 1e-6);
    assert!((p[2].confidence - 0.5).abs() < 1e-6);
}

#[test]
fn wrong_predictions_are_framed_in_red() {
    let data = pixel_data();
    let right = |class| Prediction {
        class,
        confidence: 0.9,
    };
    // Image 1 (true class 0) predicted as 1: one wrong of three.
    let predictions = [right(0), right(1), right(1)];
    let options = PredictionOptions::default().cell(40).text(false);
    let figure = plot::predictions_figure(&data, &predictions, options).unwrap();
    // A red frame 3 pixels wide around a 40×40 image: (40 + 2·3)² − 40² = 516 pixels.
    assert_eq!(count(&figure, RGBColor(205, 20, 30)), 46 * 46 - 40 * 40);
    let all_right = [right(0), right(0), right(1)];
    let figure = plot::predictions_figure(&data, &all_right, options).unwrap();
    assert_eq!(count(&figure, RGBColor(205, 20, 30)), 0);

    let with = plot::predictions_figure(&data, &predictions, options.text(true)).unwrap();
    check_png(&with, with.width, with.height);
    let without = plot::predictions_figure(&data, &predictions, options).unwrap();
    check_text(&with, &without);

    let err = plot::predictions_figure(&data, &predictions[..2], options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 predictions for 3 images"), "{err}");
    let err = plot::predictions_figure(&data, &predictions, options.start(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("image 3 does not exist"), "{err}");
}

#[test]
fn a_confusion_matrix_counts_true_against_predicted() {
    // True 0, 0, 1, 2, 2, 2 against predicted 0, 1, 1, 2, 0, 2: row 0 is one right and one
    // taken for class 1; row 2 two right and one taken for class 0. Four of six right.
    let classes = vec!["a".to_string(), "b".into(), "c".into()];
    let m =
        ConfusionMatrix::new(classes.clone(), &[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 2]).unwrap();
    assert_eq!(m.counts, array![[1, 1, 0], [0, 1, 0], [1, 0, 2]]);
    assert_eq!(m.total(), 6);
    assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);

    let with = plot::confusion_figure(&m, ConfusionOptions::default()).unwrap();
    check_png(&with, with.width, with.height);
    let without = plot::confusion_figure(&m, ConfusionOptions::default().text(false)).unwrap();
    check_text(&with, &without);
    // The largest count, 2, is the darkest blue of the scale; a 62-pixel cell of it is drawn,
    // and the colour bar's top row (18 pixels) has it too.
    let darkest = RGBColor(0x08, 0x30, 0x6b);
    let n = count(&without, darkest);
    assert!((62 * 62..=62 * 62 + 18).contains(&n), "{n}");

    let err = ConfusionMatrix::new(classes.clone(), &[0, 3], &[0, 0])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("true class 3") && err.contains("only 3 classes"),
        "{err}"
    );
    assert!(ConfusionMatrix::new(classes, &[0, 1], &[0]).is_err());
}

#[test]
fn a_confusion_matrix_of_a_model() {
    let mut model = pixel_classifier();
    let m = ConfusionMatrix::of(&mut model, &pixel_data()).unwrap();
    // Predicted 0, 1, 0 against true 0, 0, 1.
    assert_eq!(m.counts, array![[1, 1], [1, 0]]);
}

// ---------------------------------------------------------------- files

#[test]
fn a_failed_save_leaves_no_file() {
    let figure = Figure::draw(20, 20, |_| Ok(())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-directory").join("figure.png");
    let err = figure.save(&missing).unwrap_err().to_string();
    assert!(err.contains("figure.png"), "{err}");
    // A directory in the way of the file: the rename fails, and the temporary file is removed.
    let blocked = dir.path().join("blocked.png");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    assert!(figure.save(&blocked).is_err());
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![blocked]);
}

// ---------------------------------------------------------------- the command line

fn convlab(args: &[&str], extra: &[&Path]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_convlab"))
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn command_line_plots_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    std::fs::write(
        run.join("history.json"),
        overfitting_history().to_json().unwrap(),
    )
    .unwrap();
    let model = Architecture::KerasMnist
        .build::<f32>(Init::Glorot, 1)
        .unwrap();
    convlab::train::save_model(&model, "keras-mnist", &run.join("model.safetensors")).unwrap();

    let out = convlab(&["plot", "curves", "--run"], &[run]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = image::open(run.join("curves.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1200, 480));

    let filters = run.join("first.png");
    let out = convlab(
        &["plot", "filters", "--run"],
        &[run, Path::new("--out"), &filters],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(image::open(&filters).is_ok());

    // A pooling layer has no filters; nothing is written.
    let pool = run.join("pool.png");
    let out = convlab(
        &["plot", "filters", "--layer", "2", "--run"],
        &[run, Path::new("--out"), &pool],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("MaxPool2d"), "{err}");
    assert!(!pool.exists());

    // The checkpoint holds the Keras convnet, not the course CNN.
    let out = convlab(
        &[
            "plot",
            "filters",
            "--model",
            "fashion-mnist-cnn",
            "--checkpoint",
        ],
        &[&run.join("model.safetensors")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("keras-mnist"),
        "{err}"
    );

    // No history in an empty directory.
    let empty = tempfile::tempdir().unwrap();
    let out = convlab(&["plot", "curves", "--run"], &[empty.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("history.json"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
