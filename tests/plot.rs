//! Figures: PNGs of the expected size, not blank, with text drawn by the bundled font.

use convlab::plot::{FONT, Figure};
use plotters::prelude::*;

#[test]
fn text_is_drawn_with_the_bundled_font() {
    let blank = Figure::draw(200, 60, |_| Ok(())).unwrap();
    assert_eq!(blank.variance(), 0.0);
    let text = Figure::draw(200, 60, |area| {
        area.draw_text("Época 13", &(FONT, 24).into_font().color(&BLACK), (10, 15))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(text.pixels.len(), 3 * 200 * 60);
    let dark = text.pixels.chunks(3).filter(|p| p[0] < 128).count();
    // A 24 px line of eight glyphs covers a few hundred pixels, not none and not all.
    assert!((100..4000).contains(&dark), "{dark} dark pixels");
    let png = text.to_png().unwrap();
    let back = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (200, 60));
    assert_eq!(back.into_raw(), text.pixels);
}

#[test]
fn a_figure_without_pixels_is_an_error() {
    assert!(Figure::draw(0, 10, |_| Ok(())).is_err());
}
