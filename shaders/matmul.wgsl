// Matrix multiply C = A B, the project's own GEMM: the yardstick the convolutions are measured against
// (`pwlu bench --layers`). CPU twin: src/cpu/matmul.rs. Launcher: src/gpu/kernels/matmul.rs.
//
// A is M x K row-major with rows padded to K4 vec4s; B is a table (texture, like the convolution's weights) of
// K4 * 4 rows of N4 texels; C is M rows of N4 vec4s. Padding is zero. Each invocation computes TILE_M rows x
// TILE_N4 vec4s of C in registers, reading A and B as whole vec4s, with no workgroup memory and no barriers:
// the same scheme as conv2d.wgsl, on a plain matrix, so the difference between the two is what the
// convolution's indexing costs.

#include "shared/common.wgsl"

override M: u32 = 1u;
override K4: u32 = 1u;
// A multiple of TILE_N4.
override N4: u32 = 4u;
// Rows per block of B's texture (see `matrix_origin`).
override B_BLOCK_ROWS: u32 = 4u;

const WORKGROUP_SIZE: u32 = 64u;
const TILE_M: u32 = 8u;
const TILE_N4: u32 = 4u;

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var b: texture_2d<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let column_tiles = N4 / TILE_N4;
    let row_tiles = (M + TILE_M - 1u) / TILE_M;
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= column_tiles * row_tiles) {
        return;
    }
    let column = (id % column_tiles) * TILE_N4;
    let first_row = (id / column_tiles) * TILE_M;

    var row_base: array<u32, TILE_M>;
    for (var r = 0u; r < TILE_M; r++) {
        // Rows past the end repeat the last one; their results are not stored.
        row_base[r] = min(first_row + r, M - 1u) * K4;
    }
    var acc: array<vec4<f32>, TILE_M * TILE_N4>;
    for (var k4 = 0u; k4 < K4; k4++) {
        let origin = matrix_origin(k4 * 4u, N4, B_BLOCK_ROWS) + vec2<u32>(column, 0u);
        var bk: array<vec4<f32>, 4u * TILE_N4>;
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < TILE_N4; j++) {
                bk[i * TILE_N4 + j] = textureLoad(b, origin + vec2<u32>(j, i), 0);
            }
        }
        for (var r = 0u; r < TILE_M; r++) {
            let v = a[row_base[r] + k4];
            for (var j = 0u; j < TILE_N4; j++) {
                acc[r * TILE_N4 + j] += bk[j] * v.x + bk[TILE_N4 + j] * v.y + bk[2u * TILE_N4 + j] * v.z
                    + bk[3u * TILE_N4 + j] * v.w;
            }
        }
    }
    for (var r = 0u; r < TILE_M; r++) {
        let row = first_row + r;
        if (row < M) {
            for (var j = 0u; j < TILE_N4; j++) {
                c[row * N4 + column + j] = acc[r * TILE_N4 + j];
            }
        }
    }
}
