// The fused epilogue of producing kernels: residual add and activation, then the store.
// CPU twin: `epilogue` in src/reference/conv.rs.
//
// Needs shared/activation.wgsl and shared/common.wgsl, the including kernel's `residual` and `output` bindings,
// and its `load_input` (shared/staged_input.wgsl, or its own for an input in a storage buffer).

// 0: no residual; 1: act(value + residual) (ResNet); 2: act(value) + residual.
override RESIDUAL: u32 = 0u;
// The residual is the kernel's own input (x + conv(x)). It is then read through `load_input`: WebGPU forbids binding
// one range of a buffer to two writable bindings, and activations are bound writable (see src/gpu/shaders.rs).
override RESIDUAL_FROM_INPUT: bool = false;

fn residual_at(index: u32) -> vec4<f32> {
    if (RESIDUAL_FROM_INPUT) {
        return load_input(index);
    }
    return residual[index];
}

fn store_output(index: u32, c4: u32, value: vec4<f32>) {
    store_output_with(index, c4, value, activation_params(c4));
}

// `store_output` with the activation's parameters for `c4` already loaded (see `activation_params`).
fn store_output_with(index: u32, c4: u32, value: vec4<f32>, act: ActivationParams) {
    var v = value;
    if (RESIDUAL == 1u) {
        v += residual_at(index);
    }
    v = activate_with(v, act);
    if (RESIDUAL == 2u) {
        v += residual_at(index);
    }
    output[index] = zero_padding_lanes(v, c4, output_channels());
}
