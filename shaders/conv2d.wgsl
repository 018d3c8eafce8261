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

// Where output pixel `m` (pixels past the end repeat the last one; their results are not stored) reads its
// first tap: (first input row of its image, top row, left column) of its receptive field.
fn pixel_origin(pixel: u32, pixels: u32) -> vec3<i32> {
    let m = min(pixel, pixels - 1u);
    let n = m / (OUT_H * OUT_W);
    let r = m % (OUT_H * OUT_W);
    return vec3<i32>(
        i32(n * IN_H),
        i32((r / OUT_W) * STRIDE_H) - i32(PAD_TOP),
        i32((r % OUT_W) * STRIDE_W) - i32(PAD_LEFT),
    );
}

// The input offset (in vec4s) of a pixel's tap (dy, dx), and 1 if it is inside the image (0 in the padding,
// where the offset is 0 so that the load stays in bounds). Named per pixel, not in an array: see above.
fn tap(origin: vec3<i32>, dy: i32, dx: i32) -> vec2<u32> {
    let y = origin.y + dy;
    let x = origin.z + dx;
    let inside = y >= 0 && y < i32(IN_H) && x >= 0 && x < i32(IN_W);
    return vec2<u32>(select(0u, u32((origin.x + y) * i32(IN_W) + x) * IN_C4, inside), u32(inside));
}

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

    let origin_0 = pixel_origin(first_pixel + 0u, pixels);
    let origin_1 = pixel_origin(first_pixel + 1u, pixels);
    let origin_2 = pixel_origin(first_pixel + 2u, pixels);
    let origin_3 = pixel_origin(first_pixel + 3u, pixels);
    let origin_4 = pixel_origin(first_pixel + 4u, pixels);
    let origin_5 = pixel_origin(first_pixel + 5u, pixels);
    let origin_6 = pixel_origin(first_pixel + 6u, pixels);
    let origin_7 = pixel_origin(first_pixel + 7u, pixels);

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
            let tap_y = i32(ky * DILATION_H);
            let tap_x = i32(kx * DILATION_W);
            let tap_0 = tap(origin_0, tap_y, tap_x);
            let tap_1 = tap(origin_1, tap_y, tap_x);
            let tap_2 = tap(origin_2, tap_y, tap_x);
            let tap_3 = tap(origin_3, tap_y, tap_x);
            let tap_4 = tap(origin_4, tap_y, tap_x);
            let tap_5 = tap(origin_5, tap_y, tap_x);
            let tap_6 = tap(origin_6, tap_y, tap_x);
            let tap_7 = tap(origin_7, tap_y, tap_x);
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
                let v_0 = select(vec4<f32>(0.0), input[tap_0.x + ic4], tap_0.y != 0u);
                acc_0_0 += w_0_0 * v_0.x + w_1_0 * v_0.y + w_2_0 * v_0.z + w_3_0 * v_0.w;
                acc_0_1 += w_0_1 * v_0.x + w_1_1 * v_0.y + w_2_1 * v_0.z + w_3_1 * v_0.w;
                acc_0_2 += w_0_2 * v_0.x + w_1_2 * v_0.y + w_2_2 * v_0.z + w_3_2 * v_0.w;
                acc_0_3 += w_0_3 * v_0.x + w_1_3 * v_0.y + w_2_3 * v_0.z + w_3_3 * v_0.w;
                if (LIVE_PIXELS > 1u) {
                    let v_1 = select(vec4<f32>(0.0), input[tap_1.x + ic4], tap_1.y != 0u);
                    acc_1_0 += w_0_0 * v_1.x + w_1_0 * v_1.y + w_2_0 * v_1.z + w_3_0 * v_1.w;
                    acc_1_1 += w_0_1 * v_1.x + w_1_1 * v_1.y + w_2_1 * v_1.z + w_3_1 * v_1.w;
                    acc_1_2 += w_0_2 * v_1.x + w_1_2 * v_1.y + w_2_2 * v_1.z + w_3_2 * v_1.w;
                    acc_1_3 += w_0_3 * v_1.x + w_1_3 * v_1.y + w_2_3 * v_1.z + w_3_3 * v_1.w;
                }
                if (LIVE_PIXELS > 2u) {
                    let v_2 = select(vec4<f32>(0.0), input[tap_2.x + ic4], tap_2.y != 0u);
                    acc_2_0 += w_0_0 * v_2.x + w_1_0 * v_2.y + w_2_0 * v_2.z + w_3_0 * v_2.w;
                    acc_2_1 += w_0_1 * v_2.x + w_1_1 * v_2.y + w_2_1 * v_2.z + w_3_1 * v_2.w;
                    acc_2_2 += w_0_2 * v_2.x + w_1_2 * v_2.y + w_2_2 * v_2.z + w_3_2 * v_2.w;
                    acc_2_3 += w_0_3 * v_2.x + w_1_3 * v_2.y + w_2_3 * v_2.z + w_3_3 * v_2.w;
                }
                if (LIVE_PIXELS > 3u) {
                    let v_3 = select(vec4<f32>(0.0), input[tap_3.x + ic4], tap_3.y != 0u);
                    acc_3_0 += w_0_0 * v_3.x + w_1_0 * v_3.y + w_2_0 * v_3.z + w_3_0 * v_3.w;
                    acc_3_1 += w_0_1 * v_3.x + w_1_1 * v_3.y + w_2_1 * v_3.z + w_3_1 * v_3.w;
                    acc_3_2 += w_0_2 * v_3.x + w_1_2 * v_3.y + w_2_2 * v_3.z + w_3_2 * v_3.w;
                    acc_3_3 += w_0_3 * v_3.x + w_1_3 * v_3.y + w_2_3 * v_3.z + w_3_3 * v_3.w;
                }
                if (LIVE_PIXELS > 4u) {
                    let v_4 = select(vec4<f32>(0.0), input[tap_4.x + ic4], tap_4.y != 0u);
                    acc_4_0 += w_0_0 * v_4.x + w_1_0 * v_4.y + w_2_0 * v_4.z + w_3_0 * v_4.w;
                    acc_4_1 += w_0_1 * v_4.x + w_1_1 * v_4.y + w_2_1 * v_4.z + w_3_1 * v_4.w;
                    acc_4_2 += w_0_2 * v_4.x + w_1_2 * v_4.y + w_2_2 * v_4.z + w_3_2 * v_4.w;
                    acc_4_3 += w_0_3 * v_4.x + w_1_3 * v_4.y + w_2_3 * v_4.z + w_3_3 * v_4.w;
                }
                if (LIVE_PIXELS > 5u) {
                    let v_5 = select(vec4<f32>(0.0), input[tap_5.x + ic4], tap_5.y != 0u);
                    acc_5_0 += w_0_0 * v_5.x + w_1_0 * v_5.y + w_2_0 * v_5.z + w_3_0 * v_5.w;
                    acc_5_1 += w_0_1 * v_5.x + w_1_1 * v_5.y + w_2_1 * v_5.z + w_3_1 * v_5.w;
                    acc_5_2 += w_0_2 * v_5.x + w_1_2 * v_5.y + w_2_2 * v_5.z + w_3_2 * v_5.w;
                    acc_5_3 += w_0_3 * v_5.x + w_1_3 * v_5.y + w_2_3 * v_5.z + w_3_3 * v_5.w;
                }
                if (LIVE_PIXELS > 6u) {
                    let v_6 = select(vec4<f32>(0.0), input[tap_6.x + ic4], tap_6.y != 0u);
                    acc_6_0 += w_0_0 * v_6.x + w_1_0 * v_6.y + w_2_0 * v_6.z + w_3_0 * v_6.w;
                    acc_6_1 += w_0_1 * v_6.x + w_1_1 * v_6.y + w_2_1 * v_6.z + w_3_1 * v_6.w;
                    acc_6_2 += w_0_2 * v_6.x + w_1_2 * v_6.y + w_2_2 * v_6.z + w_3_2 * v_6.w;
                    acc_6_3 += w_0_3 * v_6.x + w_1_3 * v_6.y + w_2_3 * v_6.z + w_3_3 * v_6.w;
                }
                if (LIVE_PIXELS > 7u) {
                    let v_7 = select(vec4<f32>(0.0), input[tap_7.x + ic4], tap_7.y != 0u);
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
