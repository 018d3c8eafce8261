//! Image files as users and the web supply them: decoding (every format the tool reads, with its size limits and
//! EXIF orientation), then ImageNet preprocessing of whatever decodes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pwlu::preprocess::{decode_image, Preprocess};

fn imagenet() -> &'static Preprocess {
    static P: OnceLock<Preprocess> = OnceLock::new();
    P.get_or_init(|| {
        serde_json::from_str(
            r#"{"resize": 16, "crop": 12, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}"#,
        )
        .expect("a valid preprocessing spec")
    })
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(image) = decode_image(bytes) {
        let _ = imagenet().apply(&image);
    }
});
