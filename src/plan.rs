//! The execution plan: an optimised graph turned into GPU dispatches for one batch size.
//!
//! Everything is created here, once: kernels (pipelines and packed weights), activation buffers and bind
//! groups. Buffers are reused by lifetime ([`assign_slots`]): a value's buffer is free again after its last
//! reader, and the next output takes the smallest free buffer that fits, or grows one. Running the plan writes
//! the input, submits every dispatch in one command buffer and reads the output back.

use crate::error::{Error, Result};
use crate::gpu::context::{ReadBack, TimedRun};
use crate::gpu::kernels::{
    BinaryKernel, Conv2dKernel, FlattenKernel, GlobalAvgPoolKernel, Pool2dKernel, UnaryKernel,
};
use crate::gpu::tensor::{nhwc4_len, to_nhwc4};
use crate::gpu::{Dispatch, GpuContext, GpuTensor};
use crate::graph::{Graph, Op, Value};
use crate::tensor::Tensor;

/// Where the plan's memory goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of all activation buffers (input and output included), after reuse.
    pub activation_bytes: u64,
    /// Bytes the activations would take without reuse.
    pub unshared_activation_bytes: u64,
    /// Number of activation buffers.
    pub buffers: usize,
    /// Bytes of everything else the dispatches bind: packed weights, biases, PWLU tables.
    pub weight_bytes: u64,
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
        self.weight_bytes + self.activation_bytes
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

