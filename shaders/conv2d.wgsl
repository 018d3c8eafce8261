// Dense 2-D convolution (groups = 1) as an implicit GEMM over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/reference/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// Each invocation computes a register tile of DENSE_TILE_PIXELS output pixels x DENSE_TILE_OC4 * 4 output
// channels, reading whole vec4s of input channels; no workgroup memory and no barriers (they are costly on the
// CPU-emulated adapters, and the tile reuse comes from registers). Weights are a matrix of KH * KW * IC4 * 4
// rows of w_oc4 texels (4 output channels each), so one input vec4 meets 4 x DENSE_TILE_OC4 weight texels. They
// are a texture rather than a storage buffer because lavapipe gathers texels for a whole SIMD batch of invocations
// at once but loads from storage buffers invocation by invocation (ResNet-18 1.7 s -> 1.0 s).
//
// The loop over input channels is written out for the fixed tile, one variable per accumulator (`acc_P_J`:
// pixel P, output vec4 J) and per weight texel (`w_I_J`: input lane I, output vec4 J): SwiftShader (Chrome
// without a GPU) does not unroll loops, and keeps an array indexed by a loop variable in memory, reaching it
// with a gather or scatter per invocation; named variables stay in registers (MobileNet-V2's dense
// convolutions in Chromium: 996 -> 309 ms). A version with mat4x4 accumulators and helper functions ran about as fast
// but took SwiftShader minutes to compile.

#include "shared/common.wgsl"
#include "shared/conv_shape.wgsl"
#include "shared/table.wgsl"
#include "shared/staged_input.wgsl"
#include "shared/activation.wgsl"
#include "shared/epilogue.wgsl"

// 32 rather than the other kernels' 64: the CPU adapters run a workgroup on one thread, and the late layers
// of the mobile models (7 x 7 pixels, 100-300 invocations) then came in 2 to 5 workgroups of uneven work.
// MobileNet-V2's 7 x 7 layers on SwiftShader 0.65x the time, Lite0's dense convolutions 0.92x; no change on
// lavapipe. On GPUs the register tile, not the workgroup, bounds occupancy.
// The tile, DENSE_TILE_PIXELS x DENSE_TILE_OC4, and WORKGROUP_SIZE come from the generated prelude (the
// launchers' constants in src/gpu/shaders.rs); the main loop below is written out for the tile.
// Pixels of a tile that exist: DENSE_TILE_PIXELS unless the whole layer has fewer (a classifier or a
// squeeze-and-excitation convolution on 1 x 1 pixels). The others are not computed: the guards fold away at
// pipeline creation, where otherwise a classifier at batch 1 would do 8 times its work.
override LIVE_PIXELS: u32 = DENSE_TILE_PIXELS;

// The input is at binding 0, a texture (shared/staged_input.wgsl). Residual and output are bound read_write:
// a plan keeps all activations in one arena buffer, and WebGPU forbids binding one buffer both read-only and
// writable in the same dispatch.
@group(0) @binding(1) var weights: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> residual: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

