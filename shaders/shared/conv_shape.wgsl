// A convolution layer's sizes, bound as a uniform at binding 5 by conv2d.wgsl and conv2d_depthwise.wgsl.
// Host twin: `ConvShape` in src/gpu/kernels/conv.rs, the same fields in the same order (tests/shaders.rs
// compares the layouts).
//
// A uniform rather than override constants, so that layers of one kind (activation, residual, and for the
// depthwise kernel its stride) share a pipeline: pipelines are what a cold start pays for. SwiftShader (Chrome
// without a GPU) spends about 190 ms compiling each specialisation of the dense kernel and 70 ms of the
// depthwise one, and a model has 10 to 50 layer shapes. Sizes known only at run time cost nothing measurable
// in steady state: SwiftShader unrolls nothing, and lavapipe little in loops this large.
//
// Provides `output_channels()` for shared/activation.wgsl and shared/epilogue.wgsl (instead of
// shared/channels.wgsl).

struct ConvShape {
    batch: u32,
    in_h: u32,
    in_w: u32,
    // Input channels in vec4s (the depthwise kernel's channels).
    in_c4: u32,
    out_h: u32,
    out_w: u32,
    out_c4: u32,
    // Logical output channels; lanes past them are padding.
    channels: u32,
    // The dense kernel's weight matrix: its row width in texels (out_c4 rounded up to the kernel's tile), and
    // its rows per block of the texture (see `matrix_origin`).
    w_oc4: u32,
    w_block_rows: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    pad_top: u32,
    pad_left: u32,
}

@group(0) @binding(5) var<uniform> shape: ConvShape;

fn output_channels() -> u32 {
    return shape.channels;
}
