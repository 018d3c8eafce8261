//! The JavaScript API in a real browser (wasm-bindgen-test in headless Chromium), on its WebGPU adapter and on
//! the CPU backend in wasm: results agree with the plain-Rust reference, and every failure rejects its promise
//! with a `PwluError` of the right kind instead of hanging. Run by web/test.sh.
#![cfg(target_arch = "wasm32")]

#[path = "../../tests/common/model_file.rs"]
mod model_file;

use js_sys::{Array, Float32Array, Reflect, Uint8Array};
use pwlu::gpu::{Backend, GpuContext, GpuOptions};
use pwlu_web::{BytesOptions, LoadOptions, WebModel};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{AbortController, Blob, ImageData, OffscreenCanvas, Url};

wasm_bindgen_test_configure!(run_in_browser);

// What model_file.rs expects of its parent module.
fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

fn random_vec(rng: &mut SmallRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

fn model_bytes() -> Vec<u8> {
    model_file::small_classifier().bytes()
}

/// The backends every API test runs on.
const BACKENDS: [&str; 2] = ["webgpu", "cpu"];

/// `{backend}`, the options of `Model.fromBytes`.
fn on(backend: &str) -> BytesOptions {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"backend".into(), &backend.into()).expect("set");
    options.unchecked_into()
}

/// The small model with the default backend (`auto`).
async fn web_model() -> WebModel {
    WebModel::from_bytes(model_bytes(), None)
        .await
        .unwrap_or_else(|e| panic!("the small model loads: {e:?}"))
}

/// The small model on `backend`, which it must run on.
async fn web_model_on(backend: &str) -> WebModel {
    let web = WebModel::from_bytes(model_bytes(), Some(on(backend)))
        .await
        .unwrap_or_else(|e| panic!("the small model loads on {backend}: {e:?}"));
    let info = web.info().expect("info");
    let got = Reflect::get(&info, &"backend".into()).expect("backend");
    assert_eq!(got.as_string().as_deref(), Some(backend));
    web
}

/// The rejection of `promise`, which must reject.
async fn rejection(promise: js_sys::Promise) -> JsValue {
    match JsFuture::from(promise).await {
        Ok(value) => panic!("expected a rejection, got {value:?}"),
        Err(error) => error,
    }
}

/// `(kind, message)` of a PwluError.
fn kind_and_message(error: &JsValue) -> (String, String) {
    let get = |key: &str| {
        Reflect::get(error, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    assert_eq!(get("name"), "PwluError", "{error:?}");
    (get("kind"), get("message"))
}

fn random_image(width: u32, height: u32, seed: u64) -> (Vec<u8>, ImageData) {
    let mut rng = rng(seed);
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|_| {
            let [r, g, b]: [u8; 3] = rng.random();
            [r, g, b, 255]
        })
        .collect();
    // Over a JavaScript-owned copy: an ImageData over wasm memory would be detached when that memory grows.
    let array = js_sys::Uint8ClampedArray::from(&pixels[..]);
    let data =
        ImageData::new_with_js_u8_clamped_array_and_sh(&array, width, height).expect("ImageData");
    (pixels, data)
}

/// `web.logits(source)`, which must resolve.
async fn logits(web: &WebModel, source: JsValue, what: &str) -> Vec<f32> {
    let array: Float32Array = JsFuture::from(web.logits(source))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
        .unchecked_into();
    array.to_vec()
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-4 * e.abs().max(1.0),
            "output {i}: browser {a}, CPU reference {e}"
        );
    }
}

#[wasm_bindgen_test]
async fn logits_of_an_image_match_the_reference_on_every_backend() {
    for backend in BACKENDS {
        logits_of_an_image_match_the_reference(backend).await;
    }
}

