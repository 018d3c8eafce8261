// Activations, applied to 4 consecutive channels at once. CPU twin: src/reference/activation.rs.
// Needs shared/common.wgsl, shared/table.wgsl, and `output_channels()` (shared/channels.wgsl or the including
// kernel's own).
//
// The kernel that includes this file binds the PWLU table (or a one-texel placeholder when ACTIVATION is not
// PWLU) at binding 7. The ACT_* codes come from `ActivationCode` in src/gpu/shaders.rs, through the
// generated prelude (src/gpu/shaders.rs).


override ACTIVATION: u32 = ACT_IDENTITY;
// LeakyReLU's negative slope.
override ACT_ALPHA: f32 = 0.0;
// PWLU: intervals, one unit per channel or one for all, uniform grid or sorted breakpoints.
override PWLU_N: u32 = 1u;
override PWLU_PER_CHANNEL: bool = false;
override PWLU_UNIFORM: bool = true;

// One row per unit, its record (see `PwluTable` in src/ops/pwlu.rs) as rgba32float texels: the header
// [B_L, B_R, 1/d, 0], then the N + 2 segments one per texel as (slope, intercept, 0, 0), then a non-uniform
// unit's breakpoints four per texel. One segment per texel so that an element's read needs no choice of half.
// A texture rather than a storage buffer because each invocation reads a data-dependent segment: CPU-emulated
// adapters fetch texels for all invocations of a SIMD batch with one gather, but load storage buffers invocation
// by invocation (docs/performance.md has the figures).
@group(0) @binding(7) var act_table: texture_2d<f32>;

// Texels of a record before its segments: the header.
const PWLU_FIRST_SEGMENT: u32 = 1u;

fn pwlu_texel(unit: u32, texel: u32, scale: vec2<f32>) -> vec4<f32> {
    return table_read(act_table, vec2<u32>(texel, unit), scale);
}

// Each lane's unit (table row). Padding lanes read the last unit; their result is discarded.
fn pwlu_units(c4: u32) -> vec4<u32> {
    let channels = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(vec4<u32>(0u), min(channels, vec4<u32>(output_channels() - 1u)), PWLU_PER_CHANNEL);
}

// A non-uniform unit's interior segment (1 to N): binary search over its sorted breakpoints.
fn pwlu_search(x: f32, unit: u32, scale: vec2<f32>) -> u32 {
    let breakpoints = 4u * (PWLU_FIRST_SEGMENT + PWLU_N + 2u);
    var lo = 0u;
    var hi = PWLU_N;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        let at = breakpoints + mid;
        if (pwlu_texel(unit, at >> 2u, scale)[at & 3u] <= x) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return 1u + lo;
}

// What an activation reads per vec4 of channels, loaded once by kernels that write several pixels of the same
// channels. Only PWLU has any: each lane's unit, its table row's texture coordinate and its header's bounds and
// 1/d; the table's scale, and the x coordinates of the centres of the left tail's texel, the first interior
// segment's and the right tail's.
struct ActivationParams {
    units: vec4<u32>,
    row: vec4<f32>,
    left: vec4<f32>,
    right: vec4<f32>,
    inv_d: vec4<f32>,
    scale: vec2<f32>,
    segment_at: vec3<f32>,
}

fn activation_params(c4: u32) -> ActivationParams {
    if (ACTIVATION != ACT_PWLU) {
        return ActivationParams(
            vec4<u32>(0u), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec2<f32>(0.0),
            vec3<f32>(0.0),
        );
    }
    let units = pwlu_units(c4);
    let scale = table_scale(textureDimensions(act_table));
    let h0 = pwlu_texel(units.x, 0u, scale);
    let h1 = pwlu_texel(units.y, 0u, scale);
    let h2 = pwlu_texel(units.z, 0u, scale);
    let h3 = pwlu_texel(units.w, 0u, scale);
    let left_at = (f32(PWLU_FIRST_SEGMENT) + 0.5) * scale.x;
    return ActivationParams(
        units,
        (vec4<f32>(units) + 0.5) * scale.y,
        vec4<f32>(h0.x, h1.x, h2.x, h3.x),
        vec4<f32>(h0.y, h1.y, h2.y, h3.y),
        vec4<f32>(h0.z, h1.z, h2.z, h3.z),
        scale,
        vec3<f32>(left_at, left_at + scale.x, (f32(PWLU_FIRST_SEGMENT + PWLU_N + 1u) + 0.5) * scale.x),
    );
}

// The (slope, intercept) of the segment whose texel's centre is at x coordinate `at` of row `row`.
fn pwlu_segment(at: f32, row: f32) -> vec2<f32> {
    return textureSampleLevel(act_table, table_sampler, vec2<f32>(at, row), 0.0).xy;
}

