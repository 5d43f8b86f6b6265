//! The montage of chapter 12: one photograph through every image kernel, one labelled cell per
//! kernel.

use std::path::Path;

use ndarray::ArrayView2;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, Figure};
use crate::error::{Error, Result};
use crate::filters::{Border, KERNELS, NamedKernel, filter_for_display, sample_photo_gray};

/// Pixels around the cells and between them.
pub const MONTAGE_GAP: u32 = 12;
/// Height of the band at the top that holds the figure's title.
pub const MONTAGE_TITLE_BAND: u32 = 44;
/// Height of the band above each cell that holds the kernel's name.
pub const MONTAGE_LABEL_BAND: u32 = 26;

/// How [`kernel_montage`] lays out and draws its cells.
#[derive(Debug, Clone, PartialEq)]
pub struct MontageOptions {
    /// Cells per row.
    pub columns: usize,
    /// Draw the figure's title and each kernel's name (`false` draws the same figure without
    /// any text).
    pub text: bool,
    /// What the image holds beyond its frame while a kernel is applied.
    pub border: Border,
    /// The figure's title.
    pub title: String,
}

impl Default for MontageOptions {
    /// Four columns, text on, [`Border::Replicate`] (so that the cells show what each kernel
    /// does inside the picture, not the frame that zero padding would add), and the title
    /// "Image kernels applied to one photograph (grayscale)".
    fn default() -> Self {
        MontageOptions {
            columns: 4,
            text: true,
            border: Border::Replicate,
            title: "Image kernels applied to one photograph (grayscale)".to_string(),
        }
    }
}

impl MontageOptions {
    /// Use `columns` cells per row.
    pub fn columns(self, columns: usize) -> Self {
        MontageOptions { columns, ..self }
    }

    /// Draw the text (`true`) or leave it out (`false`).
    pub fn text(self, text: bool) -> Self {
        MontageOptions { text, ..self }
    }

    /// Apply the kernels with `border` beyond the image's frame.
    pub fn border(self, border: Border) -> Self {
        MontageOptions { border, ..self }
    }

    /// Title the figure `title`.
    pub fn title(self, title: impl Into<String>) -> Self {
        MontageOptions {
            title: title.into(),
            ..self
        }
    }
}

/// The figure's size for `n` cells of `h × w` pixels in `columns` columns:
/// `columns·(w + GAP) + GAP` wide and `TITLE_BAND + rows·(LABEL_BAND + h + GAP)` high, with
/// `rows = ⌈n / columns⌉`.
pub fn montage_size(h: usize, w: usize, n: usize, columns: usize) -> Result<(u32, u32)> {
    if columns == 0 {
        return Err(Error::param("columns", "must be at least 1"));
    }
    let rows = n.div_ceil(columns);
    let gap = MONTAGE_GAP as usize;
    let width = columns
        .checked_mul(w + gap)
        .and_then(|v| v.checked_add(gap));
    let height = rows
        .checked_mul(MONTAGE_LABEL_BAND as usize + h + gap)
        .and_then(|v| v.checked_add(MONTAGE_TITLE_BAND as usize));
    match (
        width.and_then(|v| u32::try_from(v).ok()),
        height.and_then(|v| u32::try_from(v).ok()),
    ) {
        (Some(width), Some(height)) => Ok((width, height)),
        _ => Err(Error::param(
            "figure size",
            format!("{n} cells of {h} × {w} in {columns} columns do not fit in 2³² pixels"),
        )),
    }
}

/// Draw `image` (8-bit gray) through each of `kernels`, one cell per kernel laid out row by
/// row, each titled with the kernel's name, under the figure's title. Each cell shows
/// [`filter_for_display`]: the kernel applied by correlation and mapped to bytes by its own
/// display rule (clipped, or for edge detectors the stretched absolute value). The figure's
/// size is given by [`montage_size`].
///
/// Fails when the image or the list of kernels is empty, or a kernel has an even side.
pub fn kernel_montage(
    image: ArrayView2<u8>,
    kernels: &[NamedKernel],
    options: &MontageOptions,
) -> Result<Figure> {
    let (h, w) = image.dim();
    if h == 0 || w == 0 {
        return Err(Error::param(
            "image",
            format!("{h} × {w}: needs at least one pixel"),
        ));
    }
    if kernels.is_empty() {
        return Err(Error::param(
            "kernels",
            "the montage needs at least one kernel",
        ));
    }
    let cells = kernels
        .iter()
        .map(|k| filter_for_display(image, k, options.border))
        .collect::<Result<Vec<_>>>()?;
    let (width, height) = montage_size(h, w, kernels.len(), options.columns)?;
    let (cols, gap) = (options.columns, MONTAGE_GAP as i32);
    let origin = |n: usize| -> (i32, i32) {
        let (row, col) = (n / cols, n % cols);
        (
            gap + col as i32 * (w as i32 + gap),
            MONTAGE_TITLE_BAND as i32 + row as i32 * (MONTAGE_LABEL_BAND as i32 + h as i32 + gap),
        )
    };
    Figure::draw(width, height, |area| {
        if options.text {
            let title = (FONT, 26)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            area.draw_text(
                &options.title,
                &title,
                (width as i32 / 2, MONTAGE_TITLE_BAND as i32 / 2),
            )?;
        }
        let label = (FONT, 17)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        for (n, (kernel, cell)) in kernels.iter().zip(&cells).enumerate() {
            let (x0, y0) = origin(n);
            let top = y0 + MONTAGE_LABEL_BAND as i32;
            if options.text {
                area.draw_text(kernel.name(), &label, (x0 + w as i32 / 2, top - 5))?;
            }
            area.draw(&Rectangle::new(
                [(x0 - 1, top - 1), (x0 + w as i32, top + h as i32)],
                RGBColor(160, 160, 160),
            ))?;
            for ((i, j), &v) in cell.indexed_iter() {
                area.draw_pixel((x0 + j as i32, top + i as i32), &RGBColor(v, v, v))?;
            }
        }
        Ok(())
    })
}

/// Draw the montage of every kernel of chapter 12 ([`KERNELS`]) on the bundled photograph in
/// grayscale, with the default options.
pub fn kernels_figure() -> Result<Figure> {
    kernel_montage(
        sample_photo_gray()?.view(),
        &KERNELS,
        &MontageOptions::default(),
    )
}

/// Write [`kernels_figure`] to `path` as PNG, atomically: `figures/kernels.png`, the figure of
/// chapter 12.
pub fn save_kernels_figure(path: impl AsRef<Path>) -> Result<()> {
    kernels_figure()?.save(path.as_ref())
}