async fn logits_of_an_image_match_the_reference(backend: &str) {
    let web = web_model_on(backend).await;
    let (pixels, image) = random_image(15, 13, 1);
    let outputs = logits(&web, image.clone().into(), "logits").await;

    // The same file and pixels through the engine's plain-Rust reference.
    let ctx = pwlu::cpu::CpuContext::new(&Default::default()).expect("CPU context");
    let reference = pwlu::Model::from_bytes(ctx, &model_bytes()).expect("model");
    let rgba = image::RgbaImage::from_raw(15, 13, pixels).expect("pixels");
    let input = reference
        .preprocess_image(&image::DynamicImage::ImageRgba8(rgba))
        .expect("preprocess");
    let expected = reference.graph().run_reference(&input).expect("CPU run");
    assert_close(&outputs, expected.data());

    // classify() ranks the same logits.
    let top: Array = JsFuture::from(web.classify(image.into(), Some(4)))
        .await
        .expect("classify")
        .unchecked_into();
    assert_eq!(top.length(), 4);
    let field = |i: u32, key: &str| Reflect::get(&top.get(i), &key.into()).expect(key);
    let best = expected
        .data()
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("outputs");
    assert_eq!(field(0, "index").as_f64(), Some(best as f64));
    assert_eq!(
        field(0, "label").as_string().as_deref(),
        Some(["a", "b", "c", "d"][best])
    );
    let probs: Vec<f64> = (0..4).filter_map(|i| field(i, "prob").as_f64()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
}

#[wasm_bindgen_test]
async fn canvases_bitmaps_and_blobs_give_the_same_logits_as_image_data() {
    for backend in BACKENDS {
        canvases_bitmaps_and_blobs_on(backend).await;
    }
}

async fn canvases_bitmaps_and_blobs_on(backend: &str) {
    let web = web_model_on(backend).await;
    let (pixels, image) = random_image(9, 10, 2);
    let direct = logits(&web, image.clone().into(), "logits").await;
    let canvas = OffscreenCanvas::new(9, 10).expect("canvas");
    let context: web_sys::OffscreenCanvasRenderingContext2d = canvas
        .get_context("2d")
        .expect("2d")
        .expect("2d")
        .unchecked_into();
    context.put_image_data(&image, 0.0, 0.0).expect("put");
    let from_canvas = logits(&web, canvas.clone().into(), "logits of a canvas").await;
    assert_close(&from_canvas, &direct);
    let bitmap = canvas.transfer_to_image_bitmap().expect("bitmap");
    let from_bitmap = logits(&web, bitmap.into(), "logits of an ImageBitmap").await;
    assert_close(&from_bitmap, &direct);

    // An encoded PNG in a Blob, decoded by the browser.
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        9,
        10,
        image::ExtendedColorType::Rgba8,
    )
    .expect("PNG");
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("image/png");
    let blob = Blob::new_with_u8_array_sequence_and_options(
        &Array::of1(&Uint8Array::from(&png[..])),
        &options,
    )
    .expect("blob");
    let from_png = logits(&web, blob.into(), "logits of a PNG Blob").await;
    assert_close(&from_png, &direct);
}

#[wasm_bindgen_test]
async fn run_takes_a_batch_of_tensors_on_every_backend() {
    for backend in BACKENDS {
        run_takes_a_batch_of_tensors(backend).await;
    }
}

async fn run_takes_a_batch_of_tensors(backend: &str) {
    let web = web_model_on(backend).await;
    let info = web.info().expect("info");
    let input: Vec<u32> = serde_wasm_bindgen_dims(&info);
    assert_eq!(input, [3, 10, 9]);
    let batch = 3;
    let values: Vec<f32> = random_vec(&mut rng(3), batch * 3 * 10 * 9, 1.0);
    let out: Float32Array = JsFuture::from(web.run(Float32Array::from(&values[..]), Some(3)))
        .await
        .expect("run")
        .unchecked_into();
    assert_eq!(out.length(), 3 * 4);
    let error = rejection(web.run(Float32Array::from(&values[..10]), None)).await;
    let (kind, message) = kind_and_message(&error);
    assert_eq!(kind, "input");
    assert!(message.contains("needs 270 values, got 10"), "{message}");
}

