//! What a filter looks for: the input that excites one channel most, found by gradient ascent
//! on the input.

use super::setters;
use ndarray::{Array3, Array4, ArrayD, Axis, Ix4, s};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    Figure, GRAY, HEADING_SIZE, LABEL_SIZE, Rect, TITLE_SIZE, check_layer, draw_image,
    drawable_channels, frame, heading, label, layer_name,
};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::{LayerKind, Mode, Sequential};

/// The gradient's root mean square is divided by this plus itself, so a zero gradient stays
/// zero instead of dividing by zero.
pub const GRADIENT_EPSILON: f64 = 1e-5;

/// How the gradient ascent of [`input_patterns`] runs and how [`patterns_figure`] draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatternOptions {
    /// Ascent steps (default 40, the course's).
    pub steps: usize,
    /// The size of one step: the root mean square of the change of the input's pixels
    /// (default 0.02, a fiftieth of the range of pixels scaled to `[0, 1]`).
    pub step: f64,
    /// Seed of the starting noise (default 1). Channel `c` starts from a generator seeded
    /// with it on stream `c`, so a channel's pattern does not depend on which other channels
    /// are computed with it.
    pub seed: u64,
    /// The starting image: middle gray 0.5 plus noise drawn uniformly from `±noise`
    /// (default 0.05).
    pub noise: f64,
    /// Patterns of at most this many channels, the first ones; 0 (the default) all.
    pub max_channels: usize,
    /// Cells per row in the figure (default 8).
    pub columns: usize,
    /// Side of a cell in pixels (default 84, three pixels per pixel of a 28×28 input).
    pub cell: u32,
    /// Draw the text (default `true`).
    pub text: bool,
}

impl Default for PatternOptions {
    fn default() -> Self {
        PatternOptions {
            steps: 40,
            step: 0.02,
            seed: 1,
            noise: 0.05,
            max_channels: 0,
            columns: 8,
            cell: 84,
            text: true,
        }
    }
}

impl PatternOptions {
    fn check(&self) -> Result<()> {
        if !(self.step.is_finite() && self.step > 0.0) {
            return Err(Error::param(
                "step",
                format!(
                    "the ascent's step must be a positive number, got {}",
                    self.step
                ),
            ));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(Error::param(
                "noise",
                format!("the noise amplitude must be 0 or more, got {}", self.noise),
            ));
        }
        Ok(())
    }
}

setters!(PatternOptions {
    /// Ascent steps.
    steps: usize,
    /// The RMS change of the input per step.
    step: f64,
    /// Seed of the starting noise.
    seed: u64,
    /// Amplitude of the starting noise around middle gray.
    noise: f64,
    /// At most this many channels (0: all).
    max_channels: usize,
    /// Cells per row.
    columns: usize,
    /// Side of a cell in pixels.
    cell: u32,
    /// Draw the text or leave it out.
    text: bool,
});

/// The input one channel responds to most, and how its response grew.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// The channel.
    pub channel: usize,
    /// The input image `(C, H, W)` at the end of the ascent.
    pub image: Array3<f64>,
    /// The channel's mean activation before each step and after the last: `steps + 1` values.
    pub activations: Vec<f64>,
}

/// The input pattern that channel `channel` of layer `layer` responds to most
/// ([`input_patterns`] for one channel).
pub fn input_pattern<T: Scalar>(
    model: &mut Sequential<T>,
    layer: usize,
    channel: usize,
    options: PatternOptions,
) -> Result<Pattern> {
    let channels = check_pattern_layer(model, layer)?;
    if channel >= channels {
        return Err(Error::param(
            "channel",
            format!(
                "layer {layer} has {channels} channels, numbered from 0, so there is no channel \
                 {channel}"
            ),
        ));
    }
    let mut found = ascend(model, layer, &[channel], options)?;
    Ok(found.remove(0))
}

