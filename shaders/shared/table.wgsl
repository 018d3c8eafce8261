// Reading lookup tables: the rgba32float textures that hold weights, the staged input and PWLU records, read one
// texel at a time. CPU twin: none needed (a read).
//
// A read samples the texel's centre through a nearest, clamp-to-edge sampler (bound by the launcher at
// binding 6) instead of calling textureLoad. Browsers guard every textureLoad against coordinates out of range
// (Chrome's Tint adds a query of the texture's mip levels, one of its size and two clamps to each), and on
// Chrome without a GPU those guards cost a third of a read; a sample is in range by construction. The
// coordinate is exact enough: (x + 0.5) * (1 / width) is within 0.002 texel of the centre for widths up to
// 8192, and nearest filtering picks the texel that contains it.

@group(0) @binding(6) var table_sampler: sampler;

// 1 / a table's size in texels. Querying the size costs about as much as a read, so kernels do it once.
fn table_scale(size: vec2<u32>) -> vec2<f32> {
    return 1.0 / vec2<f32>(size);
}

// Texel `texel` of `table`, whose `table_scale` is `scale`: sampled at the texel's centre.
fn table_read(table: texture_2d<f32>, texel: vec2<u32>, scale: vec2<f32>) -> vec4<f32> {
    return textureSampleLevel(table, table_sampler, (vec2<f32>(texel) + 0.5) * scale, 0.0);
}
