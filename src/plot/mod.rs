//! Figures to PNG with plotters.
//!
//! Every figure is drawn into an RGB buffer in memory ([`Figure`]), then encoded as PNG and
//! written atomically, so a failed write never leaves half a picture behind. Text is rendered
//! with a font compiled into the crate (DejaVu Sans, `assets/fonts/`), so a machine with no
//! system fonts or fontconfig draws the same pixels.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

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
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

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
            let area = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
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