/// The input patterns the channels of convolution or pooling layer `layer` respond to most,
/// by gradient ascent on the input. Channel `c` starts from middle gray plus seeded noise
/// and takes `options.steps` steps up the gradient of its objective, the mean over the
/// positions of its map of the layer's output:
///
/// ```text
/// J(x) = mean over (i, j) of  y_ℓ[c, i, j](x)
/// x ← x + step · ∇J(x) / (√(mean(∇J(x)²)) + 1e-5)
/// ```
///
/// The gradient is the model's own backward pass, run from `∂J/∂y_ℓ` (`1/(H·W)` on channel
/// `c`'s map, 0 elsewhere) down to the input; dividing it by its root mean square makes every
/// step the same size, however steep the objective. Dropout is left out (it is the identity
/// at evaluation). All channels climb at once, as one batch, each image seeing only its own
/// objective. The model's parameter gradients are zeroed afterwards.
///
/// Errors if the layer does not exist or is neither a convolution nor a pooling, or if the
/// options are out of range.
pub fn input_patterns<T: Scalar>(
    model: &mut Sequential<T>,
    layer: usize,
    options: PatternOptions,
) -> Result<Vec<Pattern>> {
    let channels = check_pattern_layer(model, layer)?;
    let n = if options.max_channels > 0 {
        channels.min(options.max_channels)
    } else {
        channels
    };
    let list: Vec<usize> = (0..n).collect();
    ascend(model, layer, &list, options)
}

/// The channels of layer `layer`, after checking it is a convolution or pooling.
fn check_pattern_layer<T: Scalar>(model: &Sequential<T>, layer: usize) -> Result<usize> {
    check_layer(
        model,
        layer,
        &[LayerKind::Convolution, LayerKind::Pooling],
        "an input pattern",
    )?;
    let shapes = model.output_shapes()?;
    Ok(shapes[layer][0])
}

fn ascend<T: Scalar>(
    model: &mut Sequential<T>,
    layer: usize,
    channels: &[usize],
    options: PatternOptions,
) -> Result<Vec<Pattern>> {
    options.check()?;
    let shape = model.input_shape.clone();
    let [c_in, h, w] = shape[..] else {
        return Err(Error::param(
            "model",
            format!("an input pattern needs images (C, H, W), the model takes {shape:?}"),
        ));
    };
    let n = channels.len();
    let mut x = Array4::<f64>::zeros((n, c_in, h, w));
    for (k, &c) in channels.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        rng.set_stream(c as u64);
        x.slice_mut(s![k, .., .., ..])
            .mapv_inplace(|_| 0.5 + options.noise * (2.0 * rng.random::<f64>() - 1.0));
    }
    let mut activations = vec![Vec::with_capacity(options.steps + 1); n];
    let kernels = model.kernels;
    let to_t = |v: f64| T::from(v).unwrap_or_else(T::zero);
    for step in 0..=options.steps {
        // Forward to the layer, keeping what the backward pass needs; dropout is skipped.
        let mut y: ArrayD<T> = x.mapv(to_t).into_dyn();
        for i in 0..=layer {
            let l = model.layer_mut(i).expect("checked layer index");
            if l.kind() != LayerKind::Dropout {
                y = l.forward(y, Mode::Train { step: 0 }, kernels)?;
            }
        }
        let y = y.into_dimensionality::<Ix4>().map_err(|_| {
            Error::shape("input_patterns", format!("layer {layer} did not give maps"))
        })?;
        let (_, _, oh, ow) = y.dim();
        let per = 1.0 / (oh * ow) as f64;
        for (k, &c) in channels.iter().enumerate() {
            let sum: f64 = y
                .slice(s![k, c, .., ..])
                .iter()
                .map(|v| v.to_f64().unwrap_or(f64::NAN))
                .sum();
            activations[k].push(sum * per);
        }
        if step == options.steps {
            break;
        }
        // ∂J/∂y: 1/(H·W) on each image's own channel.
        let mut g = ndarray::Array4::<T>::zeros(y.raw_dim());
        for (k, &c) in channels.iter().enumerate() {
            g.slice_mut(s![k, c, .., ..]).fill(to_t(per));
        }
        let mut g = g.into_dyn();
        for i in (0..=layer).rev() {
            let l = model.layer_mut(i).expect("checked layer index");
            if l.kind() != LayerKind::Dropout {
                g = l.backward(g, kernels)?;
            }
        }
        let g = g
            .into_dimensionality::<Ix4>()
            .map_err(|_| Error::shape("input_patterns", "the input gradient is not 4-D"))?;
        for (mut xk, gk) in x.axis_iter_mut(Axis(0)).zip(g.axis_iter(Axis(0))) {
            let gk = gk.mapv(|v| v.to_f64().unwrap_or(0.0));
            let rms = (gk.iter().map(|v| v * v).sum::<f64>() / gk.len() as f64).sqrt();
            let scale = options.step / (rms + GRADIENT_EPSILON);
            xk.scaled_add(scale, &gk);
        }
    }
    model.zero_grad();
    Ok(channels
        .iter()
        .zip(activations)
        .zip(x.axis_iter(Axis(0)))
        .map(|((&channel, activations), image)| Pattern {
            channel,
            image: image.to_owned(),
            activations,
        })
        .collect())
}