#[wasm_bindgen_test]
async fn profile_times_every_layer_or_says_why_it_cannot() {
    for backend in BACKENDS {
        profile_on(backend).await;
    }
}

async fn profile_on(backend: &str) {
    let web = web_model_on(backend).await;
    let info = web.info().expect("info");
    let get = |key: &str| Reflect::get(&info, &key.into()).expect(key);
    assert!(get("flops").as_f64().is_some_and(|f| f > 0.0));
    let timestamps = get("timestamps")
        .as_bool()
        .expect("timestamps is a boolean");
    let values: Vec<f32> = random_vec(&mut rng(4), 3 * 10 * 9, 1.0);
    let promise = web.profile(Float32Array::from(&values[..]), None);
    if timestamps {
        let layers: Array = JsFuture::from(promise)
            .await
            .expect("profile")
            .unchecked_into();
        assert!(layers.length() > 0);
        for layer in layers.iter() {
            let field = |key: &str| Reflect::get(&layer, &key.into()).expect(key);
            assert!(field("ms").as_f64().is_some_and(|ms| ms >= 0.0));
            let kernel = field("kernel").as_string().unwrap_or_default();
            match backend {
                "cpu" => assert!(kernel.starts_with("cpu "), "{kernel}"),
                _ => assert!(kernel.ends_with(".wgsl"), "{kernel}"),
            }
            assert!(field("node").as_string().is_some_and(|n| !n.is_empty()));
        }
    } else {
        assert_eq!(backend, "webgpu", "the CPU always has a clock");
        let error = rejection(promise).await;
        let (kind, message) = kind_and_message(&error);
        assert_eq!(kind, "gpu");
        assert!(message.contains("timestamp-query"), "{message}");
    }
}

fn serde_wasm_bindgen_dims(info: &JsValue) -> Vec<u32> {
    let input: Array = Reflect::get(info, &"input".into())
        .expect("input")
        .unchecked_into();
    input
        .iter()
        .filter_map(|v| v.as_f64())
        .map(|v| v as u32)
        .collect()
}

#[wasm_bindgen_test]
async fn info_labels_and_curves_describe_the_model() {
    for backend in BACKENDS {
        info_labels_and_curves_on(backend).await;
    }
}

async fn info_labels_and_curves_on(backend: &str) {
    let web = web_model_on(backend).await;
    let info = web.info().expect("info");
    let get = |key: &str| Reflect::get(&info, &key.into()).expect(key);
    let text = |key: &str| get(key).as_string().unwrap_or_default();
    assert!(text("reason").contains("asked for"), "{}", text("reason"));
    assert_eq!(get("name").as_string().as_deref(), Some("small"));
    assert_eq!(get("classes").as_f64(), Some(4.0));
    assert_eq!(get("pwluSites").as_f64(), Some(2.0));
    assert!(get("preprocess")
        .as_string()
        .is_some_and(|p| p.contains("resize")));
    let adapter = get("adapter");
    if backend == "cpu" {
        assert!(adapter.is_null());
        assert!(
            text("device").starts_with("CPU (1 thread, SIMD128)"),
            "{}",
            text("device")
        );
    } else {
        let name = Reflect::get(&adapter, &"name".into())
            .ok()
            .and_then(|n| n.as_string());
        assert!(name.is_some_and(|n| !n.is_empty() && n == text("device")));
    }
    assert_eq!(web.labels().expect("labels"), ["a", "b", "c", "d"]);

    let curves = web.activation_curves(Some(50)).expect("curves");
    assert_eq!(curves.length(), 2);
    for curve in curves.iter() {
        let x: Float32Array = Reflect::get(&curve, &"x".into())
            .expect("x")
            .unchecked_into();
        let y: Array = Reflect::get(&curve, &"y".into())
            .expect("y")
            .unchecked_into();
        assert_eq!(x.length(), 51);
        assert_eq!(y.length(), 6, "one curve per channel");
        let x = x.to_vec();
        assert!(x.windows(2).all(|w| w[0] < w[1]));
        for unit in y.iter() {
            let unit: Float32Array = unit.unchecked_into();
            assert!(unit.to_vec().iter().all(|v| v.is_finite()));
        }
    }
}

