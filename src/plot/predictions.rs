//! A model's predictions on test images, and a grid of images labelled with them.

use super::setters;
use ndarray::{Axis, s};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{
    Figure, GRAY, HEADING_SIZE, LABEL_SIZE, Rect, TITLE_SIZE, draw_image, drawable_channels, frame,
    heading, label,
};
use crate::activation::softmax;
use crate::data::Dataset;
use crate::data::batch::{BatchParams, Batches};
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::{Mode, Sequential};
use crate::train::{EVAL_BATCH, argmax, logit_layers};

/// Red for wrong predictions.
const WRONG: RGBColor = RGBColor(205, 20, 30);
/// Green for right ones.
const RIGHT: RGBColor = RGBColor(20, 120, 50);

/// What a model says about one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The class with the largest logit.
    pub class: usize,
    /// Its softmax probability.
    pub confidence: f64,
}

/// The prediction of `model` for every image of `data`, in order: the forward pass in
/// evaluation mode, in batches, up to the logits; the class is the largest logit's (the first
/// of equals, as `torch.argmax`), its confidence its softmax probability.
pub fn predict<T: Scalar>(model: &mut Sequential<T>, data: &Dataset) -> Result<Vec<Prediction>> {
    if data.image_shape()[..] != model.input_shape[..] {
        return Err(Error::shape(
            "predict",
            format!(
                "{} takes images of shape {:?}, the data set's are {:?}",
                model.name,
                model.input_shape,
                data.image_shape()
            ),
        ));
    }
    let end = logit_layers(model);
    let params = BatchParams::new(EVAL_BATCH).shuffle(false);
    let mut out = Vec::with_capacity(data.len());
    for batch in Batches::<T>::new(data, params, 0)? {
        let logits = model.forward_layers(batch.images.into_dyn(), Mode::Eval, end)?;
        let probabilities = softmax(logits.view(), 1)?;
        for row in probabilities.axis_iter(Axis(0)) {
            let class = argmax(row.iter().copied()).ok_or_else(|| {
                Error::shape("predict", "the model gives no class scores".to_string())
            })?;
            out.push(Prediction {
                class,
                confidence: row[class].to_f64().unwrap_or(f64::NAN),
            });
        }
    }
    Ok(out)
}

/// How [`predictions_figure`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictionOptions {
    /// The first image shown (default 0).
    pub start: usize,
    /// How many images (default 32).
    pub count: usize,
    /// Images per row (default 8).
    pub columns: usize,
    /// Side of an image in pixels (default 84, three pixels per pixel of a 28×28 image).
    pub cell: u32,
    /// Draw the text (default `true`).
    pub text: bool,
}

impl Default for PredictionOptions {
    fn default() -> Self {
        PredictionOptions {
            start: 0,
            count: 32,
            columns: 8,
            cell: 84,
            text: true,
        }
    }
}

setters!(PredictionOptions {
    /// Start at image `start`.
    start: usize,
    /// Show `count` images.
    count: usize,
    /// Images per row.
    columns: usize,
    /// Side of an image in pixels.
    cell: u32,
    /// Draw the text or leave it out.
    text: bool,
});

/// A grid of the images `start .. start + count` of `data` (fewer if the data set ends
/// first), each with the class the model predicted and its probability, and the true class.
/// A wrong prediction has a red frame and a red label; a right one a green label.
///
/// Errors if `predictions` is not one per image of `data`, if `start` is past the last image,
/// or if the images have other than 1 or 3 channels.
pub fn predictions_figure(
    data: &Dataset,
    predictions: &[Prediction],
    options: PredictionOptions,
) -> Result<Figure> {
    if predictions.len() != data.len() {
        return Err(Error::param(
            "predictions",
            format!(
                "{} predictions for {} images: there must be one per image",
                predictions.len(),
                data.len()
            ),
        ));
    }
    if options.start >= data.len() {
        return Err(Error::param(
            "start",
            format!(
                "image {} does not exist: the data set has {} images, numbered from 0",
                options.start,
                data.len()
            ),
        ));
    }
    drawable_channels(data.image_shape()[0])?;
    let end = (options.start + options.count.max(1)).min(data.len());
    let n = end - options.start;
    let wrong = (options.start..end)
        .filter(|&i| predictions[i].class != usize::from(data.labels[i]))
        .count();
    let columns = options.columns.max(1).min(n);
    let rows = n.div_ceil(columns) as i32;
    let cell = options.cell.max(8) as i32;
    let line = LABEL_SIZE as i32 + 4;
    let pitch_x = (cell + 16).max(146);
    let pitch_y = cell + 2 * line + 20;
    let margin = 20;
    let grid_w = columns as i32 * pitch_x;
    let width = (2 * margin + grid_w).max(760);
    let top = TITLE_SIZE as i32 + HEADING_SIZE as i32 + 36;
    let height = top + rows * pitch_y + 6;
    let left = (width - grid_w) / 2;
    let class_name = |k: usize| {
        data.classes
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
    };
    let text = options.text;
    Figure::draw(width as u32, height as u32, |area| {
        heading(
            area,
            width,
            &format!(
                "Predictions on images {}–{}: {wrong} of {n} wrong",
                options.start,
                end - 1
            ),
            "under each image: the predicted class and its probability, then the true class; \
             wrong predictions in red",
            HEADING_SIZE - 4,
            text,
        )?;
        for (k, i) in (options.start..end).enumerate() {
            let (r, c) = ((k / columns) as i32, (k % columns) as i32);
            let x0 = left + c * pitch_x;
            let rect = Rect::new(x0 + (pitch_x - cell) / 2, top + r * pitch_y, cell, cell);
            let image = data
                .images
                .slice(s![i, .., .., ..])
                .mapv(|v| f64::from(v) / 255.0);
            draw_image(area, rect, image.view())?;
            let p = predictions[i];
            let truth = usize::from(data.labels[i]);
            let right = p.class == truth;
            if right {
                frame(area, rect, GRAY, 1)?;
            } else {
                frame(area, rect, WRONG, 3)?;
            }
            let centre = x0 + pitch_x / 2;
            label(
                area,
                &format!("{} {:.0}%", class_name(p.class), 100.0 * p.confidence),
                (centre, rect.y + cell + 6),
                LABEL_SIZE,
                (HPos::Center, VPos::Top),
                if right { RIGHT } else { WRONG },
                text,
            )?;
            label(
                area,
                &format!("true: {}", class_name(truth)),
                (centre, rect.y + cell + 6 + line),
                LABEL_SIZE - 1,
                (HPos::Center, VPos::Top),
                RGBColor(70, 70, 70),
                text,
            )?;
        }
        Ok(())
    })
}
