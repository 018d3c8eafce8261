// Dense 2-D convolution (groups = 1) as an implicit GEMM over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/cpu/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// Each invocation computes a register tile of TILE_PIXELS output pixels x TILE_OC4 * 4 output channels,
// reading whole vec4s of input channels; no workgroup memory and no barriers (they are costly on the
// CPU-emulated adapters, and the tile reuse comes from registers). Weights are a matrix of KH * KW * IC4 * 4
// rows of w_oc4 texels (4 output channels each), so one input vec4 meets 4 x TILE_OC4 weight texels. They are
// a texture rather than a storage buffer because lavapipe gathers texels for a whole SIMD batch of invocations
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
#include "shared/staged_input.wgsl"
#include "shared/activation.wgsl"
#include "shared/epilogue.wgsl"

const WORKGROUP_SIZE: u32 = 64u;
// The tile (the host's DENSE_TILE_PIXELS and DENSE_TILE_OC4); the main loop below is written out for it.
const TILE_PIXELS: u32 = 8u;
const TILE_OC4: u32 = 4u;
// Pixels of a tile that exist: TILE_PIXELS unless the whole layer has fewer (a classifier or a
// squeeze-and-excitation convolution on 1 x 1 pixels). The others are not computed: the guards fold away at
// pipeline creation, where otherwise a classifier at batch 1 would do 8 times its work.
override LIVE_PIXELS: u32 = TILE_PIXELS;

