//! The `pwlu` binary, driven as a user would: output formats, exit statuses and the one-line messages of every
//! failure, .npy round trips, plots and device listing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::model_file::small_classifier;
use image::{DynamicImage, ImageBuffer, Luma, Rgb, Rgba};
use serde_json::Value;

struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pwlu-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let runtime = dir.join("xdg");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn model(&self) -> PathBuf {
        let path = self.path("small.safetensors");
        std::fs::write(&path, small_classifier().bytes()).expect("write model");
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pwlu"))
            .args(args)
            .env("XDG_RUNTIME_DIR", self.path("xdg"))
            .output()
            .expect("the binary runs")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The GPU API the GPU-specific checks name explicitly (`auto` picks the CPU backend on a software adapter):
/// the first of `PWLU_TEST_BACKENDS`, or Vulkan.
fn gpu_backend() -> String {
    std::env::var("PWLU_TEST_BACKENDS")
        .ok()
        .and_then(|list| {
            list.split(',')
                .map(str::trim)
                .find(|b| !b.is_empty() && *b != "auto")
                .map(String::from)
        })
        .unwrap_or_else(|| "vulkan".into())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure: non-zero status and exactly one line on stderr, `error: ...` mentioning `needle`, no panic.
fn assert_fails_with(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "no panics: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains(needle),
        "'{}' should mention '{needle}'",
        lines[0]
    );
}

fn gradient(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    }))
}

#[test]
fn classify_prints_an_aligned_table_and_a_closing_line() {
    let ws = Workspace::new("table");
    let model = ws.model();
    let image = ws.path("a.png");
    gradient(40, 30).save(&image).expect("png");
    let out = ws.run(&["classify", s(&model), s(&image), "--top", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], s(&image));
    for (rank, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], (rank + 1).to_string());
        assert!(fields[1].ends_with('%'));
        assert!(["a", "b", "c", "d"].contains(&fields[3]), "{line}");
    }
    // Columns line up: every probability ends at the same position.
    let ends: Vec<usize> = lines[1..].iter().map(|l| l.find('%').expect("%")).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
    assert!(stderr(&out).contains("images/s"), "{}", stderr(&out));
}