/// A pattern made visible: its contrast stretched so that the values from its 2nd to its 98th
/// percentile span black to white (the few beyond are clipped), so the faint structure the ascent
/// added to the noise shows, whatever its absolute size, and a handful of extreme pixels (along
/// the border, where zero padding cuts the windows short) cannot wash it out.
pub fn visible(image: &Array3<f64>) -> Array3<f64> {
    let mut sorted: Vec<f64> = image.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return image.mapv(|_| 0.5);
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.02), at(0.98));
    if hi <= lo {
        return image.mapv(|_| 0.5);
    }
    image.mapv(|v| ((v - lo) / (hi - lo)).clamp(0.0, 1.0))
}

/// A grid of the input patterns of layer `layer`'s channels ([`input_patterns`]), each shown
/// with [`visible`], labelled with its channel and how much the ascent raised its mean
/// activation.
pub fn patterns_figure<T: Scalar>(
    model: &mut Sequential<T>,
    layer: usize,
    options: PatternOptions,
) -> Result<Figure> {
    check_pattern_layer(model, layer)?;
    drawable_channels(model.input_shape.first().copied().unwrap_or(0))?;
    let patterns = input_patterns(model, layer, options)?;
    let name = layer_name(model, layer);
    let description = model.layers()[layer].describe();
    let n = patterns.len();
    let columns = options.columns.max(1).min(n.max(1));
    let rows = n.div_ceil(columns) as i32;
    let cell = options.cell.max(8) as i32;
    let caption = 2 * LABEL_SIZE as i32 + 8;
    let (gap, margin) = (12, 24);
    let pitch = (cell + gap, cell + caption + gap);
    let grid_w = columns as i32 * pitch.0 - gap;
    let width = (2 * margin + grid_w).max(900);
    let top = TITLE_SIZE as i32 + 2 * HEADING_SIZE as i32 + 40;
    let height = top + rows * pitch.1 + 8;
    let left = (width - grid_w) / 2;
    let text = options.text;
    Figure::draw(width as u32, height as u32, |area| {
        heading(
            area,
            width as i32,
            &format!("What each channel of {name} (layer {layer}) responds to most"),
            &format!("{description}, {} channels", n),
            HEADING_SIZE - 3,
            text,
        )?;
        label(
            area,
            &format!(
                "{} steps of gradient ascent from seeded noise; under each: the channel, and its \
                 mean activation before → after",
                options.steps
            ),
            (width / 2, TITLE_SIZE as i32 + HEADING_SIZE as i32 + 22),
            HEADING_SIZE - 4,
            (HPos::Center, VPos::Top),
            GRAY,
            text,
        )?;
        for (k, p) in patterns.iter().enumerate() {
            let (r, c) = ((k / columns) as i32, (k % columns) as i32);
            let rect = Rect::new(left + c * pitch.0, top + r * pitch.1, cell, cell);
            draw_image(area, rect, visible(&p.image).view())?;
            frame(area, rect, GRAY, 1)?;
            let first = p.activations.first().copied().unwrap_or(f64::NAN);
            let last = p.activations.last().copied().unwrap_or(f64::NAN);
            label(
                area,
                &format!("{}", p.channel),
                (rect.x + cell / 2, rect.y + cell + 3),
                LABEL_SIZE - 1,
                (HPos::Center, VPos::Top),
                BLACK,
                text,
            )?;
            label(
                area,
                &format!("{first:.2} → {last:.2}"),
                (rect.x + cell / 2, rect.y + cell + LABEL_SIZE as i32 + 5),
                LABEL_SIZE - 3,
                (HPos::Center, VPos::Top),
                GRAY,
                text,
            )?;
        }
        Ok(())
    })
}
