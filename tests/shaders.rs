//! Every WGSL kernel parses and validates under WebGPU's rules, matches the bindings its launcher declares,
//! stays within WebGPU's default limits, and translates to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL
//! (GL), so the shaders are known to compile for backends that cannot run here.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use pwlu::gpu::shaders::{self, Access, Shader};

/// WebGPU's guaranteed limits.
const MAX_INVOCATIONS_PER_WORKGROUP: u32 = 256;
const MAX_WORKGROUP_STORAGE_BYTES: u32 = 16 * 1024;
const MAX_STORAGE_BUFFERS_PER_STAGE: usize = 8;

fn parse(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.compose();
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{}:\n{}", shader.label(), e.emit_to_string(&source)));
    // No optional capabilities: what validates here is valid in every browser.
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}:\n{}", shader.label(), e.emit_to_string(&source)));
    (module, info)
}

/// The module with every override at its default value, as backends need.
fn specialise(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
) -> (naga::Module, naga::valid::ModuleInfo) {
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((naga::ShaderStage::Compute, "main")),
        &Default::default(),
    )
    .expect("overrides resolve with their defaults");
    (module.into_owned(), info.into_owned())
}

#[test]
fn every_kernel_validates_with_webgpu_capabilities() {
    for shader in &shaders::variants() {
        parse(shader);
    }
}

#[test]
fn declared_bindings_match_the_shaders() {
    for shader in &shaders::variants() {
        let (module, _) = parse(shader);
        let mut found: Vec<(u32, Access)> = module
            .global_variables
            .iter()
            .filter_map(|(_, var)| {
                let binding = var.binding.as_ref()?;
                assert_eq!(
                    binding.group, 0,
                    "{}: everything is bound in group 0",
                    shader.name
                );
                let access = match var.space {
                    naga::AddressSpace::Storage { access }
                        if access.contains(naga::StorageAccess::STORE) =>
                    {
                        Access::ReadWrite
                    }
                    naga::AddressSpace::Storage { .. } => Access::Read,
                    naga::AddressSpace::Uniform => Access::Uniform,
                    naga::AddressSpace::Handle => match module.types[var.ty].inner {
                        naga::TypeInner::Image {
                            dim: naga::ImageDimension::D2,
                            arrayed: false,
                            class:
                                naga::ImageClass::Sampled {
                                    kind: naga::ScalarKind::Float,
                                    multi: false,
                                },
                        } => Access::Table,
                        naga::TypeInner::Sampler { comparison: false } => Access::Sampler,
                        ref other => panic!("{}: unexpected handle type {other:?}", shader.name),
                    },
                    other => panic!("{}: unexpected address space {other:?}", shader.name),
                };
                Some((binding.binding, access))
            })
            .collect();
        found.sort_by_key(|&(b, _)| b);
        assert_eq!(found, shader.bindings(), "{}: bindings", shader.label());
        assert!(
            found
                .iter()
                .filter(|(_, access)| matches!(access, Access::Read | Access::ReadWrite))
                .count()
                <= MAX_STORAGE_BUFFERS_PER_STAGE,
            "{}: too many storage buffers",
            shader.name
        );
    }
}

#[test]
fn kernels_stay_within_webgpu_default_limits() {
    for shader in &shaders::variants() {
        let (module, info) = parse(shader);
        let (module, _) = specialise(&module, &info);
        let entry = module
            .entry_points
            .iter()
            .find(|e| e.name == "main")
            .unwrap_or_else(|| panic!("{}: no entry point main", shader.name));
        assert_eq!(entry.stage, naga::ShaderStage::Compute);
        let [x, y, z] = entry.workgroup_size;
        assert_eq!(
            [x, y, z],
            [shader.workgroup_size, 1, 1],
            "{}: workgroup size",
            shader.name
        );
        assert!(x * y * z <= MAX_INVOCATIONS_PER_WORKGROUP);
        let layouter = {
            let mut l = naga::proc::Layouter::default();
            l.update(module.to_ctx()).expect("layout");
            l
        };
        let workgroup_bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum();
        assert!(
            workgroup_bytes <= MAX_WORKGROUP_STORAGE_BYTES,
            "{}: {workgroup_bytes} bytes of workgroup memory",
            shader.name
        );
    }
}

#[test]
fn kernels_translate_to_spirv() {
    for shader in &shaders::variants() {
        let (module, info) = parse(shader);
        let (module, info) = specialise(&module, &info);
        naga::back::spv::write_vec(&module, &info, &Default::default(), None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", shader.label()));
    }
}

#[test]
fn kernels_translate_to_msl() {
    for shader in &shaders::variants() {
        let (module, info) = parse(shader);
        let (module, info) = specialise(&module, &info);
        let pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, "main".into())),
            ..Default::default()
        };
        naga::back::msl::write_string(&module, &info, &Default::default(), &pipeline)
            .unwrap_or_else(|e| panic!("{}: MSL: {e}", shader.label()));
    }
}

#[test]
fn kernels_translate_to_hlsl() {
    for shader in &shaders::variants() {
        let (module, info) = parse(shader);
        let (module, info) = specialise(&module, &info);
        let options = naga::back::hlsl::Options::default();
        let pipeline = naga::back::hlsl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, "main".into())),
        };
        let mut out = String::new();
        naga::back::hlsl::Writer::new(&mut out, &options, &pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{}: HLSL: {e}", shader.label()));
        assert!(
            out.contains("numthreads"),
            "{}: HLSL has no compute entry point",
            shader.name
        );
    }
}

#[test]
fn kernels_translate_to_glsl() {
    for shader in &shaders::variants() {
        let (module, info) = parse(shader);
        let (module, info) = specialise(&module, &info);
        let options = naga::back::glsl::Options {
            version: naga::back::glsl::Version::Embedded {
                version: 310,
                is_webgl: false,
            },
            ..Default::default()
        };
        let pipeline = naga::back::glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
            multiview: None,
        };
        let mut out = String::new();
        naga::back::glsl::Writer::new(
            &mut out,
            &module,
            &info,
            &options,
            &pipeline,
            Default::default(),
        )
        .and_then(|mut w| w.write())
        .unwrap_or_else(|e| panic!("{}: GLSL: {e}", shader.label()));
    }
}

#[test]
fn includes_are_all_resolved() {
    for shader in &shaders::variants() {
        assert!(
            !shader.compose().contains("#include"),
            "{}: unresolved include",
            shader.name
        );
    }
}

#[test]
fn conv_shape_has_the_same_layout_in_rust_and_wgsl() {
    use pwlu::gpu::kernels::ConvShape;
    for shader in [shaders::CONV2D, shaders::CONV2D_DEPTHWISE] {
        let (module, _) = parse(&shader);
        let (members, span) = module
            .types
            .iter()
            .find_map(|(_, ty)| match (&ty.name, &ty.inner) {
                (Some(name), naga::TypeInner::Struct { members, span }) if name == "ConvShape" => {
                    Some((members.clone(), *span))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{} declares no ConvShape", shader.label()));
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
            .collect();
        let rust: Vec<(String, usize)> = ConvShape::FIELDS
            .iter()
            .map(|&(name, offset)| (name.to_string(), offset))
            .collect();
        assert_eq!(wgsl, rust, "{}: ConvShape fields differ", shader.label());
        assert_eq!(span as usize, std::mem::size_of::<ConvShape>());
    }
}