#[wasm_bindgen_test]
async fn a_url_loads_with_progress_reports() {
    let bytes = model_bytes();
    let blob =
        Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(&bytes[..]))).expect("blob");
    let url = Url::create_object_url_with_blob(&blob).expect("object URL");
    let seen = Array::new();
    let record = seen.clone();
    let callback = Closure::<dyn Fn(f64)>::new(move |loaded: f64| {
        record.push(&loaded.into());
    });
    let options = js_sys::Object::new();
    Reflect::set(&options, &"onProgress".into(), callback.as_ref()).expect("set");
    let web = WebModel::from_url(url.clone(), Some(options.unchecked_into::<LoadOptions>()))
        .await
        .expect("the model loads from a URL");
    assert_eq!(web.labels().expect("labels").len(), 4);
    let reports: Vec<f64> = seen.iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(reports.first(), Some(&0.0));
    assert_eq!(reports.last(), Some(&(bytes.len() as f64)));
    assert!(reports.windows(2).all(|w| w[0] <= w[1]));
    Url::revoke_object_url(&url).expect("revoke");
}

#[wasm_bindgen_test]
async fn a_download_over_max_bytes_rejects() {
    let bytes = model_bytes();
    let blob =
        Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(&bytes[..]))).expect("blob");
    let url = Url::create_object_url_with_blob(&blob).expect("object URL");
    let options = js_sys::Object::new();
    Reflect::set(
        &options,
        &"maxBytes".into(),
        &((bytes.len() - 1) as f64).into(),
    )
    .expect("set");
    let (kind, message) = load_error(&url, Some(options.unchecked_into())).await;
    assert_eq!(kind, "fetch");
    assert!(message.contains("maxBytes"), "{message}");
    // Exactly the file's size is allowed.
    let options = js_sys::Object::new();
    Reflect::set(&options, &"maxBytes".into(), &(bytes.len() as f64).into()).expect("set");
    WebModel::from_url(url.clone(), Some(options.unchecked_into::<LoadOptions>()))
        .await
        .expect("a file of exactly maxBytes loads");
    Url::revoke_object_url(&url).expect("revoke");
}

async fn load_error(url: &str, options: Option<LoadOptions>) -> (String, String) {
    match WebModel::from_url(url.into(), options).await {
        Ok(_) => panic!("{url} loaded"),
        Err(error) => kind_and_message(&error),
    }
}

#[wasm_bindgen_test]
async fn a_404_rejects_with_the_status() {
    let (kind, message) = load_error("/no-such-model.safetensors", None).await;
    assert_eq!(kind, "fetch");
    assert!(message.contains("HTTP 404"), "{message}");
}

#[wasm_bindgen_test]
async fn a_malformed_url_rejects() {
    let (kind, message) = load_error("http://[::1", None).await;
    assert_eq!(kind, "fetch");
    assert!(message.contains("could not fetch http://[::1"), "{message}");
}

#[wasm_bindgen_test]
async fn a_file_that_is_not_a_model_rejects() {
    let (kind, message) = load_error(
        "data:application/octet-stream;base64,aGVsbG8gd29ybGQ=",
        None,
    )
    .await;
    assert_eq!(kind, "model");
    assert!(message.contains("invalid model"), "{message}");

    for bytes in [Vec::new(), b"{\"not\": \"safetensors\"}".to_vec()] {
        let error = match WebModel::from_bytes(bytes, None).await {
            Ok(_) => panic!("garbage loaded"),
            Err(error) => error,
        };
        let (kind, message) = kind_and_message(&error);
        assert_eq!(kind, "model");
        assert!(message.starts_with("invalid model"), "{message}");
    }
}

