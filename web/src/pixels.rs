//! Pixels from whatever a page holds: `ImageData`, `ImageBitmap`, `<img>`, `<canvas>`, `OffscreenCanvas`,
//! `<video>`, `VideoFrame`, or an encoded image in a `Blob`/`File`.
//!
//! The browser decodes; the engine then preprocesses exactly as it does natively (Pillow's resize), so a page and
//! the `pwlu` tool given the same pixels compute the same logits.

use image::RgbaImage;
use js_sys::{Promise, Reflect, Uint8ClampedArray};
use pwlu::preprocess::MAX_IMAGE_SIDE;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, ImageBitmap, ImageData, OffscreenCanvas};

use crate::error::{describe, js_error, Kind};

#[wasm_bindgen]
extern "C" {
    /// An `OffscreenCanvasRenderingContext2D`, seen through the one overload of `drawImage` that every image
    /// source accepts.
    type DrawingContext;

    #[wasm_bindgen(method, catch, js_name = drawImage)]
    fn draw_image(this: &DrawingContext, source: &JsValue, x: f64, y: f64) -> Result<(), JsValue>;

    #[wasm_bindgen(method, catch, js_name = getImageData)]
    fn get_image_data(
        this: &DrawingContext,
        x: f64,
        y: f64,
        w: f64,
        h: f64,
    ) -> Result<ImageData, JsValue>;

    #[wasm_bindgen(catch, js_name = createImageBitmap)]
    fn create_image_bitmap(source: &Blob, options: &js_sys::Object) -> Result<Promise, JsValue>;
}

const ACCEPTED: &str =
    "ImageData, ImageBitmap, HTMLImageElement, HTMLCanvasElement, OffscreenCanvas, \
                        HTMLVideoElement, VideoFrame or Blob";

fn input_error(message: impl std::fmt::Display) -> JsValue {
    js_error(Kind::Input, message)
}

/// The source's pixels as straight (not premultiplied) 8-bit RGBA.
pub async fn rgba_image(source: &JsValue) -> Result<RgbaImage, JsValue> {
    if let Some(data) = source.dyn_ref::<ImageData>() {
        return from_image_data(data);
    }
    if let Some(blob) = source.dyn_ref::<Blob>() {
        // Decoded as Pillow decodes for PyTorch: no colour management, straight alpha (EXIF orientation applies).
        let options = js_sys::Object::new();
        let _ = Reflect::set(&options, &"colorSpaceConversion".into(), &"none".into());
        let _ = Reflect::set(&options, &"premultiplyAlpha".into(), &"none".into());
        let promise = create_image_bitmap(blob, &options).map_err(|e| input_error(describe(&e)))?;
        let bitmap: ImageBitmap = JsFuture::from(promise)
            .await
            .map_err(|e| {
                input_error(format!(
                    "the browser cannot decode this image: {}",
                    describe(&e)
                ))
            })?
            .unchecked_into();
        let pixels = draw(&bitmap, bitmap.width(), bitmap.height());
        bitmap.close();
        return pixels;
    }
    let (width, height) = dimensions(source)?;
    draw(source, width, height)
}

fn from_image_data(data: &ImageData) -> Result<RgbaImage, JsValue> {
    let (width, height) = (data.width(), data.height());
    check_size(width, height)?;
    // Read through a typed array rather than `ImageData::data`, which aborts on a detached buffer (one that
    // was transferred to a worker, or an ImageData made over memory that has since moved).
    let pixels: Uint8ClampedArray = Reflect::get(data, &"data".into())
        .ok()
        .and_then(|d| d.dyn_into().ok())
        .ok_or_else(|| input_error("the ImageData has no pixel array"))?;
    let expected = u64::from(width) * u64::from(height) * 4;
    if u64::from(pixels.length()) != expected {
        return Err(input_error(format!(
            "the {width}x{height} ImageData holds {} bytes instead of {expected}: its buffer was detached \
             (transferred) or replaced",
            pixels.length()
        )));
    }
    RgbaImage::from_raw(width, height, pixels.to_vec()).ok_or_else(|| {
        input_error(format!(
            "ImageData of {width}x{height} has the wrong number of bytes"
        ))
    })
}

/// The intrinsic size: an `<img>`'s natural size, a `<video>`'s frame size, a `VideoFrame`'s display size,
/// else `width` and `height`.
fn dimensions(source: &JsValue) -> Result<(u32, u32), JsValue> {
    if !source.is_object() {
        return Err(input_error(format!(
            "expected an image ({ACCEPTED}), got {}",
            type_name(source)
        )));
    }
    for (w, h) in [
        ("naturalWidth", "naturalHeight"),
        ("videoWidth", "videoHeight"),
        ("displayWidth", "displayHeight"),
        ("width", "height"),
    ] {
        let read = |key: &str| {
            Reflect::get(source, &key.into())
                .ok()
                .and_then(|v| v.as_f64())
        };
        if let (Some(width), Some(height)) = (read(w), read(h)) {
            if width < 1.0 || height < 1.0 {
                return Err(input_error(
                    "the image has no pixels yet: wait until an <img> has loaded or a <video> has a frame",
                ));
            }
            let side = f64::from(MAX_IMAGE_SIDE);
            if width > side || height > side {
                return Err(input_error(format!(
                    "the image is {width}x{height}, more than {MAX_IMAGE_SIDE} pixels a side"
                )));
            }
            return Ok((width as u32, height as u32));
        }
    }
    Err(input_error(format!(
        "expected an image ({ACCEPTED}), got {}",
        type_name(source)
    )))
}

fn check_size(width: u32, height: u32) -> Result<(), JsValue> {
    if width == 0 || height == 0 {
        return Err(input_error("the image is empty (0 pixels)"));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(input_error(format!(
            "the image is {width}x{height}, more than {MAX_IMAGE_SIDE} pixels a side"
        )));
    }
    Ok(())
}

fn draw(source: &JsValue, width: u32, height: u32) -> Result<RgbaImage, JsValue> {
    check_size(width, height)?;
    let canvas = OffscreenCanvas::new(width, height).map_err(|e| input_error(describe(&e)))?;
    let options = js_sys::Object::new();
    let _ = Reflect::set(&options, &"willReadFrequently".into(), &JsValue::TRUE);
    let context: DrawingContext = canvas
        .get_context_with_context_options("2d", &options)
        .map_err(|e| input_error(describe(&e)))?
        .ok_or_else(|| input_error("the browser gave no 2D canvas context"))?
        .unchecked_into();
    context
        .draw_image(source, 0.0, 0.0)
        .map_err(|e| input_error(format!("cannot draw the image: {}", describe(&e))))?;
    let data = context
        .get_image_data(0.0, 0.0, f64::from(width), f64::from(height))
        .map_err(|e| {
            input_error(format!(
                "cannot read the image's pixels ({}); an image from another origin needs CORS \
                 (crossorigin=\"anonymous\" and an Access-Control-Allow-Origin header)",
                describe(&e)
            ))
        })?;
    from_image_data(&data)
}

fn type_name(value: &JsValue) -> String {
    if value.is_undefined() {
        return "undefined".into();
    }
    if value.is_null() {
        return "null".into();
    }
    if value.is_object() {
        let name = Reflect::get(value, &"constructor".into())
            .and_then(|c| Reflect::get(&c, &"name".into()))
            .ok()
            .and_then(|n| n.as_string());
        return name.unwrap_or_else(|| "an object".into());
    }
    value
        .js_typeof()
        .as_string()
        .unwrap_or_else(|| "a value".into())
}
