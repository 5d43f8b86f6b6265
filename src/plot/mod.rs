//! Figures to PNG with plotters.
//!
//! Every figure is drawn into an RGB buffer in memory ([`Figure`]), then encoded as PNG and
//! written atomically, so a failed write never leaves half a picture behind. Text is rendered
//! with a font compiled into the crate (DejaVu Sans, `assets/fonts/`), so a machine with no
//! system fonts or fontconfig draws the same pixels.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

use crate::error::{Error, Result};
use crate::train::checkpoint::write_atomically;

pub mod kernels;
pub use kernels::{MontageOptions, kernel_montage, kernels_figure, save_kernels_figure};

/// The font family every figure's text uses; it names the bundled font.
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Register the bundled font with plotters (once per process).
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "the bundled font DejaVu Sans could not be parsed".to_string())
        })
        .clone()
        .map_err(Error::Plot)
}

/// The drawing area a figure is drawn on.
pub type Area<'a> = DrawingArea<Canvas<'a>, Shift>;

/// plotters' bitmap backend with text drawn glyph by glyph at its place.
///
/// plotters 0.3.7 draws each glyph of a text flush against the previous glyph's advance,
/// ignoring the glyph's left side bearing, so narrow letters are followed by gaps ("di agonal").
/// This backend draws everything else as the bitmap backend does, and text with each glyph's
/// outline placed where the font puts it (with kerning); sizes, anchors and rotations are
/// plotters' own.
pub struct Canvas<'a>(BitMapBackend<'a>);

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let font_error = |e: &str| DrawingErrorKind::FontError(e.to_string().into());
        // The box plotters laid the text out in, anchored as plotters anchors it.
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let font = FontRef::try_from_slice(DEJAVU_SANS)
            .map_err(|_| font_error("the bundled font DejaVu Sans could not be parsed"))?;
        let size = style.size() as f32;
        let font = font.as_scaled(size);
        let transform = style.transform();
        let (w, h) = self.get_size();
        let mut caret = 0f32;
        let mut previous = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = previous {
                caret += font.kern(p, id);
            }
            previous = Some(id);
            let glyph = id.with_scale_and_position(font.scale(), ab_glyph::point(caret, 0.0));
            caret += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            // plotters' vertical placement: the baseline half the font size below the top.
            let (x0, y0) = (
                bounds.min.x as i32,
                (size / 2.0).floor() as i32 + bounds.min.y as i32,
            );
            let mut pixels = Vec::new();
            outline.draw(|x, y, coverage| pixels.push((x as i32 + x0, y as i32 + y0, coverage)));
            for (x, y, coverage) in pixels {
                let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                    let alpha = color.alpha * f64::from(coverage);
                    self.0.draw_pixel((x, y), BackendColor { alpha, ..color })?;
                }
            }
        }
        Ok(())
    }
}

/// A drawn figure: `width × height` RGB pixels, row by row, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `3·width·height` bytes: red, green, blue of each pixel, rows top to bottom.
    pub pixels: Vec<u8>,
}

impl Figure {
    /// Draw a `width × height` figure: `draw` receives the whole area, filled white.
    pub fn draw<F>(width: u32, height: u32, draw: F) -> Result<Figure>
    where
        F: FnOnce(&Area<'_>) -> std::result::Result<(), Box<dyn std::error::Error + 'static>>,
    {
        if width == 0 || height == 0 {
            return Err(Error::param(
                "figure size",
                format!("{width}×{height}: both sides must be at least 1 pixel"),
            ));
        }
        register_font()?;
        let mut pixels = vec![0u8; 3 * width as usize * height as usize];
        {
            let area = Canvas(BitMapBackend::with_buffer(&mut pixels, (width, height)))
                .into_drawing_area();
            area.fill(&WHITE).map_err(plot_error)?;
            draw(&area).map_err(|e| Error::Plot(e.to_string()))?;
            area.present().map_err(plot_error)?;
        }
        Ok(Figure {
            width,
            height,
            pixels,
        })
    }

    /// The figure encoded as PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut png = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut png),
            &self.pixels,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Plot(format!("PNG encoding failed: {e}")))?;
        Ok(png)
    }

    /// Write the figure to `path` as PNG, atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.to_png()?)
    }

    /// The variance of all pixel bytes: 0 for a blank figure.
    pub fn variance(&self) -> f64 {
        let n = self.pixels.len() as f64;
        let mean = self.pixels.iter().map(|&p| p as f64).sum::<f64>() / n;
        self.pixels
            .iter()
            .map(|&p| (p as f64 - mean).powi(2))
            .sum::<f64>()
            / n
    }
}

fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Plot(e.to_string())
}
