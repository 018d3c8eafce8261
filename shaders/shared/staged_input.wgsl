// The input of a kernel that reads it through a texture. CPU twin: none needed (a copy; see
// `StagedCopy` in src/gpu/dispatch.rs, which records it before the dispatch).
//
// The launcher binds the input tensor's NHWC4 texels copied, in order, into rows of STAGE_WIDTH texels of one
// rgba32float texture shared by all such dispatches. Why a copy and a texture rather than the storage buffer:
// SwiftShader (Chrome without a GPU) loads a vec4 from a storage buffer at per-invocation addresses as four
// gathers of four lanes, one bounds-checked scalar load each, but fetches a texel for four invocations with four
// 16-byte loads; lavapipe likewise gathers texels for a whole SIMD batch. The copy is a memcpy of the tensor.
// Whole models with the dense and depthwise convolutions reading this way, against reading the buffer:
// SwiftShader 0.82x the time (EfficientNet-Lite0), 0.68x (MobileNet-V2), 0.63x (ResNet-18); lavapipe 0.55x
// (Lite0).

// Needs shared/table.wgsl.

@group(0) @binding(0) var input: texture_2d<f32>;

// STAGE_WIDTH_LOG2 (generated from `STAGE_WIDTH` in src/gpu/textures.rs): 4096 texels per row.

// See `table_scale`; set by `begin_input`.
var<private> input_scale: vec2<f32>;

// Call first in the kernel, before any `load_input`.
fn begin_input() {
    input_scale = table_scale(textureDimensions(input));
}

fn load_input(index: u32) -> vec4<f32> {
    let texel = vec2<u32>(index & ((1u << STAGE_WIDTH_LOG2) - 1u), index >> STAGE_WIDTH_LOG2);
    return table_read(input, texel, input_scale);
}
