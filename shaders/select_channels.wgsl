// Channels picked by index from an NHWC4 tensor: output[p][c] = input[p][indices[c]] (ShuffleNet's channel
// shuffle, a slice of channels).
// CPU twin: `select_channels` in src/reference/channels.rs. Launcher: src/gpu/kernels/channels.rs.

#include "shared/common.wgsl"

struct SelectSizes {
    // vec4s of the output.
    total: u32,
    in_c4: u32,
    out_channels: u32,
    out_c4: u32,
}

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
// One input channel per output channel.
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> sizes: SelectSizes;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= sizes.total) {
        return;
    }
    let pixel = id / sizes.out_c4;
    let o4 = id % sizes.out_c4;
    var v = vec4<f32>(0.0);
    for (var lane = 0u; lane < 4u; lane++) {
        let c = o4 * 4u + lane;
        if (c < sizes.out_channels) {
            let i = indices[c];
            v[lane] = input[pixel * sizes.in_c4 + i / 4u][i % 4u];
        }
    }
    output[id] = v;
}
