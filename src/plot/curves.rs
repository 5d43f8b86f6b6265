//! Training curves: a run's loss and accuracy per epoch, training beside validation.

use super::setters;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{Drawn, Figure, GRAY, HEADING_SIZE, LABEL_SIZE, TITLE_SIZE, font, label};
use crate::error::{Error, Result};
use crate::train::{EpochRecord, History};

/// The colour of the training curves.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
/// The colour of the validation curves.
const VALID: RGBColor = RGBColor(230, 110, 10);
/// The colour of the best epoch's marks.
const BEST: RGBColor = RGBColor(200, 30, 40);

/// How [`training_curves`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurveOptions {
    /// Width of the figure in pixels (default 1200).
    pub width: u32,
    /// Height of the figure in pixels (default 480).
    pub height: u32,
    /// Draw the text: title, axis names, tick values, legends (default `true`; `false` draws
    /// the same figure with every glyph left out).
    pub text: bool,
}

impl Default for CurveOptions {
    fn default() -> Self {
        CurveOptions {
            width: 1200,
            height: 480,
            text: true,
        }
    }
}

impl CurveOptions {
    /// Set the figure's size in pixels.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }
}

setters!(CurveOptions {
    /// Draw the text or leave it out.
    text: bool,
});

/// A run's curves, two panels side by side: on the left the loss (mean cross-entropy) of each
/// epoch on the training and validation images, on the right their accuracy. The epoch with the
/// lowest validation loss ([`History::best`]) is marked in both panels by a vertical dashed
/// line and a ring around its validation point; the title gives the test accuracy when the
/// history has it.
///
/// A history without epochs, or whose values are all NaN or infinite, is an error.
pub fn training_curves(history: &History, options: CurveOptions) -> Result<Figure> {
    if history.epochs.is_empty() {
        return Err(Error::param(
            "history",
            "it has no epochs: training curves need at least one epoch of training",
        ));
    }
    let loss = Panel::new(
        "Loss",
        "cross-entropy",
        &history.epochs,
        |r| r.train_loss,
        |r| r.val_loss,
        true,
    )?;
    let accuracy = Panel::new(
        "Accuracy",
        "fraction of images classified right",
        &history.epochs,
        |r| r.train_accuracy,
        |r| r.val_accuracy,
        false,
    )?;
    let best = history.best().filter(|b| b.val_loss.is_finite()).cloned();
    let mut title = format!(
        "Training curves: {} epoch{}",
        history.epochs.len(),
        if history.epochs.len() == 1 { "" } else { "s" }
    );
    if let Some(b) = &best {
        title += &format!(
            ", lowest validation loss at epoch {} ({:.4})",
            b.epoch, b.val_loss
        );
    }
    if let Some(acc) = history.test_accuracy {
        title += &format!(", test accuracy {acc:.4}");
    }
    let text = options.text;
    Figure::draw(options.width, options.height, |area| {
        let (top, body) = area.split_vertically(TITLE_SIZE + 26);
        let (w, h) = top.dim_in_pixel();
        label(
            &top,
            &title,
            (w as i32 / 2, h as i32 / 2 + 2),
            TITLE_SIZE,
            (HPos::Center, VPos::Center),
            BLACK,
            text,
        )?;
        let panels = body.split_evenly((1, 2));
        loss.draw(&panels[0], best.as_ref(), text)?;
        accuracy.draw(&panels[1], best.as_ref(), text)?;
        Ok(())
    })
}

/// One panel: a quantity per epoch, training and validation.
struct Panel {
    name: &'static str,
    axis: &'static str,
    train: Vec<(i32, f64)>,
    valid: Vec<(i32, f64)>,
    epochs: i32,
    low: f64,
    high: f64,
    is_loss: bool,
}

