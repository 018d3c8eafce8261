//! The execution plan: an optimised graph turned into GPU dispatches for one batch size.
//!
//! Everything is created here, once: kernels (pipelines and packed weights), activation memory and bind
//! groups. Activations live at offsets in one arena buffer (`place_values`): a value's bytes are free again
//! after its last reader, and values are placed largest first, each in the tightest gap left by the values live
//! at the same time. Running the plan writes the input, submits every dispatch in one command buffer and reads
//! the output back.

use crate::error::{Error, Result};
use crate::gpu::context::{ReadBack, TimedRun, STAGE_WIDTH};
use crate::gpu::kernels::{
    BinaryKernel, Conv2dKernel, ConvVariant, FlattenKernel, GlobalAvgPoolKernel, Pool2dKernel,
    SharedUploads, UnaryKernel,
};
use crate::gpu::tensor::{nhwc4_len, to_nhwc4};
use crate::gpu::{Dispatch, GpuContext, GpuTensor};
use crate::graph::{Graph, Op, Value};
use crate::tensor::{Shape, Tensor};

/// Where the plan's memory goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of all activation buffers (input and output included), after reuse.
    pub activation_bytes: u64,
    /// Bytes the activations would take without reuse.
    pub unshared_activation_bytes: u64,
    /// Number of activation buffers (arenas; more than one only where one would exceed `max_buffer_size`).
    pub buffers: usize,
    /// Bytes of everything else the dispatches bind: packed weights, biases, PWLU tables.
    pub weight_bytes: u64,
    /// Bytes of the texture that convolutions and global pooling read their input through (a copy of the
    /// largest such input, rounded up to whole rows; see shaders/shared/staged_input.wgsl).
    pub staging_bytes: u64,
    /// The largest sum of two activations that are live at the same time: with the weights, the least
    /// memory any plan that keeps a layer's input and output apart could use.
    pub two_largest_live_bytes: u64,
    /// The largest sum of all activations live at one step (a residual block's skip input, a layer's input
    /// and its output): the least any plan that keeps a layer's input and output apart can use.
    pub peak_live_bytes: u64,
}

impl MemoryReport {
    /// All the GPU memory the plan holds.
    pub fn total_bytes(&self) -> u64 {
        self.weight_bytes + self.activation_bytes + self.staging_bytes
    }

    /// `total_bytes` over weights plus the two largest live activations (1.0 would be perfect reuse).
    pub fn overhead_ratio(&self) -> f64 {
        self.total_bytes() as f64 / (self.weight_bytes + self.two_largest_live_bytes).max(1) as f64
    }
}

/// How a [`LayerTime`] was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// GPU timestamps around the dispatch, all dispatches in one submission.
    GpuTimestamps,
    /// Host wall clock around the dispatch submitted alone and waited for (submission included).
    WallClock,
}

/// Time spent in one dispatch, from [`Plan::layer_times`] or [`Plan::profile_wall_clock`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    /// The graph node.
    pub node: String,
    /// The WGSL kernel.
    pub kernel: &'static str,
    /// Seconds.
    pub seconds: f64,
    /// How `seconds` was measured.
    pub timing: Timing,
}

/// A graph ready to run on the GPU at one batch size.
#[derive(Debug)]
pub struct Plan {
    batch: usize,
    input: GpuTensor,
    output: GpuTensor,
    /// Each dispatch's bind group keeps its kernel's weights and pipeline alive.
    dispatches: Vec<Dispatch>,
    /// The graph node each dispatch computes.
    nodes: Vec<String>,
    memory: MemoryReport,
}

