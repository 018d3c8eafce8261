// Activations, applied to 4 consecutive channels at once. CPU twin: src/cpu/activation.rs.
// Needs shared/common.wgsl, shared/table.wgsl, and `output_channels()` (shared/channels.wgsl or the including
// kernel's own).
//
// The kernel that includes this file binds the PWLU table (or a one-texel placeholder when ACTIVATION is not
// PWLU) at binding 7. The codes must match `ActivationCode` in src/gpu/kernels/activation.rs.

const ACT_IDENTITY: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_RELU6: u32 = 2u;
const ACT_LEAKY_RELU: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;
const ACT_SILU: u32 = 5u;
const ACT_HARDSIGMOID: u32 = 6u;
const ACT_HARDSWISH: u32 = 7u;
const ACT_GELU: u32 = 8u;
const ACT_GELU_TANH: u32 = 9u;
const ACT_PWLU: u32 = 10u;

override ACTIVATION: u32 = ACT_IDENTITY;
// LeakyReLU's negative slope.
override ACT_ALPHA: f32 = 0.0;
// PWLU: intervals, one unit per channel or one for all, uniform grid or sorted breakpoints.
override PWLU_N: u32 = 1u;
override PWLU_PER_CHANNEL: bool = false;
override PWLU_UNIFORM: bool = true;

// One row per unit, its record (see `PwluTable` in src/ops/pwlu.rs) as rgba32float texels: the header
// [B_L, B_R, 1/d, 0], the N + 2 (slope, intercept) pairs two per texel, then a non-uniform unit's breakpoints.
// A texture rather than a storage buffer because each invocation reads a data-dependent segment: CPU-emulated
// adapters fetch texels for all invocations of a SIMD batch with one gather, but load storage buffers invocation
// by invocation (PWLU cost 1.17x ReLU6 end to end on lavapipe with a buffer, ~1.0x with the texture).
@group(0) @binding(7) var act_table: texture_2d<f32>;

const PWLU_HEADER_LEN: u32 = 4u;

fn pwlu_texel(unit: u32, texel: u32, scale: vec2<f32>) -> vec4<f32> {
    return table_read(act_table, vec2<u32>(texel, unit), scale);
}

// Each lane's unit (table row). Padding lanes read the last unit; their result is discarded.
fn pwlu_units(c4: u32) -> vec4<u32> {
    let channels = vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(vec4<u32>(0u), min(channels, vec4<u32>(output_channels() - 1u)), PWLU_PER_CHANNEL);
}

// Segment k's (slope, intercept): floats 4 + 2k of the record, i.e. half k % 2 of texel 1 + k / 2.
fn pwlu_pair(unit: u32, segment: u32, scale: vec2<f32>) -> vec2<f32> {
    let q = pwlu_texel(unit, 1u + (segment >> 1u), scale);
    return select(q.xy, q.zw, (segment & 1u) == 1u);
}

// A non-uniform unit's segment: binary search over its sorted breakpoints.
fn pwlu_search(x: f32, unit: u32, left: f32, right: f32, scale: vec2<f32>) -> u32 {
    if (x < left) {
        return 0u;
    }
    if (x >= right) {
        return PWLU_N + 1u;
    }
    let breakpoints = PWLU_HEADER_LEN + 2u * (PWLU_N + 2u);
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
// channels. Only PWLU has any: each lane's unit and its header's bounds and 1/d, and the table's scale.
struct ActivationParams {
    units: vec4<u32>,
    left: vec4<f32>,
    right: vec4<f32>,
    inv_d: vec4<f32>,
    scale: vec2<f32>,
}

fn activation_params(c4: u32) -> ActivationParams {
    if (ACTIVATION != ACT_PWLU) {
        return ActivationParams(vec4<u32>(0u), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec2<f32>(0.0));
    }
    let units = pwlu_units(c4);
    let scale = table_scale(textureDimensions(act_table));
    let h0 = pwlu_texel(units.x, 0u, scale);
    let h1 = pwlu_texel(units.y, 0u, scale);
    let h2 = pwlu_texel(units.z, 0u, scale);
    let h3 = pwlu_texel(units.w, 0u, scale);
    return ActivationParams(
        units,
        vec4<f32>(h0.x, h1.x, h2.x, h3.x),
        vec4<f32>(h0.y, h1.y, h2.y, h3.y),
        vec4<f32>(h0.z, h1.z, h2.z, h3.z),
        scale,
    );
}

// PWLU on 4 channels: branch-free for uniform units (one index computation per lane), then one texel fetch per
// lane for its segment's slope and intercept.
fn pwlu4(v: vec4<f32>, unit: ActivationParams) -> vec4<f32> {
    let units = unit.units;
    var segment: vec4<u32>;
    if (PWLU_UNIFORM) {
        // Rounding can give N just below B_R: clamp to the last interior segment. Tail lanes (and NaN, which
        // fails both tail tests) may convert garbage here; the clamp keeps it in range and the tails override it.
        let interior = vec4<u32>(1u) + min(vec4<u32>((v - unit.left) * unit.inv_d), vec4<u32>(PWLU_N - 1u));
        segment = select(select(interior, vec4<u32>(PWLU_N + 1u), v >= unit.right), vec4<u32>(0u), v < unit.left);
    } else {
        segment = vec4<u32>(
            pwlu_search(v.x, units.x, unit.left.x, unit.right.x, unit.scale),
            pwlu_search(v.y, units.y, unit.left.y, unit.right.y, unit.scale),
            pwlu_search(v.z, units.z, unit.left.z, unit.right.z, unit.scale),
            pwlu_search(v.w, units.w, unit.left.w, unit.right.w, unit.scale),
        );
    }
    let p0 = pwlu_pair(units.x, segment.x, unit.scale);
    let p1 = pwlu_pair(units.y, segment.y, unit.scale);
    let p2 = pwlu_pair(units.z, segment.z, unit.scale);
    let p3 = pwlu_pair(units.w, segment.w, unit.scale);
    let slope = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    let intercept = vec4<f32>(p0.y, p1.y, p2.y, p3.y);
    // A flat tail at +-inf gives its value (the limit), not 0 * inf = NaN.
    let flat_at_infinity = (slope == vec4<f32>(0.0)) & (abs(v) > vec4<f32>(FLT_MAX));
    return select(fma(slope, v, intercept), intercept, flat_at_infinity);
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