#[wasm_bindgen_test]
async fn an_aborted_download_rejects() {
    let blob = Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(&model_bytes()[..])))
        .expect("blob");
    let url = Url::create_object_url_with_blob(&blob).expect("object URL");
    let controller = AbortController::new().expect("controller");
    controller.abort();
    let options = js_sys::Object::new();
    Reflect::set(&options, &"signal".into(), &controller.signal()).expect("set");
    let (kind, message) = load_error(&url, Some(options.unchecked_into())).await;
    assert_eq!(kind, "abort");
    assert!(message.contains("aborted"), "{message}");
}

#[wasm_bindgen_test]
async fn bad_options_and_sources_reject() {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"onProgress".into(), &"not a function".into()).expect("set");
    let (kind, _) = load_error("/whatever", Some(options.unchecked_into())).await;
    assert_eq!(kind, "input");
    let options = js_sys::Object::new();
    Reflect::set(&options, &"maxBytes".into(), &(-1.0).into()).expect("set");
    let (kind, message) = load_error("/whatever", Some(options.unchecked_into())).await;
    assert_eq!(kind, "input");
    assert!(message.contains("maxBytes"), "{message}");
    for backend in [JsValue::from("tpu"), JsValue::from(1)] {
        let options = js_sys::Object::new();
        Reflect::set(&options, &"backend".into(), &backend).expect("set");
        let (kind, message) = load_error("/whatever", Some(options.unchecked_into())).await;
        assert_eq!(kind, "input");
        assert!(
            message.contains("\"auto\", \"webgpu\" or \"cpu\""),
            "{message}"
        );
    }

    let web = web_model().await;
    for (source, expected) in [
        (JsValue::from(3), "got number"),
        (JsValue::NULL, "got null"),
        (js_sys::Object::new().into(), "got Object"),
        (
            OffscreenCanvas::new(0, 7).expect("canvas").into(),
            "no pixels",
        ),
    ] {
        let (kind, message) = kind_and_message(&rejection(web.classify(source, None)).await);
        assert_eq!(kind, "input");
        assert!(message.contains(expected), "{message}");
    }
    // An ImageData whose buffer was transferred away (as when posted to a worker).
    let (_, detached) = random_image(3, 3, 4);
    let array = Reflect::get(&detached, &"data".into()).expect("data");
    let buffer = Reflect::get(&array, &"buffer".into()).expect("buffer");
    let transfer: js_sys::Function = Reflect::get(&buffer, &"transfer".into())
        .expect("ArrayBuffer.prototype.transfer")
        .unchecked_into();
    transfer.call0(&buffer).expect("transfer");
    let (kind, message) = kind_and_message(&rejection(web.classify(detached.into(), None)).await);
    assert_eq!(kind, "input");
    assert!(message.contains("detached"), "{message}");

    let not_an_image = Blob::new_with_str_sequence(&Array::of1(&"text".into())).expect("blob");
    let (kind, message) =
        kind_and_message(&rejection(web.classify(not_an_image.into(), None)).await);
    assert_eq!(kind, "input");
    assert!(message.contains("cannot decode"), "{message}");
}

#[wasm_bindgen_test]
async fn a_disposed_model_rejects_later_calls() {
    let mut web = web_model().await;
    let (_, image) = random_image(4, 4, 5);
    let in_flight = web.logits(image.clone().into());
    web.dispose();
    // A call made before dispose() still finishes.
    JsFuture::from(in_flight)
        .await
        .expect("the earlier call completes");
    let (kind, message) = kind_and_message(&rejection(web.classify(image.into(), None)).await);
    assert_eq!(kind, "disposed");
    assert!(message.contains("disposed"), "{message}");
    assert!(web.info().is_err());
}

#[wasm_bindgen_test]
async fn webgpu_status_names_the_adapter() {
    let status = JsFuture::from(pwlu_web::webgpu_status())
        .await
        .expect("status");
    assert_eq!(
        Reflect::get(&status, &"available".into()).expect("available"),
        JsValue::TRUE
    );
    let adapter = Reflect::get(&status, &"adapter".into()).expect("adapter");
    assert!(adapter.as_string().is_some_and(|a| !a.is_empty()));
}

