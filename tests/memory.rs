//! Memory stays flat over 10,000 inferences. Alone in its own test binary because it measures the whole
//! process's resident memory, which other tests running beside it would disturb.

mod common;

fn small_model_on(device: pwlu::Device) -> pwlu::Model {
    pwlu::Model::from_bytes(device, &common::model_file::small_model().bytes())
        .expect("the small model loads")
}

/// Resident memory of this process (Linux). Software adapters keep "GPU" memory in the process, so on lavapipe
/// and llvmpipe this also counts every GPU allocation.
#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[cfg(target_os = "linux")]
#[test]
fn ten_thousand_inferences_keep_memory_flat() {
    const RUNS: usize = 10_000;
    for device in common::devices() {
        let model = small_model_on(device);
        let data = common::random_vec(&mut common::rng(7), 3 * 10 * 9, 1.0);
        let input = pwlu::Tensor::new(vec![1, 3, 10, 9], data).expect("input");
        // Warm up: pipelines, the plan and the driver's pools reach their working size.
        for _ in 0..500 {
            model.run_blocking(&input).expect("run");
        }
        let start = resident_bytes();
        let mut samples = Vec::new();
        for i in 0..RUNS {
            model.run_blocking(&input).expect("run");
            if i % 1000 == 999 {
                samples.push(resident_bytes());
            }
        }
        println!(
            "resident every 1000 runs (MiB): {:?}",
            samples.iter().map(|b| b >> 20).collect::<Vec<_>>()
        );
        let growth = samples
            .iter()
            .max()
            .copied()
            .unwrap_or(start)
            .saturating_sub(start);
        println!(
            "{}: resident {:.1} MiB after warm-up, +{:.2} MiB at most over {RUNS} runs",
            model.device().describe(),
            start as f64 / (1 << 20) as f64,
            growth as f64 / (1 << 20) as f64
        );
        // A leak of one staging buffer or bind group per run would add several MiB here.
        assert!(
            growth < 4 << 20,
            "memory grew by {growth} bytes over {RUNS} runs"
        );
    }
}
