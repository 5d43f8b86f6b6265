#![doc = include_str!("../../chapters/11-visualization.md")]

pub mod colour;
pub mod confusion;
pub mod curves;
pub mod feature_maps;
pub mod filters;
pub mod kernels;
pub mod patterns;
pub mod predictions;

pub use colour::{ColorMap, ColorScale};
pub use confusion::{ConfusionMatrix, ConfusionOptions, confusion_figure};
pub use curves::{CurveOptions, training_curves};
pub use feature_maps::{FeatureMapOptions, LayerMaps, feature_maps, feature_maps_figure};
pub use filters::{FilterOptions, FilterScale, filter_images, filters_figure};
pub use kernels::{MontageOptions, kernel_montage, kernels_figure, save_kernels_figure};
pub use patterns::{Pattern, PatternOptions, input_pattern, input_patterns, patterns_figure};
pub use predictions::{Prediction, PredictionOptions, predict, predictions_figure};

/// The builder methods of a figure's options that set one field each:
/// `pub fn field(mut self, field: T) -> Self`, with the doc comment written above the field.
macro_rules! setters {
    ($options:ty { $($(#[$doc:meta])* $field:ident: $t:ty,)* }) => {
        impl $options {
            $(
                $(#[$doc])*
                pub fn $field(mut self, $field: $t) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}
use setters;

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use ndarray::{ArrayView2, ArrayView3};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};

use crate::error::{Error, Result};
use crate::gemm::Scalar;
use crate::nn::{LayerKind, Sequential};
use crate::train::checkpoint::write_atomically;

/// The font family every figure's text uses; it names the bundled font.
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Register the bundled font with plotters as the family [`FONT`] (once per process; every
/// figure function does it). Call it before drawing with plotters yourself — criterion's
/// benchmark reports, for one, draw their charts in that family.
pub fn register_font() -> Result<()> {
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

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
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

    fn draw_text<S: plotters_backend::BackendTextStyle>(
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

/// What a drawing closure returns: plotters' errors, boxed.
pub(crate) type Drawn = std::result::Result<(), Box<dyn std::error::Error + 'static>>;

/// The size of titles, in pixels.
pub(crate) const TITLE_SIZE: u32 = 24;
/// The size of headings and axis descriptions.
pub(crate) const HEADING_SIZE: u32 = 19;
/// The size of labels and tick values.
pub(crate) const LABEL_SIZE: u32 = 16;
/// Gray for frames and secondary text.
pub(crate) const GRAY: RGBColor = RGBColor(110, 110, 110);

/// The colour text is drawn in: `color`, or fully transparent when a figure is drawn without
/// text, so that it keeps exactly the same layout and differs only by the glyphs.
pub(crate) fn ink(color: RGBColor, text: bool) -> RGBAColor {
    if text { color.to_rgba() } else { TRANSPARENT }
}

/// A text style in the bundled font.
pub(crate) fn font(size: u32, color: RGBColor, text: bool) -> TextStyle<'static> {
    TextStyle {
        font: (FONT, size).into_font(),
        color: ink(color, text).to_backend_color(),
        pos: Pos::default(),
    }
}

/// Draw `s` at `at`, placed by `anchor` (e.g. centred on `at`).
/// A figure's heading: `title` centred at the top in black, `subtitle` under it in gray.
pub(crate) fn heading(
    area: &Area<'_>,
    width: i32,
    title: &str,
    subtitle: &str,
    subtitle_size: u32,
    text: bool,
) -> Drawn {
    let top = (HPos::Center, VPos::Top);
    label(area, title, (width / 2, 10), TITLE_SIZE, top, BLACK, text)?;
    let below = (width / 2, TITLE_SIZE as i32 + 18);
    label(area, subtitle, below, subtitle_size, top, GRAY, text)
}

pub(crate) fn label(
    area: &Area<'_>,
    s: &str,
    at: (i32, i32),
    size: u32,
    anchor: (HPos, VPos),
    color: RGBColor,
    text: bool,
) -> Drawn {
    let style = font(size, color, text).pos(Pos::new(anchor.0, anchor.1));
    area.draw_text(s, &style, at)?;
    Ok(())
}

/// A rectangle of whole pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub(crate) fn new(x: i32, y: i32, w: i32, h: i32) -> Self {
        Rect { x, y, w, h }
    }
}

/// Fill `rect` with a `(rows, columns)` matrix of colours, block by block: block `(i, j)` covers
/// the pixels from `⌊i·h/rows⌋` to `⌊(i + 1)·h/rows⌋` (excluded), so the blocks tile the
/// rectangle exactly even when its side is not a multiple of the matrix's.
pub(crate) fn fill_blocks(
    area: &Area<'_>,
    rect: Rect,
    (rows, cols): (usize, usize),
    color: impl Fn(usize, usize) -> RGBColor,
) -> Drawn {
    let edge = |k: usize, n: usize, len: i32| (k as i64 * i64::from(len) / n.max(1) as i64) as i32;
    for i in 0..rows {
        let (y0, y1) = (
            rect.y + edge(i, rows, rect.h),
            rect.y + edge(i + 1, rows, rect.h),
        );
        for j in 0..cols {
            let (x0, x1) = (
                rect.x + edge(j, cols, rect.w),
                rect.x + edge(j + 1, cols, rect.w),
            );
            // A filled rectangle covers its first corner up to, not including, its second.
            area.draw(&Rectangle::new([(x0, y0), (x1, y1)], color(i, j).filled()))?;
        }
    }
    Ok(())
}

/// Draw one map `(H, W)` into `rect` in the colours of `scale`.
pub(crate) fn draw_map(
    area: &Area<'_>,
    rect: Rect,
    map: ArrayView2<'_, f64>,
    scale: &ColorScale,
) -> Drawn {
    fill_blocks(area, rect, map.dim(), |i, j| scale.color(map[[i, j]]))
}

/// Draw an image `(C, H, W)` with values in `[0, 1]`: one channel in grayscale, three as red,
/// green and blue.
pub(crate) fn draw_image(area: &Area<'_>, rect: Rect, image: ArrayView3<'_, f64>) -> Drawn {
    let (c, h, w) = image.dim();
    let byte = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    if c == 3 {
        fill_blocks(area, rect, (h, w), |i, j| {
            RGBColor(
                byte(image[[0, i, j]]),
                byte(image[[1, i, j]]),
                byte(image[[2, i, j]]),
            )
        })
    } else {
        let gray = ColorScale::new(0.0, 1.0, ColorMap::Gray);
        draw_map(area, rect, image.index_axis(ndarray::Axis(0), 0), &gray)
    }
}

/// Check that images of `channels` channels can be drawn: one (grayscale) or three (RGB).
pub(crate) fn drawable_channels(channels: usize) -> Result<()> {
    if channels == 1 || channels == 3 {
        Ok(())
    } else {
        Err(Error::param(
            "image",
            format!(
                "an image is drawn in grayscale (1 channel) or in colour (3 channels), but this \
                 one has {channels} channels"
            ),
        ))
    }
}

/// A frame one pixel wide just outside `rect`.
pub(crate) fn frame(area: &Area<'_>, rect: Rect, color: RGBColor, width: u32) -> Drawn {
    let w = width as i32;
    for k in 1..=w {
        area.draw(&Rectangle::new(
            [
                (rect.x - k, rect.y - k),
                (rect.x + rect.w + k - 1, rect.y + rect.h + k - 1),
            ],
            color.stroke_width(1),
        ))?;
    }
    Ok(())
}

/// A vertical colour bar in `rect`, `max` at the top, with `ticks` values written to its right
/// (the ends, and evenly spaced values between them).
pub(crate) fn color_bar(
    area: &Area<'_>,
    rect: Rect,
    scale: &ColorScale,
    ticks: usize,
    text: bool,
) -> Drawn {
    let rows = rect.h.max(1) as usize;
    fill_blocks(area, rect, (rows, 1), |i, _| {
        scale.map.at(1.0 - i as f64 / (rows - 1).max(1) as f64)
    })?;
    frame(area, rect, GRAY, 1)?;
    let ticks = ticks.max(2);
    for k in 0..ticks {
        let t = k as f64 / (ticks - 1) as f64;
        let value = scale.min + t * (scale.max - scale.min);
        let y = rect.y + rect.h - 1 - (t * f64::from(rect.h - 1)).round() as i32;
        area.draw(&PathElement::new(
            [(rect.x + rect.w, y), (rect.x + rect.w + 4, y)],
            GRAY,
        ))?;
        label(
            area,
            &format_value(value, scale.max - scale.min),
            (rect.x + rect.w + 7, y),
            LABEL_SIZE - 1,
            (HPos::Left, VPos::Center),
            BLACK,
            text,
        )?;
    }
    Ok(())
}

/// A value written with as many decimals as a range of `span` needs to tell its ticks apart.
pub(crate) fn format_value(value: f64, span: f64) -> String {
    let span = span.abs();
    let decimals = if span >= 50.0 {
        0
    } else if span >= 5.0 {
        1
    } else if span >= 0.5 {
        2
    } else if span > 0.0 {
        (2.0 - span.log10().floor()).min(6.0) as usize
    } else {
        2
    };
    let s = format!("{value:.decimals$}");
    // "-0.00" reads as a sign error.
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// A short name for layer `index` of `model`: `conv1`, `conv2`, … for convolutions and
/// `pool1`, … for poolings, counted from the input; `layer 7` for the rest.
pub fn layer_name<T: Scalar>(model: &Sequential<T>, index: usize) -> String {
    let layers = model.layers();
    let Some(layer) = layers.get(index) else {
        return format!("layer {index}");
    };
    let kind = layer.kind();
    let nth = layers[..=index].iter().filter(|l| l.kind() == kind).count();
    match kind {
        LayerKind::Convolution => format!("conv{nth}"),
        LayerKind::Pooling => format!("pool{nth}"),
        _ => format!("layer {index}"),
    }
}

/// The indices of `model`'s layers of the given kinds.
pub(crate) fn layers_of<T: Scalar>(model: &Sequential<T>, kinds: &[LayerKind]) -> Vec<usize> {
    model
        .layers()
        .iter()
        .enumerate()
        .filter(|(_, l)| kinds.contains(&l.kind()))
        .map(|(i, _)| i)
        .collect()
}

/// Check that layer `index` of `model` exists and is of one of `kinds`; the error says what
/// the layer is and which layers would do.
pub(crate) fn check_layer<T: Scalar>(
    model: &Sequential<T>,
    index: usize,
    kinds: &[LayerKind],
    what: &str,
) -> Result<()> {
    let fitting = layers_of(model, kinds);
    let list = if fitting.is_empty() {
        "it has none".to_string()
    } else {
        format!(
            "they are layers {}",
            fitting
                .iter()
                .map(|i| format!("{i} ({})", layer_name(model, *i)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match model.layers().get(index) {
        None => Err(Error::param(
            "layer",
            format!(
                "layer {index} does not exist: {} has {} layers, numbered from 0; {what} needs \
                 {}, and {list}",
                model.name,
                model.layers().len(),
                kinds_text(kinds)
            ),
        )),
        Some(layer) if !kinds.contains(&layer.kind()) => Err(Error::param(
            "layer",
            format!(
                "layer {index} of {} is {}, but {what} needs {}, and {list}",
                model.name,
                layer.describe(),
                kinds_text(kinds)
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn kinds_text(kinds: &[LayerKind]) -> &'static str {
    match kinds {
        [LayerKind::Convolution] => "a convolution layer",
        _ => "a convolution or pooling layer",
    }
}

/// Check that `image` `(C, H, W)` is what `model` takes.
pub(crate) fn check_image<T: Scalar>(model: &Sequential<T>, shape: &[usize]) -> Result<()> {
    if shape == model.input_shape.as_slice() {
        return Ok(());
    }
    let text = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
    Err(Error::shape(
        "figure",
        format!(
            "{} takes images of {} (channels×height×width), but the image is {}",
            model.name,
            text(&model.input_shape),
            text(shape)
        ),
    ))
}