impl Plan {
    /// Plans `graph` (already optimised) for `batch` images.
    pub fn new(ctx: &GpuContext, graph: &Graph, batch: usize) -> Result<Plan> {
        if batch == 0 {
            return Err(Error::invalid_op("plan", "batch size must be positive"));
        }
        let n = graph.nodes.len();
        let aliases = |i: usize| graph.is_alias(i);
        let mut source: Vec<Value> = (0..n).map(Value::Node).collect();
        for i in 0..n {
            if aliases(i) {
                source[i] = resolve(&source, graph.nodes[i].inputs[0]);
            }
        }
        let output_value = resolve(&source, graph.output);
        // The last step that reads each value, and the last that reads it from its buffer: a layer that reads
        // its inputs only through the input stage has copied them out before it runs, so its output may take
        // their bytes.
        let mut last_use = vec![0usize; n];
        let mut last_buffer_use = vec![0usize; n];
        for (j, node) in graph.nodes.iter().enumerate() {
            let first_input = node.inputs.first().map(|&v| resolve(&source, v));
            let staged_only = reads_staged_input(ctx, &node.op)
                && node
                    .inputs
                    .iter()
                    .all(|&v| Some(resolve(&source, v)) == first_input);
            for &v in &node.inputs {
                if let Value::Node(k) = resolve(&source, v) {
                    last_use[k] = last_use[k].max(j);
                    // k < j: nodes only read earlier values.
                    let until = if staged_only { j - 1 } else { j };
                    last_buffer_use[k] = last_buffer_use[k].max(until);
                }
            }
        }

        // Bytes of each node's value, 0 for aliases.
        let mut value_bytes = vec![0u64; n];
        for (j, node) in graph.nodes.iter().enumerate() {
            if aliases(j) {
                continue;
            }
            let shape = node.shape.with_batch(batch);
            let context = |e| node_error(node, batch, e);
            let bytes = nhwc4_len(shape)
                .map(|len| len as u64 * 4)
                .ok_or_else(|| context(Error::invalid_op("plan", format!("{shape} overflows"))))?;
            ctx.check_buffer_size(&format!("activation of node '{}'", node.name), bytes)
                .map_err(context)?;
            value_bytes[j] = bytes;
        }
        let input_shape = graph.input.with_batch(batch);
        let input_bytes = nhwc4_len(input_shape)
            .map(|len| len as u64 * 4)
            .ok_or_else(|| Error::invalid_op("plan", format!("input {input_shape} overflows")))?;
        ctx.check_buffer_size("the input", input_bytes)?;
        let input_last_use = graph
            .nodes
            .iter()
            .rposition(|node| {
                node.inputs
                    .iter()
                    .any(|&v| resolve(&source, v) == Value::Input)
            })
            .unwrap_or(0);
        // Nodes' values, then the graph input. A node's output is live from its step to its last reader's
        // step, both included, so it never shares bytes with the inputs it is computed from: the floor the
        // memory report compares with. The plan places values by when their buffer is last read instead.
        let lifetimes_until = |last_use: &[usize]| -> Vec<Lifetime> {
            (0..n)
                .map(|j| Lifetime {
                    bytes: value_bytes[j],
                    first: j,
                    last: if Value::Node(j) == output_value {
                        n
                    } else {
                        last_use[j].max(j)
                    },
                })
                .chain([Lifetime {
                    bytes: input_bytes,
                    first: 0,
                    last: if output_value == Value::Input {
                        n
                    } else {
                        input_last_use
                    },
                }])
                .collect()
        };
        let lifetimes = lifetimes_until(&last_use);
        let limits = ctx.limits();
        let placement = place_values(
            &lifetimes_until(&last_buffer_use),
            u64::from(limits.min_storage_buffer_offset_alignment).max(16),
            limits.max_buffer_size,
        );

        let arenas: Vec<wgpu::Buffer> = placement
            .arena_sizes
            .iter()
            .map(|&size| ctx.tensor_buffer("activations", size))
            .collect();
        let tensor_at = |value: usize, shape: Shape, dims: Vec<usize>| -> Result<GpuTensor> {
            let (arena, offset) = placement.of[value]
                .ok_or_else(|| Error::Model("no memory was planned for a value".into()))?;
            Ok(GpuTensor::in_buffer(
                arenas[arena].clone(),
                offset,
                shape,
                dims,
            ))
        };
        let input = tensor_at(
            n,
            input_shape,
            vec![input_shape.n, input_shape.c, input_shape.h, input_shape.w],
        )?;
        let mut values: Vec<Option<GpuTensor>> = vec![None; n];
        let mut memory = MemoryReport {
            activation_bytes: arenas.iter().map(wgpu::Buffer::size).sum(),
            unshared_activation_bytes: input_bytes.max(16),
            buffers: arenas.len(),
            ..MemoryReport::default()
        };
        // One input stage for the plan, as large as the largest input read through it, before any kernel
        // asks for a smaller one.
        let staged_input_bytes = graph
            .nodes
            .iter()
            .filter(|node| reads_staged_input(ctx, &node.op))
            .filter_map(
                |node| match node.inputs.first().map(|&v| resolve(&source, v)) {
                    Some(Value::Input) => Some(input_bytes),
                    Some(Value::Node(k)) => Some(value_bytes[k]),
                    None => None,
                },
            )
            .max();
        if let Some(bytes) = staged_input_bytes {
            let rows = (bytes / 16).div_ceil(u64::from(STAGE_WIDTH));
            ctx.input_stage(u32::try_from(rows).unwrap_or(u32::MAX))?;
        }
        ctx.take_errors()?;
        let mut dispatches = Vec::with_capacity(n);
        // A tensor that several nodes name is uploaded once (docs/format.md: memory proportional to the file).
        let mut uploads = SharedUploads::default();
        let mut nodes = Vec::with_capacity(n);

        for (j, node) in graph.nodes.iter().enumerate() {
            let context = |e| node_error(node, batch, e);
            let tensor_of = |values: &[Option<GpuTensor>], v: Value| -> Result<GpuTensor> {
                match resolve(&source, v) {
                    Value::Input => Ok(input.clone()),
                    Value::Node(k) => values[k].clone().ok_or_else(|| {
                        Error::Model(format!(
                            "node '{}' reads a value that is not computed",
                            node.name
                        ))
                    }),
                }
            };
            if aliases(j) {
                continue;
            }
            let shape = node.shape.with_batch(batch);
            memory.unshared_activation_bytes += value_bytes[j].max(16);
            let dims = if shape.h * shape.w == 1 && Value::Node(j) == output_value {
                vec![shape.n, shape.c]
            } else {
                vec![shape.n, shape.c, shape.h, shape.w]
            };
            let output = tensor_at(j, shape, dims).map_err(context)?;
            let inputs: Vec<GpuTensor> = node
                .inputs
                .iter()
                .map(|&v| tensor_of(&values, v))
                .collect::<Result<_>>()?;
            let in_shape = inputs[0].shape();
            let dispatch = match &node.op {
                Op::Conv(layer) => {
                    Conv2dKernel::prepare(ctx, layer, in_shape, &mut uploads)
                        .and_then(|k| k.bind(ctx, &inputs[0], inputs.get(1), &output))
                        .map_err(context)?
                }
                Op::Linear(linear) => {
                    Conv2dKernel::prepare_linear(ctx, linear, batch, &mut uploads)
                        .and_then(|k| k.bind(ctx, &inputs[0], None, &output))
                        .map_err(context)?
                }
                Op::BatchNorm(bn, act) => {
                    UnaryKernel::prepare_batch_norm(ctx, bn, act, in_shape, &mut uploads)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::Activation(act) => {
                    UnaryKernel::prepare_activation(ctx, act, in_shape, &mut uploads)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::Binary(op, act) => {
                    BinaryKernel::prepare(ctx, *op, act, in_shape, &mut uploads)
                        .and_then(|k| k.bind(ctx, &inputs[0], &inputs[1], &output))
                        .map_err(context)?
                }
                Op::Pool(pool) => {
                    Pool2dKernel::new(ctx, pool, in_shape)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::GlobalAvgPool => {
                    GlobalAvgPoolKernel::new(ctx, in_shape)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::Flatten => {
                    FlattenKernel::new(ctx, in_shape)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::Pad(_) => {
                    return Err(context(Error::invalid_op(
                        "pad",
                        "zero padding is supported where it feeds a convolution (it folds into its padding)",
                    )))
                }
            };
            dispatches.push(dispatch);
            nodes.push(node.name.clone());
            values[j] = Some(output);
        }
        let mut weights: Vec<&wgpu::Buffer> = Vec::new();
        for buffer in dispatches.iter().flat_map(|d| d.buffers()) {
            if !arenas.contains(buffer) && buffer != ctx.placeholder() && !weights.contains(&buffer)
            {
                weights.push(buffer);
            }
        }
        let mut tables: Vec<&wgpu::Texture> = Vec::new();
        for table in dispatches.iter().flat_map(|d| d.tables()) {
            if table != ctx.placeholder_table() && !tables.contains(&table) {
                tables.push(table);
            }
        }
        memory.weight_bytes = weights.iter().map(|b| b.size()).sum::<u64>()
            + tables.iter().map(|t| texture_bytes(t)).sum::<u64>();
        let mut stages: Vec<&wgpu::Texture> = Vec::new();
        for stage in dispatches.iter().filter_map(|d| d.input_stage()) {
            if !stages.contains(&stage) {
                stages.push(stage);
            }
        }
        memory.staging_bytes = stages.iter().map(|t| texture_bytes(t)).sum();
        (memory.two_largest_live_bytes, memory.peak_live_bytes) = live_bytes(&lifetimes, n);
        let output = match output_value {
            Value::Input => input.clone(),
            Value::Node(k) => values[k]
                .clone()
                .ok_or_else(|| Error::Model("the graph output is never computed".into()))?,
        };
        let output = {
            let s = output.shape();
            let dims = if s.h * s.w == 1 {
                vec![s.n, s.c]
            } else {
                vec![s.n, s.c, s.h, s.w]
            };
            output.with_dims(dims)
        };
        Ok(Plan {
            batch,
            input,
            output,
            dispatches,
            nodes,
            memory,
        })
    }

    /// The batch size this plan runs.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The dispatches, in order.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// The graph node each dispatch computes, in dispatch order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Submits every dispatch with GPU timestamps around each; `None` where the device has none.
    pub fn submit_timed(&self, ctx: &GpuContext) -> Result<Option<TimedRun>> {
        let dispatches: Vec<&Dispatch> = self.dispatches.iter().collect();
        ctx.submit_timed(&dispatches)
    }

    /// The layers with the seconds `times` gives each dispatch.
    pub fn layer_times(&self, times: &[f64], timing: Timing) -> Vec<LayerTime> {
        self.dispatches
            .iter()
            .zip(&self.nodes)
            .zip(times)
            .map(|((dispatch, node), &seconds)| LayerTime {
                node: node.clone(),
                kernel: dispatch.label(),
                seconds,
                timing,
            })
            .collect()
    }

    /// Wall-clock time of each dispatch, submitted alone and waited for (native only): the profile of a
    /// device without timestamp queries. Submission overhead is included.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_wall_clock(&self, ctx: &GpuContext) -> Result<Vec<LayerTime>> {
        let wait = || {
            ctx.device()
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))
        };
        wait()?;
        let mut times = Vec::with_capacity(self.dispatches.len());
        for dispatch in &self.dispatches {
            let start = std::time::Instant::now();
            ctx.submit(&[dispatch])?;
            wait()?;
            times.push(start.elapsed().as_secs_f64());
        }
        Ok(self.layer_times(&times, Timing::WallClock))
    }

    /// Memory use of the activations.
    pub fn memory(&self) -> MemoryReport {
        self.memory
    }

    /// Submits one workgroup of each distinct pipeline and a copy of a few bytes of the output, to wait for.
    /// Adapters that compile a pipeline at its first dispatch compile them all now, without the cost of a
    /// whole run. What the workgroups write is garbage, but every run writes each value before reading it.
    pub fn submit_warm_up(&self, ctx: &GpuContext) -> Result<ReadBack> {
        let mut distinct: Vec<Dispatch> = Vec::new();
        for dispatch in &self.dispatches {
            if !distinct.iter().any(|d| d.same_pipeline(dispatch)) {
                distinct.push(dispatch.one_workgroup());
            }
        }
        let dispatches: Vec<&Dispatch> = distinct.iter().collect();
        ctx.submit_and_read_back(&dispatches, self.output.buffer(), self.output.offset(), 4)
    }

    /// Writes `input` (`[batch, C, H, W]`, NCHW), submits every dispatch and a copy of the output in one
    /// command buffer. The plan's buffers are free for the next run as soon as this returns.
    pub fn submit(&self, ctx: &GpuContext, input: &Tensor) -> Result<PendingOutput> {
        if input.shape() != self.input.shape() {
            return Err(Error::invalid_op(
                "model input",
                format!("expected {}, got {}", self.input.shape(), input.shape()),
            ));
        }
        ctx.queue().write_buffer(
            self.input.buffer(),
            self.input.offset(),
            bytemuck::cast_slice(&to_nhwc4(input)),
        );
        let dispatches: Vec<&Dispatch> = self.dispatches.iter().collect();
        let read_back = ctx.submit_and_read_back(
            &dispatches,
            self.output.buffer(),
            self.output.offset(),
            self.output.byte_len(),
        )?;
        Ok(PendingOutput {
            read_back,
            output: self.output.clone(),
        })
    }
}

/// The output of a submitted run, on its way back.
#[derive(Debug)]
pub struct PendingOutput {
    read_back: ReadBack,
    output: GpuTensor,
}

impl PendingOutput {
    /// Waits for the GPU and returns the output tensor.
    pub async fn read(self, ctx: &GpuContext) -> Result<Tensor> {
        let bytes = self.read_back.read(ctx).await?;
        self.output.decode_read_back(&bytes)
    }
}

/// Whether the kernel that runs `op` reads its inputs through the input stage (shaders/shared/staged_input.wgsl)
/// rather than from their buffers: the dense and depthwise convolutions (a residual that is the input included),
/// linear layers and global average pooling, where the context stages inputs at all.
fn reads_staged_input(ctx: &GpuContext, op: &Op) -> bool {
    ctx.stages_inputs()
        && match op {
            Op::Conv(layer) => ConvVariant::of(&layer.conv).reads_staged_input(),
            Op::Linear(_) => ConvVariant::Dense.reads_staged_input(),
            Op::GlobalAvgPool => true,
            _ => false,
        }
}

/// The largest sum of two values live at one step, and the largest sum of all values live at one step, over
/// the steps `0..steps`.
fn live_bytes(lifetimes: &[Lifetime], steps: usize) -> (u64, u64) {
    let (mut two, mut all) = (0, 0);
    for step in 0..steps {
        let mut live: Vec<u64> = lifetimes
            .iter()
            .filter(|v| v.bytes > 0 && v.first <= step && step <= v.last)
            .map(|v| v.bytes)
            .collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        two = two.max(live.iter().take(2).sum());
        all = all.max(live.iter().sum());
    }
    (two, all)
}

/// `e` with the node and batch it arose at.
fn node_error(node: &crate::graph::Node, batch: usize, e: Error) -> Error {
    match e {
        // Too large for this device at this batch size: the model is fine, the request is not.
        Error::ExceedsLimit {
            what,
            bytes,
            limit_name,
            limit,
        } => Error::ExceedsLimit {
            what: format!(
                "node '{}' ({}) at batch {batch}: {what}",
                node.name,
                node.op.name()
            ),
            bytes,
            limit_name,
            limit,
        },
        e => Error::Model(format!(
            "planning node '{}' ({}): {e}",
            node.name,
            node.op.name()
        )),
    }
}

/// A value's bytes and the steps it is live, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lifetime {
    bytes: u64,
    first: usize,
    last: usize,
}

impl Lifetime {
    fn overlaps(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Where [`place_values`] put each value.
#[derive(Debug, PartialEq, Eq)]
struct Placement {
    /// `(arena, byte offset)` of each value (`None` for values without bytes).
    of: Vec<Option<(usize, u64)>>,
    /// Bytes of each arena.
    arena_sizes: Vec<u64>,
}

/// Gives each value with bytes an aligned offset in an arena such that values live at the same step never
/// share a byte. Greedy by size, as TFLite plans its arena: the largest value first, each at the start of the
/// smallest gap between the values already placed that are live at the same time, or after the last of them.
/// An arena holds at most `capacity` bytes; a value that fits in none opens another.
fn place_values(values: &[Lifetime], alignment: u64, capacity: u64) -> Placement {
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| values[i].bytes > 0).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(values[i].bytes), values[i].first, i));
    let mut of = vec![None; values.len()];
    // Per arena: (offset, value) of what it holds.
    let mut arenas: Vec<Vec<(u64, usize)>> = Vec::new();
    for &i in &order {
        let value = &values[i];
        let fits = |placed: &Vec<(u64, usize)>| -> Option<u64> {
            let mut busy: Vec<(u64, u64)> = placed
                .iter()
                .filter(|&&(_, k)| values[k].overlaps(value))
                .map(|&(offset, k)| {
                    (
                        offset,
                        (offset + values[k].bytes).next_multiple_of(alignment),
                    )
                })
                .collect();
            busy.sort_unstable();
            let (mut end, mut best): (u64, Option<(u64, u64)>) = (0, None);
            for (start, stop) in busy {
                let gap = start.saturating_sub(end);
                if gap >= value.bytes && best.is_none_or(|(smallest, _)| gap < smallest) {
                    best = Some((gap, end));
                }
                end = end.max(stop);
            }
            let offset = best.map_or(end, |(_, offset)| offset);
            (offset + value.bytes <= capacity).then_some(offset)
        };
        let (arena, offset) = match arenas
            .iter()
            .enumerate()
            .find_map(|(a, placed)| fits(placed).map(|o| (a, o)))
        {
            Some(found) => found,
            None => {
                arenas.push(Vec::new());
                (arenas.len() - 1, 0)
            }
        };
        arenas[arena].push((offset, i));
        of[i] = Some((arena, offset));
    }
    let arena_sizes = arenas
        .iter()
        .map(|placed| {
            placed
                .iter()
                .map(|&(offset, k)| (offset + values[k].bytes).next_multiple_of(alignment))
                .max()
                .unwrap_or(0)
        })
        .collect();
    Placement { of, arena_sizes }
}

