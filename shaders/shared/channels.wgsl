// The channel count of the tensor a kernel writes, fixed when its pipeline is created; lanes past it are
// padding. Read through `output_channels`, which shared/activation.wgsl and shared/epilogue.wgsl call: kernels
// whose sizes are a uniform (conv2d.wgsl) define it from that instead of including this file.

override CHANNELS: u32 = 4u;

fn output_channels() -> u32 {
    return CHANNELS;
}
