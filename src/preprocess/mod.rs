//! Image preprocessing: decode, orient, resize, crop and normalise into the model's input tensor, as the model
//! file's metadata says, matching torchvision's `Resize` / `CenterCrop` / `ToTensor` / `Normalize` on PIL images.

mod resize;

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder};
use serde::{Deserialize, Serialize};

pub use resize::{resize, resize_window, Filter, Window};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Images larger than this in either dimension are refused before decoding (decompression bombs).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Decoder memory limit.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// Interpolation for the resize step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// PIL's BILINEAR (torchvision's default).
    Bilinear,
    /// PIL's BICUBIC.
    Bicubic,
}

/// What colour channels the model takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red.
    Bgr,
    /// One luminance channel (PIL's "L" conversion).
    Gray,
}

/// The `preprocess` entry of a model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Resize so that the shorter side has this length (torchvision `Resize(int)`), or to exactly
    /// `[height, width]`.
    #[serde(default)]
    pub resize: Option<Size>,
    /// Center crop to `[height, width]` (or a square side).
    #[serde(default)]
    pub crop: Option<Size>,
    /// Resize filter.
    #[serde(default = "default_interpolation")]
    pub interpolation: Interpolation,
    /// Per-channel mean, on pixel values scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, on pixel values scaled to [0, 1].
    pub std: Vec<f32>,
    /// Channel order.
    #[serde(default)]
    pub channel_order: ChannelOrder,
    /// Use `255 - pixel` (light ink on dark, as in scikit-learn's digits).
    #[serde(default)]
    pub invert: bool,
}

fn default_interpolation() -> Interpolation {
    Interpolation::Bilinear
}

/// A side length or `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// One number: shorter side (resize) or square (crop).
    Side(u32),
    /// `[height, width]`.
    HeightWidth([u32; 2]),
}

impl Preprocess {
    /// Checks the values themselves.
    pub fn validate(&self) -> Result<()> {
        let channels = self.channels();
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(Error::Model(format!(
                "preprocess: mean and std need {channels} values for {:?} input",
                self.channel_order
            )));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Error::Model(
                "preprocess: std must be positive and finite, mean finite".into(),
            ));
        }
        for size in [self.resize, self.crop].into_iter().flatten() {
            let [h, w] = size.height_width();
            if h == 0 || w == 0 || h > MAX_IMAGE_SIDE || w > MAX_IMAGE_SIDE {
                return Err(Error::Model(format!(
                    "preprocess: size {size} is out of range (1 to {MAX_IMAGE_SIDE} a side)"
                )));
            }
        }
        Ok(())
    }

    /// Number of input channels.
    pub fn channels(&self) -> usize {
        if self.channel_order == ChannelOrder::Gray {
            1
        } else {
            3
        }
    }

    /// Turns an image into a `[1, C, H, W]` tensor.
    pub fn apply(&self, image: &DynamicImage) -> Result<Tensor> {
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::Image("the image is empty (0 pixels)".into()));
        }
        let filter = match self.interpolation {
            Interpolation::Bilinear => Filter::Bilinear,
            Interpolation::Bicubic => Filter::Bicubic,
        };
        let (w, h) = (image.width(), image.height());
        let target = self.resize.map(|size| match size {
            Size::Side(side) => {
                // torchvision: the shorter side becomes `side`, the longer one int(side * long / short).
                if w <= h {
                    [
                        ((u64::from(side) * u64::from(h)) / u64::from(w)).max(1) as u32,
                        side,
                    ]
                } else {
                    [
                        side,
                        ((u64::from(side) * u64::from(w)) / u64::from(h)).max(1) as u32,
                    ]
                }
            }
            Size::HeightWidth(hw) => hw,
        });
        let (data, width, height) = if self.channel_order == ChannelOrder::Gray {
            resize_and_crop(pil_luma(image), target, self.crop, filter)?
        } else {
            resize_and_crop(image.to_rgb8(), target, self.crop, filter)?
        };
        let channels = self.channels();
        let plane = (width * height) as usize;
        let mut out = vec![0.0f32; channels * plane];
        for (p, pixel) in data.chunks_exact(channels).enumerate() {
            for c in 0..channels {
                let source = if self.channel_order == ChannelOrder::Bgr {
                    2 - c
                } else {
                    c
                };
                let raw = if self.invert {
                    255 - pixel[source]
                } else {
                    pixel[source]
                };
                let v = f32::from(raw) / 255.0;
                out[c * plane + p] = (v - self.mean[c]) / self.std[c];
            }
        }
        Tensor::new(vec![1, channels, height as usize, width as usize], out)
    }
}

