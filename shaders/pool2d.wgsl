// Max and average pooling over NHWC4 tensors, PyTorch's semantics (see src/ops/pool.rs).
// CPU twin: `pool2d` in src/reference/pool.rs. Launcher: src/gpu/kernels/pool.rs.

#include "shared/common.wgsl"

const MODE_MAX: u32 = 0u;
const MODE_AVERAGE: u32 = 1u;

override MODE: u32 = MODE_MAX;
override COUNT_INCLUDE_PAD: bool = true;
override BATCH: u32 = 1u;
override IN_H: u32 = 1u;
override IN_W: u32 = 1u;
override C4: u32 = 1u;
override OUT_H: u32 = 1u;
override OUT_W: u32 = 1u;
override KERNEL_H: u32 = 1u;
override KERNEL_W: u32 = 1u;
override STRIDE_H: u32 = 1u;
override STRIDE_W: u32 = 1u;
override DILATION_H: u32 = 1u;
override DILATION_W: u32 = 1u;
override PAD_TOP: u32 = 0u;
override PAD_LEFT: u32 = 0u;
override PAD_BOTTOM: u32 = 0u;
override PAD_RIGHT: u32 = 0u;


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
    let m = id / C4;
    let n = m / (OUT_H * OUT_W);
    let r = m % (OUT_H * OUT_W);
    let y0 = i32((r / OUT_W) * STRIDE_H) - i32(PAD_TOP);
    let x0 = i32((r % OUT_W) * STRIDE_W) - i32(PAD_LEFT);

    if (MODE == MODE_MAX) {
        // The padding rule (at most half the kernel) leaves at least one input pixel in every window.
        var best = vec4<f32>(-FLT_MAX);
        var first = true;
        for (var ky = 0u; ky < KERNEL_H; ky++) {
            let y = y0 + i32(ky * DILATION_H);
            if (y < 0 || y >= i32(IN_H)) {
                continue;
            }
            for (var kx = 0u; kx < KERNEL_W; kx++) {
                let x = x0 + i32(kx * DILATION_W);
                if (x < 0 || x >= i32(IN_W)) {
                    continue;
                }
                let v = input[((n * IN_H + u32(y)) * IN_W + u32(x)) * C4 + c4];
                // NaN wins and then stays, as in PyTorch.
                let take = (v > best) | is_nan4(v) | vec4<bool>(first);
                best = select(best, v, take & !is_nan4(best));
                first = false;
            }
        }
        output[id] = best;
    } else {
        let y1 = min(y0 + i32(KERNEL_H), i32(IN_H + PAD_BOTTOM));
        let x1 = min(x0 + i32(KERNEL_W), i32(IN_W + PAD_RIGHT));
        let padded_count = (y1 - y0) * (x1 - x0);
        let cy0 = max(y0, 0);
        let cx0 = max(x0, 0);
        let cy1 = min(y1, i32(IN_H));
        let cx1 = min(x1, i32(IN_W));
        var sum = vec4<f32>(0.0);
        for (var y = cy0; y < cy1; y++) {
            for (var x = cx0; x < cx1; x++) {
                sum += input[((n * IN_H + u32(y)) * IN_W + u32(x)) * C4 + c4];
            }
        }
        let count = select((cy1 - cy0) * (cx1 - cx0), padded_count, COUNT_INCLUDE_PAD);
        output[id] = sum / f32(count);
    }
}

