// The input of a kernel that can read it through the input stage (shared/staged_input.wgsl), read straight
// from its storage buffer instead: the variant for contexts that do not stage (`InputStage` in
// src/gpu/options.rs), chiefly GPUs, where a storage-buffer read goes through the same caches as a texel read
// and the stage's copy would be one more pass over every input. The same two functions, so that kernels are
// written once. CPU twin: none needed (a read).
//
// Bound read_write like every activation: a plan keeps them all in one arena buffer, and WebGPU forbids
// binding one buffer both read-only and writable in one dispatch. The planner never lets such a kernel's
// output overlap its input.

@group(0) @binding(0) var<storage, read_write> input: array<vec4<f32>>;

fn begin_input() {}

fn load_input(index: u32) -> vec4<f32> {
    return input[index];
}
