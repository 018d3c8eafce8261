// Softmax over the channels of each pixel of an NHWC4 tensor (PyTorch's softmax(dim=1)).
// CPU twin: `softmax` in src/reference/elementwise.rs. Launcher: src/gpu/kernels/elementwise.rs.
//
// One invocation per row: rows are few (one per image for a classifier) and short (1000 classes).

#include "shared/common.wgsl"

override ROWS: u32 = 1u;
override C4: u32 = 1u;
override CHANNELS: u32 = 4u;


// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (row >= ROWS) {
        return;
    }
    let base = row * C4;
    var peak = vec4<f32>(-FLT_MAX);
    for (var c4 = 0u; c4 < C4; c4++) {
        let lanes = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
        peak = max(peak, select(input[base + c4], vec4<f32>(-FLT_MAX), lanes >= vec4<u32>(CHANNELS)));
    }
    let m = max(max(peak.x, peak.y), max(peak.z, peak.w));
    var sum = vec4<f32>(0.0);
    for (var c4 = 0u; c4 < C4; c4++) {
        sum += zero_padding_lanes(exp(input[base + c4] - m), c4, CHANNELS);
    }
    let total = sum.x + sum.y + sum.z + sum.w;
    for (var c4 = 0u; c4 < C4; c4++) {
        output[base + c4] = zero_padding_lanes(exp(input[base + c4] - m) / total, c4, CHANNELS);
    }
}
