//! Images in and out of ndarray: PNG files, grayscale conversion, the bundled photograph.
//!
//! A gray image is an `Array2<u8>` of `H × W` pixels, a colour image an `Array3<u8>` of
//! `H × W × 3` (red, green, blue), rows top to bottom — the layout of NumPy's
//! `np.asarray(Image.open(path))`. Reading fails with an [`Error::File`] that names the path and
//! says why; writing encodes the whole PNG in memory first and then writes it atomically, so a
//! failed write leaves no half-written file behind.

use std::path::Path;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};

use crate::error::{Error, Result};
use crate::train::checkpoint::write_atomically;

/// The photograph chapter 12 filters: scikit-image's `chelsea.png` (CC0, Stefan van der Walt),
/// 256 × 170 pixels; `assets/images/README.md` says where it comes from.
static SAMPLE_PHOTO_PNG: &[u8] = include_bytes!("../../assets/images/chelsea.png");

/// The luma of one RGB pixel by ITU-R 601-2, `L = 0.299·R + 0.587·G + 0.114·B`, rounded to the
/// nearest integer exactly as Pillow's `Image.convert('L')` does it: in 16-bit fixed point,
///
/// `L = (19595·R + 38470·G + 7471·B + 32768) >> 16`,
///
/// where `19595 / 65536 ≈ 0.299`, `38470 / 65536 ≈ 0.587`, `7471 / 65536 ≈ 0.114`; the three
/// weights add up to exactly `65536`, so white stays 255, and `32768 = 65536 / 2` makes the
/// shift round instead of truncate.
///
/// ```
/// use convlab::filters::luma;
/// assert_eq!(luma(255, 255, 255), 255);
/// assert_eq!(luma(255, 0, 0), 76); // 0.299 · 255 = 76.2
/// assert_eq!(luma(0, 255, 0), 150); // 0.587 · 255 = 149.7
/// ```
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    let l = (19595 * u32::from(r) + 38470 * u32::from(g) + 7471 * u32::from(b) + 0x8000) >> 16;
    // At most (65536·255 + 32768) >> 16 = 255, so the value always fits in a byte.
    l as u8
}

/// An `H × W × 3` RGB image in grayscale by [`luma`], pixel by pixel: Pillow's
/// `Image.convert('L')`.
///
/// Fails when the last axis does not hold exactly 3 channels.
pub fn grayscale(rgb: ArrayView3<u8>) -> Result<Array2<u8>> {
    let (h, w, c) = rgb.dim();
    if c != 3 {
        return Err(Error::param(
            "image",
            format!("an RGB image has shape H × W × 3, got {h} × {w} × {c}"),
        ));
    }
    Ok(Array2::from_shape_fn((h, w), |(i, j)| {
        luma(rgb[[i, j, 0]], rgb[[i, j, 1]], rgb[[i, j, 2]])
    }))
}

/// Decode a PNG held in memory; `path` only names it in errors.
fn decode_png(bytes: &[u8], path: &Path) -> Result<image::DynamicImage> {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| Error::file(path, format!("is not a readable PNG image: {e}")))
}

fn read_png(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    decode_png(&bytes, path)
}

/// `H × W × 3` from the image crate's row-major RGB buffer.
fn rgb_array(img: &image::DynamicImage, path: &Path) -> Result<Array3<u8>> {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Array3::from_shape_vec((h as usize, w as usize, 3), rgb.into_raw()).map_err(|e| {
        Error::file(
            path,
            format!("decoded pixels do not fill {h} × {w} × 3: {e}"),
        )
    })
}

fn gray_of(img: &image::DynamicImage, path: &Path) -> Result<Array2<u8>> {
    use image::ColorType::*;
    match img.color() {
        L8 | La8 | L16 | La16 => {
            let gray = img.to_luma8();
            let (w, h) = gray.dimensions();
            Array2::from_shape_vec((h as usize, w as usize), gray.into_raw()).map_err(|e| {
                Error::file(path, format!("decoded pixels do not fill {h} × {w}: {e}"))
            })
        }
        _ => grayscale(rgb_array(img, path)?.view()),
    }
}

