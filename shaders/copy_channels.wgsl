// One operand of a concatenation along the channels: an NHWC4 tensor written into channels
// [offset, offset + in_c) of every pixel of the NHWC4 output. Lowering binds one such copy per operand, in
// order. An invocation owns one output vec4 that the range touches and rewrites it whole: lanes in the range
// from the input, lanes past the output's channels as 0 (its padding), the others as they were (another
// operand's, written by an earlier dispatch). Offsets need not be multiples of 4 (ShuffleNet's 58 + 58).
// CPU twin: `concat` in src/reference/channels.rs. Launcher: src/gpu/kernels/channels.rs.

#include "shared/common.wgsl"

// The sizes are a uniform, so that every copy of a model shares one pipeline (DenseNet-121 binds hundreds).
struct CopySizes {
    pixels: u32,
    in_channels: u32,
    in_c4: u32,
    out_channels: u32,
    out_c4: u32,
    offset: u32,
    // The first output vec4 the range touches, and how many it touches.
    first_c4: u32,
    span_c4: u32,
}

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> sizes: CopySizes;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= sizes.pixels * sizes.span_c4) {
        return;
    }
    let pixel = id / sizes.span_c4;
    let o4 = sizes.first_c4 + id % sizes.span_c4;
    let at = pixel * sizes.out_c4 + o4;
    var v = output[at];
    for (var lane = 0u; lane < 4u; lane++) {
        let c = o4 * 4u + lane;
        if (c >= sizes.offset && c < sizes.offset + sizes.in_channels) {
            let i = c - sizes.offset;
            v[lane] = input[pixel * sizes.in_c4 + i / 4u][i % 4u];
        } else if (c >= sizes.out_channels) {
            v[lane] = 0.0;
        }
    }
    output[at] = v;
}
