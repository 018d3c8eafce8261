//! The GPU runtime itself: backend selection, the error when there is no adapter, the limits it asks for, the
//! pipeline cache, and thread-safety of what an application shares.

mod common;

use std::sync::Arc;

use pwlu::gpu::kernels::UnaryKernel;
use pwlu::gpu::{Backend, GpuContext, GpuOptions, InputStage, INPUT_STAGE_ENV};
use pwlu::ops::Activation;
use pwlu::{Error, Shape};

#[test]
fn backend_names_parse_and_unknown_ones_are_errors() {
    for (name, backend) in [
        ("vulkan", Backend::Vulkan),
        ("VK", Backend::Vulkan),
        ("metal", Backend::Metal),
        ("dx12", Backend::Dx12),
        ("gl", Backend::Gl),
        ("webgpu", Backend::WebGpu),
        ("auto", Backend::Auto),
        ("", Backend::Auto),
    ] {
        assert_eq!(name.parse::<Backend>().ok(), Some(backend), "{name}");
    }
    assert!(matches!("cuda".parse::<Backend>(), Err(Error::UnknownBackend(s)) if s == "cuda"));
    assert_eq!(
        Backend::Gl.resolve().ok(),
        Some(Backend::Gl),
        "an explicit choice wins over the environment"
    );
}

#[test]
fn input_stage_choices_parse_and_follow_the_adapter_type_by_default() {
    for (name, choice) in [
        ("auto", InputStage::Auto),
        ("", InputStage::Auto),
        ("Always", InputStage::Always),
        ("on", InputStage::Always),
        ("never", InputStage::Never),
        ("off", InputStage::Never),
    ] {
        assert_eq!(name.parse::<InputStage>().ok(), Some(choice), "{name}");
    }
    assert!(
        matches!("sometimes".parse::<InputStage>(), Err(Error::UnknownInputStage(s)) if s == "sometimes")
    );
    for ctx in common::contexts_with(InputStage::Always) {
        assert!(ctx.stages_inputs(), "{}", ctx.adapter());
    }
    for ctx in common::contexts_with(InputStage::Never) {
        assert!(!ctx.stages_inputs(), "{}", ctx.adapter());
    }
    if std::env::var(INPUT_STAGE_ENV).is_err() {
        for ctx in common::contexts() {
            let gpu = matches!(
                ctx.adapter().device_type,
                wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
            );
            assert_eq!(ctx.stages_inputs(), !gpu, "{}", ctx.adapter());
        }
    }
}

#[test]
fn a_backend_without_an_adapter_is_a_clear_error() {
    // Neither exists on Linux; the error names the backend and says what to install or use.
    let missing = if cfg!(target_os = "macos") {
        Backend::Dx12
    } else {
        Backend::Metal
    };
    for backend in [missing, Backend::WebGpu] {
        let options = GpuOptions {
            backend,
            ..Default::default()
        };
        match GpuContext::new_blocking(&options) {
            Err(Error::NoAdapter {
                backend: name,
                hint,
            }) => {
                assert_eq!(name, backend.to_string());
                assert!(!hint.is_empty());
            }
            other => panic!("{backend}: expected NoAdapter, got {other:?}"),
        }
    }
    let options = GpuOptions {
        adapter_index: Some(999),
        ..Default::default()
    };
    assert!(matches!(
        GpuContext::new_blocking(&options),
        Err(Error::NoAdapter { .. })
    ));
}