// PWLU on 4 channels: the segment's texel from one index computation per lane (uniform units; in f32, as
// texture coordinates, so that no lane converts to an integer), then one texel read per lane.
fn pwlu4(v: vec4<f32>, unit: ActivationParams) -> vec4<f32> {
    var at: vec4<f32>;
    if (PWLU_UNIFORM) {
        // floor, then the clamp to the last interior segment: rounding can give N just below B_R. Tail lanes
        // (and NaN, which fails both tail tests) may compute garbage here; the tails override it, and NaN
        // leaves `activate_with` unchanged.
        let interior = clamp(floor((v - unit.left) * unit.inv_d), vec4<f32>(0.0), vec4<f32>(f32(PWLU_N - 1u)));
        at = fma(interior, vec4<f32>(unit.scale.x), vec4<f32>(unit.segment_at.y));
    } else {
        let interior = vec4<u32>(
            pwlu_search(v.x, unit.units.x, unit.scale),
            pwlu_search(v.y, unit.units.y, unit.scale),
            pwlu_search(v.z, unit.units.z, unit.scale),
            pwlu_search(v.w, unit.units.w, unit.scale),
        );
        at = (vec4<f32>(interior + PWLU_FIRST_SEGMENT) + 0.5) * unit.scale.x;
    }
    at = select(
        select(at, vec4<f32>(unit.segment_at.z), v >= unit.right), vec4<f32>(unit.segment_at.x), v < unit.left
    );
    let p0 = pwlu_segment(at.x, unit.row.x);
    let p1 = pwlu_segment(at.y, unit.row.y);
    let p2 = pwlu_segment(at.z, unit.row.z);
    let p3 = pwlu_segment(at.w, unit.row.w);
    let slope = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    let intercept = vec4<f32>(p0.y, p1.y, p2.y, p3.y);
    // A flat segment gives its value: the same as the multiply-add for finite x, and at +-inf the limit rather
    // than 0 * inf = NaN.
    return select(fma(slope, v, intercept), intercept, slope == vec4<f32>(0.0));
}

// max(v, 0) and min(v, 6) written with select so that NaN passes through (WGSL's max and clamp may drop it).
fn relu4(v: vec4<f32>) -> vec4<f32> {
    return select(v, vec4<f32>(0.0), v < vec4<f32>(0.0));
}

fn relu6_4(v: vec4<f32>) -> vec4<f32> {
    return select(relu4(v), vec4<f32>(6.0), v > vec4<f32>(6.0));
}

fn sigmoid4(v: vec4<f32>) -> vec4<f32> {
    return 1.0 / (1.0 + exp(-v));
}

// Abramowitz and Stegun 7.1.26: |error| < 1.5e-7.
fn erf4(v: vec4<f32>) -> vec4<f32> {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - poly * exp(-a * a));
}

// NaN in gives NaN out for every activation, whatever the driver does with NaN in comparisons.
fn activate(v: vec4<f32>, c4: u32) -> vec4<f32> {
    return activate_with(v, activation_params(c4));
}

// `activate` with the parameters of its channels already loaded.
fn activate_with(v: vec4<f32>, params: ActivationParams) -> vec4<f32> {
    if (ACTIVATION == ACT_IDENTITY) {
        return v;
    }
    return select(activate_finite_rules(v, params), v, is_nan4(v));
}

fn activate_finite_rules(v: vec4<f32>, params: ActivationParams) -> vec4<f32> {
    switch ACTIVATION {
        case ACT_RELU: {
            return relu4(v);
        }
        case ACT_RELU6: {
            return relu6_4(v);
        }
        case ACT_LEAKY_RELU: {
            return select(v, v * ACT_ALPHA, v < vec4<f32>(0.0));
        }
        case ACT_SIGMOID: {
            return sigmoid4(v);
        }
        case ACT_SILU: {
            return v * sigmoid4(v);
        }
        case ACT_HARDSIGMOID: {
            return relu6_4(v + 3.0) / 6.0;
        }
        case ACT_HARDSWISH: {
            return v * relu6_4(v + 3.0) / 6.0;
        }
        case ACT_GELU: {
            return 0.5 * v * (1.0 + erf4(v * 0.70710678118654752));
        }
        case ACT_GELU_TANH: {
            // tanh saturates to +-1 in f32 beyond 9; clamping avoids inf / inf in some tanh implementations.
            let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
            return 0.5 * v * (1.0 + tanh(clamp(u, vec4<f32>(-9.0), vec4<f32>(9.0))));
        }
        case ACT_PWLU: {
            return pwlu4(v, params);
        }
        default: {
            return v;
        }
    }
}
