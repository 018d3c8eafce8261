// Element-wise `activation(x * scale[c] + shift[c])` over an NHWC4 tensor: a standalone activation (AFFINE
// off) or a batch norm in inference form that no convolution precedes (AFFINE on).
// CPU twin: `activation` and `batch_norm` in src/reference/elementwise.rs. Launcher: src/gpu/kernels/elementwise.rs.

#include "shared/common.wgsl"
#include "shared/channels.wgsl"
#include "shared/table.wgsl"
#include "shared/activation.wgsl"

override TOTAL: u32 = 1u;
override C4: u32 = 1u;
override AFFINE: bool = false;


// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
// C4 scale vec4s, then C4 shift vec4s.
@group(0) @binding(1) var<storage, read> affine: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= TOTAL) {
        return;
    }
    let c4 = id % C4;
    var v = input[id];
    if (AFFINE) {
        v = fma(v, affine[c4], affine[C4 + c4]);
    }
    output[id] = zero_padding_lanes(activate(v, c4), c4, CHANNELS);
}
