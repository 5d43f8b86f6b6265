//! One image walked through a network: the feature maps after every convolution and pooling.

use super::setters;
use ndarray::{Array3, ArrayView3, Axis, Ix4};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{
    ColorMap, ColorScale, Figure, HEADING_SIZE, Rect, TITLE_SIZE, check_image, check_layer,
    color_bar, draw_image, draw_map, drawable_channels, heading, label, layer_name, layers_of,
};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::{LayerKind, Mode, Sequential};

/// The feature maps one layer produced for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMaps {
    /// The layer's index in the model.
    pub index: usize,
    /// Its short name ([`super::layer_name`]): `conv1`, `pool1`, …
    pub name: String,
    /// The layer as PyTorch prints it.
    pub layer: String,
    /// Convolution or pooling.
    pub kind: LayerKind,
    /// The activation layers right after it that were applied to the maps, as PyTorch prints
    /// them (`["ReLU()"]` after each convolution of the course's networks; empty if none).
    pub followed_by: Vec<String>,
    /// The maps, `(C, H, W)`: channel `c` is the feature map of the layer's `c`-th filter (or,
    /// after a pooling, of the `c`-th channel it pooled).
    pub maps: Array3<f64>,
}

/// The feature maps of `image` `(C, H, W)` after every convolution and pooling layer of
/// `model`, in order, from one forward pass in evaluation mode. Where activation layers follow
/// a convolution or pooling directly (the ReLU after each convolution), the maps are taken
/// after them: they are what the next layer sees, and what a Keras convolution with
/// `activation='relu'` outputs — zero where the filter's pattern is absent.
///
/// Errors if the image is not the shape the model takes, or if the model has no convolution or
/// pooling layer.
pub fn feature_maps<T: Scalar>(
    model: &mut Sequential<T>,
    image: ArrayView3<'_, T>,
) -> Result<Vec<LayerMaps>> {
    check_image(model, image.shape())?;
    let wanted = layers_of(model, &[LayerKind::Convolution, LayerKind::Pooling]);
    let Some(&last) = wanted.last() else {
        return Err(Error::param(
            "model",
            format!(
                "{} has no convolution or pooling layer, so it makes no feature maps",
                model.name
            ),
        ));
    };
    let kinds: Vec<LayerKind> = model.layers().iter().map(|l| l.kind()).collect();
    let kernels = model.kernels;
    let mut x = image.to_owned().insert_axis(Axis(0)).into_dyn();
    let mut out: Vec<LayerMaps> = Vec::with_capacity(wanted.len());
    // Whether the last maps kept can still take the activation that follows them.
    let mut open = false;
    for (i, &kind) in kinds.iter().enumerate() {
        let activation = open && kind == LayerKind::Activation;
        if i > last && !activation {
            break;
        }
        let layer = model
            .layer_mut(i)
            .expect("the index comes from the model's own layers");
        x = layer.forward(x, Mode::Eval, kernels)?;
        if wanted.contains(&i) {
            out.push(LayerMaps {
                index: i,
                name: String::new(),
                layer: layer.describe(),
                kind,
                followed_by: Vec::new(),
                maps: first_maps(&x, i)?,
            });
            open = true;
        } else if activation {
            let maps = first_maps(&x, i)?;
            let kept = out.last_mut().expect("open only after a kept layer");
            kept.followed_by.push(layer.describe());
            kept.maps = maps;
        } else {
            open = false;
        }
    }
    for m in &mut out {
        m.name = layer_name(model, m.index);
    }
    Ok(out)
}

/// The maps of the first (only) image of a batch `(1, C, H, W)`.
fn first_maps<T: Scalar>(x: &ndarray::ArrayD<T>, layer: usize) -> Result<Array3<f64>> {
    Ok(x.view()
        .into_dimensionality::<Ix4>()
        .map_err(|_| {
            Error::shape(
                "feature_maps",
                format!("layer {layer} did not give a batch of maps (N, C, H, W)"),
            )
        })?
        .index_axis(Axis(0), 0)
        .mapv(|v| v.to_f64().unwrap_or(f64::NAN)))
}

/// How [`feature_maps_figure`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureMapOptions {
    /// Side of one map's cell in pixels (default 48); a 28×28 map is drawn at about 1.7 pixels
    /// per value, a 7×7 one at about 7.
    pub cell: u32,
    /// Maps per row (default 16).
    pub columns: usize,
    /// Draw at most this many maps of each layer, the first ones; 0 (the default) draws all.
    pub max_channels: usize,
    /// Only this layer (it must be a convolution or pooling); `None` (the default) draws every
    /// convolution and pooling layer.
    pub layer: Option<usize>,
    /// Draw each layer's colour bar (default `true`).
    pub color_bar: bool,
    /// Draw the text (default `true`).
    pub text: bool,
}

impl Default for FeatureMapOptions {
    fn default() -> Self {
        FeatureMapOptions {
            cell: 48,
            columns: 16,
            max_channels: 0,
            layer: None,
            color_bar: true,
            text: true,
        }
    }
}

impl FeatureMapOptions {
    /// Draw only layer `index`.
    pub fn layer(mut self, index: usize) -> Self {
        self.layer = Some(index);
        self
    }
}

setters!(FeatureMapOptions {
    /// Side of a map's cell in pixels.
    cell: u32,
    /// Maps per row.
    columns: usize,
    /// At most this many maps per layer (0: all).
    max_channels: usize,
    /// Draw the colour bars or leave them out.
    color_bar: bool,
    /// Draw the text or leave it out.
    text: bool,
});

