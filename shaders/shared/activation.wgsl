// Activations, applied to 4 consecutive channels at once. CPU twin: src/cpu/activation.rs.
// Needs shared/common.wgsl.
//
// The kernel that includes this file binds the PWLU table (or any small buffer when ACTIVATION is not PWLU)
// at binding 7. The codes must match `ActivationCode` in src/gpu/kernels/activation.rs.

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
// Logical channel count of the tensor being written; lanes past it are padding.
override CHANNELS: u32 = 4u;

@group(0) @binding(7) var<storage, read> act_params: array<f32>;

const PWLU_HEADER_LEN: u32 = 4u;

// Layout of one unit's record: see `PwluTable` in src/ops/pwlu.rs.
fn pwlu_stride() -> u32 {
    return PWLU_HEADER_LEN + 2u * (PWLU_N + 2u) + select(PWLU_N + 1u, 0u, PWLU_UNIFORM);
}

fn pwlu(x: f32, channel: u32) -> f32 {
    // Padding lanes read the last unit; their result is discarded.
    let base = select(0u, min(channel, CHANNELS - 1u), PWLU_PER_CHANNEL) * pwlu_stride();
    let left = act_params[base];
    let right = act_params[base + 1u];
    // NaN fails both tail tests and lands in an interior segment, where slope * NaN stays NaN.
    var segment: u32;
    if (x < left) {
        segment = 0u;
    } else if (x >= right) {
        segment = PWLU_N + 1u;
    } else if (PWLU_UNIFORM) {
        // Rounding can give N just below B_R: clamp to the last interior segment.
        segment = 1u + min(u32((x - left) * act_params[base + 2u]), PWLU_N - 1u);
    } else {
        let breakpoints = base + PWLU_HEADER_LEN + 2u * (PWLU_N + 2u);
        var lo = 0u;
        var hi = PWLU_N;
        while (hi - lo > 1u) {
            let mid = (lo + hi) / 2u;
            if (act_params[breakpoints + mid] <= x) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        segment = 1u + lo;
    }
    let slope = act_params[base + PWLU_HEADER_LEN + 2u * segment];
    let intercept = act_params[base + PWLU_HEADER_LEN + 2u * segment + 1u];
    // A flat tail at +-inf gives its value (the limit), not 0 * inf = NaN.
    return select(fma(slope, x, intercept), intercept, slope == 0.0 && abs(x) > FLT_MAX);
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
    if (ACTIVATION == ACT_IDENTITY) {
        return v;
    }
    return select(activate_finite_rules(v, c4), v, is_nan4(v));
}

fn activate_finite_rules(v: vec4<f32>, c4: u32) -> vec4<f32> {
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
            let c = c4 * 4u;
            return vec4<f32>(pwlu(v.x, c), pwlu(v.y, c + 1u), pwlu(v.z, c + 2u), pwlu(v.w, c + 3u));
        }
        default: {
            return v;
        }
    }
}
