// The fused epilogue of producing kernels: residual add and activation, then the store.
// CPU twin: `epilogue` in src/cpu/conv.rs.
//
// Needs shared/activation.wgsl and shared/common.wgsl, and the including kernel's `residual` and `output`
// bindings.

// 0: no residual; 1: act(value + residual) (ResNet); 2: act(value) + residual.
override RESIDUAL: u32 = 0u;

fn store_output(index: u32, c4: u32, value: vec4<f32>) {
    store_output_with(index, c4, value, activation_params(c4));
}

// `store_output` with the activation's parameters for `c4` already loaded (see `activation_params`).
fn store_output_with(index: u32, c4: u32, value: vec4<f32>, act: ActivationParams) {
    var v = value;
    if (RESIDUAL == 1u) {
        v += residual[index];
    }
    v = activate_with(v, act);
    if (RESIDUAL == 2u) {
        v += residual[index];
    }
    output[index] = zero_padding_lanes(v, c4, CHANNELS);
}
