//! Image decoding and preprocessing: EXIF orientation, size limits, unusual pixel formats, and the Pillow-exact
//! resize on synthetic images.

use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use pwlu::preprocess::{decode_image, ChannelOrder, Interpolation, Preprocess, Size};
use pwlu::Error;

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encode");
    bytes.into_inner()
}

fn gradient(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([(x * 11) as u8, (y * 13) as u8, 77])
    }))
}

/// A JPEG with an EXIF APP1 segment holding only the orientation tag.
fn jpeg_with_orientation(image: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(image, ImageFormat::Jpeg);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let image = gradient(40, 20);
    let upright = decode_image(&jpeg_with_orientation(&image, 1)).expect("decode");
    assert_eq!((upright.width(), upright.height()), (40, 20));
    // What Pillow's exif_transpose does for each orientation: the stored image is shown after this transform.
    type Transform = fn(&DynamicImage) -> DynamicImage;
    let transforms: [(u16, Transform); 8] = [
        (1, |i| i.clone()),
        (2, |i| i.fliph()),
        (3, |i| i.rotate180()),
        (4, |i| i.flipv()),
        (5, |i| i.rotate90().fliph()),
        (6, |i| i.rotate90()),
        (7, |i| i.rotate270().fliph()),
        (8, |i| i.rotate270()),
    ];
    for (orientation, transform) in transforms {
        let got = decode_image(&jpeg_with_orientation(&image, orientation)).expect("decode");
        let expected = transform(&upright);
        assert_eq!(
            (got.width(), got.height()),
            (expected.width(), expected.height()),
            "orientation {orientation}"
        );
        // The same JPEG pixels, moved: exactly equal.
        assert_eq!(
            got.to_rgb8().as_raw(),
            expected.to_rgb8().as_raw(),
            "orientation {orientation}"
        );
    }
}

#[test]
fn oversized_empty_and_truncated_images_are_refused() {
    // A PNG header claiming 30000 x 30000 pixels: refused before anything is allocated.
    match decode_image(&png_header(30000, 30000)) {
        Err(Error::Image(message)) => assert!(message.contains("too large"), "{message}"),
        other => panic!("expected a size error, got {other:?}"),
    }
    assert!(matches!(decode_image(b""), Err(Error::Image(m)) if m.contains("empty")));
    let good = encode(&gradient(30, 30), ImageFormat::Png);
    for cut in [8, 33, good.len() / 2] {
        assert!(
            matches!(decode_image(&good[..cut]), Err(Error::Image(_))),
            "truncated at {cut}"
        );
    }
    assert!(matches!(
        decode_image(b"GIF89a but not really"),
        Err(Error::Image(_))
    ));
}

/// The signature and IHDR chunk of an 8-bit RGB PNG of `width x height`, and nothing more.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

#[test]
fn a_zero_pixel_image_is_refused() {
    assert!(matches!(
        decode_image(&png_header(0, 0)),
        Err(Error::Image(_))
    ));
    // Also when an application hands one over already decoded.
    let empty = DynamicImage::ImageRgb8(ImageBuffer::new(0, 0));
    let error = imagenet(256, 224)
        .apply(&empty)
        .expect_err("0 x 0 cannot be resized");
    assert!(matches!(error, Error::Image(_)), "{error}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn imagenet(resize: u32, crop: u32) -> Preprocess {
    Preprocess {
        resize: Some(Size::Side(resize)),
        crop: Some(Size::Side(crop)),
        interpolation: Interpolation::Bilinear,
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
        channel_order: ChannelOrder::Rgb,
        invert: false,
    }
}

#[test]
fn pixel_formats_give_the_same_input() {
    let rgb = gradient(48, 36);
    let p = imagenet(32, 28);
    let reference = p.apply(&rgb).expect("rgb");
    assert_eq!(reference.dims(), &[1, 3, 28, 28]);
    // The same pixels as RGBA (opaque), 16-bit and BGR-swapped-back must give the same tensor.
    let rgba = DynamicImage::ImageRgba8(rgb.to_rgba8());
    let deep = DynamicImage::ImageRgb16(rgb.to_rgb16());
    for (name, image) in [("rgba", rgba), ("16-bit", deep)] {
        let t = p.apply(&image).expect(name);
        assert_eq!(t.data(), reference.data(), "{name}");
    }
    let bgr = Preprocess {
        channel_order: ChannelOrder::Bgr,
        mean: vec![0.406, 0.456, 0.485],
        std: vec![0.225, 0.224, 0.229],
        ..p.clone()
    };
    let swapped = bgr.apply(&rgb).expect("bgr");
    let plane = 28 * 28;
    assert_eq!(
        &swapped.data()[..plane],
        &reference.data()[2 * plane..],
        "blue first"
    );
    // Greyscale input through an RGB model: three equal channels.
    let grey = DynamicImage::ImageLuma8(rgb.to_luma8());
    let t = p.apply(&grey).expect("grey");
    assert_eq!(t.dims(), &[1, 3, 28, 28]);
    // A 1x1 image is resized up, then cropped.
    let dot = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1, 1, Rgb([200, 100, 50])));
    let t = p.apply(&dot).expect("1x1");
    assert!((t.data()[0] - (200.0 / 255.0 - 0.485) / 0.229).abs() < 1e-6);
    // Cropping more than the image has is an error, not a panic.
    let small = Preprocess { resize: None, ..p };
    assert!(matches!(
        small.apply(&gradient(10, 10)),
        Err(Error::Image(_))
    ));
}

