// Layer normalisation over the channels of each pixel of an NHWC4 tensor (ConvNeXt):
// (x - mean) / sqrt(var + eps) * weight + bias, biased variance, two passes over the pixel's channels (the
// mean, then the variance about it). One invocation per pixel.
// CPU twin: `layer_norm` in src/reference/channels.rs. Launcher: src/gpu/kernels/channels.rs.

#include "shared/common.wgsl"

override PIXELS: u32 = 1u;
override C4: u32 = 1u;
override CHANNELS: u32 = 4u;
override EPS: f32 = 1e-6;

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
// C4 weight vec4s, then C4 bias vec4s (padding lanes 0).
@group(0) @binding(1) var<storage, read> affine: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let pixel = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (pixel >= PIXELS) {
        return;
    }
    let base = pixel * C4;
    // Padding lanes are 0, so they add nothing to the sum.
    var sum = vec4<f32>(0.0);
    for (var c4 = 0u; c4 < C4; c4++) {
        sum += input[base + c4];
    }
    let mean = (sum.x + sum.y + sum.z + sum.w) / f32(CHANNELS);
    var squares = vec4<f32>(0.0);
    for (var c4 = 0u; c4 < C4; c4++) {
        let d = zero_padding_lanes(input[base + c4] - vec4<f32>(mean), c4, CHANNELS);
        squares += d * d;
    }
    let variance = (squares.x + squares.y + squares.z + squares.w) / f32(CHANNELS);
    let inv = inverseSqrt(variance + EPS);
    for (var c4 = 0u; c4 < C4; c4++) {
        let v = (input[base + c4] - vec4<f32>(mean)) * inv * affine[c4] + affine[C4 + c4];
        output[base + c4] = zero_padding_lanes(v, c4, CHANNELS);
    }
}