/// Read a PNG as an `H × W × 3` RGB image. Gray images are repeated into the three channels,
/// an alpha channel is dropped, 16-bit samples are reduced to 8 bits.
///
/// Fails, naming the path, when the file cannot be read or is not a PNG.
pub fn read_png_rgb(path: impl AsRef<Path>) -> Result<Array3<u8>> {
    let path = path.as_ref();
    rgb_array(&read_png(path)?, path)
}

/// Read a PNG as an `H × W` gray image: a gray PNG as it is, a colour one through
/// [`grayscale`] (Pillow's `Image.open(path).convert('L')`). An alpha channel is dropped, 16-bit
/// samples are reduced to 8 bits.
///
/// Fails, naming the path, when the file cannot be read or is not a PNG.
pub fn read_png_gray(path: impl AsRef<Path>) -> Result<Array2<u8>> {
    let path = path.as_ref();
    gray_of(&read_png(path)?, path)
}

fn encode_png(
    pixels: &[u8],
    width: usize,
    height: usize,
    color: image::ExtendedColorType,
) -> Result<Vec<u8>> {
    let (w, h) = match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(Error::param(
                "image",
                format!("a PNG needs 1 to 2³²−1 pixels along each side, got {height} × {width}"),
            ));
        }
    };
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        pixels,
        w,
        h,
        color,
    )
    .map_err(|e| Error::param("image", format!("PNG encoding failed: {e}")))?;
    Ok(png)
}

/// Encode an `H × W` gray image as PNG bytes.
pub fn encode_png_gray(image: ArrayView2<u8>) -> Result<Vec<u8>> {
    let (h, w) = image.dim();
    let pixels: Vec<u8> = image.iter().copied().collect();
    encode_png(&pixels, w, h, image::ExtendedColorType::L8)
}

/// Encode an `H × W × 3` RGB image as PNG bytes.
pub fn encode_png_rgb(image: ArrayView3<u8>) -> Result<Vec<u8>> {
    let (h, w, c) = image.dim();
    if c != 3 {
        return Err(Error::param(
            "image",
            format!("an RGB image has shape H × W × 3, got {h} × {w} × {c}"),
        ));
    }
    let pixels: Vec<u8> = image.iter().copied().collect();
    encode_png(&pixels, w, h, image::ExtendedColorType::Rgb8)
}

/// Write an `H × W` gray image to `path` as PNG, atomically (a temporary file beside it, then
/// a rename): on failure `path` is left as it was.
pub fn write_png_gray(path: impl AsRef<Path>, image: ArrayView2<u8>) -> Result<()> {
    write_atomically(path.as_ref(), &encode_png_gray(image)?)
}

/// Write an `H × W × 3` RGB image to `path` as PNG, atomically.
pub fn write_png_rgb(path: impl AsRef<Path>, image: ArrayView3<u8>) -> Result<()> {
    write_atomically(path.as_ref(), &encode_png_rgb(image)?)
}

/// The photograph bundled with convlab, as an `H × W × 3` RGB image of 170 × 256 pixels:
/// Chelsea the cat, from scikit-image's sample data (CC0, photograph by Stefan van der Walt),
/// downscaled. It is compiled into the crate, so examples run anywhere.
pub fn sample_photo() -> Result<Array3<u8>> {
    let path = Path::new("assets/images/chelsea.png (bundled)");
    rgb_array(&decode_png(SAMPLE_PHOTO_PNG, path)?, path)
}

/// The bundled photograph in grayscale ([`sample_photo`] through [`grayscale`]).
pub fn sample_photo_gray() -> Result<Array2<u8>> {
    grayscale(sample_photo()?.view())
}