impl Panel {
    fn new(
        name: &'static str,
        axis: &'static str,
        epochs: &[EpochRecord],
        train: fn(&EpochRecord) -> f64,
        valid: fn(&EpochRecord) -> f64,
        is_loss: bool,
    ) -> Result<Self> {
        let points = |f: fn(&EpochRecord) -> f64| -> Vec<(i32, f64)> {
            epochs
                .iter()
                .filter(|r| f(r).is_finite())
                .map(|r| (r.epoch as i32, f(r)))
                .collect()
        };
        let (train, valid) = (points(train), points(valid));
        let values = || train.iter().chain(&valid).map(|p| p.1);
        let low = values().fold(f64::INFINITY, f64::min);
        let high = values().fold(f64::NEG_INFINITY, f64::max);
        if !low.is_finite() {
            return Err(Error::param(
                "history",
                format!(
                    "no epoch has a finite {}: there is nothing to draw",
                    name.to_lowercase()
                ),
            ));
        }
        // A margin of a tenth of the range (or of the value, for a flat curve) on each side.
        let pad = if high > low {
            (high - low) / 10.0
        } else {
            (high.abs() / 10.0).max(0.01)
        };
        let (mut low, mut high) = (low - pad, high + pad);
        low = low.max(0.0);
        if !is_loss {
            high = high.min(1.0);
        }
        let last = epochs.iter().map(|r| r.epoch).max().unwrap_or(1) as i32;
        Ok(Panel {
            name,
            axis,
            train,
            valid,
            epochs: last,
            low,
            high,
            is_loss,
        })
    }

    /// Where the legend of `entries` lines goes in a plotting area of `width × height` pixels:
    /// the first place that none of the curves passes under, of the usual corner (top right
    /// for the loss, which falls; bottom right for the accuracy, which rises), the middle and
    /// the left of that edge, then the same three on the other edge; else the place that the
    /// fewest of their points pass under. A validation loss that climbs back up at the end of
    /// a long run would otherwise run under the legend.
    fn legend_corner(&self, [width, height]: [u32; 2], entries: usize) -> SeriesLabelPosition {
        use SeriesLabelPosition::*;
        // The box, from its settings below: a 24-pixel line, a gap and "validation" or "best
        // epoch (n)" in the label font, 10 pixels of margin inside and out.
        let box_w = (24 + 10 + 14 * LABEL_SIZE * 11 / 20 + 3 * 10) as f64 / width.max(1) as f64;
        let box_h = (entries as u32 * (LABEL_SIZE + 8) + 3 * 10) as f64 / height.max(1) as f64;
        // The curves sampled along every segment, in fractions of the plotting area.
        let span = (self.epochs + 1) as f64;
        let samples: Vec<(f64, f64)> = [&self.train, &self.valid]
            .into_iter()
            .flat_map(|points| {
                let segments = points.windows(2).map(|w| (w[0], w[1]));
                let single = (points.len() == 1).then(|| (points[0], points[0]));
                segments
                    .chain(single)
                    .flat_map(move |((x0, y0), (x1, y1))| {
                        (0..=16).map(move |k| {
                            let t = k as f64 / 16.0;
                            let x = x0 as f64 + t * (x1 - x0) as f64;
                            let y = y0 + t * (y1 - y0);
                            (x / span, (y - self.low) / (self.high - self.low))
                        })
                    })
            })
            .collect();
        let covered = |corner: &SeriesLabelPosition| {
            let x0 = match corner {
                UpperLeft | LowerLeft => 0.0,
                UpperMiddle | LowerMiddle => (1.0 - box_w) / 2.0,
                _ => 1.0 - box_w,
            };
            let y0 = match corner {
                UpperLeft | UpperMiddle | UpperRight => 1.0 - box_h,
                _ => 0.0,
            };
            samples
                .iter()
                .filter(|&&(x, y)| (x0..=x0 + box_w).contains(&x) && (y0..=y0 + box_h).contains(&y))
                .count()
        };
        let corners = if self.is_loss {
            [
                UpperRight,
                UpperMiddle,
                UpperLeft,
                LowerRight,
                LowerMiddle,
                LowerLeft,
            ]
        } else {
            [
                LowerRight,
                LowerMiddle,
                LowerLeft,
                UpperRight,
                UpperMiddle,
                UpperLeft,
            ]
        };
        // The first of the fewest: the first place with none, where there is one.
        corners
            .into_iter()
            .min_by_key(covered)
            .expect("six places to choose from")
    }