/// The walk of one image through `model`: the image, then, for every convolution and pooling
/// layer ([`feature_maps`], so after the ReLU that follows a convolution), a grid of its feature maps, one cell per channel, in the viridis
/// colours (dark violet lowest, yellow highest) on one scale per layer, whose colour bar gives
/// the values.
///
/// Errors if the image is not the shape the model takes, if `options.layer` is not a
/// convolution or pooling layer, or if the image has other than 1 or 3 channels.
pub fn feature_maps_figure<T: Scalar>(
    model: &mut Sequential<T>,
    image: ArrayView3<'_, T>,
    options: FeatureMapOptions,
) -> Result<Figure> {
    check_image(model, image.shape())?;
    drawable_channels(image.shape()[0])?;
    if let Some(l) = options.layer {
        check_layer(
            model,
            l,
            &[LayerKind::Convolution, LayerKind::Pooling],
            "a feature-map figure",
        )?;
    }
    let mut layers = feature_maps(model, image)?;
    if let Some(l) = options.layer {
        layers.retain(|m| m.index == l);
    }
    let input = image.mapv(|v| v.to_f64().unwrap_or(f64::NAN));
    let shown = |m: &LayerMaps| {
        let c = m.maps.shape()[0];
        if options.max_channels > 0 {
            c.min(options.max_channels)
        } else {
            c
        }
    };
    let columns = options
        .columns
        .max(1)
        .min(layers.iter().map(shown).max().unwrap_or(1));
    let cell = options.cell.max(4) as i32;
    let gap = 4;
    let header = HEADING_SIZE as i32 + 14;
    let section_gap = 16;
    let margin = 24;
    let bar_band = if options.color_bar { 110 } else { 0 };
    let grid_w = columns as i32 * (cell + gap) - gap;
    let width = (2 * margin + grid_w + bar_band).max(760);
    let input_side = 2 * cell;
    let title_h = TITLE_SIZE as i32 + HEADING_SIZE as i32 + 34;
    let mut height = title_h + header + input_side + section_gap;
    for m in &layers {
        let rows = shown(m).div_ceil(columns) as i32;
        height += header + rows * (cell + gap) - gap + section_gap;
    }
    height += 8;
    let [c, h, w] = [input.shape()[0], input.shape()[1], input.shape()[2]];
    let model_name = model.name.clone();
    let text = options.text;
    Figure::draw(width as u32, height as u32, |area| {
        heading(
            area,
            width as i32,
            &format!("One image through {model_name}"),
            "its feature maps after each convolution (and its ReLU) and each pooling: one cell per \
             channel, one colour scale per layer",
            HEADING_SIZE - 3,
            text,
        )?;
        let mut y = title_h;
        label(
            area,
            &format!("input: {c}×{h}×{w}"),
            (margin, y + header / 2 - 2),
            HEADING_SIZE,
            (HPos::Left, VPos::Center),
            BLACK,
            text,
        )?;
        y += header;
        let rect = Rect::new(margin, y, input_side, input_side);
        if c == 1 {
            let scale = ColorScale::spanning(input.iter().copied(), ColorMap::Gray);
            draw_map(area, rect, input.index_axis(Axis(0), 0), &scale)?;
        } else {
            draw_image(area, rect, input.view())?;
        }
        y += input_side + section_gap;
        for m in &layers {
            let (c, mh, mw) = m.maps.dim();
            let n = shown(m);
            let scale = ColorScale::spanning(m.maps.iter().copied(), ColorMap::Viridis);
            let count = if n < c {
                format!("the first {n} of {c} maps")
            } else {
                format!("{c} maps")
            };
            label(
                area,
                &format!(
                    "{} (layer {}): {}{} → {count} of {mh}×{mw}",
                    m.name,
                    m.index,
                    m.layer,
                    m.followed_by
                        .iter()
                        .map(|a| format!(", {a}"))
                        .collect::<String>()
                ),
                (margin, y + header / 2 - 2),
                HEADING_SIZE - 2,
                (HPos::Left, VPos::Center),
                BLACK,
                text,
            )?;
            y += header;
            let rows = n.div_ceil(columns) as i32;
            for (k, map) in m.maps.axis_iter(Axis(0)).take(n).enumerate() {
                let (r, col) = ((k / columns) as i32, (k % columns) as i32);
                let rect = Rect::new(
                    margin + col * (cell + gap),
                    y + r * (cell + gap),
                    cell,
                    cell,
                );
                draw_map(area, rect, map, &scale)?;
            }
            let grid_h = rows * (cell + gap) - gap;
            if options.color_bar {
                let bar = Rect::new(margin + grid_w + 20, y, 16, grid_h.max(cell));
                let ticks = if bar.h >= 150 { 5 } else { 3 };
                color_bar(area, bar, &scale, ticks, text)?;
            }
            y += grid_h + section_gap;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_follow_the_model_layer_by_layer() {
        use crate::nn::{Architecture, Init};
        let mut model = Architecture::KerasMnist
            .build::<f32>(Init::Glorot, 3)
            .unwrap();
        let image = ndarray::Array3::<f32>::from_elem((1, 28, 28), 0.5);
        let maps = feature_maps(&mut model, image.view()).unwrap();
        let shapes: Vec<_> = maps.iter().map(|m| m.maps.shape().to_vec()).collect();
        // The Keras MNIST convnet: 26×26×32, 13×13×32, 11×11×64, 5×5×64, 3×3×64 (the course's
        // summary table).
        assert_eq!(
            shapes,
            vec![
                vec![32, 26, 26],
                vec![32, 13, 13],
                vec![64, 11, 11],
                vec![64, 5, 5],
                vec![64, 3, 3]
            ]
        );
        let names: Vec<_> = maps.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["conv1", "pool1", "conv2", "pool2", "conv3"]);
    }
}
