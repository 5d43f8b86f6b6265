//! Colour maps and colour scales: how a figure turns numbers into colours, and back.

use plotters::style::RGBColor;

/// A sequence of colours that a value between 0 and 1 picks from, by linear interpolation
/// between evenly spaced control colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMap {
    /// Dark violet through blue and green to yellow (matplotlib's `viridis`, the course's map
    /// for feature maps): brightness grows steadily with the value, and the colours stay
    /// distinguishable in grayscale print and to colour-blind readers.
    Viridis,
    /// Black to white.
    Gray,
    /// Near-white to dark blue (ColorBrewer's `Blues`), for counts: empty cells fade into the
    /// page.
    Blues,
}

/// Viridis at 0, 1/9, …, 1.
const VIRIDIS: [[u8; 3]; 10] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x28, 0x78],
    [0x3e, 0x49, 0x89],
    [0x31, 0x68, 0x8e],
    [0x26, 0x82, 0x8e],
    [0x1f, 0x9e, 0x89],
    [0x35, 0xb7, 0x79],
    [0x6e, 0xce, 0x58],
    [0xb5, 0xde, 0x2b],
    [0xfd, 0xe7, 0x25],
];

const GRAY: [[u8; 3]; 2] = [[0, 0, 0], [255, 255, 255]];

/// ColorBrewer's nine-class Blues, light to dark.
const BLUES: [[u8; 3]; 9] = [
    [0xf7, 0xfb, 0xff],
    [0xde, 0xeb, 0xf7],
    [0xc6, 0xdb, 0xef],
    [0x9e, 0xca, 0xe1],
    [0x6b, 0xae, 0xd6],
    [0x42, 0x92, 0xc6],
    [0x21, 0x71, 0xb5],
    [0x08, 0x51, 0x9c],
    [0x08, 0x30, 0x6b],
];

impl ColorMap {
    fn stops(self) -> &'static [[u8; 3]] {
        match self {
            ColorMap::Viridis => &VIRIDIS,
            ColorMap::Gray => &GRAY,
            ColorMap::Blues => &BLUES,
        }
    }

    /// The colour at `t` in `[0, 1]` (clamped; NaN counts as 0).
    pub fn at(self, t: f64) -> RGBColor {
        let stops = self.stops();
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let x = t * (stops.len() - 1) as f64;
        let i = (x.floor() as usize).min(stops.len() - 2);
        let f = x - i as f64;
        let mix = |k: usize| {
            let (a, b) = (f64::from(stops[i][k]), f64::from(stops[i + 1][k]));
            (a + (b - a) * f).round() as u8
        };
        RGBColor(mix(0), mix(1), mix(2))
    }
}

/// A colour scale: values from `min` to `max` mapped linearly onto a [`ColorMap`]; values
/// outside are clamped to its ends. Every colour bar in a figure shows one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorScale {
    /// The value drawn in the map's first colour.
    pub min: f64,
    /// The value drawn in the map's last colour.
    pub max: f64,
    /// The colours.
    pub map: ColorMap,
}

impl ColorScale {
    /// The scale from `min` to `max`. If they are equal (a constant map) the range is widened
    /// by ½ on each side, so that the constant is drawn in the middle colour; non-finite ends
    /// become the range `[0, 1]`.
    pub fn new(min: f64, max: f64, map: ColorMap) -> Self {
        let (min, max) = if !min.is_finite() || !max.is_finite() {
            (0.0, 1.0)
        } else if min == max {
            (min - 0.5, max + 0.5)
        } else {
            (min.min(max), min.max(max))
        };
        ColorScale { min, max, map }
    }

    /// The scale spanning the finite values of `values` (`[0, 1]` if there are none).
    pub fn spanning(values: impl IntoIterator<Item = f64>, map: ColorMap) -> Self {
        let (lo, hi) = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        ColorScale::new(lo, hi, map)
    }

    /// The scale from `−m` to `m`, where `m` is the largest magnitude among `values`: zero is
    /// drawn in the middle colour, so the sign of a weight can be read off its colour.
    pub fn symmetric(values: impl IntoIterator<Item = f64>, map: ColorMap) -> Self {
        let m = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        ColorScale::new(-m, m, map)
    }

    /// Where `value` lies between `min` (0) and `max` (1), clamped.
    pub fn fraction(&self, value: f64) -> f64 {
        ((value - self.min) / (self.max - self.min)).clamp(0.0, 1.0)
    }

    /// The colour of `value`.
    pub fn color(&self, value: f64) -> RGBColor {
        self.map.at(self.fraction(value))
    }

    /// The value whose colour is closest to `color`: the scale read backwards, to `1/1024` of
    /// its range (what a reader does with the colour bar, and what the tests do).
    pub fn value_of(&self, color: RGBColor) -> f64 {
        const STEPS: usize = 1024;
        let distance = |c: RGBColor| {
            let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
            d(c.0, color.0) + d(c.1, color.1) + d(c.2, color.2)
        };
        let best = (0..=STEPS)
            .min_by_key(|&k| distance(self.map.at(k as f64 / STEPS as f64)))
            .unwrap_or(0);
        self.min + (self.max - self.min) * best as f64 / STEPS as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ends_of_a_map_are_its_first_and_last_colours() {
        assert_eq!(ColorMap::Viridis.at(0.0), RGBColor(0x44, 0x01, 0x54));
        assert_eq!(ColorMap::Viridis.at(1.0), RGBColor(0xfd, 0xe7, 0x25));
        // Halfway along black → white is (127.5 rounded up) gray.
        assert_eq!(ColorMap::Gray.at(0.5), RGBColor(128, 128, 128));
    }

    #[test]
    fn a_scale_read_backwards_gives_the_value() {
        let scale = ColorScale::new(-2.0, 6.0, ColorMap::Viridis);
        for v in [-2.0, -1.0, 0.0, 2.5, 6.0] {
            assert!(
                (scale.value_of(scale.color(v)) - v).abs() < 8.0 / 100.0,
                "{v}"
            );
        }
        assert_eq!(scale.color(-5.0), scale.color(-2.0));
    }

    #[test]
    fn a_constant_is_drawn_in_the_middle() {
        let scale = ColorScale::spanning([3.0, 3.0], ColorMap::Gray);
        assert_eq!((scale.min, scale.max), (2.5, 3.5));
        assert_eq!(scale.color(3.0), RGBColor(128, 128, 128));
        let sym = ColorScale::symmetric([-0.5, 2.0], ColorMap::Gray);
        assert_eq!((sym.min, sym.max), (-2.0, 2.0));
    }
}
