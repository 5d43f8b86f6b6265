//! The confusion matrix: how often each class is taken for each other.

use super::setters;
use ndarray::Array2;
use plotters::prelude::*;
use plotters::style::FontTransform;
use plotters::style::text_anchor::{HPos, VPos};

use super::{
    ColorMap, ColorScale, Figure, GRAY, HEADING_SIZE, LABEL_SIZE, Rect, TITLE_SIZE, color_bar,
    fill_blocks, font, frame, heading, label,
};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::Sequential;
use crate::nn::sequential::thousands;

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// The class names, by label.
    pub classes: Vec<String>,
    /// `counts[[t, p]]`: images of true class `t` that were predicted as `p`. The diagonal
    /// holds the right answers.
    pub counts: Array2<usize>,
}

impl ConfusionMatrix {
    /// Count the pairs `(labels[i], predicted[i])`. Errors if the lists differ in length or a
    /// label or prediction is not below the number of classes.
    pub fn new(classes: Vec<String>, labels: &[usize], predicted: &[usize]) -> Result<Self> {
        let k = classes.len();
        if k == 0 {
            return Err(Error::param(
                "classes",
                "a confusion matrix needs at least one class",
            ));
        }
        if labels.len() != predicted.len() {
            return Err(Error::param(
                "predicted",
                format!(
                    "{} predictions for {} labels: there must be one per label",
                    predicted.len(),
                    labels.len()
                ),
            ));
        }
        let mut counts = Array2::zeros((k, k));
        for (i, (&t, &p)) in labels.iter().zip(predicted).enumerate() {
            if t >= k || p >= k {
                return Err(Error::param(
                    "labels",
                    format!(
                        "image {i} has true class {t} and predicted class {p}, but there are \
                         only {k} classes, numbered from 0"
                    ),
                ));
            }
            counts[[t, p]] += 1;
        }
        Ok(ConfusionMatrix { classes, counts })
    }

    /// The matrix of `model`'s predictions ([`super::predict`]) on `data`.
    pub fn of<T: Scalar>(model: &mut Sequential<T>, data: &Dataset) -> Result<Self> {
        let predicted: Vec<usize> = super::predict(model, data)?
            .iter()
            .map(|p| p.class)
            .collect();
        let labels: Vec<usize> = data.labels.iter().map(|&l| usize::from(l)).collect();
        ConfusionMatrix::new(data.classes.clone(), &labels, &predicted)
    }

    /// How many pairs were counted.
    pub fn total(&self) -> usize {
        self.counts.sum()
    }

    /// The fraction on the diagonal: the accuracy (NaN for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        let right: usize = self.counts.diag().sum();
        right as f64 / self.total() as f64
    }
}

/// How [`confusion_figure`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfusionOptions {
    /// Side of a cell in pixels (default 62).
    pub cell: u32,
    /// Draw the text (default `true`).
    pub text: bool,
}

impl Default for ConfusionOptions {
    fn default() -> Self {
        ConfusionOptions {
            cell: 62,
            text: true,
        }
    }
}

setters!(ConfusionOptions {
    /// Side of a cell in pixels.
    cell: u32,
    /// Draw the text or leave it out.
    text: bool,
});

/// The confusion matrix as a grid: a row per true class, a column per predicted class, each
/// cell coloured by its count (white for none, dark blue for the largest, the colour bar
/// giving the scale) and showing the count. A good model has a dark diagonal; a light cell off
/// it names a mistake the model makes, and which way.
pub fn confusion_figure(matrix: &ConfusionMatrix, options: ConfusionOptions) -> Result<Figure> {
    let k = matrix.classes.len();
    if matrix.counts.dim() != (k, k) || k == 0 {
        return Err(Error::param(
            "matrix",
            format!(
                "{} classes need a {k}×{k} matrix of counts, got {:?}",
                k,
                matrix.counts.dim()
            ),
        ));
    }
    let cell = options.cell.max(12) as i32;
    let longest = matrix
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(1) as i32;
    // About 0.6 em a character in DejaVu Sans.
    let names = longest * (LABEL_SIZE as i32 * 11 / 20) + 12;
    let side = k as i32 * cell;
    let left = 24 + HEADING_SIZE as i32 + 12 + names;
    let top = TITLE_SIZE as i32 + HEADING_SIZE as i32 + 36;
    let width = (left + side + 130).max(760);
    let height = top + side + names + HEADING_SIZE as i32 + 24;
    let max = matrix.counts.iter().copied().max().unwrap_or(0);
    let scale = ColorScale::new(0.0, max.max(1) as f64, ColorMap::Blues);
    let total = matrix.total();
    let text = options.text;
    Figure::draw(width as u32, height as u32, |area| {
        heading(
            area,
            width,
            &format!(
                "Confusion matrix of {} images: accuracy {:.4}",
                thousands(total),
                matrix.accuracy()
            ),
            "row: the true class; column: the class predicted; the diagonal counts right answers",
            HEADING_SIZE - 4,
            text,
        )?;
        let grid = Rect::new(left, top, side, side);
        fill_blocks(area, grid, (k, k), |t, p| {
            scale.color(matrix.counts[[t, p]] as f64)
        })?;
        frame(area, grid, GRAY, 1)?;
        let count_size = (cell as u32 * 2 / 7).clamp(9, 18);
        for t in 0..k {
            for p in 0..k {
                let n = matrix.counts[[t, p]];
                let dark = scale.fraction(n as f64) > 0.55;
                label(
                    area,
                    &n.to_string(),
                    (
                        left + p as i32 * cell + cell / 2,
                        top + t as i32 * cell + cell / 2,
                    ),
                    count_size,
                    (HPos::Center, VPos::Center),
                    if dark { WHITE } else { BLACK },
                    text,
                )?;
            }
        }
        for (c, name) in matrix.classes.iter().enumerate() {
            let middle = c as i32 * cell + cell / 2;
            label(
                area,
                name,
                (left - 8, top + middle),
                LABEL_SIZE,
                (HPos::Right, VPos::Center),
                BLACK,
                text,
            )?;
            let style = font(LABEL_SIZE, BLACK, text)
                .transform(FontTransform::Rotate270)
                .pos(plotters::style::text_anchor::Pos::new(
                    HPos::Right,
                    VPos::Center,
                ));
            area.draw_text(name, &style, (left + middle, top + side + 8))?;
        }
        let axis = font(HEADING_SIZE, BLACK, text);
        area.draw_text(
            "true class",
            &axis
                .transform(FontTransform::Rotate270)
                .pos(plotters::style::text_anchor::Pos::new(
                    HPos::Center,
                    VPos::Top,
                )),
            (24, top + side / 2),
        )?;
        area.draw_text(
            "predicted class",
            &axis.pos(plotters::style::text_anchor::Pos::new(
                HPos::Center,
                VPos::Bottom,
            )),
            (left + side / 2, height - 10),
        )?;
        let bar = Rect::new(left + side + 24, top, 18, side);
        color_bar(area, bar, &scale, 5, text)?;
        Ok(())
    })
}