#[test]
fn classify_json_has_exactly_the_documented_schema() {
    let ws = Workspace::new("json");
    let model = ws.model();
    let dir = ws.path("photos");
    std::fs::create_dir_all(dir.join("nested")).expect("dirs");
    gradient(20, 20).save(dir.join("one.jpg")).expect("jpeg");
    gradient(13, 17)
        .save(dir.join("nested/two.bmp"))
        .expect("bmp");
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(9, 11, |x, _| Luma([(x * 20) as u8])))
        .save(dir.join("grey.png"))
        .expect("grey");
    DynamicImage::ImageRgba8(ImageBuffer::from_fn(16, 12, |x, y| {
        Rgba([x as u8 * 9, y as u8 * 9, 40, 128])
    }))
    .save(dir.join("alpha.png"))
    .expect("rgba");
    DynamicImage::ImageRgb16(ImageBuffer::from_fn(15, 15, |x, y| {
        Rgb([x as u16 * 4000, y as u16 * 4000, 100])
    }))
    .save(dir.join("deep.png"))
    .expect("16-bit");
    gradient(14, 14).save(dir.join("still.gif")).expect("gif");
    gradient(14, 14).save(dir.join("scan.tiff")).expect("tiff");
    gradient(14, 14).save(dir.join("web.webp")).expect("webp");
    std::fs::write(dir.join("notes.txt"), "not an image").expect("txt");
    let out = ws.run(&[
        "classify",
        s(&model),
        s(&dir),
        "--json",
        "--batch",
        "3",
        "--top",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let entries = doc.as_array().expect("array");
    assert_eq!(
        entries.len(),
        8,
        "every image, the text file skipped: {doc}"
    );
    for entry in entries {
        let object = entry.as_object().expect("object");
        assert_eq!(object.keys().collect::<Vec<_>>(), ["image", "top"]);
        assert!(object["image"].as_str().is_some());
        let top = object["top"].as_array().expect("top");
        assert_eq!(top.len(), 2);
        let mut last = f64::INFINITY;
        for class in top {
            let c = class.as_object().expect("class");
            assert_eq!(c.keys().collect::<Vec<_>>(), ["index", "label", "prob"]);
            let prob = c["prob"].as_f64().expect("prob");
            assert!((0.0..=1.0).contains(&prob) && prob <= last);
            last = prob;
            assert!(c["index"].as_u64().expect("index") < 4);
        }
    }
    // Same images, batch 1: same answers.
    let single = ws.run(&["classify", s(&model), s(&dir), "--json", "--top", "2"]);
    let again: Value = serde_json::from_slice(&single.stdout).expect("JSON");
    for (a, b) in entries.iter().zip(again.as_array().expect("array")) {
        assert_eq!(a["image"], b["image"]);
        assert_eq!(a["top"][0]["index"], b["top"][0]["index"]);
        let (pa, pb) = (
            a["top"][0]["prob"].as_f64().unwrap_or(0.0),
            b["top"][0]["prob"].as_f64().unwrap_or(1.0),
        );
        assert!((pa - pb).abs() < 1e-5);
    }
}

#[test]
fn every_failure_is_one_clear_line_and_a_non_zero_status() {
    let ws = Workspace::new("failures");
    let model = ws.model();
    let image = ws.path("ok.png");
    gradient(12, 12).save(&image).expect("png");

    let missing = ws.path("missing.safetensors");
    assert_fails_with(
        &ws.run(&["classify", s(&missing), s(&image)]),
        "missing.safetensors",
    );

    let junk = ws.path("junk.safetensors");
    std::fs::write(&junk, b"definitely not a model").expect("write");
    assert_fails_with(&ws.run(&["info", s(&junk)]), "not a safetensors file");

    let mut future = small_classifier();
    future.metadata.insert("format_version".into(), "7".into());
    let future_path = ws.path("future.safetensors");
    std::fs::write(&future_path, future.bytes()).expect("write");
    assert_fails_with(&ws.run(&["info", s(&future_path)]), "format version 7");

    let broken = ws.path("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n garbage").expect("write");
    assert_fails_with(&ws.run(&["classify", s(&model), s(&broken)]), "broken.png");

    let empty = ws.path("empty.jpg");
    std::fs::write(&empty, b"").expect("write");
    assert_fails_with(&ws.run(&["classify", s(&model), s(&empty)]), "empty");

    assert_fails_with(
        &ws.run(&["classify", s(&model), s(&ws.path("nowhere.png"))]),
        "nowhere.png",
    );
    assert_fails_with(
        &ws.run(&["--backend", "metal", "devices"]),
        "no GPU adapter",
    );
    assert_fails_with(
        &ws.run(&["--backend", "metal", "bench", s(&model)]),
        "no GPU adapter",
    );
    assert_fails_with(
        &ws.run(&["--backend", "cuda", "info", s(&model)]),
        "unknown GPU backend 'cuda'",
    );
    assert_fails_with(
        &ws.run(&["--input-stage", "sometimes", "info", s(&model)]),
        "unknown input stage 'sometimes'",
    );
    assert_fails_with(
        &ws.run(&[
            "plot",
            s(&model),
            "--site",
            "nope",
            "--out",
            s(&ws.path("p")),
        ]),
        "no PWLU site named 'nope'",
    );

    // One bad image among good ones: the good ones are still classified, the status still fails.
    let dir = ws.path("mixed");
    std::fs::create_dir_all(&dir).expect("dir");
    gradient(12, 12).save(dir.join("good.png")).expect("png");
    std::fs::write(dir.join("bad.png"), b"nope").expect("write");
    let out = ws.run(&["classify", s(&model), s(&dir), "--json"]);
    assert!(!out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON for the good image");
    assert_eq!(doc.as_array().map(Vec::len), Some(1));
    assert!(stderr(&out).contains("bad.png"));

    // Usage errors come from the argument parser, with status 2.
    let out = ws.run(&["classify"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_reads_and_writes_npy_and_matches_the_library() {
    use npyz::WriterBuilder;

    let ws = Workspace::new("npy");
    let model_path = ws.model();
    let mut rng = common::rng(50);
    let input = common::random_tensor(&mut rng, pwlu::Shape::new(2, 3, 10, 9));
    let in_path = ws.path("in.npy");
    {
        let file = std::fs::File::create(&in_path).expect("create");
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3, 10, 9])
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .expect("npy writer");
        writer.extend(input.data().iter().copied()).expect("write");
        writer.finish().expect("finish");
    }
    // The same bits from the CLI and the library, on the first GPU under test (if any) and on the CPU backend.
    let gpu = gpu_backend();
    let mut devices: Vec<(Vec<&str>, pwlu::Device)> = common::contexts()
        .into_iter()
        .take(1)
        .map(|context| (vec!["--backend", gpu.as_str()], context.into()))
        .collect();
    devices.push((
        vec!["--backend", "cpu", "--threads", "2"],
        common::cpu_device(2),
    ));
    let out_path = ws.path("out.npy");
    for (options, device) in devices {
        let mut args = options.clone();
        args.extend([
            "run",
            s(&model_path),
            "--input",
            s(&in_path),
            "--output",
            s(&out_path),
        ]);
        let out = ws.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let npy = npyz::NpyFile::new(std::fs::File::open(&out_path).expect("open")).expect("npy");
        assert_eq!(npy.shape(), &[2, 4]);
        let got: Vec<f32> = npy.into_vec().expect("f32");
        let model = pwlu::Model::load(device, &model_path).expect("model");
        let expected = model.run_blocking(&input).expect("run");
        assert_eq!(
            got,
            expected.data(),
            "the CLI ({options:?}) and the library compute the same bits"
        );
    }

    std::fs::write(ws.path("bad.npy"), b"\x93NUMPY junk").expect("write");
    assert_fails_with(
        &ws.run(&[
            "run",
            s(&model_path),
            "--input",
            s(&ws.path("bad.npy")),
            "--output",
            s(&out_path),
        ]),
        "bad.npy",
    );
    let wrong = ws.path("wrong.npy");
    {
        let file = std::fs::File::create(&wrong).expect("create");
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[1, 3, 4, 4])
            .writer(file)
            .begin_nd()
            .expect("writer");
        writer.extend(vec![0.0f32; 48]).expect("write");
        writer.finish().expect("finish");
    }
    assert_fails_with(
        &ws.run(&[
            "run",
            s(&model_path),
            "--input",
            s(&wrong),
            "--output",
            s(&out_path),
        ]),
        "expected",
    );
}

#[test]
fn info_describes_layers_and_pwlu_sites() {
    let ws = Workspace::new("info");
    let model = ws.model();
    let out = ws.run(&["info", s(&model), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["input"], serde_json::json!([3, 10, 9]));
    assert_eq!(doc["classes"], 4);
    assert_eq!(doc["nodes_in_file"], 11);
    assert_eq!(doc["dispatches"], 5);
    let expected_flops = 2 * (6 * 3 * 9 + 6 * 6 * 9) * 90 + 2 * 6 * 4;
    assert_eq!(doc["flops"], expected_flops);
    let sites = doc["pwlu"].as_array().expect("sites");
    let names: Vec<&str> = sites.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["p1", "p2"]);
    assert_eq!(sites[0]["intervals"], 8);
    assert_eq!(sites[0]["granularity"], "channel");
    assert_eq!(sites[0]["bounds"], serde_json::json!([-2.0, 2.0]));

    let text = ws.run(&["info", s(&model)]);
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(
        text.contains("PWLU sites   2") && text.contains("p2"),
        "{text}"
    );
}

#[test]
fn plots_are_valid_svg_and_png_that_show_curves() {
    let ws = Workspace::new("plot");
    let model = ws.model();
    let out_dir = ws.path("plots");
    let out = ws.run(&["plot", s(&model), "--out", s(&out_dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    for site in ["p1", "p2"] {
        let svg = std::fs::read_to_string(out_dir.join(format!("{site}.svg"))).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{site}: SVG document"
        );
        assert!(
            svg.matches("<polyline").count() > 6,
            "{site}: a curve per channel and ReLU"
        );
        assert!(svg.contains(site), "{site}: titled");
        assert!(
            svg.matches("<circle").count() >= 6 * 9,
            "{site}: the 9 points of each of the 6 units are marked"
        );
        let png = image::open(out_dir.join(format!("{site}.png")))
            .expect("PNG decodes")
            .to_rgb8();
        assert_eq!(png.dimensions(), (900, 640));
        let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
        assert!(
            colours.len() > 20,
            "{site}: curves in colour, not a blank image"
        );
    }
    let out = ws.run(&[
        "plot",
        s(&model),
        "--site",
        "p2",
        "--small-multiples",
        "--out",
        s(&ws.path("grid")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ws.path("grid/p2.png").exists() && !ws.path("grid/p1.png").exists());
}

#[test]
fn devices_lists_the_adapters_and_says_where_models_run() {
    let ws = Workspace::new("devices");
    let out = ws.run(&["devices", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let first = &doc["adapters"].as_array().expect("adapters")[0];
    assert!(first["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(first["limits"]["max_storage_buffer_binding_size"]
        .as_u64()
        .is_some());
    // The machines the tests run on have software adapters only, so `auto` picks the CPU backend, and says why.
    let chosen = &doc["models_run_on"];
    if first["device_type"] == "Cpu" {
        assert_eq!(chosen["backend"], "cpu", "{doc}");
        assert!(
            chosen["reason"]
                .as_str()
                .is_some_and(|r| r.contains("software renderer")),
            "{doc}"
        );
    }
    let out = ws.run(&["--backend", "cpu", "devices", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["models_run_on"]["backend"], "cpu");
    assert_eq!(doc["models_run_on"]["reason"], "asked for (backend cpu)");
    let gpu = gpu_backend();
    let out = ws.run(&["--backend", &gpu, "devices", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["models_run_on"]["backend"], "gpu", "{doc}");

    let out = ws.run(&["devices"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("models run on: "), "{text}");
}

#[test]
fn bench_versus_alternates_two_models_and_reports_the_per_round_ratio() {
    let ws = Workspace::new("bench-versus");
    let model = ws.model();
    let other = ws.path("other.safetensors");
    let mut parts = small_classifier();
    parts.metadata.insert("name".into(), "other".into());
    std::fs::write(&other, parts.bytes()).expect("write model");
    let out = ws.run(&[
        "bench",
        s(&model),
        "--versus",
        s(&other),
        "--runs",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let versus = &doc["versus"];
    assert_eq!(versus["model"], "other");
    assert_eq!(versus["rounds"], 4);
    assert!(versus["median_ms"].as_f64().expect("median") > 0.0);
    let quartiles = [
        "ratio_lower_quartile",
        "ratio_median",
        "ratio_upper_quartile",
    ]
    .map(|key| versus[key].as_f64().expect("ratio"));
    assert!(0.0 < quartiles[0] && quartiles[0] <= quartiles[1] && quartiles[1] <= quartiles[2]);

    // Text output names both models.
    let out = ws.run(&["bench", s(&model), "--versus", s(&other), "--runs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("small / other per round"), "{text}");

    // Without --versus there is no comparison.
    let out = ws.run(&["bench", s(&model), "--runs", "1", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(doc["versus"].is_null());
}

#[test]
fn bench_versus_refuses_models_with_different_inputs() {
    let ws = Workspace::new("bench-versus-shape");
    let model = ws.model();
    let other = ws.path("wider.safetensors");
    let mut parts = small_classifier();
    parts.graph["inputs"][0]["shape"] = serde_json::json!([1, 3, 12, 11]);
    std::fs::write(&other, parts.bytes()).expect("write model");
    let out = ws.run(&["bench", s(&model), "--versus", s(&other), "--runs", "1"]);
    assert_fails_with(&out, "same input");
}

#[test]
fn bench_reports_latency_throughput_memory_and_layers() {
    let ws = Workspace::new("bench");
    let model = ws.model();
    let gpu = gpu_backend();
    let out = ws.run(&[
        "--backend",
        &gpu,
        "bench",
        s(&model),
        "--batch",
        "2",
        "--runs",
        "3",
        "--layers",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["backend"], "gpu");
    assert_eq!(doc["batch"], 2);
    let (min, median, max) = (
        doc["min_ms"].as_f64().expect("min"),
        doc["median_ms"].as_f64().expect("median"),
        doc["max_ms"].as_f64().expect("max"),
    );
    assert!(0.0 < min && min <= median && median <= max);
    assert!(doc["gflop_per_second"].as_f64().expect("rate") > 0.0);
    assert_eq!(doc["dispatches"], 5);
    // Batch 2 compiles its own specialisations on top of batch 1's (built at load).
    let at_batch_2 = doc["pipelines_compiled"].as_u64().expect("pipelines");
    let out = ws.run(&[
        "--backend",
        &gpu,
        "bench",
        s(&model),
        "--runs",
        "1",
        "--json",
    ]);
    let at_batch_1: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let at_batch_1 = at_batch_1["pipelines_compiled"]
        .as_u64()
        .expect("pipelines");
    assert!(
        1 <= at_batch_1 && at_batch_1 < at_batch_2,
        "{at_batch_1}, {at_batch_2}"
    );
    assert_eq!(doc["layers"].as_array().map(Vec::len), Some(5));
    let reused = doc["activation_bytes"].as_u64().expect("bytes");
    let unshared = doc["activation_bytes_without_reuse"]
        .as_u64()
        .expect("bytes");
    assert!(0 < reused && reused <= unshared, "reuse never costs memory");

    // The input path is reported, and reading inputs from their buffers needs no stage.
    for (choice, staged) in [("always", true), ("never", false)] {
        let out = ws.run(&[
            "--backend",
            &gpu,
            "--input-stage",
            choice,
            "bench",
            s(&model),
            "--runs",
            "1",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(doc["inputs_staged"], staged, "--input-stage {choice}");
        assert_eq!(
            doc["input_stage_bytes"].as_u64().expect("stage bytes") > 0,
            staged,
            "--input-stage {choice}"
        );
    }
}

#[test]
fn bench_on_the_cpu_backend_reports_its_kernels_memory_and_a_gemm_yardstick() {
    let ws = Workspace::new("bench-cpu");
    let model = ws.model();
    let out = ws.run(&[
        "--backend",
        "cpu",
        "--threads",
        "2",
        "bench",
        s(&model),
        "--batch",
        "3",
        "--runs",
        "3",
        "--layers",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["backend"], "cpu");
    assert_eq!(doc["backend_reason"], "asked for (backend cpu)");
    assert_eq!(doc["batch"], 3);
    assert_eq!(doc["dispatches"], 5);
    assert!(doc["pipelines_compiled"].is_null() && doc["inputs_staged"].is_null());
    assert_eq!(doc["layers"].as_array().map(Vec::len), Some(5));
    assert!(doc["gflop_per_second"].as_f64().expect("rate") > 0.0);
    assert!(doc["best_gemm_gflop_per_second"].as_f64().expect("gemm") > 0.0);
    assert!(doc["weight_bytes"].as_u64().expect("weights") > 0);

    // The same classification on both backends.
    let image = ws.path("g.png");
    gradient(10, 9).save(&image).expect("save");
    let top = |backend: &str| -> Value {
        let out = ws.run(&[
            "--backend",
            backend,
            "classify",
            s(&model),
            s(&image),
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let (on_cpu, on_gpu) = (top("cpu"), top(&gpu_backend()));
    let probabilities = |doc: &Value| -> Vec<f64> {
        let mut by_class = vec![f64::NAN; 4];
        for class in doc[0]["top"].as_array().expect("top") {
            let index = class["index"].as_u64().expect("index") as usize;
            by_class[index] = class["prob"].as_f64().expect("prob");
        }
        by_class
    };
    let (cpu, gpu) = (probabilities(&on_cpu), probabilities(&on_gpu));
    assert!(
        cpu.iter().zip(&gpu).all(|(a, b)| (a - b).abs() < 1e-4),
        "{on_cpu} / {on_gpu}"
    );

    let out = ws.run(&["--threads", "0", "--backend", "cpu", "bench", s(&model)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("0 is not in 1..=1024"),
        "{}",
        stderr(&out)
    );

    // --simd caps the kernels' instruction set (never above what the CPU has) and says so; so does
    // --no-winograd, which computes every convolution directly.
    let device_with = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend([
            "--backend",
            "cpu",
            "bench",
            s(&model),
            "--runs",
            "1",
            "--json",
        ]);
        let out = ws.run(&args);
        assert!(out.status.success(), "{flags:?}: {}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        doc["adapter"].as_str().expect("adapter").to_string()
    };
    let baseline = device_with(&["--simd", "baseline"]);
    assert!(
        ["SSE2", "NEON", "scalar"]
            .iter()
            .any(|name| baseline.ends_with(&format!("{name})"))),
        "{baseline}"
    );
    let avx2 = device_with(&["--simd", "AVX2"]);
    assert!(!avx2.contains("AVX-512"), "{avx2}");
    let direct = device_with(&["--no-winograd"]);
    assert!(direct.ends_with(", no Winograd)"), "{direct}");
    let out = ws.run(&["--simd", "avx9", "--backend", "cpu", "bench", s(&model)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("unknown instruction set 'avx9' (expected one of: avx512, avx2, baseline)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn commands_print_no_probe_noise_without_a_runtime_dir() {
    // Containers, ssh sessions and CI have no XDG_RUNTIME_DIR; graphics libraries must not say so on stderr.
    let ws = Workspace::new("quiet");
    let model = ws.model();
    let image = ws.path("tiny.png");
    DynamicImage::new_rgb8(12, 12)
        .save(&image)
        .expect("write image");
    let quiet = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pwlu"))
            .args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NODEVICE_SELECT")
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    for args in [
        vec!["info", s(&model)],
        vec!["devices"],
        vec!["classify", s(&model), s(&image), "--json"],
    ] {
        let err = stderr(&quiet(&args));
        assert!(
            !err.contains("XDG_RUNTIME_DIR") && !err.contains("error"),
            "{args:?} printed: {err}"
        );
    }
}

#[test]
fn info_and_plot_need_no_gpu() {
    // A backend that cannot exist here: a command that started a GPU would fail.
    let ws = Workspace::new("nogpu");
    let model = ws.model();
    let impossible = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let out = ws.run(&["info", s(&model), "--backend", impossible]);
    assert!(out.status.success(), "info: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kernels per run"));
    let plots = ws.path("plots");
    let out = ws.run(&[
        "plot",
        s(&model),
        "--out",
        s(&plots),
        "--backend",
        impossible,
    ]);
    assert!(out.status.success(), "plot: {}", stderr(&out));
    // And a command that does need one says so.
    let out = ws.run(&[
        "run",
        s(&model),
        "--input",
        "x.npy",
        "--output",
        "y.npy",
        "--backend",
        impossible,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no GPU adapter"), "{}", stderr(&out));
}

#[test]
fn plots_of_non_uniform_units_mark_their_learned_breakpoints() {
    let ws = Workspace::new("plot-non-uniform");
    let mut parts = small_classifier();
    // p1 becomes a non-uniform unit whose breakpoints crowd near 0.
    parts.node("p1")["op"] = serde_json::json!("pwlu_non_uniform");
    parts.node("p1")["params"] = serde_json::json!({"points": "p1.points",
        "breakpoints": "p1.breakpoints", "slopes": "p1.slopes"});
    parts.tensors.retain(|t| t.0 != "p1.bounds");
    let breakpoints: Vec<f32> = (0..6)
        .flat_map(|_| [-2.0, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 2.0])
        .collect();
    parts
        .tensors
        .push(("p1.breakpoints".into(), vec![6, 9], breakpoints));
    let model = ws.path("non_uniform.safetensors");
    std::fs::write(&model, parts.bytes()).expect("write model");
    let out_dir = ws.path("plots");
    let out = ws.run(&["plot", s(&model), "--site", "p1", "--out", s(&out_dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(out_dir.join("p1.svg")).expect("svg");
    assert!(svg.contains("non-uniform"), "the title says which grid");
    // A marker at each of the 6 x 9 breakpoints: their centres' x coordinates bunch where the breakpoints do.
    let centres: Vec<f64> = svg
        .match_indices("<circle")
        .filter_map(|(at, _)| {
            let rest = &svg[at..];
            let cx = rest.find("cx=\"")? + 4;
            rest[cx..].split('"').next()?.parse().ok()
        })
        .collect();
    assert!(centres.len() >= 54, "{} markers", centres.len());
    let mut distinct = centres.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup_by(|a, b| (*a - *b).abs() < 0.5);
    assert!(
        distinct.len() >= 9,
        "{} distinct marker columns",
        distinct.len()
    );
}