#[wasm_bindgen_test]
async fn winograd_can_be_turned_off_and_must_be_a_boolean() {
    let device = |web: &WebModel| {
        let info = web.info().expect("info");
        let device = Reflect::get(&info, &"device".into()).expect("device");
        device.as_string().unwrap_or_default()
    };
    let options = on("cpu");
    Reflect::set(&options, &"winograd".into(), &false.into()).expect("set");
    let direct = WebModel::from_bytes(model_bytes(), Some(options))
        .await
        .unwrap_or_else(|e| panic!("loads without Winograd: {e:?}"));
    assert!(
        device(&direct).ends_with(", no Winograd)"),
        "{}",
        device(&direct)
    );
    let default = web_model_on("cpu").await;
    assert!(
        !device(&default).contains("Winograd"),
        "{}",
        device(&default)
    );

    let options = on("cpu");
    Reflect::set(&options, &"winograd".into(), &"no".into()).expect("set");
    let Err(error) = WebModel::from_bytes(model_bytes(), Some(options)).await else {
        panic!("winograd: \"no\" must reject");
    };
    let (kind, message) = kind_and_message(&error);
    assert_eq!(kind, "input");
    assert!(
        message.contains("winograd must be true or false"),
        "{message}"
    );
}

#[wasm_bindgen_test]
async fn auto_says_why_it_chose_its_backend() {
    let web = web_model().await;
    let info = web.info().expect("info");
    let get = |key: &str| {
        Reflect::get(&info, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let (backend, reason) = (get("backend"), get("reason"));
    // Headless Chromium without a GPU offers SwiftShader, a software fallback: auto takes the CPU there.
    let status = JsFuture::from(pwlu_web::webgpu_status())
        .await
        .expect("status");
    let adapter = Reflect::get(&status, &"adapter".into())
        .ok()
        .and_then(|a| a.as_string())
        .unwrap_or_default();
    if adapter.to_lowercase().contains("swiftshader") {
        assert_eq!(backend, "cpu", "{reason}");
        assert!(reason.contains("software fallback"), "{reason}");
    } else {
        assert!(["webgpu", "cpu"].contains(&backend.as_str()), "{backend}");
        assert!(!reason.is_empty());
    }
}

#[wasm_bindgen_test]
async fn the_conformance_cases_agree_with_the_reference_on_the_cpu_backend_in_wasm() {
    // The same cases as on WebGPU below, through the CPU backend's kernels compiled to wasm SIMD.
    let ctx = pwlu::cpu::CpuContext::new(&Default::default()).expect("CPU context");
    let cases = pwlu::conformance::cases();
    let failures = pwlu::conformance::failures(&cases, |case| {
        pwlu::cpu::CpuPlan::new(&ctx, &case.graph, case.input.shape().n)?.run(&ctx, &case.input)
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases fail on {}:\n{}",
        failures.len(),
        cases.len(),
        ctx.describe(),
        failures.join("\n")
    );
}

#[wasm_bindgen_test]
async fn the_conformance_cases_agree_with_the_reference_on_webgpu() {
    // tests/conformance.rs runs the same cases natively: every kernel, on random and edge-case shapes and values.
    let options = GpuOptions {
        backend: Backend::WebGpu,
        ..Default::default()
    };
    let ctx = GpuContext::new(&options).await.expect("context");
    let cases = pwlu::conformance::cases();
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = match pwlu::gpu::GpuPlan::new(&ctx, &case.graph, case.input.shape().n)
            .and_then(|plan| plan.submit(&ctx, &case.input))
        {
            Ok(pending) => pending
                .read(&ctx)
                .await
                .map_err(|e| format!("{}: {e}", case.name))
                .and_then(|got| case.check(&got)),
            Err(e) => Err(format!("{}: {e}", case.name)),
        };
        if let Err(failure) = outcome {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail on {}:\n{}",
        failures.len(),
        cases.len(),
        ctx.adapter(),
        failures.join("\n")
    );
}
