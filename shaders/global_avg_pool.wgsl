// Mean over height and width of an NHWC4 tensor: [N, H, W, C4] -> [N, 1, 1, C4].
// CPU twin: `global_avg_pool` in src/cpu/pool.rs. Launcher: src/gpu/kernels/pool.rs.
//
// One workgroup per (image, channel vec4): 64 strided partial sums, so that large feature maps
// (squeeze-and-excitation on 112 x 112) are spread over 64 invocations, then one barrier and their sum.

#include "shared/common.wgsl"

override BATCH: u32 = 1u;
override PIXELS: u32 = 1u;
override C4: u32 = 1u;

const WORKGROUP_SIZE: u32 = 64u;

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

var<workgroup> partial: array<vec4<f32>, WORKGROUP_SIZE>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Uniform across the workgroup, so the early return keeps the barriers in uniform control flow.
    let slot = workgroup.y * workgroups.x + workgroup.x;
    if (slot >= BATCH * C4) {
        return;
    }
    let n = slot / C4;
    let c4 = slot % C4;
    var sum = vec4<f32>(0.0);
    for (var p = local; p < PIXELS; p += WORKGROUP_SIZE) {
        sum += input[(n * PIXELS + p) * C4 + c4];
    }
    partial[local] = sum;
    workgroupBarrier();
    // One invocation adds the 64 partial sums: on the CPU-emulated adapters each barrier switches every
    // invocation of the workgroup, and a tree reduction's six more cost more than these 63 additions.
    if (local == 0u) {
        var total = partial[0];
        for (var i = 1u; i < WORKGROUP_SIZE; i++) {
            total += partial[i];
        }
        output[slot] = total / f32(PIXELS);
    }
}
