// Average pooling of an NHWC4 tensor to OUT_H x OUT_W over PyTorch's adaptive windows: output row i averages
// input rows floor(i * IN_H / OUT_H) to ceil((i + 1) * IN_H / OUT_H), columns likewise. (Where the output
// divides the input the optimiser has made it a plain average pooling; this kernel is for the rest, such as
// VGG's 7 x 7 from a smaller feature map.) One invocation per output (pixel, channel vec4).
// CPU twin: `adaptive_avg_pool2d` in src/reference/channels.rs. Launcher: src/gpu/kernels/channels.rs.

#include "shared/common.wgsl"

override BATCH: u32 = 1u;
override IN_H: u32 = 1u;
override IN_W: u32 = 1u;
override C4: u32 = 1u;
override OUT_H: u32 = 1u;
override OUT_W: u32 = 1u;

// Activations are bound read_write even where only read: a plan keeps them all in one arena buffer, and WebGPU
// forbids binding one buffer both read-only and writable in the same dispatch.
@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let id = linear_index(workgroup, workgroups, local, WORKGROUP_SIZE);
    if (id >= BATCH * OUT_H * OUT_W * C4) {
        return;
    }
    let c4 = id % C4;
    let ox = (id / C4) % OUT_W;
    let oy = (id / (C4 * OUT_W)) % OUT_H;
    let n = id / (C4 * OUT_W * OUT_H);
    let y0 = oy * IN_H / OUT_H;
    let y1 = ((oy + 1u) * IN_H + OUT_H - 1u) / OUT_H;
    let x0 = ox * IN_W / OUT_W;
    let x1 = ((ox + 1u) * IN_W + OUT_W - 1u) / OUT_W;
    var sum = vec4<f32>(0.0);
    for (var y = y0; y < y1; y++) {
        for (var x = x0; x < x1; x++) {
            sum += input[((n * IN_H + y) * IN_W + x) * C4 + c4];
        }
    }
    output[id] = sum / f32((y1 - y0) * (x1 - x0));
}
