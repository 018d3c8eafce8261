//! Hostile inputs stay within memory: a model file whose one large tensor is named by many nodes, and images
//! whose aspect ratio makes the resized image enormous. Memory is measured as the peak of the bytes live on
//! the heap (a counting global allocator), the tests in this file one at a time.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::model_file::shared_weight_file;
use pwlu::graph::Op;
use pwlu::model::CheckedModel;
use pwlu::preprocess::{decode_image, Preprocess};
use pwlu::Model;
use serde_json::json;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as a new block first, then the old one freed: a copying realloc holds both.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this file run one at a time, so that each measures only itself.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result and the most heap bytes it held at once beyond what was live before.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let result = f();
    (result, PEAK.load(Ordering::SeqCst) - base)
}

const MIB: f64 = (1 << 20) as f64;

#[test]
fn a_tensor_named_by_150_convolutions_is_held_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The file of the hostile case: 1024x1024x3x3 weights (36 MiB), named by 150 convolutions.
    let bytes = shared_weight_file(1024, 150).bytes();
    let file_bytes = bytes.len();
    let (checked, peak) = peak_heap(|| CheckedModel::from_bytes(&bytes).expect("loads"));
    println!(
        "file {:.1} MiB; checking and optimising it held at most {:.1} MiB ({:.2}x the file)",
        file_bytes as f64 / MIB,
        peak as f64 / MIB,
        peak as f64 / file_bytes as f64
    );
    assert!(
        peak <= 2 * file_bytes,
        "loading a {file_bytes}-byte file held {peak} bytes (the bound is 2x the file)"
    );
    // Every convolution holds the same weights, and no batch norm was folded into (a copy of) them.
    let convs: Vec<_> = checked
        .graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv(layer) => Some(layer),
            _ => None,
        })
        .collect();
    assert_eq!(convs.len(), 150);
    assert!(convs
        .iter()
        .all(|l| Arc::ptr_eq(&l.weight, &convs[0].weight)));
    assert_eq!(
        checked
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::BatchNorm(..)))
            .count(),
        150
    );

    // On the GPU the shared weights are one upload too.
    let ctx = Arc::new(common::contexts().into_iter().next().expect("context"));
    let model = Model::from_bytes(ctx, &bytes).expect("loads on the GPU");
    let memory = model
        .plan(1)
        .expect("plan")
        .lock()
        .expect("plan lock")
        .memory();
    println!(
        "GPU weights {:.1} MiB for a {:.1} MiB file",
        memory.weight_bytes as f64 / MIB,
        file_bytes as f64 / MIB
    );
    assert!(
        memory.weight_bytes <= file_bytes as u64 * 5 / 4,
        "GPU weights take {} bytes for a {file_bytes}-byte file",
        memory.weight_bytes
    );
}

/// Lite0's preprocessing: the shorter side to 256 (bicubic), a 224 crop.
fn imagenet_preprocess() -> Preprocess {
    serde_json::from_value(json!({
        "resize": 256, "crop": 224, "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channel_order": "rgb"
    }))
    .expect("preprocess")
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode");
    bytes
}

#[test]
fn a_thin_strip_is_resampled_in_memory_that_follows_the_crop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let preprocess = imagenet_preprocess();
    for (width, height) in [(1, 16_384), (16_384, 1), (3, 16_384)] {
        let bytes = png(width, height);
        let (tensor, peak) = peak_heap(|| {
            preprocess
                .apply(&decode_image(&bytes).expect("decodes"))
                .expect("preprocesses")
        });
        println!(
            "{width}x{height} PNG ({} bytes): {:.1} MiB at most",
            bytes.len(),
            peak as f64 / MIB
        );
        assert_eq!(tensor.dims(), &[1, 3, 224, 224]);
        // Resizing the whole strip would take 256 x 4194304 RGB pixels (3 GiB).
        assert!(
            peak < 256 << 20,
            "a {width}x{height} image took {peak} bytes"
        );
    }
}