// The input is at binding 0, a texture (shared/staged_input.wgsl). Residual and output are bound read_write:
// a plan keeps all activations in one arena buffer, and WebGPU forbids binding one buffer both read-only and
// writable in the same dispatch.
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
    let in_h = shape.in_h;
    let in_w = shape.in_w;
    let in_c4 = shape.in_c4;
    let out_hw = shape.out_h * shape.out_w;
    let out_c4 = shape.out_c4;
    let w_oc4 = shape.w_oc4;
    let w_block_rows = shape.w_block_rows;
    let oc_tiles = w_oc4 / TILE_OC4;
    let pixels = shape.batch * out_hw;
    let pixel_tiles = (pixels + TILE_PIXELS - 1u) / TILE_PIXELS;
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= oc_tiles * pixel_tiles) {
        return;
    }
    let oc_tile = id % oc_tiles;
    let first_pixel = (id / oc_tiles) * TILE_PIXELS;

    var image_base: array<i32, TILE_PIXELS>;
    var origin_y: array<i32, TILE_PIXELS>;
    var origin_x: array<i32, TILE_PIXELS>;
    for (var p = 0u; p < TILE_PIXELS; p++) {
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
    for (var ky = 0u; ky < shape.kernel_h; ky++) {
        for (var kx = 0u; kx < shape.kernel_w; kx++) {
            var offset: array<u32, TILE_PIXELS>;
            var inside: array<bool, TILE_PIXELS>;
            for (var p = 0u; p < TILE_PIXELS; p++) {
                let y = origin_y[p] + i32(ky * shape.dilation_h);
                let x = origin_x[p] + i32(kx * shape.dilation_w);
                inside[p] = y >= 0 && y < i32(in_h) && x >= 0 && x < i32(in_w);
                offset[p] = select(0u, u32((image_base[p] + y) * i32(in_w) + x) * in_c4, inside[p]);
            }
            // Where this tap's rows start in the weight texture, then 4 rows further per input vec4, without
            // dividing by a run-time size at every step.
            var origin = matrix_origin((ky * shape.kernel_w + kx) * in_c4 * 4u, w_oc4, w_block_rows)
                + vec2<u32>(oc_tile * TILE_OC4, 0u);
            for (var ic4 = 0u; ic4 < in_c4; ic4++) {
                let w_0_0 = textureLoad(weights, origin + vec2<u32>(0u, 0u), 0);
                let w_0_1 = textureLoad(weights, origin + vec2<u32>(1u, 0u), 0);
                let w_0_2 = textureLoad(weights, origin + vec2<u32>(2u, 0u), 0);
                let w_0_3 = textureLoad(weights, origin + vec2<u32>(3u, 0u), 0);
                let w_1_0 = textureLoad(weights, origin + vec2<u32>(0u, 1u), 0);
                let w_1_1 = textureLoad(weights, origin + vec2<u32>(1u, 1u), 0);
                let w_1_2 = textureLoad(weights, origin + vec2<u32>(2u, 1u), 0);
                let w_1_3 = textureLoad(weights, origin + vec2<u32>(3u, 1u), 0);
                let w_2_0 = textureLoad(weights, origin + vec2<u32>(0u, 2u), 0);
                let w_2_1 = textureLoad(weights, origin + vec2<u32>(1u, 2u), 0);
                let w_2_2 = textureLoad(weights, origin + vec2<u32>(2u, 2u), 0);
                let w_2_3 = textureLoad(weights, origin + vec2<u32>(3u, 2u), 0);
                let w_3_0 = textureLoad(weights, origin + vec2<u32>(0u, 3u), 0);
                let w_3_1 = textureLoad(weights, origin + vec2<u32>(1u, 3u), 0);
                let w_3_2 = textureLoad(weights, origin + vec2<u32>(2u, 3u), 0);
                let w_3_3 = textureLoad(weights, origin + vec2<u32>(3u, 3u), 0);
                let next_block = origin.y + 4u == w_block_rows;
                origin = select(origin + vec2<u32>(0u, 4u), vec2<u32>(origin.x + w_oc4, 0u), next_block);
                let v_0 = select(vec4<f32>(0.0), load_input(offset[0] + ic4), inside[0]);
                acc_0_0 += w_0_0 * v_0.x + w_1_0 * v_0.y + w_2_0 * v_0.z + w_3_0 * v_0.w;
                acc_0_1 += w_0_1 * v_0.x + w_1_1 * v_0.y + w_2_1 * v_0.z + w_3_1 * v_0.w;
                acc_0_2 += w_0_2 * v_0.x + w_1_2 * v_0.y + w_2_2 * v_0.z + w_3_2 * v_0.w;
                acc_0_3 += w_0_3 * v_0.x + w_1_3 * v_0.y + w_2_3 * v_0.z + w_3_3 * v_0.w;
                if (LIVE_PIXELS > 1u) {
                    let v_1 = select(vec4<f32>(0.0), load_input(offset[1] + ic4), inside[1]);
                    acc_1_0 += w_0_0 * v_1.x + w_1_0 * v_1.y + w_2_0 * v_1.z + w_3_0 * v_1.w;
                    acc_1_1 += w_0_1 * v_1.x + w_1_1 * v_1.y + w_2_1 * v_1.z + w_3_1 * v_1.w;
                    acc_1_2 += w_0_2 * v_1.x + w_1_2 * v_1.y + w_2_2 * v_1.z + w_3_2 * v_1.w;
                    acc_1_3 += w_0_3 * v_1.x + w_1_3 * v_1.y + w_2_3 * v_1.z + w_3_3 * v_1.w;
                }
                if (LIVE_PIXELS > 2u) {
                    let v_2 = select(vec4<f32>(0.0), load_input(offset[2] + ic4), inside[2]);
                    acc_2_0 += w_0_0 * v_2.x + w_1_0 * v_2.y + w_2_0 * v_2.z + w_3_0 * v_2.w;
                    acc_2_1 += w_0_1 * v_2.x + w_1_1 * v_2.y + w_2_1 * v_2.z + w_3_1 * v_2.w;
                    acc_2_2 += w_0_2 * v_2.x + w_1_2 * v_2.y + w_2_2 * v_2.z + w_3_2 * v_2.w;
                    acc_2_3 += w_0_3 * v_2.x + w_1_3 * v_2.y + w_2_3 * v_2.z + w_3_3 * v_2.w;
                }
                if (LIVE_PIXELS > 3u) {
                    let v_3 = select(vec4<f32>(0.0), load_input(offset[3] + ic4), inside[3]);
                    acc_3_0 += w_0_0 * v_3.x + w_1_0 * v_3.y + w_2_0 * v_3.z + w_3_0 * v_3.w;
                    acc_3_1 += w_0_1 * v_3.x + w_1_1 * v_3.y + w_2_1 * v_3.z + w_3_1 * v_3.w;
                    acc_3_2 += w_0_2 * v_3.x + w_1_2 * v_3.y + w_2_2 * v_3.z + w_3_2 * v_3.w;
                    acc_3_3 += w_0_3 * v_3.x + w_1_3 * v_3.y + w_2_3 * v_3.z + w_3_3 * v_3.w;
                }
                if (LIVE_PIXELS > 4u) {
                    let v_4 = select(vec4<f32>(0.0), load_input(offset[4] + ic4), inside[4]);
                    acc_4_0 += w_0_0 * v_4.x + w_1_0 * v_4.y + w_2_0 * v_4.z + w_3_0 * v_4.w;
                    acc_4_1 += w_0_1 * v_4.x + w_1_1 * v_4.y + w_2_1 * v_4.z + w_3_1 * v_4.w;
                    acc_4_2 += w_0_2 * v_4.x + w_1_2 * v_4.y + w_2_2 * v_4.z + w_3_2 * v_4.w;
                    acc_4_3 += w_0_3 * v_4.x + w_1_3 * v_4.y + w_2_3 * v_4.z + w_3_3 * v_4.w;
                }
                if (LIVE_PIXELS > 5u) {
                    let v_5 = select(vec4<f32>(0.0), load_input(offset[5] + ic4), inside[5]);
                    acc_5_0 += w_0_0 * v_5.x + w_1_0 * v_5.y + w_2_0 * v_5.z + w_3_0 * v_5.w;
                    acc_5_1 += w_0_1 * v_5.x + w_1_1 * v_5.y + w_2_1 * v_5.z + w_3_1 * v_5.w;
                    acc_5_2 += w_0_2 * v_5.x + w_1_2 * v_5.y + w_2_2 * v_5.z + w_3_2 * v_5.w;
                    acc_5_3 += w_0_3 * v_5.x + w_1_3 * v_5.y + w_2_3 * v_5.z + w_3_3 * v_5.w;
                }
                if (LIVE_PIXELS > 6u) {
                    let v_6 = select(vec4<f32>(0.0), load_input(offset[6] + ic4), inside[6]);
                    acc_6_0 += w_0_0 * v_6.x + w_1_0 * v_6.y + w_2_0 * v_6.z + w_3_0 * v_6.w;
                    acc_6_1 += w_0_1 * v_6.x + w_1_1 * v_6.y + w_2_1 * v_6.z + w_3_1 * v_6.w;
                    acc_6_2 += w_0_2 * v_6.x + w_1_2 * v_6.y + w_2_2 * v_6.z + w_3_2 * v_6.w;
                    acc_6_3 += w_0_3 * v_6.x + w_1_3 * v_6.y + w_2_3 * v_6.z + w_3_3 * v_6.w;
                }
                if (LIVE_PIXELS > 7u) {
                    let v_7 = select(vec4<f32>(0.0), load_input(offset[7] + ic4), inside[7]);
                    acc_7_0 += w_0_0 * v_7.x + w_1_0 * v_7.y + w_2_0 * v_7.z + w_3_0 * v_7.w;
                    acc_7_1 += w_0_1 * v_7.x + w_1_1 * v_7.y + w_2_1 * v_7.z + w_3_1 * v_7.w;
                    acc_7_2 += w_0_2 * v_7.x + w_1_2 * v_7.y + w_2_2 * v_7.z + w_3_2 * v_7.w;
                    acc_7_3 += w_0_3 * v_7.x + w_1_3 * v_7.y + w_2_3 * v_7.z + w_3_3 * v_7.w;
                }
            }
        }
    }

    // The epilogue loops over the tile, so that the activation's code is inlined once. A `var`, not a `let`:
    // naga copies a `let` array into a temporary at every run-time index, which made lavapipe's compile of a
    // PWLU model take minutes.
    var acc = array<vec4<f32>, TILE_PIXELS * TILE_OC4>(
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
    for (var j = 0u; j < TILE_OC4; j++) {
        let oc4 = oc_tile * TILE_OC4 + j;
        if (oc4 >= out_c4) {
            break;
        }
        let b = bias[oc4];
        let act = activation_params(oc4);
        for (var p = 0u; p < TILE_PIXELS; p++) {
            let m = first_pixel + p;
            if (m < pixels) {
                store_output_with(m * out_c4 + oc4, oc4, acc[TILE_OC4 * p + j] + b, act);
            }
        }
    }
}