/// Resize (to `[height, width]`) then center crop; returns the raw 8-bit pixels and the final size.
fn resize_and_crop<P>(
    image: image::ImageBuffer<P, Vec<u8>>,
    target: Option<[u32; 2]>,
    crop: Option<Size>,
    filter: Filter,
) -> Result<(Vec<u8>, u32, u32)>
where
    P: image::Pixel<Subpixel = u8> + 'static,
{
    let [height, width] = target.unwrap_or([image.height(), image.width()]);
    let (cw, ch) = crop_box(width, height, crop)?;
    if crop.is_none() && u64::from(cw) * u64::from(ch) > u64::from(MAX_IMAGE_SIDE).pow(2) {
        return Err(Error::Image(format!(
            "resizing to {width}x{height} makes more than {MAX_IMAGE_SIDE}^2 pixels"
        )));
    }
    let (x, y) = crop_origin(width, height, cw, ch);
    let window = Window {
        x,
        y,
        width: cw,
        height: ch,
    };
    // Only the crop is resampled: the same pixels as resizing everything and cropping, in memory that follows
    // the crop, however far the image's aspect ratio makes the resized image reach.
    let cropped = if target.is_some() {
        resize_window(&image, width, height, window, filter)
    } else {
        image::imageops::crop_imm(&image, x, y, cw, ch).to_image()
    };
    Ok((cropped.into_raw(), cw, ch))
}

/// PIL's "L" conversion (ITU-R 601-2 luma in 16-bit fixed point), not the sRGB luma of `image`'s `to_luma8`.
fn pil_luma(image: &DynamicImage) -> image::GrayImage {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    let data = rgb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    image::GrayImage::from_raw(w, h, data).unwrap_or_else(|| image::GrayImage::new(w, h))
}

/// Crop size, or the whole image; a crop larger than the image is refused (torchvision would pad).
fn crop_box(w: u32, h: u32, crop: Option<Size>) -> Result<(u32, u32)> {
    match crop {
        None => Ok((w, h)),
        Some(size) => {
            let [ch, cw] = size.height_width();
            if cw > w || ch > h {
                return Err(Error::Image(format!(
                    "cannot crop {cw}x{ch} out of a {w}x{h} image"
                )));
            }
            Ok((cw, ch))
        }
    }
}

/// torchvision's CenterCrop: `int(round((size - crop) / 2))`.
fn crop_origin(w: u32, h: u32, cw: u32, ch: u32) -> (u32, u32) {
    let half = |total: u32, part: u32| ((f64::from(total - part)) / 2.0).round_ties_even() as u32;
    (half(w, cw), half(h, ch))
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Side(side) => write!(f, "{side}"),
            Size::HeightWidth([h, w]) => write!(f, "{h}x{w}"),
        }
    }
}

impl std::fmt::Display for Preprocess {
    /// e.g. `resize 256 (bilinear), crop 224, rgb, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(size) = self.resize {
            let what = if matches!(size, Size::Side(_)) {
                "shorter side to "
            } else {
                "to "
            };
            write!(f, "resize {what}{size} ({:?}), ", self.interpolation)?;
        }
        if let Some(size) = self.crop {
            write!(f, "center crop {size}, ")?;
        }
        write!(f, "{:?}", self.channel_order)?;
        if self.invert {
            write!(f, " inverted")?;
        }
        write!(f, ", mean {:?}, std {:?}", self.mean, self.std)
    }
}

impl Size {
    /// `[height, width]`.
    pub fn height_width(self) -> [u32; 2] {
        match self {
            Size::Side(s) => [s, s],
            Size::HeightWidth(hw) => hw,
        }
    }
}

/// Decodes an encoded image (format guessed from its bytes), applies its EXIF orientation, and refuses
/// images beyond [`MAX_IMAGE_SIDE`] before allocating them.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(Error::Image("the file is empty".into()));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(format!("cannot read the image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::Image(describe(e)))?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| Error::Image(describe(e)))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

fn describe(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(_) => format!(
            "the image is too large (the limit is {MAX_IMAGE_SIDE} pixels a side and {} MiB decoded)",
            MAX_IMAGE_BYTES >> 20
        ),
        image::ImageError::Unsupported(u) => format!("unsupported image format: {u}"),
        other => format!("cannot decode the image: {other}"),
    }
}
