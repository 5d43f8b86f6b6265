//! The learned filters of a convolution layer, one grayscale cell per output channel.

use super::setters;
use ndarray::{Array3, Axis, Ix4};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{
    ColorMap, ColorScale, Figure, GRAY, HEADING_SIZE, LABEL_SIZE, Rect, TITLE_SIZE, check_layer,
    color_bar, draw_map, frame, label, layer_name,
};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::{LayerKind, Sequential};

/// Which values the gray levels of a filter grid span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterScale {
    /// Each filter from `−mᵢ` to `mᵢ`, `mᵢ` its own largest magnitude: every filter's pattern
    /// shows at full contrast, but gray levels of different cells mean different values.
    #[default]
    PerFilter,
    /// One scale for the whole layer, from `−m` (black) through 0 (middle gray) to `m`
    /// (white), `m` the largest weight magnitude in the layer: filters can be compared, a weak
    /// filter looks faint, and a colour bar gives the values.
    Shared,
}

/// How [`filters_figure`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterOptions {
    /// Per-filter or shared gray scale (default per filter).
    pub scale: FilterScale,
    /// Cells per row; 0 (the default) picks about √C_out, rounded up to a multiple of 4.
    pub columns: usize,
    /// Side of a cell in pixels (default 64).
    pub cell: u32,
    /// Draw the text (default `true`).
    pub text: bool,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions {
            scale: FilterScale::PerFilter,
            columns: 0,
            cell: 64,
            text: true,
        }
    }
}

setters!(FilterOptions {
    /// Scale the gray levels per filter or over the layer.
    scale: FilterScale,
    /// Cells per row (0: automatic).
    columns: usize,
    /// Side of a cell in pixels.
    cell: u32,
    /// Draw the text or leave it out.
    text: bool,
});

/// The filters of convolution layer `layer`, each summed over its input channels:
/// `(C_out, kH, kW)`. For a layer with one input channel (the first layer of a grayscale
/// network) these are the filters themselves; deeper, each cell is the sum of the `C_in` slices
/// of its filter — what the filter computes on an input that is the same in every channel.
pub fn filter_images<T: Scalar>(model: &Sequential<T>, layer: usize) -> Result<Array3<f64>> {
    check_layer(model, layer, &[LayerKind::Convolution], "a filter grid")?;
    let weight = model.layers()[layer]
        .parameters()
        .into_iter()
        .find(|(name, _)| *name == "weight")
        .map(|(_, t)| t.value.view())
        .ok_or_else(|| Error::param("layer", format!("layer {layer} has no weight")))?;
    let weight = weight
        .into_dimensionality::<Ix4>()
        .map_err(|_| Error::param("layer", format!("layer {layer}'s weight is not 4-D")))?;
    Ok(weight
        .mapv(|v| v.to_f64().unwrap_or(f64::NAN))
        .sum_axis(Axis(1)))
}

/// A grid of the filters of convolution layer `layer` ([`filter_images`]), one cell per output
/// channel, numbered from 0, in grayscale: zero is middle gray, positive weights lighter,
/// negative darker, so a filter that is light on one side and dark on the other responds to an
/// edge between them. The scale is shared by the layer or each filter's own
/// ([`FilterScale`]); with a shared scale a colour bar gives the values.
///
/// Errors if the layer does not exist or is not a convolution.
pub fn filters_figure<T: Scalar>(
    model: &Sequential<T>,
    layer: usize,
    options: FilterOptions,
) -> Result<Figure> {
    let filters = filter_images(model, layer)?;
    let (c_out, kh, kw) = filters.dim();
    let c_in = model.layers()[layer]
        .parameters()
        .first()
        .map_or(1, |(_, t)| t.value.shape()[1]);
    let columns = if options.columns > 0 {
        options.columns
    } else {
        ((c_out as f64).sqrt().ceil() as usize).div_ceil(4).max(1) * 4
    }
    .min(c_out);
    let rows = c_out.div_ceil(columns);
    let cell = options.cell.max(kh.max(kw) as u32) as i32;
    let (gap, number) = (10, LABEL_SIZE as i32 + 4);
    let pitch = (cell + gap, cell + number + gap / 2);
    let shared = options.scale == FilterScale::Shared;
    let bar_band = if shared { 110 } else { 0 };
    let top = TITLE_SIZE as i32 + 2 * HEADING_SIZE as i32 + 40;
    let grid_w = columns as i32 * pitch.0 - gap;
    let width = (2 * 24 + grid_w + bar_band).max(760);
    let height = top + rows as i32 * pitch.1 + 16;
    let left = (width - bar_band - grid_w) / 2;
    let whole = ColorScale::symmetric(filters.iter().copied(), ColorMap::Gray);
    let name = layer_name(model, layer);
    let title = format!("Learned filters of {name} (layer {layer})");
    let what = format!(
        "{c_out} filters of {kh}×{kw}{}",
        if c_in > 1 {
            format!(", each summed over its {c_in} input channels")
        } else {
            String::new()
        }
    );
    let how = format!(
        "black negative, middle gray 0, white positive; {}",
        if shared {
            "one scale for the whole layer"
        } else {
            "each filter scaled to its own largest weight"
        }
    );
    let text = options.text;
    Figure::draw(width as u32, height as u32, |area| {
        label(
            area,
            &title,
            (width / 2, 10),
            TITLE_SIZE,
            (HPos::Center, VPos::Top),
            BLACK,
            text,
        )?;
        for (k, line) in [what.as_str(), how.as_str()].into_iter().enumerate() {
            label(
                area,
                line,
                (
                    width / 2,
                    TITLE_SIZE as i32 + 18 + k as i32 * (HEADING_SIZE as i32 + 2),
                ),
                HEADING_SIZE - 3,
                (HPos::Center, VPos::Top),
                GRAY,
                text,
            )?;
        }
        for (k, filter) in filters.axis_iter(Axis(0)).enumerate() {
            let (r, c) = ((k / columns) as i32, (k % columns) as i32);
            let rect = Rect::new(left + c * pitch.0, top + r * pitch.1, cell, cell);
            let scale = if shared {
                whole
            } else {
                ColorScale::symmetric(filter.iter().copied(), ColorMap::Gray)
            };
            draw_map(area, rect, filter, &scale)?;
            frame(area, rect, GRAY, 1)?;
            label(
                area,
                &k.to_string(),
                (rect.x + cell / 2, rect.y + cell + 3),
                LABEL_SIZE - 2,
                (HPos::Center, VPos::Top),
                GRAY,
                text,
            )?;
        }
        if shared {
            let bar_h = (rows as i32 * pitch.1 - number).clamp(80, 320);
            let bar = Rect::new(left + grid_w + 24, top, 18, bar_h);
            color_bar(area, bar, &whole, 5, text)?;
        }
        Ok(())
    })
}