#[test]
fn the_device_has_the_adapters_limits_at_least_webgpus() {
    for ctx in common::contexts() {
        // The adapter's limits, found independently of the context.
        let summary = ctx.adapter();
        let backend = match summary.backend {
            wgpu::Backend::Vulkan => Backend::Vulkan,
            wgpu::Backend::Gl => Backend::Gl,
            wgpu::Backend::Metal => Backend::Metal,
            wgpu::Backend::Dx12 => Backend::Dx12,
            other => panic!("no test for adapters of {other:?}"),
        };
        let adapters = pollster::block_on(pwlu::gpu::list_adapters(backend)).expect("adapters");
        let adapter = adapters
            .iter()
            .find(|a| a.get_info().name == summary.name)
            .unwrap_or_else(|| panic!("{summary} is not among the adapters"));
        let (device, adapter_limits) = (ctx.limits(), adapter.limits());
        println!(
            "{summary}: device {} invocations per workgroup, 2-D textures of {} texels, storage bindings \
             of {} bytes; the adapter offers {}, {}, {}",
            device.max_compute_invocations_per_workgroup,
            device.max_texture_dimension_2d,
            device.max_storage_buffer_binding_size,
            adapter_limits.max_compute_invocations_per_workgroup,
            adapter_limits.max_texture_dimension_2d,
            adapter_limits.max_storage_buffer_binding_size,
        );
        // The device was created with all of them, not with wgpu's defaults (lavapipe and llvmpipe offer 1024
        // invocations and 16384 texels, four times and twice the defaults).
        assert_eq!(
            device.max_compute_invocations_per_workgroup,
            adapter_limits.max_compute_invocations_per_workgroup
        );
        assert_eq!(
            device.max_texture_dimension_2d,
            adapter_limits.max_texture_dimension_2d
        );
        assert_eq!(
            device.max_storage_buffer_binding_size,
            adapter_limits.max_storage_buffer_binding_size
        );
        assert_eq!(device.max_buffer_size, adapter_limits.max_buffer_size);
        // And they are at least what WebGPU promises every adapter.
        let webgpu = wgpu::Limits::default();
        assert!(
            device.max_compute_invocations_per_workgroup
                >= webgpu.max_compute_invocations_per_workgroup
        );
        assert!(
            device.max_storage_buffers_per_shader_stage
                >= webgpu.max_storage_buffers_per_shader_stage
        );
        assert!(device.max_texture_dimension_2d >= webgpu.max_texture_dimension_2d);
    }
}

#[test]
fn pipelines_are_created_once_per_specialisation() {
    let ctx = &common::contexts()[0];
    let shape = Shape::new(1, 8, 4, 4);
    let before = ctx.pipeline_count();
    let _a = UnaryKernel::activation(ctx, &Activation::Relu, shape).expect("kernel");
    let after_first = ctx.pipeline_count();
    let _b = UnaryKernel::activation(ctx, &Activation::Relu, shape).expect("kernel");
    assert_eq!(
        ctx.pipeline_count(),
        after_first,
        "same shape and activation: cached"
    );
    let _c = UnaryKernel::activation(ctx, &Activation::Relu6, shape).expect("kernel");
    assert_eq!(ctx.pipeline_count(), after_first + 1);
    assert_eq!(after_first, before + 1);
}

#[test]
fn what_applications_share_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<GpuContext>();
    shareable::<pwlu::Model>();
    shareable::<Arc<pwlu::Model>>();
}

fn small_model_on(device: impl Into<pwlu::Device>) -> pwlu::Model {
    pwlu::Model::from_bytes(device, &common::model_file::small_model().bytes())
        .expect("the small model loads")
}

fn small_input() -> pwlu::Tensor {
    let data = common::random_vec(&mut common::rng(7), 3 * 10 * 9, 1.0);
    pwlu::Tensor::new(vec![1, 3, 10, 9], data).expect("input")
}

#[test]
fn warming_up_builds_nothing_new_and_changes_no_result() {
    for ctx in common::contexts() {
        let ctx = Arc::new(ctx);
        let cold = small_model_on(Arc::clone(&ctx));
        let expected = pollster::block_on(cold.run(&small_input())).expect("cold run");
        let warm = small_model_on(Arc::clone(&ctx));
        let pipelines = ctx.pipeline_count();
        pollster::block_on(warm.warm_up()).expect("warm-up");
        assert_eq!(
            ctx.pipeline_count(),
            pipelines,
            "the load built every pipeline"
        );
        let got = pollster::block_on(warm.run(&small_input())).expect("warm run");
        assert_eq!(
            got.data(),
            expected.data(),
            "the warm-up's zeros leave nothing behind"
        );
    }
}

#[test]
fn a_lost_device_is_an_error_and_a_new_context_recovers() {
    for ctx in common::contexts() {
        let ctx = Arc::new(ctx);
        let model = small_model_on(Arc::clone(&ctx));
        let input = small_input();
        let before = model.run_blocking(&input).expect("runs before the loss");

        ctx.device().destroy();
        let error = model
            .run_blocking(&input)
            .expect_err("a lost device cannot run");
        assert!(matches!(error, Error::DeviceLost(_)), "{error}");
        assert!(
            error.to_string().contains("create a new GPU context"),
            "{error}"
        );
        assert!(ctx.is_lost());
        // It stays an error, and never a panic.
        assert!(matches!(
            model.run_blocking(&input),
            Err(Error::DeviceLost(_))
        ));

        let options = GpuOptions {
            backend: ctx.adapter().backend.into(),
            ..Default::default()
        };
        let fresh = Arc::new(GpuContext::new_blocking(&options).expect("a new context"));
        let again = small_model_on(fresh)
            .run_blocking(&input)
            .expect("runs on the new context");
        assert_eq!(again.data(), before.data());
    }
}

