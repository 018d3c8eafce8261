// Mean over height and width of an NHWC4 tensor: [N, H, W, C4] -> [N, 1, 1, C4].
// CPU twin: `global_avg_pool` in src/reference/pool.rs. Launcher: src/gpu/kernels/pool.rs.
//
// Large feature maps (squeeze-and-excitation on 112 x 112): one workgroup per (image, channel vec4), 64 strided
// partial sums spread over its invocations, then one barrier and their sum. Small ones (SERIAL): one invocation
// per (image, channel vec4) sums them all, without a barrier. On the CPU-emulated adapters a workgroup with a
// barrier costs about 17 us whatever its work, which made EfficientNet-B0's 7 x 7 and 14 x 14 poolings a tenth
// of the model.
// The sizes are a uniform, so that every pooling of a model shares one pipeline (EfficientNet-B0 pools 17
// shapes; see shared/conv_shape.wgsl for why pipelines count).

#include "shared/common.wgsl"
#include "shared/table.wgsl"
#include "shared/staged_input.wgsl"

struct PoolSizes {
    batch: u32,
    // Pixels per image (H * W).
    pixels: u32,
    c4: u32,
}


// The input is at binding 0, a texture (shared/staged_input.wgsl). The output is bound read_write: a plan keeps
// all activations in one arena buffer, and WebGPU forbids binding one buffer both read-only and writable in
// the same dispatch.
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> sizes: PoolSizes;

// Sum each slot's pixels in one invocation (the host's choice for few pixels).
override SERIAL: bool = false;

var<workgroup> partial: array<vec4<f32>, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    begin_input();
    let pixels = sizes.pixels;
    let c4s = sizes.c4;
    if (SERIAL) {
        let slot = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
        if (slot < sizes.batch * c4s) {
            let n = slot / c4s;
            let c4 = slot % c4s;
            var sum = vec4<f32>(0.0);
            var index = n * pixels * c4s + c4;
            for (var p = 0u; p < pixels; p++) {
                sum += load_input(index);
                index += c4s;
            }
            output[slot] = sum / f32(pixels);
        }
        // Unconditional within the branch on a constant, so control flow stays uniform for the barrier below.
        return;
    }
    // Uniform across the workgroup, so the early return keeps the barriers in uniform control flow.
    let slot = workgroup.y * workgroups.x + workgroup.x;
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
