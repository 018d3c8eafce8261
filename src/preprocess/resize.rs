//! Antialiased resampling, ported from Pillow's `ImagingResample` (Resample.c) for 8-bit images, so that the
//! engine's inputs match torchvision's `Resize` on PIL images: the filter support widens with the scale,
//! coefficients are fixed-point with 22 fractional bits, and the horizontal pass runs first, rounding to 8 bits
//! before the vertical pass.

use image::{ImageBuffer, Pixel};

/// Resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Triangle, support 1 (PIL's BILINEAR, torchvision's default).
    Bilinear,
    /// Keys cubic with a = -0.5, support 2 (PIL's BICUBIC).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel of `outputs` (a range of the `out_size` pixels the whole resize makes): first input index
/// and fixed-point weights. Each pixel's coefficients depend on its own position only, so a window of the
/// output gets exactly the coefficients the whole resize would.
fn coefficients(
    in_size: usize,
    out_size: usize,
    outputs: std::ops::Range<usize>,
    filter: Filter,
) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    outputs
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let min = ((center - support + 0.5).floor().max(0.0)) as usize;
            let max = (((center + support + 0.5).floor()) as usize).min(in_size);
            let weights: Vec<f64> = (min..max)
                .map(|x| filter.eval((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { 0.0 };
                    let v = w * f64::from(1u32 << PRECISION_BITS);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (min, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    let v = (acc + (1i64 << (PRECISION_BITS - 1))) >> PRECISION_BITS;
    v.clamp(0, 255) as u8
}

/// A window of an image's pixels: left, top, width, height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First column.
    pub x: u32,
    /// First row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

/// Resizes an 8-bit image to `width` x `height` the way Pillow does.
pub fn resize<P>(
    image: &ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
    filter: Filter,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    let whole = Window {
        x: 0,
        y: 0,
        width,
        height,
    };
    resize_window(image, width, height, whole, filter)
}

/// The pixels in `window` of the image [`resize`] would make at `width` x `height`, bit for bit, computing only
/// those: memory and time follow the window and the input rows it reads, not the whole resized image (a
/// 1 x 16384 strip resized so that its shorter side is 256 would be 256 x 4194304 pixels). `window` must lie
/// within `width` x `height`.
pub fn resize_window<P>(
    image: &ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
    window: Window,
    filter: Filter,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8>,
{
    let channels = P::CHANNEL_COUNT as usize;
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (x0, y0) = (window.x as usize, window.y as usize);
    let (out_w, out_h) = (window.width as usize, window.height as usize);
    let src = image.as_raw();

    // The input rows the window's output rows read (all of them when the height stays).
    let vertical = (height as usize != in_h)
        .then(|| coefficients(in_h, height as usize, y0..y0 + out_h, filter));
    let rows = match &vertical {
        Some(coeffs) => {
            let first = coeffs.iter().map(|(start, _)| *start).min().unwrap_or(0);
            let end = coeffs
                .iter()
                .map(|(start, w)| start + w.len())
                .max()
                .unwrap_or(first);
            first..end.max(first)
        }
        None => y0..y0 + out_h,
    };

    // Horizontal pass over those rows: the window's columns only.
    let horizontal = if width as usize == in_w {
        let mut out = Vec::with_capacity(rows.len() * out_w * channels);
        for y in rows.clone() {
            out.extend_from_slice(&src[(y * in_w + x0) * channels..][..out_w * channels]);
        }
        out
    } else {
        let coeffs = coefficients(in_w, width as usize, x0..x0 + out_w, filter);
        let mut out = vec![0u8; out_w * rows.len() * channels];
        for (r, y) in rows.clone().enumerate() {
            let row = &src[y * in_w * channels..][..in_w * channels];
            for (x, (start, weights)) in coeffs.iter().enumerate() {
                for c in 0..channels {
                    let acc: i64 = weights
                        .iter()
                        .enumerate()
                        .map(|(k, &w)| i64::from(row[(start + k) * channels + c]) * i64::from(w))
                        .sum();
                    out[(r * out_w + x) * channels + c] = clip8(acc);
                }
            }
        }
        out
    };

    // Vertical pass, rows indexed from the first one the horizontal pass kept.
    let pixels = match vertical {
        None => horizontal,
        Some(coeffs) => {
            let mut out = vec![0u8; out_w * out_h * channels];
            for (y, (start, weights)) in coeffs.iter().enumerate() {
                let start = start - rows.start;
                for x in 0..out_w * channels {
                    let acc: i64 = weights
                        .iter()
                        .enumerate()
                        .map(|(k, &w)| {
                            i64::from(horizontal[(start + k) * out_w * channels + x]) * i64::from(w)
                        })
                        .sum();
                    out[y * out_w * channels + x] = clip8(acc);
                }
            }
            out
        }
    };
    // The buffer has exactly width * height * channels bytes by construction.
    ImageBuffer::from_raw(window.width, window.height, pixels)
        .unwrap_or_else(|| ImageBuffer::new(window.width, window.height))
}
