// PyTorch's flatten(1) of an NHWC4 tensor: [N, C, H, W] -> [N, C * H * W] (stored as [N, 1, 1, F4]), with
// features in NCHW order (c * H * W + y * W + x).
// CPU twin: `flatten` in src/reference/elementwise.rs. Launcher: src/gpu/kernels/elementwise.rs.

#include "shared/common.wgsl"

override BATCH: u32 = 1u;
override IN_C4: u32 = 1u;
override PIXELS: u32 = 1u;
override FEATURES: u32 = 1u;
override OUT_C4: u32 = 1u;


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
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= BATCH * OUT_C4) {
        return;
    }
    let n = id / OUT_C4;
    let o4 = id % OUT_C4;
    var v = vec4<f32>(0.0);
    for (var lane = 0u; lane < 4u; lane++) {
        let f = o4 * 4u + lane;
        if (f < FEATURES) {
            let c = f / PIXELS;
            let p = f % PIXELS;
            v[lane] = input[(n * PIXELS + p) * IN_C4 + c / 4u][c % 4u];
        }
    }
    output[id] = v;
}
