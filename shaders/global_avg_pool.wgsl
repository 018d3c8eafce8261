// Mean over height and width of an NHWC4 tensor: [N, H, W, C4] -> [N, 1, 1, C4].
// CPU twin: `global_avg_pool` in src/cpu/pool.rs. Launcher: src/gpu/kernels/pool.rs.
//
// One workgroup per (image, channel vec4): 64 strided partial sums, so that large feature maps
// (squeeze-and-excitation on 112 x 112) are spread over 64 invocations, then one barrier and their sum.
// The sizes are a uniform, so that every pooling of a model shares one pipeline (EfficientNet-B0 pools 17
// shapes; see shared/conv_shape.wgsl for why pipelines count).

#include "shared/common.wgsl"
#include "shared/staged_input.wgsl"

struct PoolSizes {
    batch: u32,
    // Pixels per image (H * W).
    pixels: u32,
    c4: u32,
}

const WORKGROUP_SIZE: u32 = 64u;

// The input is at binding 0, a texture (shared/staged_input.wgsl). The output is bound read_write: a plan keeps
// all activations in one arena buffer, and WebGPU forbids binding one buffer both read-only and writable in
// the same dispatch.
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> sizes: PoolSizes;

var<workgroup> partial: array<vec4<f32>, WORKGROUP_SIZE>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Uniform across the workgroup, so the early return keeps the barriers in uniform control flow.
    let slot = workgroup.y * workgroups.x + workgroup.x;
    let pixels = sizes.pixels;
    let c4s = sizes.c4;
    if (slot >= sizes.batch * c4s) {
        return;
    }
    let n = slot / c4s;
    let c4 = slot % c4s;
    var sum = vec4<f32>(0.0);
    var index = (n * pixels + local) * c4s + c4;
    let step = WORKGROUP_SIZE * c4s;
    for (var p = local; p < pixels; p += WORKGROUP_SIZE) {
        sum += load_input(index);
        index += step;
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
        output[slot] = total / f32(pixels);
    }
}
