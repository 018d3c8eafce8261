// Dense 2-D convolution (groups = 1) as an implicit GEMM over NHWC4 tensors, with the fused epilogue.
// CPU twin: src/cpu/conv.rs. Launcher: src/gpu/kernels/conv.rs.
//
// Each invocation computes a register tile of TILE_PIXELS output pixels x TILE_OC4 * 4 output channels,
// reading whole vec4s of input channels; no workgroup memory and no barriers (they are costly on the
// CPU-emulated adapters, and the tile reuse comes from registers). Weights are a matrix of KH * KW * IC4 * 4
// rows of W_OC4 texels (4 output channels each), so one input vec4 meets 4 x TILE_OC4 weight texels. They are
// a texture rather than a storage buffer because lavapipe gathers texels for a whole SIMD batch of invocations
// at once but loads from storage buffers invocation by invocation (ResNet-18 1.7 s -> 1.0 s).

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
const TILE_PIXELS: u32 = 8u;
const TILE_OC4: u32 = 4u;

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

    var acc: array<vec4<f32>, TILE_PIXELS * TILE_OC4>;
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
                var w: array<vec4<f32>, 4u * TILE_OC4>;
                for (var i = 0u; i < 4u; i++) {
                    for (var j = 0u; j < TILE_OC4; j++) {
                        w[i * TILE_OC4 + j] = textureLoad(weights, origin + vec2<u32>(j, i), 0);
                    }
                }
                row += 4u;
                for (var p = 0u; p < TILE_PIXELS; p++) {
                    let v = select(vec4<f32>(0.0), input[offset[p] + ic4], inside[p]);
                    for (var j = 0u; j < TILE_OC4; j++) {
                        acc[TILE_OC4 * p + j] += w[j] * v.x + w[TILE_OC4 + j] * v.y + w[2u * TILE_OC4 + j] * v.z
                            + w[3u * TILE_OC4 + j] * v.w;
                    }
                }
            }
        }
    }

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