// Whether input column x exists (taps outside read the zero padding).
fn column_inside(x: i32) -> bool {
    return x >= 0 && x < i32(shape.in_w);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let in_h = shape.in_h;
    let in_w = shape.in_w;
    let in_c4 = shape.in_c4;
    let out_hw = shape.out_h * shape.out_w;
    let out_c4 = shape.out_c4;
    let w_oc4 = shape.w_oc4;
    let w_block_rows = shape.w_block_rows;
    let oc_tiles = w_oc4 / DENSE_TILE_OC4;
    let pixels = shape.batch * out_hw;
    let pixel_tiles = (pixels + DENSE_TILE_PIXELS - 1u) / DENSE_TILE_PIXELS;
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= oc_tiles * pixel_tiles) {
        return;
    }
    begin_input();
    let weight_scale = table_scale(textureDimensions(weights));
    let oc_tile = id % oc_tiles;
    let first_pixel = (id / oc_tiles) * DENSE_TILE_PIXELS;

    var image_base: array<i32, DENSE_TILE_PIXELS>;
    var origin_y: array<i32, DENSE_TILE_PIXELS>;
    var origin_x: array<i32, DENSE_TILE_PIXELS>;
    for (var p = 0u; p < DENSE_TILE_PIXELS; p++) {
        // Pixels past the end repeat the last one; their results are not stored.
        let m = min(first_pixel + p, pixels - 1u);
        let n = m / out_hw;
        let r = m % out_hw;
        image_base[p] = i32(n * in_h);
        origin_y[p] = i32((r / shape.out_w) * shape.stride_h) - i32(shape.pad_top);
        origin_x[p] = i32((r % shape.out_w) * shape.stride_w) - i32(shape.pad_left);
    }

    var acc_0_0 = vec4<f32>(0.0);
    var acc_0_1 = vec4<f32>(0.0);
    var acc_0_2 = vec4<f32>(0.0);
    var acc_0_3 = vec4<f32>(0.0);
    var acc_1_0 = vec4<f32>(0.0);
    var acc_1_1 = vec4<f32>(0.0);
    var acc_1_2 = vec4<f32>(0.0);
    var acc_1_3 = vec4<f32>(0.0);
    var acc_2_0 = vec4<f32>(0.0);
    var acc_2_1 = vec4<f32>(0.0);
    var acc_2_2 = vec4<f32>(0.0);
    var acc_2_3 = vec4<f32>(0.0);
    var acc_3_0 = vec4<f32>(0.0);
    var acc_3_1 = vec4<f32>(0.0);
    var acc_3_2 = vec4<f32>(0.0);
    var acc_3_3 = vec4<f32>(0.0);
    var acc_4_0 = vec4<f32>(0.0);
    var acc_4_1 = vec4<f32>(0.0);
    var acc_4_2 = vec4<f32>(0.0);
    var acc_4_3 = vec4<f32>(0.0);
    var acc_5_0 = vec4<f32>(0.0);
    var acc_5_1 = vec4<f32>(0.0);
    var acc_5_2 = vec4<f32>(0.0);
    var acc_5_3 = vec4<f32>(0.0);
    var acc_6_0 = vec4<f32>(0.0);
    var acc_6_1 = vec4<f32>(0.0);
    var acc_6_2 = vec4<f32>(0.0);
    var acc_6_3 = vec4<f32>(0.0);
    var acc_7_0 = vec4<f32>(0.0);
    var acc_7_1 = vec4<f32>(0.0);
    var acc_7_2 = vec4<f32>(0.0);
    var acc_7_3 = vec4<f32>(0.0);
    // Per kernel row, the taps of a row and the input vec4s of each tap are one loop: the input texels of
    // consecutive steps are consecutive (spaced by the dilation between taps), and so are the weight rows.
    // A stem convolution on 3 channels thus runs kernel_w steps per row rather than kernel_w taps of one step
    // each, every one with its own set-up.
    var row_start: array<i32, DENSE_TILE_PIXELS>;
    var row_inside: array<bool, DENSE_TILE_PIXELS>;
    var inside: array<bool, DENSE_TILE_PIXELS>;
    let steps = shape.kernel_w * in_c4;
    let tap_gap = i32((shape.dilation_w - 1u) * in_c4);
    for (var ky = 0u; ky < shape.kernel_h; ky++) {
        // Where each pixel's row of taps starts in the input (its first tap, first vec4), and whether the row
        // is inside the image. Written out per pixel: a loop over an array indexed by its variable is memory
        // traffic on SwiftShader.
        {
            let y = origin_y[0] + i32(ky * shape.dilation_h);
            row_inside[0] = y >= 0 && y < i32(in_h);
            row_start[0] = ((image_base[0] + y) * i32(in_w) + origin_x[0]) * i32(in_c4);
        }
        {
            let y = origin_y[1] + i32(ky * shape.dilation_h);
            row_inside[1] = y >= 0 && y < i32(in_h);
            row_start[1] = ((image_base[1] + y) * i32(in_w) + origin_x[1]) * i32(in_c4);
        }
        {
            let y = origin_y[2] + i32(ky * shape.dilation_h);
            row_inside[2] = y >= 0 && y < i32(in_h);
            row_start[2] = ((image_base[2] + y) * i32(in_w) + origin_x[2]) * i32(in_c4);
        }
        {
            let y = origin_y[3] + i32(ky * shape.dilation_h);
            row_inside[3] = y >= 0 && y < i32(in_h);
            row_start[3] = ((image_base[3] + y) * i32(in_w) + origin_x[3]) * i32(in_c4);
        }
        {
            let y = origin_y[4] + i32(ky * shape.dilation_h);
            row_inside[4] = y >= 0 && y < i32(in_h);
            row_start[4] = ((image_base[4] + y) * i32(in_w) + origin_x[4]) * i32(in_c4);
        }
        {
            let y = origin_y[5] + i32(ky * shape.dilation_h);
            row_inside[5] = y >= 0 && y < i32(in_h);
            row_start[5] = ((image_base[5] + y) * i32(in_w) + origin_x[5]) * i32(in_c4);
        }
        {
            let y = origin_y[6] + i32(ky * shape.dilation_h);
            row_inside[6] = y >= 0 && y < i32(in_h);
            row_start[6] = ((image_base[6] + y) * i32(in_w) + origin_x[6]) * i32(in_c4);
        }
        {
            let y = origin_y[7] + i32(ky * shape.dilation_h);
            row_inside[7] = y >= 0 && y < i32(in_h);
            row_start[7] = ((image_base[7] + y) * i32(in_w) + origin_x[7]) * i32(in_c4);
        }
        inside[0] = row_inside[0] && column_inside(origin_x[0]);
        inside[1] = row_inside[1] && column_inside(origin_x[1]);
        inside[2] = row_inside[2] && column_inside(origin_x[2]);
        inside[3] = row_inside[3] && column_inside(origin_x[3]);
        inside[4] = row_inside[4] && column_inside(origin_x[4]);
        inside[5] = row_inside[5] && column_inside(origin_x[5]);
        inside[6] = row_inside[6] && column_inside(origin_x[6]);
        inside[7] = row_inside[7] && column_inside(origin_x[7]);
        // Weight rows of this kernel row start here, then follow 4 per step without dividing by a run-time
        // size at every step.
        var origin = matrix_origin(ky * steps * 4u, w_oc4, w_block_rows) + vec2<u32>(oc_tile * DENSE_TILE_OC4, 0u);
        // The current step's texel offset from each pixel's row start, and where it is in its tap. A pixel whose
        // tap lies in the padding may address a texel outside the stage (its row start is then negative, and
        // wraps) or another pixel's: WGSL defines such a textureLoad (some texel, or zeros), and the select
        // below discards it.
        var column = 0i;
        var ic4 = 0u;
        var dx = 0i;
        for (var step = 0u; step < steps; step++) {
            let w_0_0 = table_read(weights, origin + vec2<u32>(0u, 0u), weight_scale);
            let w_0_1 = table_read(weights, origin + vec2<u32>(1u, 0u), weight_scale);
            let w_0_2 = table_read(weights, origin + vec2<u32>(2u, 0u), weight_scale);
            let w_0_3 = table_read(weights, origin + vec2<u32>(3u, 0u), weight_scale);
            let w_1_0 = table_read(weights, origin + vec2<u32>(0u, 1u), weight_scale);
            let w_1_1 = table_read(weights, origin + vec2<u32>(1u, 1u), weight_scale);
            let w_1_2 = table_read(weights, origin + vec2<u32>(2u, 1u), weight_scale);
            let w_1_3 = table_read(weights, origin + vec2<u32>(3u, 1u), weight_scale);
            let w_2_0 = table_read(weights, origin + vec2<u32>(0u, 2u), weight_scale);
            let w_2_1 = table_read(weights, origin + vec2<u32>(1u, 2u), weight_scale);
            let w_2_2 = table_read(weights, origin + vec2<u32>(2u, 2u), weight_scale);
            let w_2_3 = table_read(weights, origin + vec2<u32>(3u, 2u), weight_scale);
            let w_3_0 = table_read(weights, origin + vec2<u32>(0u, 3u), weight_scale);
            let w_3_1 = table_read(weights, origin + vec2<u32>(1u, 3u), weight_scale);
            let w_3_2 = table_read(weights, origin + vec2<u32>(2u, 3u), weight_scale);
            let w_3_3 = table_read(weights, origin + vec2<u32>(3u, 3u), weight_scale);
            let next_block = origin.y + 4u == w_block_rows;
            origin = select(origin + vec2<u32>(0u, 4u), vec2<u32>(origin.x + w_oc4, 0u), next_block);
            let v_0 = select(vec4<f32>(0.0), load_input(u32(row_start[0] + column)), inside[0]);
            acc_0_0 += w_0_0 * v_0.x + w_1_0 * v_0.y + w_2_0 * v_0.z + w_3_0 * v_0.w;
            acc_0_1 += w_0_1 * v_0.x + w_1_1 * v_0.y + w_2_1 * v_0.z + w_3_1 * v_0.w;
            acc_0_2 += w_0_2 * v_0.x + w_1_2 * v_0.y + w_2_2 * v_0.z + w_3_2 * v_0.w;
            acc_0_3 += w_0_3 * v_0.x + w_1_3 * v_0.y + w_2_3 * v_0.z + w_3_3 * v_0.w;
            if (LIVE_PIXELS > 1u) {
                let v_1 = select(vec4<f32>(0.0), load_input(u32(row_start[1] + column)), inside[1]);
                acc_1_0 += w_0_0 * v_1.x + w_1_0 * v_1.y + w_2_0 * v_1.z + w_3_0 * v_1.w;
                acc_1_1 += w_0_1 * v_1.x + w_1_1 * v_1.y + w_2_1 * v_1.z + w_3_1 * v_1.w;
                acc_1_2 += w_0_2 * v_1.x + w_1_2 * v_1.y + w_2_2 * v_1.z + w_3_2 * v_1.w;
                acc_1_3 += w_0_3 * v_1.x + w_1_3 * v_1.y + w_2_3 * v_1.z + w_3_3 * v_1.w;
            }
            if (LIVE_PIXELS > 2u) {
                let v_2 = select(vec4<f32>(0.0), load_input(u32(row_start[2] + column)), inside[2]);
                acc_2_0 += w_0_0 * v_2.x + w_1_0 * v_2.y + w_2_0 * v_2.z + w_3_0 * v_2.w;
                acc_2_1 += w_0_1 * v_2.x + w_1_1 * v_2.y + w_2_1 * v_2.z + w_3_1 * v_2.w;
                acc_2_2 += w_0_2 * v_2.x + w_1_2 * v_2.y + w_2_2 * v_2.z + w_3_2 * v_2.w;
                acc_2_3 += w_0_3 * v_2.x + w_1_3 * v_2.y + w_2_3 * v_2.z + w_3_3 * v_2.w;
            }
            if (LIVE_PIXELS > 3u) {
                let v_3 = select(vec4<f32>(0.0), load_input(u32(row_start[3] + column)), inside[3]);
                acc_3_0 += w_0_0 * v_3.x + w_1_0 * v_3.y + w_2_0 * v_3.z + w_3_0 * v_3.w;
                acc_3_1 += w_0_1 * v_3.x + w_1_1 * v_3.y + w_2_1 * v_3.z + w_3_1 * v_3.w;
                acc_3_2 += w_0_2 * v_3.x + w_1_2 * v_3.y + w_2_2 * v_3.z + w_3_2 * v_3.w;
                acc_3_3 += w_0_3 * v_3.x + w_1_3 * v_3.y + w_2_3 * v_3.z + w_3_3 * v_3.w;
            }
            if (LIVE_PIXELS > 4u) {
                let v_4 = select(vec4<f32>(0.0), load_input(u32(row_start[4] + column)), inside[4]);
                acc_4_0 += w_0_0 * v_4.x + w_1_0 * v_4.y + w_2_0 * v_4.z + w_3_0 * v_4.w;
                acc_4_1 += w_0_1 * v_4.x + w_1_1 * v_4.y + w_2_1 * v_4.z + w_3_1 * v_4.w;
                acc_4_2 += w_0_2 * v_4.x + w_1_2 * v_4.y + w_2_2 * v_4.z + w_3_2 * v_4.w;
                acc_4_3 += w_0_3 * v_4.x + w_1_3 * v_4.y + w_2_3 * v_4.z + w_3_3 * v_4.w;
            }
            if (LIVE_PIXELS > 5u) {
                let v_5 = select(vec4<f32>(0.0), load_input(u32(row_start[5] + column)), inside[5]);
                acc_5_0 += w_0_0 * v_5.x + w_1_0 * v_5.y + w_2_0 * v_5.z + w_3_0 * v_5.w;
                acc_5_1 += w_0_1 * v_5.x + w_1_1 * v_5.y + w_2_1 * v_5.z + w_3_1 * v_5.w;
                acc_5_2 += w_0_2 * v_5.x + w_1_2 * v_5.y + w_2_2 * v_5.z + w_3_2 * v_5.w;
                acc_5_3 += w_0_3 * v_5.x + w_1_3 * v_5.y + w_2_3 * v_5.z + w_3_3 * v_5.w;
            }
            if (LIVE_PIXELS > 6u) {
                let v_6 = select(vec4<f32>(0.0), load_input(u32(row_start[6] + column)), inside[6]);
                acc_6_0 += w_0_0 * v_6.x + w_1_0 * v_6.y + w_2_0 * v_6.z + w_3_0 * v_6.w;
                acc_6_1 += w_0_1 * v_6.x + w_1_1 * v_6.y + w_2_1 * v_6.z + w_3_1 * v_6.w;
                acc_6_2 += w_0_2 * v_6.x + w_1_2 * v_6.y + w_2_2 * v_6.z + w_3_2 * v_6.w;
                acc_6_3 += w_0_3 * v_6.x + w_1_3 * v_6.y + w_2_3 * v_6.z + w_3_3 * v_6.w;
            }
            if (LIVE_PIXELS > 7u) {
                let v_7 = select(vec4<f32>(0.0), load_input(u32(row_start[7] + column)), inside[7]);
                acc_7_0 += w_0_0 * v_7.x + w_1_0 * v_7.y + w_2_0 * v_7.z + w_3_0 * v_7.w;
                acc_7_1 += w_0_1 * v_7.x + w_1_1 * v_7.y + w_2_1 * v_7.z + w_3_1 * v_7.w;
                acc_7_2 += w_0_2 * v_7.x + w_1_2 * v_7.y + w_2_2 * v_7.z + w_3_2 * v_7.w;
                acc_7_3 += w_0_3 * v_7.x + w_1_3 * v_7.y + w_2_3 * v_7.z + w_3_3 * v_7.w;
            }
            column += 1;
            ic4 += 1u;
            if (ic4 == in_c4) {
                // The next tap: skip the dilation's gap and check the pixels' new column.
                ic4 = 0u;
                column += tap_gap;
                dx += i32(shape.dilation_w);
                inside[0] = row_inside[0] && column_inside(origin_x[0] + dx);
                inside[1] = row_inside[1] && column_inside(origin_x[1] + dx);
                inside[2] = row_inside[2] && column_inside(origin_x[2] + dx);
                inside[3] = row_inside[3] && column_inside(origin_x[3] + dx);
                inside[4] = row_inside[4] && column_inside(origin_x[4] + dx);
                inside[5] = row_inside[5] && column_inside(origin_x[5] + dx);
                inside[6] = row_inside[6] && column_inside(origin_x[6] + dx);
                inside[7] = row_inside[7] && column_inside(origin_x[7] + dx);
            }
        }
    }

    // The epilogue loops over the tile, so that the activation's code is inlined once. A `var`, not a `let`:
    // naga copies a `let` array into a temporary at every run-time index, which made lavapipe's compile of a
    // PWLU model take minutes.
    var acc = array<vec4<f32>, DENSE_TILE_PIXELS * DENSE_TILE_OC4>(
        acc_0_0, acc_0_1, acc_0_2, acc_0_3,
        acc_1_0, acc_1_1, acc_1_2, acc_1_3,
        acc_2_0, acc_2_1, acc_2_2, acc_2_3,
        acc_3_0, acc_3_1, acc_3_2, acc_3_3,
        acc_4_0, acc_4_1, acc_4_2, acc_4_3,
        acc_5_0, acc_5_1, acc_5_2, acc_5_3,
        acc_6_0, acc_6_1, acc_6_2, acc_6_3,
        acc_7_0, acc_7_1, acc_7_2, acc_7_3,
    );
    // Bias and activation parameters depend on the channels only: load them once for the tile's pixels.
    for (var j = 0u; j < DENSE_TILE_OC4; j++) {
        let oc4 = oc_tile * DENSE_TILE_OC4 + j;
        if (oc4 >= out_c4) {
            break;
        }
        let b = bias[oc4];
        let act = activation_params(oc4);
        for (var p = 0u; p < DENSE_TILE_PIXELS; p++) {
            let m = first_pixel + p;
            if (m < pixels) {
                store_output_with(m * out_c4 + oc4, oc4, acc[DENSE_TILE_OC4 * p + j] + b, act);
            }
        }
    }
}
