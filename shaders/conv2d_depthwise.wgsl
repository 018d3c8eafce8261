// Depthwise 2-D convolution (groups = in = out channels) over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/cpu/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// One invocation per 4 channels of TILE_W horizontally adjacent output pixels: each weight vec4, the bias and the
// activation's parameters are loaded once for the tile, and each input vec4 of a kernel row once (a sliding
// window in registers). Weights are [KH][KW][C4] texels.

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
// Output pixels per invocation along a row; src/gpu/kernels/conv.rs sizes the dispatch with the same number.
const TILE_W: u32 = 4u;
// The longest input row segment a tile reads through registers: covers 5-wide kernels at stride 2
// ((TILE_W - 1) * 2 + 5); wider or more dilated kernels read the input directly.
const MAX_SPAN: u32 = 11u;

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
// KH * KW rows of C4 texels: a table, as in conv2d.wgsl.
@group(0) @binding(1) var weights: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> residual: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    let tiles_w = (OUT_W + TILE_W - 1u) / TILE_W;
    if (id >= BATCH * OUT_H * tiles_w * C4) {
        return;
    }
    // Channels vary fastest, so that neighbouring invocations read neighbouring memory.
    let c4 = id % C4;
    let tile = id / C4;
    let row = tile / tiles_w;
    let first_x = (tile % tiles_w) * TILE_W;
    let n = row / OUT_H;
    let out_y = row % OUT_H;
    let origin_y = i32(out_y * STRIDE_H) - i32(PAD_TOP);

    let b = bias[c4];
    var acc: array<vec4<f32>, TILE_W>;
    for (var p = 0u; p < TILE_W; p++) {
        acc[p] = b;
    }
    // The input pixels of one kernel row that the tile's outputs read, left to right.
    let span = (TILE_W - 1u) * STRIDE_W + (KERNEL_W - 1u) * DILATION_W + 1u;
    let origin_x = i32(first_x * STRIDE_W) - i32(PAD_LEFT);
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        let y = origin_y + i32(ky * DILATION_H);
        if (y < 0 || y >= i32(IN_H)) {
            continue;
        }
        let row_start = (n * IN_H + u32(y)) * IN_W;
        if (span <= MAX_SPAN) {
            // Each input vec4 is read once and used by every output of the tile that needs it.
            var window: array<vec4<f32>, MAX_SPAN>;
            for (var i = 0u; i < span; i++) {
                let x = origin_x + i32(i);
                let inside = x >= 0 && x < i32(IN_W);
                let index = select(0u, (row_start + u32(x)) * C4 + c4, inside);
                window[i] = select(vec4<f32>(0.0), input[index], inside);
            }
            for (var kx = 0u; kx < KERNEL_W; kx++) {
                let w = textureLoad(weights, vec2<u32>(c4, ky * KERNEL_W + kx), 0);
                for (var p = 0u; p < TILE_W; p++) {
                    acc[p] += w * window[p * STRIDE_W + kx * DILATION_W];
                }
            }
        } else {
            for (var kx = 0u; kx < KERNEL_W; kx++) {
                let w = textureLoad(weights, vec2<u32>(c4, ky * KERNEL_W + kx), 0);
                for (var p = 0u; p < TILE_W; p++) {
                    let x = origin_x + i32(p * STRIDE_W + kx * DILATION_W);
                    if (x >= 0 && x < i32(IN_W)) {
                        acc[p] += w * input[(row_start + u32(x)) * C4 + c4];
                    }
                }
            }
        }
    }
    let act = activation_params(c4);
    let first_pixel = row * OUT_W + first_x;
    for (var p = 0u; p < TILE_W; p++) {
        if (first_x + p < OUT_W) {
            store_output_with((first_pixel + p) * C4 + c4, c4, acc[p], act);
        }
    }
}