    fn draw(&self, area: &super::Area<'_>, best: Option<&EpochRecord>, text: bool) -> Drawn {
        let mut chart = ChartBuilder::on(area)
            .caption(self.name, font(HEADING_SIZE + 2, BLACK, text))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(52)
            .y_label_area_size(76)
            .build_cartesian_2d(0..self.epochs + 1, self.low..self.high)?;
        let last = self.epochs;
        let hide_ends = move |e: &i32| {
            if (1..=last).contains(e) {
                e.to_string()
            } else {
                String::new()
            }
        };
        let decimals = if self.high - self.low < 0.05 { 3 } else { 2 };
        let y_format = move |v: &f64| format!("{v:.decimals$}");
        chart
            .configure_mesh()
            .x_labels((self.epochs as usize + 2).min(12))
            .y_labels(8)
            .x_label_formatter(&hide_ends)
            .y_label_formatter(&y_format)
            .x_desc("epoch")
            .y_desc(self.axis)
            .label_style(font(LABEL_SIZE, BLACK, text))
            .axis_desc_style(font(HEADING_SIZE - 2, BLACK, text))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        if let Some(b) = best {
            let x = b.epoch as i32;
            chart.draw_series(DashedLineSeries::new(
                [(x, self.low), (x, self.high)],
                6,
                4,
                BEST.stroke_width(2),
            ))?;
        }
        for (points, color, name) in [
            (&self.train, TRAIN, "training"),
            (&self.valid, VALID, "validation"),
        ] {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        if let Some(b) = best {
            let y = if self.is_loss {
                b.val_loss
            } else {
                b.val_accuracy
            };
            let ring = (b.epoch as i32, y);
            chart
                .draw_series(std::iter::once(Circle::new(ring, 9, BEST.stroke_width(2))))?
                .label(format!("best epoch ({})", b.epoch))
                .legend(|(x, y)| {
                    PathElement::new([(x + 12, y - 8), (x + 12, y + 8)], BEST.stroke_width(2))
                });
        }
        let (plot_w, plot_h) = chart.plotting_area().dim_in_pixel();
        let entries = 2 + usize::from(best.is_some());
        chart
            .configure_series_labels()
            .position(self.legend_corner([plot_w, plot_h], entries))
            .margin(10)
            .label_font(font(LABEL_SIZE, BLACK, text))
            .background_style(WHITE.mix(0.9))
            .border_style(GRAY)
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(valid: impl Fn(f64) -> f64) -> Panel {
        Panel {
            name: "Loss",
            axis: "cross-entropy",
            train: (1..=20).map(|e| (e, 0.45 / e as f64)).collect(),
            valid: (1..=20).map(|e| (e, valid(e as f64))).collect(),
            epochs: 20,
            low: 0.0,
            high: 0.5,
            is_loss: true,
        }
    }

    #[test]
    fn the_legend_goes_where_no_curve_runs() {
        let size = [480, 330];
        // Both losses fall: the top right is free.
        let falling = panel(|e| 0.2 + 0.1 / e);
        assert!(matches!(
            falling.legend_corner(size, 3),
            SeriesLabelPosition::UpperRight
        ));
        // The validation loss climbs to the top at the last epochs (overfitting, as in
        // chapter 10's run): the legend moves to the middle of the top edge.
        let overfitting = panel(|e| 0.2 + 0.25 * ((e - 6.0).max(0.0) / 14.0).powi(2));
        assert!(matches!(
            overfitting.legend_corner(size, 3),
            SeriesLabelPosition::UpperMiddle
        ));
    }
}
