// Grouped 2-D convolution in general (any groups, channel multipliers), with the fused epilogue.
// CPU twin: src/reference/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// The fallback for groupings that neither conv2d.wgsl (groups = 1) nor conv2d_depthwise.wgsl covers: one
// invocation per output vec4, each lane its own group, scalar weights in PyTorch's [OC][IC/g][KH][KW] order.

#include "shared/common.wgsl"
#include "shared/channels.wgsl"
#include "shared/table.wgsl"
#include "shared/activation.wgsl"
#include "shared/epilogue.wgsl"

override BATCH: u32 = 1u;
override IN_H: u32 = 1u;
override IN_W: u32 = 1u;
override IN_C4: u32 = 1u;
override OUT_H: u32 = 1u;
override OUT_W: u32 = 1u;
override OUT_C4: u32 = 1u;
override IN_PER_GROUP: u32 = 1u;
override OUT_PER_GROUP: u32 = 1u;
override KERNEL_H: u32 = 1u;
override KERNEL_W: u32 = 1u;
override STRIDE_H: u32 = 1u;
override STRIDE_W: u32 = 1u;
override DILATION_H: u32 = 1u;
override DILATION_W: u32 = 1u;
override PAD_TOP: u32 = 0u;
override PAD_LEFT: u32 = 0u;


// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> residual: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

// What shared/epilogue.wgsl reads a residual that is the input through.
fn load_input(index: u32) -> vec4<f32> {
    return input[index];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= BATCH * OUT_H * OUT_W * OUT_C4) {
        return;
    }
    let oc4 = id % OUT_C4;
    let m = id / OUT_C4;
    let n = m / (OUT_H * OUT_W);
    let r = m % (OUT_H * OUT_W);
    let origin_y = i32((r / OUT_W) * STRIDE_H) - i32(PAD_TOP);
    let origin_x = i32((r % OUT_W) * STRIDE_W) - i32(PAD_LEFT);

    var acc = bias[oc4];
    for (var lane = 0u; lane < 4u; lane++) {
        // Padding lanes compute the last real channel again; the epilogue zeroes them.
        let oc = min(oc4 * 4u + lane, CHANNELS - 1u);
        let first_in = (oc / OUT_PER_GROUP) * IN_PER_GROUP;
        var sum = 0.0;
        for (var ky = 0u; ky < KERNEL_H; ky++) {
            let y = origin_y + i32(ky * DILATION_H);
            if (y < 0 || y >= i32(IN_H)) {
                continue;
            }
            for (var kx = 0u; kx < KERNEL_W; kx++) {
                let x = origin_x + i32(kx * DILATION_W);
                if (x < 0 || x >= i32(IN_W)) {
                    continue;
                }
                let pixel = ((n * IN_H + u32(y)) * IN_W + u32(x)) * IN_C4;
                for (var i = 0u; i < IN_PER_GROUP; i++) {
                    let ic = first_in + i;
                    let w = weights[((oc * IN_PER_GROUP + i) * KERNEL_H + ky) * KERNEL_W + kx];
                    sum += w * input[pixel + ic / 4u][ic % 4u];
                }
            }
        }
        acc[lane] += sum;
    }
    store_output(id, oc4, acc);
}
