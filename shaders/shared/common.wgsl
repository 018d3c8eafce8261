// Helpers shared by every kernel: indexing, channel padding, NaN tests.
//
// Every kernel treats its work as a 1-D range of invocations. A dispatch dimension holds at most 65535
// workgroups (WebGPU's default limit), so the host spreads the range over x and y and kernels fold it back.

// The largest finite f32, in hex: Tint (Chrome, Edge) rejects the decimal 3.40282347e+38 as out of range
// because it rounds it before converting.
const FLT_MAX: f32 = 0x1.fffffep+127f;

fn linear_index(workgroup: vec3<u32>, workgroups: vec3<u32>, local: u32, workgroup_size: u32) -> u32 {
    return (workgroup.y * workgroups.x + workgroup.x) * workgroup_size + local;
}

// Where row `row` of a matrix stored as a table (src/gpu/textures.rs) starts in its texture: rows are laid out
// in blocks of `block_rows` side by side, each block `width` texels wide. `block_rows` is a multiple of 4, so
// rows 4k to 4k + 3 start at the same x.
fn matrix_origin(row: u32, width: u32, block_rows: u32) -> vec2<u32> {
    return vec2<u32>((row / block_rows) * width, row % block_rows);
}

// Tensors are NHWC with channels padded to a multiple of 4 and read as vec4 (see src/gpu/tensor.rs).
// Padding lanes are always stored as 0, so consumers may read whole vec4s without masking.
fn zero_padding_lanes(value: vec4<f32>, c4: u32, channels: u32) -> vec4<f32> {
    let lanes = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(value, vec4<f32>(0.0), lanes >= vec4<u32>(channels));
}

// NaN from the bits. Comparisons cannot be trusted for this: naga emits an ordered `!=` (false for NaN), and
// GLSL drivers need not follow IEEE rules for NaN at all.
fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}