#[test]
fn resize_matches_pillow_on_known_values() {
    // Pillow 13.0: Image.new("L", (4, 1)) with pixels [0, 100, 200, 255] resized to (2, 1) gives
    // [71, 209] with BILINEAR and [60, 221] with BICUBIC.
    let row = image::GrayImage::from_raw(4, 1, vec![0, 100, 200, 255]).expect("image");
    let bilinear = pwlu::preprocess::resize(&row, 2, 1, pwlu::preprocess::Filter::Bilinear);
    assert_eq!(bilinear.as_raw(), &[71, 209]);
    let bicubic = pwlu::preprocess::resize(&row, 2, 1, pwlu::preprocess::Filter::Bicubic);
    assert_eq!(bicubic.as_raw(), &[60, 221]);
}

fn image_fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_pixel_near(image: &DynamicImage, at: (u32, u32), want: [u8; 3], tolerance: i32) {
    let got = image.to_rgb8().get_pixel(at.0, at.1).0;
    for (g, w) in got.iter().zip(want) {
        assert!(
            (i32::from(*g) - i32::from(w)).abs() <= tolerance,
            "pixel {at:?} is {got:?}, expected about {want:?}"
        );
    }
}

#[test]
fn a_cmyk_jpeg_decodes_to_its_rgb_colours() {
    // Written by Pillow from RGB (220, 30, 40), with the inverted CMYK that Photoshop and Pillow write.
    let image = decode_image(&image_fixture("red_cmyk.jpg")).expect("a CMYK JPEG decodes");
    assert_eq!((image.width(), image.height()), (16, 8));
    assert_pixel_near(&image, (3, 3), [220, 30, 40], 8);
}

#[test]
fn an_animated_gif_gives_its_first_frame() {
    // Three frames: red, green, blue. PIL's Image.open, and so PyTorch's pipelines, see the first.
    let image = decode_image(&image_fixture("red_green_blue.gif")).expect("a GIF decodes");
    assert_eq!((image.width(), image.height()), (6, 4));
    assert_pixel_near(&image, (2, 2), [255, 0, 0], 0);
}

#[test]
fn a_sixteen_bit_greyscale_png_keeps_its_order() {
    let image = decode_image(&image_fixture("ramp16.png")).expect("a 16-bit PNG decodes");
    assert_eq!((image.width(), image.height()), (8, 4));
    let grey = image.to_luma8();
    let row: Vec<u8> = (0..8).map(|x| grey.get_pixel(x, 0).0[0]).collect();
    assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
    assert!(row[7] > row[0], "{row:?}");
}

#[test]
fn a_resized_window_is_the_window_of_the_resized_image() {
    use pwlu::preprocess::{resize, resize_window, Filter, Window};
    let image = gradient(37, 23).to_rgb8();
    for filter in [Filter::Bilinear, Filter::Bicubic] {
        // Down and up in each direction, and a size that stays.
        for (width, height) in [(50, 80), (11, 7), (37, 9), (120, 23)] {
            let whole = resize(&image, width, height, filter);
            for window in [
                Window {
                    x: 0,
                    y: 0,
                    width,
                    height,
                },
                Window {
                    x: 1,
                    y: 2,
                    width: width / 2,
                    height: height / 2,
                },
                Window {
                    x: width - 3,
                    y: height - 1,
                    width: 3,
                    height: 1,
                },
            ] {
                let part = resize_window(&image, width, height, window, filter);
                let expected = image::imageops::crop_imm(
                    &whole,
                    window.x,
                    window.y,
                    window.width,
                    window.height,
                )
                .to_image();
                assert_eq!(
                    part.as_raw(),
                    expected.as_raw(),
                    "{filter:?} to {width}x{height}, window {window:?}"
                );
            }
        }
    }
}
