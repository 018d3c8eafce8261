// Matrix multiply C = A B, the project's own GEMM: the yardstick the convolutions are measured against
// (`pwlu bench --layers`). CPU twin: src/reference/matmul.rs. Launcher: src/gpu/kernels/matmul.rs.
//
// A is M x K row-major with rows padded to K4 vec4s, read through the input stage like a convolution's input
// (shared/staged_input.wgsl); B is a table (texture, like the convolution's weights) of
// K4 * 4 rows of N4 texels; C is M rows of N4 vec4s. Padding is zero. Each invocation computes MATMUL_TILE_M
// rows x MATMUL_TILE_N4 vec4s of C in registers, reading A and B as whole vec4s, with no workgroup memory and
// no barriers: the same scheme as conv2d.wgsl, on a plain matrix, so the difference between the two is what the
// convolution's indexing costs. As there, the loop over K is written out for the fixed tile, one variable per
// accumulator (`acc_R_J`: row R, column vec4 J) and per texel of B (`b_I_J`): SwiftShader keeps arrays indexed
// by loop variables in memory.

#include "shared/common.wgsl"
#include "shared/table.wgsl"
#include "shared/staged_input.wgsl"

override M: u32 = 1u;
override K4: u32 = 1u;
// A multiple of MATMUL_TILE_N4.
override N4: u32 = 4u;
// Rows per block of B's texture (see `matrix_origin`).
override B_BLOCK_ROWS: u32 = 4u;

// The tile, MATMUL_TILE_M x MATMUL_TILE_N4 (the generated prelude, from src/gpu/shaders.rs); the loop
// over K below is written out for it.