/// Time spent in one dispatch, from [`Plan::profile`].
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
        // A flatten of a [N, C, 1, 1] tensor changes nothing in the NHWC4 layout: it aliases its input.
        let aliases = |i: usize| {
            matches!(graph.nodes[i].op, Op::Flatten) && {
                let s = graph.shape(graph.nodes[i].inputs[0]);
                s.h * s.w == 1
            }
        };
        let mut source: Vec<Value> = (0..n).map(Value::Node).collect();
        for i in 0..n {
            if aliases(i) {
                source[i] = resolve(&source, graph.nodes[i].inputs[0]);
            }
        }
        let output_value = resolve(&source, graph.output);
        let mut last_use = vec![0usize; n];
        for (j, node) in graph.nodes.iter().enumerate() {
            for &v in &node.inputs {
                if let Value::Node(k) = resolve(&source, v) {
                    last_use[k] = last_use[k].max(j);
                }
            }
        }

        // Which values each node is the last reader of (never the graph input or output).
        let releases: Vec<Vec<usize>> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(j, node)| {
                let mut released: Vec<usize> = node
                    .inputs
                    .iter()
                    .filter_map(|&v| match resolve(&source, v) {
                        Value::Node(k) if last_use[k] == j && Value::Node(k) != output_value => {
                            Some(k)
                        }
                        _ => None,
                    })
                    .collect();
                released.sort_unstable();
                released.dedup();
                released
            })
            .collect();
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
        let slots = assign_slots(&value_bytes, &releases);

        let input = GpuTensor::zeros(ctx, graph.input.with_batch(batch))?;
        let mut values: Vec<Option<GpuTensor>> = vec![None; n];
        let mut memory = MemoryReport {
            activation_bytes: input.buffer().size(),
            unshared_activation_bytes: input.buffer().size(),
            buffers: 1,
            ..MemoryReport::default()
        };
        let mut activation_buffers = vec![input.buffer().clone()];
        for &size in &slots.sizes {
            activation_buffers.push(ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("activations"),
                size: size.max(16),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
            memory.activation_bytes += size.max(16);
            memory.buffers += 1;
        }
        ctx.take_errors()?;
        let mut dispatches = Vec::with_capacity(n);
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
            let buffer = slots.of[j]
                .map(|slot| activation_buffers[1 + slot].clone())
                .ok_or_else(|| context(Error::Model("no buffer was planned".into())))?;
            let dims = if shape.h * shape.w == 1 && Value::Node(j) == output_value {
                vec![shape.n, shape.c]
            } else {
                vec![shape.n, shape.c, shape.h, shape.w]
            };
            let output = GpuTensor::from_buffer(buffer, shape, dims);
            let inputs: Vec<GpuTensor> = node
                .inputs
                .iter()
                .map(|&v| tensor_of(&values, v))
                .collect::<Result<_>>()?;
            let in_shape = inputs[0].shape();
            let dispatch = match &node.op {
                Op::Conv(layer) => {
                    Conv2dKernel::new(ctx, layer, in_shape)
                        .and_then(|k| k.bind(ctx, &inputs[0], inputs.get(1), &output))
                        .map_err(context)?
                }
                Op::Linear(linear) => {
                    Conv2dKernel::linear(ctx, linear, batch)
                        .and_then(|k| k.bind(ctx, &inputs[0], None, &output))
                        .map_err(context)?
                }
                Op::BatchNorm(bn, act) => {
                    UnaryKernel::batch_norm(ctx, bn, act, in_shape)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::Activation(act) => {
                    UnaryKernel::activation(ctx, act, in_shape)
                        .and_then(|k| k.bind(ctx, &inputs[0], &output))
                        .map_err(context)?
                }
                Op::Binary(op, act) => {
                    BinaryKernel::new(ctx, *op, act, in_shape)
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
            if !activation_buffers.contains(buffer)
                && buffer != ctx.placeholder()
                && !weights.contains(&buffer)
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
        (memory.two_largest_live_bytes, memory.peak_live_bytes) = live_bytes(
            graph,
            &value_bytes,
            &last_use,
            nhwc4_len(graph.input.with_batch(batch)).unwrap_or(0) as u64 * 4,
            |v| resolve(&source, v),
        );
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
            GpuTensor::from_buffer(output.buffer().clone(), s, dims)
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
            0,
            bytemuck::cast_slice(&to_nhwc4(input)),
        );
        let dispatches: Vec<&Dispatch> = self.dispatches.iter().collect();
        let read_back =
            ctx.submit_and_read_back(&dispatches, self.output.buffer(), self.output.byte_len())?;
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

/// The largest sum of two values live at one step, and the largest sum of all values live at one step. A
/// value is live from the node that makes it to its last reader; the graph input from the start to its last
/// reader.
fn live_bytes(
    graph: &Graph,
    value_bytes: &[u64],
    last_use: &[usize],
    input_bytes: u64,
    resolve: impl Fn(Value) -> Value,
) -> (u64, u64) {
    let input_last_use = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.inputs.iter().any(|&v| resolve(v) == Value::Input))
        .map(|(j, _)| j)
        .max();
    let (mut two, mut all) = (0, 0);
    for j in 0..graph.nodes.len() {
        let mut live: Vec<u64> = (0..=j)
            .filter(|&k| value_bytes[k] > 0 && (k == j || last_use[k] >= j))
            .map(|k| value_bytes[k])
            .collect();
        if input_last_use.is_some_and(|last| last >= j) {
            live.push(input_bytes);
        }
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

/// Activation buffers shared by values whose lifetimes do not overlap.
#[derive(Debug, PartialEq, Eq)]
struct Slots {
    /// The slot of each node's value (`None` for values that need no buffer of their own).
    of: Vec<Option<usize>>,
    /// Bytes of each slot: the largest value it holds.
    sizes: Vec<u64>,
}

/// Gives each value (`bytes[j] > 0`) a slot that no live value holds. A value is live from its node to the
/// node that releases it (`releases[j]` lists what node `j` reads for the last time; the output is written
/// before its inputs are released, so the two never share). Among free slots it takes the smallest that
/// fits; if none fits it grows the largest free one rather than opening another, since a slot costs its
/// largest value and only growth beyond that is new memory.
fn assign_slots(bytes: &[u64], releases: &[Vec<usize>]) -> Slots {
    let mut of = vec![None; bytes.len()];
    let mut sizes: Vec<u64> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for j in 0..bytes.len() {
        if bytes[j] > 0 {
            let fitting = free
                .iter()
                .enumerate()
                .filter(|&(_, &slot)| sizes[slot] >= bytes[j])
                .min_by_key(|&(_, &slot)| sizes[slot]);
            let largest = free
                .iter()
                .enumerate()
                .max_by_key(|&(_, &slot)| sizes[slot]);
            let slot = match fitting.or(largest).map(|(index, _)| index) {
                Some(index) => free.swap_remove(index),
                None => {
                    sizes.push(0);
                    sizes.len() - 1
                }
            };
            sizes[slot] = sizes[slot].max(bytes[j]);
            of[j] = Some(slot);
        }
        for &k in &releases[j] {
            if let Some(slot) = of[k] {
                free.push(slot);
            }
        }
    }
    Slots { of, sizes }
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
    use super::{assign_slots, Slots};

    #[test]
    fn a_chain_alternates_between_two_slots_sized_by_their_largest_values() {
        // 0 -> 1 -> 2 -> 3, each released by the next.
        let slots = assign_slots(&[10, 40, 20, 30], &[vec![], vec![0], vec![1], vec![2]]);
        assert_eq!(
            slots,
            Slots {
                of: vec![Some(0), Some(1), Some(0), Some(1)],
                sizes: vec![20, 40],
            }
        );
    }

    #[test]
    fn a_skip_connection_keeps_its_slot_until_the_add() {
        // 0 is read by 1 and by the add 3; 2 reads 1; 3 reads 2 and 0.
        let slots = assign_slots(&[8, 32, 16, 8], &[vec![], vec![], vec![1], vec![0, 2]]);
        assert_eq!(slots.of[0], Some(0));
        assert_ne!(slots.of[2], slots.of[0]);
        assert_ne!(slots.of[2], slots.of[1]);
        assert_ne!(slots.of[3], slots.of[0]);
        assert_ne!(slots.of[3], slots.of[2]);
        assert_eq!(slots.sizes.iter().sum::<u64>(), 8 + 32 + 16);
    }

    #[test]
    fn a_value_without_bytes_gets_no_slot() {
        let slots = assign_slots(&[4, 0, 4], &[vec![], vec![], vec![0]]);
        assert_eq!(slots.of, vec![Some(0), None, Some(1)]);
    }
}
