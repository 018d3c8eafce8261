// Element-wise `activation(a op b)` over NHWC4 tensors: a residual add, or squeeze-and-excitation's
// channel-broadcast multiply (b is [N, C, 1, 1]).
// CPU twin: `binary` in src/reference/elementwise.rs. Launcher: src/gpu/kernels/elementwise.rs.

#include "shared/common.wgsl"
#include "shared/table.wgsl"
#include "shared/activation.wgsl"


override OP: u32 = OP_ADD;

// The sizes are a uniform, so that operations of one kind share a pipeline whatever their shapes (see
// shared/conv_shape.wgsl for why pipelines count).
struct BinarySizes {
    // vec4s of the output.
    total: u32,
    c4: u32,
    // Pixels per image (H * W).
    pixels: u32,
    // Logical channels; lanes past them are padding.
    channels: u32,
}


// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> sizes: BinarySizes;

fn output_channels() -> u32 {
    return sizes.channels;
}

// Both operands are one value (x + x). It is then read through `a`: WebGPU forbids binding one range of a buffer
// to two writable bindings.
override B_IS_A: bool = false;

fn operand_b(index: u32) -> vec4<f32> {
    if (B_IS_A) {
        return a[index];
    }
    return b[index];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    let c4s = sizes.c4;
    if (id >= sizes.total) {
        return;
    }
    let c4 = id % c4s;
    var v: vec4<f32>;
    if (OP == OP_MUL_CHANNELS) {
        let n = id / (sizes.pixels * c4s);
        v = a[id] * operand_b(n * c4s + c4);
    } else {
        v = a[id] + operand_b(id);
    }
    output[id] = zero_padding_lanes(activate(v, c4), c4, output_channels());
}
