// Dense 2-D convolution (groups = 1) as an implicit GEMM over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/cpu/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// Each invocation computes a register tile of TILE_PIXELS output pixels x TILE_OC4 * 4 output channels,
// reading whole vec4s of input channels; no workgroup memory and no barriers (they are costly on the
// CPU-emulated adapters, and the tile reuse comes from registers). Weights are a matrix of KH * KW * IC4 * 4
// rows of W_OC4 texels (4 output channels each), so one input vec4 meets 4 x TILE_OC4 weight texels. They are
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
#include "shared/activation.wgsl"
#include "shared/epilogue.wgsl"

override BATCH: u32 = 1u;
override IN_H: u32 = 1u;
override IN_W: u32 = 1u;
override IN_C4: u32 = 1u;
override OUT_H: u32 = 1u;
override OUT_W: u32 = 1u;
override OUT_C4: u32 = 1u;
// Row width of the weight matrix in texels: OUT_C4 rounded up to a multiple of TILE_OC4.
override W_OC4: u32 = 4u;
// Rows per block of the weight texture (see `matrix_origin`).
override W_BLOCK_ROWS: u32 = 4u;
override KERNEL_H: u32 = 1u;
override KERNEL_W: u32 = 1u;
override STRIDE_H: u32 = 1u;
override STRIDE_W: u32 = 1u;
override DILATION_H: u32 = 1u;
override DILATION_W: u32 = 1u;
override PAD_TOP: u32 = 0u;
override PAD_LEFT: u32 = 0u;