fn resolve(source: &[Value], v: Value) -> Value {
    match v {
        Value::Node(k) if source[k] != Value::Node(k) => resolve(source, source[k]),
        v => v,
    }
}

/// Bytes of an uncompressed single-level texture.
fn texture_bytes(texture: &wgpu::Texture) -> u64 {
    let size = texture.size();
    let texel = u64::from(texture.format().block_copy_size(None).unwrap_or(0));
    u64::from(size.width) * u64::from(size.height) * u64::from(size.depth_or_array_layers) * texel
}

#[cfg(test)]
mod tests {
    use super::{place_values, Lifetime, Placement};

    fn lifetimes(list: &[(u64, usize, usize)]) -> Vec<Lifetime> {
        list.iter()
            .map(|&(bytes, first, last)| Lifetime { bytes, first, last })
            .collect()
    }

    /// No two values live at one step share a byte, offsets are aligned and arenas hold what they are given.
    fn check(values: &[Lifetime], placement: &Placement, alignment: u64, capacity: u64) {
        for (i, a) in values.iter().enumerate() {
            let Some((arena, offset)) = placement.of[i] else {
                assert_eq!(a.bytes, 0, "value {i} has bytes but no place");
                continue;
            };
            assert_eq!(offset % alignment, 0, "value {i} is not aligned");
            assert!(offset + a.bytes <= placement.arena_sizes[arena].min(capacity));
            for (k, b) in values.iter().enumerate().skip(i + 1) {
                if let Some((other_arena, other)) = placement.of[k] {
                    let disjoint = offset + a.bytes <= other || other + b.bytes <= offset;
                    assert!(
                        other_arena != arena || !a.overlaps(b) || disjoint,
                        "values {i} and {k} are live together and share bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn a_chain_needs_only_its_largest_neighbouring_pair() {
        // 0 -> 1 -> 2 -> 3, each read by the next; 3 is the output.
        let values = lifetimes(&[(10, 0, 1), (40, 1, 2), (20, 2, 3), (30, 3, 4)]);
        let placement = place_values(&values, 1, u64::MAX);
        check(&values, &placement, 1, u64::MAX);
        assert_eq!(placement.arena_sizes, vec![60]);
    }

    #[test]
    fn a_value_freed_early_makes_room_for_two_smaller_ones() {
        // A big value dies at step 1; two smaller values live together later and fit in its place, which
        // whole buffers per value could not do.
        let values = lifetimes(&[(100, 0, 1), (10, 1, 2), (50, 2, 3), (50, 2, 3)]);
        let placement = place_values(&values, 1, u64::MAX);
        check(&values, &placement, 1, u64::MAX);
        assert_eq!(placement.arena_sizes, vec![110]);
    }

    #[test]
    fn a_skip_connection_keeps_its_bytes_until_the_add() {
        // 0 is read by 1 and by the add 3; 2 reads 1; 3 reads 2 and 0.
        let values = lifetimes(&[(8, 0, 3), (32, 1, 2), (16, 2, 3), (8, 3, 4)]);
        let placement = place_values(&values, 1, u64::MAX);
        check(&values, &placement, 1, u64::MAX);
        assert_eq!(placement.arena_sizes, vec![8 + 32 + 16]);
    }

    #[test]
    fn offsets_are_aligned_and_values_without_bytes_get_no_place() {
        let values = lifetimes(&[(20, 0, 1), (0, 1, 1), (20, 1, 2)]);
        let placement = place_values(&values, 256, u64::MAX);
        check(&values, &placement, 256, u64::MAX);
        assert_eq!(placement.of, vec![Some((0, 0)), None, Some((0, 256))]);
    }

    #[test]
    fn values_that_do_not_fit_one_arena_open_another() {
        let values = lifetimes(&[(60, 0, 2), (60, 1, 2), (30, 2, 3)]);
        let placement = place_values(&values, 1, 100);
        check(&values, &placement, 1, 100);
        assert_eq!(placement.arena_sizes.len(), 2);
        assert!(placement.arena_sizes.iter().all(|&size| size <= 100));
    }

    #[test]
    fn random_lifetimes_never_share_live_bytes() {
        // A small linear congruential generator keeps the test deterministic without a dependency.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % bound
        };
        for _ in 0..200 {
            let count = 1 + next(30) as usize;
            let values: Vec<Lifetime> = (0..count)
                .map(|first| Lifetime {
                    bytes: next(5) * 16 * (1 + next(64)),
                    first,
                    last: first + next(6) as usize,
                })
                .collect();
            let alignment = [16, 256][next(2) as usize];
            let capacity = 64 * 16 * 8;
            let placement = place_values(&values, alignment, capacity);
            check(&values, &placement, alignment, capacity);
        }
    }
}
