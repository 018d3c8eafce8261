//! The GPU runtime itself: backend selection, the error when there is no adapter, the limits it asks for, the
//! pipeline cache, and thread-safety of what an application shares.

mod common;

use std::sync::Arc;

use pwlu::gpu::kernels::UnaryKernel;
use pwlu::gpu::{Backend, GpuContext, GpuOptions};
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
        let limits = ctx.limits();
        let defaults = wgpu::Limits::default();
        assert!(limits.max_compute_invocations_per_workgroup >= 256);
        assert!(limits.max_storage_buffers_per_shader_stage >= 8);
        assert!(limits.max_storage_buffer_binding_size >= defaults.max_storage_buffer_binding_size);
        println!(
            "{}: max storage binding {} bytes",
            ctx.adapter(),
            limits.max_storage_buffer_binding_size
        );
        assert!(!ctx.adapter().name.is_empty());
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
