// Depthwise 2-D convolution (groups = in = out channels) over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/cpu/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// One invocation per output vec4 (4 channels of one pixel); weights are [KH][KW][C4] vec4s.

#include "shared/common.wgsl"
#include "shared/activation.wgsl"
#include "shared/epilogue.wgsl"

override BATCH: u32 = 1u;
override IN_H: u32 = 1u;
override IN_W: u32 = 1u;
override C4: u32 = 1u;
override OUT_H: u32 = 1u;
override OUT_W: u32 = 1u;
override KERNEL_H: u32 = 1u;
override KERNEL_W: u32 = 1u;
override STRIDE_H: u32 = 1u;
override STRIDE_W: u32 = 1u;
override DILATION_H: u32 = 1u;
override DILATION_W: u32 = 1u;
override PAD_TOP: u32 = 0u;
override PAD_LEFT: u32 = 0u;

const WORKGROUP_SIZE: u32 = 64u;

@group(0) @binding(0) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> residual: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= BATCH * OUT_H * OUT_W * C4) {
        return;
    }
    let c4 = id % C4;
    let m = id / C4;
    let n = m / (OUT_H * OUT_W);
    let r = m % (OUT_H * OUT_W);
    let origin_y = i32((r / OUT_W) * STRIDE_H) - i32(PAD_TOP);
    let origin_x = i32((r % OUT_W) * STRIDE_W) - i32(PAD_LEFT);

    var acc = bias[c4];
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
            let pixel = (n * IN_H + u32(y)) * IN_W + u32(x);
            acc += weights[(ky * KERNEL_W + kx) * C4 + c4] * input[pixel * C4 + c4];
        }
    }
    store_output(id, c4, acc);
}