@group(0) @binding(1) var b: texture_2d<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let column_tiles = N4 / MATMUL_TILE_N4;
    let row_tiles = (M + MATMUL_TILE_M - 1u) / MATMUL_TILE_M;
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= column_tiles * row_tiles) {
        return;
    }
    begin_input();
    let b_scale = table_scale(textureDimensions(b));
    let column = (id % column_tiles) * MATMUL_TILE_N4;
    let first_row = (id / column_tiles) * MATMUL_TILE_M;

    var row_base: array<u32, MATMUL_TILE_M>;
    for (var r = 0u; r < MATMUL_TILE_M; r++) {
        // Rows past the end repeat the last one; their results are not stored.
        row_base[r] = min(first_row + r, M - 1u) * K4;
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
    for (var k4 = 0u; k4 < K4; k4++) {
        let origin = matrix_origin(k4 * 4u, N4, B_BLOCK_ROWS) + vec2<u32>(column, 0u);
        let b_0_0 = table_read(b, origin + vec2<u32>(0u, 0u), b_scale);
        let b_0_1 = table_read(b, origin + vec2<u32>(1u, 0u), b_scale);
        let b_0_2 = table_read(b, origin + vec2<u32>(2u, 0u), b_scale);
        let b_0_3 = table_read(b, origin + vec2<u32>(3u, 0u), b_scale);
        let b_1_0 = table_read(b, origin + vec2<u32>(0u, 1u), b_scale);
        let b_1_1 = table_read(b, origin + vec2<u32>(1u, 1u), b_scale);
        let b_1_2 = table_read(b, origin + vec2<u32>(2u, 1u), b_scale);
        let b_1_3 = table_read(b, origin + vec2<u32>(3u, 1u), b_scale);
        let b_2_0 = table_read(b, origin + vec2<u32>(0u, 2u), b_scale);
        let b_2_1 = table_read(b, origin + vec2<u32>(1u, 2u), b_scale);
        let b_2_2 = table_read(b, origin + vec2<u32>(2u, 2u), b_scale);
        let b_2_3 = table_read(b, origin + vec2<u32>(3u, 2u), b_scale);
        let b_3_0 = table_read(b, origin + vec2<u32>(0u, 3u), b_scale);
        let b_3_1 = table_read(b, origin + vec2<u32>(1u, 3u), b_scale);
        let b_3_2 = table_read(b, origin + vec2<u32>(2u, 3u), b_scale);
        let b_3_3 = table_read(b, origin + vec2<u32>(3u, 3u), b_scale);
        let a_0 = load_input(row_base[0] + k4);
        acc_0_0 += b_0_0 * a_0.x + b_1_0 * a_0.y + b_2_0 * a_0.z + b_3_0 * a_0.w;
        acc_0_1 += b_0_1 * a_0.x + b_1_1 * a_0.y + b_2_1 * a_0.z + b_3_1 * a_0.w;
        acc_0_2 += b_0_2 * a_0.x + b_1_2 * a_0.y + b_2_2 * a_0.z + b_3_2 * a_0.w;
        acc_0_3 += b_0_3 * a_0.x + b_1_3 * a_0.y + b_2_3 * a_0.z + b_3_3 * a_0.w;
        let a_1 = load_input(row_base[1] + k4);
        acc_1_0 += b_0_0 * a_1.x + b_1_0 * a_1.y + b_2_0 * a_1.z + b_3_0 * a_1.w;
        acc_1_1 += b_0_1 * a_1.x + b_1_1 * a_1.y + b_2_1 * a_1.z + b_3_1 * a_1.w;
        acc_1_2 += b_0_2 * a_1.x + b_1_2 * a_1.y + b_2_2 * a_1.z + b_3_2 * a_1.w;
        acc_1_3 += b_0_3 * a_1.x + b_1_3 * a_1.y + b_2_3 * a_1.z + b_3_3 * a_1.w;
        let a_2 = load_input(row_base[2] + k4);
        acc_2_0 += b_0_0 * a_2.x + b_1_0 * a_2.y + b_2_0 * a_2.z + b_3_0 * a_2.w;
        acc_2_1 += b_0_1 * a_2.x + b_1_1 * a_2.y + b_2_1 * a_2.z + b_3_1 * a_2.w;
        acc_2_2 += b_0_2 * a_2.x + b_1_2 * a_2.y + b_2_2 * a_2.z + b_3_2 * a_2.w;
        acc_2_3 += b_0_3 * a_2.x + b_1_3 * a_2.y + b_2_3 * a_2.z + b_3_3 * a_2.w;
        let a_3 = load_input(row_base[3] + k4);
        acc_3_0 += b_0_0 * a_3.x + b_1_0 * a_3.y + b_2_0 * a_3.z + b_3_0 * a_3.w;
        acc_3_1 += b_0_1 * a_3.x + b_1_1 * a_3.y + b_2_1 * a_3.z + b_3_1 * a_3.w;
        acc_3_2 += b_0_2 * a_3.x + b_1_2 * a_3.y + b_2_2 * a_3.z + b_3_2 * a_3.w;
        acc_3_3 += b_0_3 * a_3.x + b_1_3 * a_3.y + b_2_3 * a_3.z + b_3_3 * a_3.w;
        let a_4 = load_input(row_base[4] + k4);
        acc_4_0 += b_0_0 * a_4.x + b_1_0 * a_4.y + b_2_0 * a_4.z + b_3_0 * a_4.w;
        acc_4_1 += b_0_1 * a_4.x + b_1_1 * a_4.y + b_2_1 * a_4.z + b_3_1 * a_4.w;
        acc_4_2 += b_0_2 * a_4.x + b_1_2 * a_4.y + b_2_2 * a_4.z + b_3_2 * a_4.w;
        acc_4_3 += b_0_3 * a_4.x + b_1_3 * a_4.y + b_2_3 * a_4.z + b_3_3 * a_4.w;
        let a_5 = load_input(row_base[5] + k4);
        acc_5_0 += b_0_0 * a_5.x + b_1_0 * a_5.y + b_2_0 * a_5.z + b_3_0 * a_5.w;
        acc_5_1 += b_0_1 * a_5.x + b_1_1 * a_5.y + b_2_1 * a_5.z + b_3_1 * a_5.w;
        acc_5_2 += b_0_2 * a_5.x + b_1_2 * a_5.y + b_2_2 * a_5.z + b_3_2 * a_5.w;
        acc_5_3 += b_0_3 * a_5.x + b_1_3 * a_5.y + b_2_3 * a_5.z + b_3_3 * a_5.w;
        let a_6 = load_input(row_base[6] + k4);
        acc_6_0 += b_0_0 * a_6.x + b_1_0 * a_6.y + b_2_0 * a_6.z + b_3_0 * a_6.w;
        acc_6_1 += b_0_1 * a_6.x + b_1_1 * a_6.y + b_2_1 * a_6.z + b_3_1 * a_6.w;
        acc_6_2 += b_0_2 * a_6.x + b_1_2 * a_6.y + b_2_2 * a_6.z + b_3_2 * a_6.w;
        acc_6_3 += b_0_3 * a_6.x + b_1_3 * a_6.y + b_2_3 * a_6.z + b_3_3 * a_6.w;
        let a_7 = load_input(row_base[7] + k4);
        acc_7_0 += b_0_0 * a_7.x + b_1_0 * a_7.y + b_2_0 * a_7.z + b_3_0 * a_7.w;
        acc_7_1 += b_0_1 * a_7.x + b_1_1 * a_7.y + b_2_1 * a_7.z + b_3_1 * a_7.w;
        acc_7_2 += b_0_2 * a_7.x + b_1_2 * a_7.y + b_2_2 * a_7.z + b_3_2 * a_7.w;
        acc_7_3 += b_0_3 * a_7.x + b_1_3 * a_7.y + b_2_3 * a_7.z + b_3_3 * a_7.w;
    }
    var acc = array<vec4<f32>, MATMUL_TILE_M * MATMUL_TILE_N4>(
        acc_0_0, acc_0_1, acc_0_2, acc_0_3,
        acc_1_0, acc_1_1, acc_1_2, acc_1_3,
        acc_2_0, acc_2_1, acc_2_2, acc_2_3,
        acc_3_0, acc_3_1, acc_3_2, acc_3_3,
        acc_4_0, acc_4_1, acc_4_2, acc_4_3,
        acc_5_0, acc_5_1, acc_5_2, acc_5_3,
        acc_6_0, acc_6_1, acc_6_2, acc_6_3,
        acc_7_0, acc_7_1, acc_7_2, acc_7_3,
    );
    for (var r = 0u; r < MATMUL_TILE_M; r++) {
        let row = first_row + r;
        if (row < M) {
            for (var j = 0u; j < MATMUL_TILE_N4; j++) {
                c[row * N4 + column + j] = acc[r * MATMUL_TILE_N4 + j];
            }
        }
    }
}