#[test]
fn a_batch_too_large_for_the_device_is_refused_before_it_runs() {
    for ctx in common::contexts() {
        let ctx = Arc::new(ctx);
        let model = small_model_on(Arc::clone(&ctx));
        let limit = ctx.limits().max_storage_buffer_binding_size;
        // The first convolution's output is 8 padded channels x 10 x 9 floats per image.
        let batch = (limit / (8 * 10 * 9 * 4) + 1) as usize;
        let input =
            pwlu::Tensor::new(vec![batch, 3, 10, 9], vec![0.0; batch * 270]).expect("input");
        let error = model.run_blocking(&input).expect_err("too large");
        match &error {
            Error::ExceedsLimit { limit_name, .. } => {
                assert!(limit_name.starts_with("max_"), "{error}")
            }
            other => panic!("expected ExceedsLimit, got {other}"),
        }
        assert!(
            error
                .to_string()
                .contains("max_storage_buffer_binding_size"),
            "{error}"
        );
        // The model still runs at a batch that fits.
        model
            .run_blocking(&small_input())
            .expect("batch 1 still runs");
    }
}

#[test]
fn a_batch_over_the_cpu_memory_limit_is_refused_by_name_before_it_runs() {
    let options = pwlu::cpu::CpuOptions {
        threads: Some(2),
        memory_limit: 1 << 20,
        ..Default::default()
    };
    let ctx = pwlu::cpu::CpuContext::new(&options).expect("CPU backend");
    let model = pwlu::Model::from_bytes(ctx, &common::model_file::small_model().bytes())
        .expect("the small model loads");
    model.run_blocking(&small_input()).expect("batch 1 fits");
    // 8 channels x 10 x 9 floats per image for the first convolution alone: 2,000 images exceed 1 MiB.
    let batch = 2000;
    let input = pwlu::Tensor::new(vec![batch, 3, 10, 9], vec![0.0; batch * 270]).expect("input");
    let error = model.run_blocking(&input).expect_err("too large");
    assert!(
        matches!(&error, Error::ExceedsLimit { limit_name, .. } if limit_name.contains("memory_limit")),
        "{error}"
    );
    model
        .run_blocking(&small_input())
        .expect("batch 1 still runs");
}

#[test]
fn one_model_serves_several_threads_at_once() {
    for ctx in common::contexts() {
        several_threads_share(small_model_on(Arc::new(ctx)));
    }
}

/// On the CPU backend each run holds the pool's other workers until it ends (`CpuContext::hold_workers`):
/// runs from several threads at once on one pool must neither wait on one another forever nor mix data.
#[test]
fn one_model_on_the_cpu_backend_serves_several_threads_at_once() {
    for threads in [2, 3] {
        let options = pwlu::cpu::CpuOptions {
            threads: Some(threads),
            ..Default::default()
        };
        let ctx = pwlu::cpu::CpuContext::new(&options).expect("CPU backend");
        several_threads_share(small_model_on(Arc::new(ctx)));
    }
}

fn several_threads_share(model: pwlu::Model) {
    let model = Arc::new(model);
    let inputs: Vec<pwlu::Tensor> = (0..4)
        .map(|seed| {
            let data = common::random_vec(&mut common::rng(100 + seed), 3 * 10 * 9, 1.0);
            pwlu::Tensor::new(vec![1, 3, 10, 9], data).expect("input")
        })
        .collect();
    let expected: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| model.run_blocking(x).expect("run").into_data())
        .collect();
    std::thread::scope(|scope| {
        for (input, want) in inputs.iter().zip(&expected) {
            let model = Arc::clone(&model);
            scope.spawn(move || {
                for _ in 0..25 {
                    let got = model.run_blocking(input).expect("run on a thread");
                    assert_eq!(got.data(), &want[..], "a run saw another thread's data");
                }
            });
        }
    });
}
