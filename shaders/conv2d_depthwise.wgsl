// Depthwise 2-D convolution (groups = in = out channels) over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/reference/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// One invocation per 4 channels of DEPTHWISE_TILE_W horizontally adjacent output pixels: each weight vec4, the
// bias and the activation's parameters are loaded once for the tile, and, at stride 1 or 2 without dilation,
// each input vec4 of a kernel row once (windows that slide through named registers). Weights are [KH][KW][C4] texels.
//
// The tile's pixels are spelled out rather than looped over: SwiftShader (Chrome without a GPU) does not
// unroll loops and keeps an array indexed by a loop variable in memory, with a gather or scatter per
// invocation at each access; named variables stay in registers.

#include "shared/common.wgsl"
#include "shared/conv_shape.wgsl"
#include "shared/table.wgsl"
#include "shared/staged_input.wgsl"
#include "shared/activation.wgsl"
#include "shared/epilogue.wgsl"

// Stride and dilation choose how the tile's inputs are loaded (below), so they are constants; the other sizes
// are in `shape` (shared/conv_shape.wgsl).
override STRIDE_H: u32 = 1u;
override STRIDE_W: u32 = 1u;
override DILATION_H: u32 = 1u;
override DILATION_W: u32 = 1u;

// DEPTHWISE_TILE_W, output pixels per invocation along a row, comes from the generated prelude (its constant in
// src/gpu/shaders.rs, with which src/gpu/kernels/conv.rs sizes the dispatch); the code below is written out for
// it.

// The input is at binding 0, a texture (shared/staged_input.wgsl). Residual and output are bound read_write:
// a plan keeps all activations in one arena buffer, and WebGPU forbids binding one buffer both read-only and
// writable in the same dispatch.
// KH * KW rows of C4 texels: a table, as in conv2d.wgsl.
@group(0) @binding(1) var weights: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> residual: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

// Input pixel x of the row starting at pixel `row_start`; zeros in the padding.
fn input_at(row_start: u32, x: i32, c4: u32) -> vec4<f32> {
    let inside = x >= 0 && x < i32(shape.in_w);
    return select(vec4<f32>(0.0), load_input(select(0u, (row_start + u32(x)) * shape.in_c4 + c4, inside)), inside);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    let c4s = shape.in_c4;
    let in_h = shape.in_h;
    let in_w = shape.in_w;
    let out_h = shape.out_h;
    let out_w = shape.out_w;
    let kernel_h = shape.kernel_h;
    let kernel_w = shape.kernel_w;
    let tiles_w = (out_w + DEPTHWISE_TILE_W - 1u) / DEPTHWISE_TILE_W;
    if (id >= shape.batch * out_h * tiles_w * c4s) {
        return;
    }
    begin_input();
    let weight_scale = table_scale(textureDimensions(weights));
    // Channels vary fastest, so that neighbouring invocations read neighbouring memory.
    let c4 = id % c4s;
    let tile = id / c4s;
    let row = tile / tiles_w;
    let first_x = (tile % tiles_w) * DEPTHWISE_TILE_W;
    let n = row / out_h;
    let out_y = row % out_h;
    let origin_y = i32(out_y * STRIDE_H) - i32(shape.pad_top);
    // Where the tile's first pixel's first tap reads, and how far apart its pixels read.
    let x0 = i32(first_x * STRIDE_W) - i32(shape.pad_left);
    let step = i32(STRIDE_W);

    let b = bias[c4];
    var acc0 = b;
    var acc1 = b;
    var acc2 = b;
    var acc3 = b;
    for (var ky = 0u; ky < kernel_h; ky++) {
        let y = origin_y + i32(ky * DILATION_H);
        if (y < 0 || y >= i32(in_h)) {
            continue;
        }
        let row_start = (n * in_h + u32(y)) * in_w;
        if (DILATION_W == STRIDE_W) {
            // Tap kx + 1 of pixel p reads what tap kx of pixel p + 1 read: each tap loads only its last pixel's
            // input, DEPTHWISE_TILE_W - 1 + kernel_w loads per row in all.
            var r0 = input_at(row_start, x0, c4);
            var r1 = input_at(row_start, x0 + step, c4);
            var r2 = input_at(row_start, x0 + 2 * step, c4);
            for (var kx = 0u; kx < kernel_w; kx++) {
                let w = table_read(weights, vec2<u32>(c4, ky * kernel_w + kx), weight_scale);
                let r3 = input_at(row_start, x0 + i32(kx + DEPTHWISE_TILE_W - 1u) * step, c4);
                acc0 += w * r0;
                acc1 += w * r1;
                acc2 += w * r2;
                acc3 += w * r3;
                r0 = r1;
                r1 = r2;
                r2 = r3;
            }
        } else if (STRIDE_W == 2u && DILATION_W == 1u) {
            // Even taps read even offsets from x0 and odd taps odd ones: two windows, each sliding at every other
            // tap and loading only its last pixel's input, so that each input is loaded once.
            var e0 = input_at(row_start, x0, c4);
            var e1 = input_at(row_start, x0 + 2, c4);
            var e2 = input_at(row_start, x0 + 4, c4);
            var o0 = input_at(row_start, x0 + 1, c4);
            var o1 = input_at(row_start, x0 + 3, c4);
            var o2 = input_at(row_start, x0 + 5, c4);
            for (var kx = 0u; kx < kernel_w; kx++) {
                let w = table_read(weights, vec2<u32>(c4, ky * kernel_w + kx), weight_scale);
                // The tap's last pixel reads x0 + 2 * (DEPTHWISE_TILE_W - 1) + kx.
                let last = input_at(row_start, x0 + i32(kx) + 6, c4);
                if ((kx & 1u) == 0u) {
                    acc0 += w * e0;
                    acc1 += w * e1;
                    acc2 += w * e2;
                    acc3 += w * last;
                    e0 = e1;
                    e1 = e2;
                    e2 = last;
                } else {
                    acc0 += w * o0;
                    acc1 += w * o1;
                    acc2 += w * o2;
                    acc3 += w * last;
                    o0 = o1;
                    o1 = o2;
                    o2 = last;
                }
            }
        } else {
            for (var kx = 0u; kx < kernel_w; kx++) {
                let w = table_read(weights, vec2<u32>(c4, ky * kernel_w + kx), weight_scale);
                let x = x0 + i32(kx * DILATION_W);
                acc0 += w * input_at(row_start, x, c4);
                acc1 += w * input_at(row_start, x + step, c4);
                acc2 += w * input_at(row_start, x + 2 * step, c4);
                acc3 += w * input_at(row_start, x + 3 * step, c4);
            }
        }
    }
    // The epilogue loops over the tile, so that the activation's code is inlined once.
    var tile_acc = array<vec4<f32>, DEPTHWISE_TILE_W>(acc0, acc1, acc2, acc3);
    let act = activation_params(c4);
    let first_pixel = row * out_w + first_x;
    for (var p = 0u; p < DEPTHWISE_TILE_W; p++) {
        if (first_x + p < out_w) {
            store_output_with((first_pixel + p) * c4s + c4, c4, tile_acc[p], act);
        }
    }
}