const WORKGROUP_SIZE: u32 = 64u;
// The tile (the host's DENSE_TILE_PIXELS and DENSE_TILE_OC4); the main loop below is written out for it.
const TILE_PIXELS: u32 = 8u;
const TILE_OC4: u32 = 4u;
// Pixels of a tile that exist: TILE_PIXELS unless the whole layer has fewer (a classifier or a
// squeeze-and-excitation convolution on 1 x 1 pixels). The others are not computed: the guards fold away at
// pipeline creation, where otherwise a classifier at batch 1 would do 8 times its work.
override LIVE_PIXELS: u32 = TILE_PIXELS;

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
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
    let oc_tiles = W_OC4 / TILE_OC4;
    let pixels = BATCH * OUT_H * OUT_W;
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
        let n = m / (OUT_H * OUT_W);
        let r = m % (OUT_H * OUT_W);
        image_base[p] = i32(n * IN_H);
        origin_y[p] = i32((r / OUT_W) * STRIDE_H) - i32(PAD_TOP);
        origin_x[p] = i32((r % OUT_W) * STRIDE_W) - i32(PAD_LEFT);
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
    for (var ky = 0u; ky < KERNEL_H; ky++) {
        for (var kx = 0u; kx < KERNEL_W; kx++) {
            var offset: array<u32, TILE_PIXELS>;
            var inside: array<bool, TILE_PIXELS>;
            for (var p = 0u; p < TILE_PIXELS; p++) {
                let y = origin_y[p] + i32(ky * DILATION_H);
                let x = origin_x[p] + i32(kx * DILATION_W);
                inside[p] = y >= 0 && y < i32(IN_H) && x >= 0 && x < i32(IN_W);
                offset[p] = select(0u, u32((image_base[p] + y) * i32(IN_W) + x) * IN_C4, inside[p]);
            }
            var row = (ky * KERNEL_W + kx) * IN_C4 * 4u;
            for (var ic4 = 0u; ic4 < IN_C4; ic4++) {
                let origin = matrix_origin(row, W_OC4, W_BLOCK_ROWS) + vec2<u32>(oc_tile * TILE_OC4, 0u);
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
                row += 4u;
                let v_0 = select(vec4<f32>(0.0), input[offset[0] + ic4], inside[0]);
                acc_0_0 += w_0_0 * v_0.x + w_1_0 * v_0.y + w_2_0 * v_0.z + w_3_0 * v_0.w;
                acc_0_1 += w_0_1 * v_0.x + w_1_1 * v_0.y + w_2_1 * v_0.z + w_3_1 * v_0.w;
                acc_0_2 += w_0_2 * v_0.x + w_1_2 * v_0.y + w_2_2 * v_0.z + w_3_2 * v_0.w;
                acc_0_3 += w_0_3 * v_0.x + w_1_3 * v_0.y + w_2_3 * v_0.z + w_3_3 * v_0.w;
                if (LIVE_PIXELS > 1u) {
                    let v_1 = select(vec4<f32>(0.0), input[offset[1] + ic4], inside[1]);
                    acc_1_0 += w_0_0 * v_1.x + w_1_0 * v_1.y + w_2_0 * v_1.z + w_3_0 * v_1.w;
                    acc_1_1 += w_0_1 * v_1.x + w_1_1 * v_1.y + w_2_1 * v_1.z + w_3_1 * v_1.w;
                    acc_1_2 += w_0_2 * v_1.x + w_1_2 * v_1.y + w_2_2 * v_1.z + w_3_2 * v_1.w;
                    acc_1_3 += w_0_3 * v_1.x + w_1_3 * v_1.y + w_2_3 * v_1.z + w_3_3 * v_1.w;
                }
                if (LIVE_PIXELS > 2u) {
                    let v_2 = select(vec4<f32>(0.0), input[offset[2] + ic4], inside[2]);
                    acc_2_0 += w_0_0 * v_2.x + w_1_0 * v_2.y + w_2_0 * v_2.z + w_3_0 * v_2.w;
                    acc_2_1 += w_0_1 * v_2.x + w_1_1 * v_2.y + w_2_1 * v_2.z + w_3_1 * v_2.w;
                    acc_2_2 += w_0_2 * v_2.x + w_1_2 * v_2.y + w_2_2 * v_2.z + w_3_2 * v_2.w;
                    acc_2_3 += w_0_3 * v_2.x + w_1_3 * v_2.y + w_2_3 * v_2.z + w_3_3 * v_2.w;
                }
                if (LIVE_PIXELS > 3u) {
                    let v_3 = select(vec4<f32>(0.0), input[offset[3] + ic4], inside[3]);
                    acc_3_0 += w_0_0 * v_3.x + w_1_0 * v_3.y + w_2_0 * v_3.z + w_3_0 * v_3.w;
                    acc_3_1 += w_0_1 * v_3.x + w_1_1 * v_3.y + w_2_1 * v_3.z + w_3_1 * v_3.w;
                    acc_3_2 += w_0_2 * v_3.x + w_1_2 * v_3.y + w_2_2 * v_3.z + w_3_2 * v_3.w;
                    acc_3_3 += w_0_3 * v_3.x + w_1_3 * v_3.y + w_2_3 * v_3.z + w_3_3 * v_3.w;
                }
                if (LIVE_PIXELS > 4u) {
                    let v_4 = select(vec4<f32>(0.0), input[offset[4] + ic4], inside[4]);
                    acc_4_0 += w_0_0 * v_4.x + w_1_0 * v_4.y + w_2_0 * v_4.z + w_3_0 * v_4.w;
                    acc_4_1 += w_0_1 * v_4.x + w_1_1 * v_4.y + w_2_1 * v_4.z + w_3_1 * v_4.w;
                    acc_4_2 += w_0_2 * v_4.x + w_1_2 * v_4.y + w_2_2 * v_4.z + w_3_2 * v_4.w;
                    acc_4_3 += w_0_3 * v_4.x + w_1_3 * v_4.y + w_2_3 * v_4.z + w_3_3 * v_4.w;
                }
                if (LIVE_PIXELS > 5u) {
                    let v_5 = select(vec4<f32>(0.0), input[offset[5] + ic4], inside[5]);
                    acc_5_0 += w_0_0 * v_5.x + w_1_0 * v_5.y + w_2_0 * v_5.z + w_3_0 * v_5.w;
                    acc_5_1 += w_0_1 * v_5.x + w_1_1 * v_5.y + w_2_1 * v_5.z + w_3_1 * v_5.w;
                    acc_5_2 += w_0_2 * v_5.x + w_1_2 * v_5.y + w_2_2 * v_5.z + w_3_2 * v_5.w;
                    acc_5_3 += w_0_3 * v_5.x + w_1_3 * v_5.y + w_2_3 * v_5.z + w_3_3 * v_5.w;
                }
                if (LIVE_PIXELS > 6u) {
                    let v_6 = select(vec4<f32>(0.0), input[offset[6] + ic4], inside[6]);
                    acc_6_0 += w_0_0 * v_6.x + w_1_0 * v_6.y + w_2_0 * v_6.z + w_3_0 * v_6.w;
                    acc_6_1 += w_0_1 * v_6.x + w_1_1 * v_6.y + w_2_1 * v_6.z + w_3_1 * v_6.w;
                    acc_6_2 += w_0_2 * v_6.x + w_1_2 * v_6.y + w_2_2 * v_6.z + w_3_2 * v_6.w;
                    acc_6_3 += w_0_3 * v_6.x + w_1_3 * v_6.y + w_2_3 * v_6.z + w_3_3 * v_6.w;
                }
                if (LIVE_PIXELS > 7u) {
                    let v_7 = select(vec4<f32>(0.0), input[offset[7] + ic4], inside[7]);
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
        if (oc4 >= OUT_C4) {
            break;
        }
        let b = bias[oc4];
        let act = activation_params(oc4);
        for (var p = 0u; p < TILE_PIXELS; p++) {
            let m = first_pixel + p;
            if (m < pixels) {
                store_output_with(m * OUT_C4 + oc4, oc4, acc[TILE_OC4 * p + j] + b, act);
            }
        }
    }
}
