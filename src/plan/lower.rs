//! Lowering: the one place that decides which kernel computes each node, and the interface a backend
//! implements to run those kernels.
//!
//! [`Kernel::of`] maps a node to a backend-neutral kernel request; `lower` sizes every value with the
//! backend, plans their memory ([`super::memory`]) and asks the backend to bind each kernel to its operands.
//! A new op adds a variant here (or maps onto an existing one); a new backend implements [`Backend`].

use std::borrow::Cow;

use super::memory::{plan_memory, MemoryReport};
use super::Plan;
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Op, Value};
use crate::ops::{
    Activation, BatchNorm, BinaryOp, ChannelSelection, Conv2dLayer, LayerNorm, Pool2d,
};
use crate::tensor::Shape;

/// A kernel a backend runs: what lowering asks for, independent of how the backend computes it.
#[derive(Clone, Debug)]
pub enum Kernel<'a> {
    /// Convolution with its fused epilogue (bias, batch norm folded in, activation, residual add). Linear
    /// layers are lowered to 1x1 convolutions over `[N, in, 1, 1]`.
    Conv(Cow<'a, Conv2dLayer>),
    /// Inference batch norm, then an activation.
    BatchNorm(&'a BatchNorm, &'a Activation),
    /// A standalone activation.
    Activation(&'a Activation),
    /// `act(a + b)` or `act(a * b[n, c])`.
    Binary(BinaryOp, &'a Activation),
    /// Max or average pooling.
    Pool(&'a Pool2d),
    /// Mean over height and width.
    GlobalAvgPool,
    /// `[N, C, H, W] -> [N, C * H * W, 1, 1]` where the layout must change.
    Flatten,
    /// Average pooling to `[OH, OW]` over PyTorch's adaptive windows.
    AdaptiveAvgPool([usize; 2]),
    /// A concatenation along the channels; lowering binds it as one [`Kernel::CopyChannels`] per input, so a
    /// backend never binds this one.
    Concat,
    /// The input written into channels `offset..offset + C` of the output (one input of a concatenation); the
    /// kernel that writes the output's last channel also clears its padding, where a layout has any.
    CopyChannels {
        /// The first output channel written.
        offset: usize,
    },
    /// `output[c] = input[indices[c]]`.
    SelectChannels(&'a ChannelSelection),
    /// Layer normalisation over the channels of each pixel.
    LayerNorm(&'a LayerNorm),
}

impl<'a> Kernel<'a> {
    /// The kernel that computes node `i` of `graph`; `None` for a node that only renames its input
    /// ([`Graph::is_alias`]).
    pub fn of(graph: &'a Graph, i: usize) -> Result<Option<Kernel<'a>>> {
        if graph.is_alias(i) {
            return Ok(None);
        }
        Ok(Some(match &graph.nodes[i].op {
            Op::Conv(layer) => Kernel::Conv(Cow::Borrowed(layer)),
            Op::Linear(linear) => Kernel::Conv(Cow::Owned(linear.to_conv()?)),
            Op::BatchNorm(bn, act) => Kernel::BatchNorm(bn, act),
            Op::Activation(act) => Kernel::Activation(act),
            Op::Binary(op, act) => Kernel::Binary(*op, act),
            Op::Pool(pool) => Kernel::Pool(pool),
            Op::GlobalAvgPool => Kernel::GlobalAvgPool,
            Op::Flatten => Kernel::Flatten,
            Op::AdaptiveAvgPool(size) => Kernel::AdaptiveAvgPool(*size),
            Op::Concat => Kernel::Concat,
            Op::SelectChannels(selection) => Kernel::SelectChannels(selection),
            Op::LayerNorm(norm) => Kernel::LayerNorm(norm),
            Op::Pad(_) => {
                return Err(Error::invalid_op(
                    "pad",
                    "zero padding is supported where it feeds a convolution (it folds into its padding)",
                ))
            }
        }))
    }
}

/// Memory a backend holds for a plan besides its activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldBytes {
    /// Weights, biases, lookup tables: everything the kernels read that is not an activation.
    pub weights: u64,
    /// Scratch that kernels copy their inputs into (the GPU's input stage).
    pub staging: u64,
}

/// What a backend gives lowering: sizes, memory and bound kernels. Lowering decides what runs and where values
/// live; the backend decides how.
pub trait Backend {
    /// An activation at its place in an arena.
    type Value: Clone + std::fmt::Debug;
    /// A kernel bound to its operands, ready to run.
    type Step: std::fmt::Debug;
    /// One block of activation memory.
    type Arena: std::fmt::Debug;
    /// Weights prepared for the kernels, shared by every node of a plan that names the same tensors (memory
    /// proportional to the file, docs/format.md).
    type Uploads: Default;

    /// Bytes of a value of `shape` in this backend's layout, checked against its limits (`what` names it in
    /// errors).
    fn value_bytes(&self, what: &str, shape: Shape) -> Result<u64>;
    /// The alignment of every value's offset in an arena.
    fn arena_alignment(&self) -> u64;
    /// The most bytes one arena may hold.
    fn max_arena_bytes(&self) -> u64;
    /// A zero-filled arena of `bytes`.
    fn arena(&self, bytes: u64) -> Result<Self::Arena>;
    /// The value of `shape` at `offset` in `arena`, seen by callers as a tensor of `dims`.
    fn value(
        &self,
        arena: &Self::Arena,
        offset: u64,
        shape: Shape,
        dims: Vec<usize>,
    ) -> Self::Value;
    /// The shape of `value`.
    fn shape(value: &Self::Value) -> Shape;
    /// Whether `kernel` reads all its inputs before it writes its output, which may then take their bytes.
    fn reads_inputs_first(&self, kernel: &Kernel<'_>) -> bool;
    /// Called once before any kernel is bound, with the largest input (in bytes) of a kernel that reads its
    /// inputs first: the place to size scratch memory for the whole plan.
    fn reserve_scratch(&self, largest_input_read_first: Option<u64>) -> Result<()>;
    /// `kernel` prepared (weights packed, uploaded once into `uploads`) and bound to its operands.
    fn bind(
        &self,
        kernel: &Kernel<'_>,
        inputs: &[Self::Value],
        output: &Self::Value,
        uploads: &mut Self::Uploads,
    ) -> Result<Self::Step>;
    /// Bytes the plan's kernels hold besides `arenas`.
    fn held_bytes(&self, arenas: &[Self::Arena], steps: &[Self::Step]) -> HeldBytes;
}

/// Plans the optimised `graph` for `batch` images on `backend`: every value sized and placed, every kernel
/// prepared and bound.
pub(crate) fn lower<B: Backend>(backend: &B, graph: &Graph, batch: usize) -> Result<Plan<B>> {
    if batch == 0 {
        return Err(Error::invalid_op("plan", "batch size must be positive"));
    }
    let n = graph.nodes.len();
    let kernels: Vec<Option<Kernel<'_>>> = (0..n)
        .map(|i| Kernel::of(graph, i).map_err(|e| node_error(&graph.nodes[i], batch, e)))
        .collect::<Result<_>>()?;
    let mut value_bytes = vec![0u64; n];
    for (j, node) in graph.nodes.iter().enumerate() {
        if kernels[j].is_some() {
            value_bytes[j] = backend
                .value_bytes(
                    &format!("activation of node '{}'", node.name),
                    node.shape.with_batch(batch),
                )
                .map_err(|e| node_error(node, batch, e))?;
        }
    }
    let input_shape = graph.input.with_batch(batch);
    let input_bytes = backend.value_bytes("the input", input_shape)?;
    let reads_first = |j: usize| {
        kernels[j]
            .as_ref()
            .is_some_and(|k| backend.reads_inputs_first(k))
    };
    let memory = plan_memory(
        graph,
        &value_bytes,
        input_bytes,
        reads_first,
        backend.arena_alignment(),
        backend.max_arena_bytes(),
    );
    let arenas: Vec<B::Arena> = memory
        .placement
        .arena_sizes
        .iter()
        .map(|&size| backend.arena(size))
        .collect::<Result<_>>()?;
    let value_at = |value: usize, shape: Shape, dims: Vec<usize>| -> Result<B::Value> {
        let (arena, offset) = memory.placement.of[value]
            .ok_or_else(|| Error::Model("no memory was planned for a value".into()))?;
        Ok(backend.value(&arenas[arena], offset, shape, dims))
    };
    let input = value_at(n, input_shape, dims_of(input_shape, false))?;
    // Scratch for the largest input a read-first kernel copies, before any kernel asks for less.
    let largest_read_first = (0..n)
        .filter(|&j| reads_first(j))
        .filter_map(
            |j| match graph.nodes[j].inputs.first().map(|&v| memory.resolve(v)) {
                Some(Value::Input) => Some(input_bytes),
                Some(Value::Node(k)) => Some(value_bytes[k]),
                None => None,
            },
        )
        .max();
    backend.reserve_scratch(largest_read_first)?;

    let mut uploads = B::Uploads::default();
    let mut values: Vec<Option<B::Value>> = vec![None; n];
    let mut steps = Vec::with_capacity(n);
    let mut nodes = Vec::with_capacity(n);
    let mut unshared_activation_bytes = input_bytes.max(16);
    for (j, node) in graph.nodes.iter().enumerate() {
        let Some(kernel) = &kernels[j] else {
            continue;
        };
        let context = |e| node_error(node, batch, e);
        let value_of = |v: Value| -> Result<B::Value> {
            match memory.resolve(v) {
                Value::Input => Ok(input.clone()),
                Value::Node(k) => values[k].clone().ok_or_else(|| {
                    Error::Model(format!(
                        "node '{}' reads a value that is not computed",
                        node.name
                    ))
                }),
            }
        };
        let shape = node.shape.with_batch(batch);
        unshared_activation_bytes += value_bytes[j].max(16);
        let is_output = Value::Node(j) == memory.output;
        let output = value_at(j, shape, dims_of(shape, is_output)).map_err(context)?;
        let inputs: Vec<B::Value> = node
            .inputs
            .iter()
            .map(|&v| value_of(v))
            .collect::<Result<_>>()?;
        if let Kernel::Concat = kernel {
            // One copy per operand into its channels of the output, in order.
            let mut offset = 0;
            for input in &inputs {
                let copy = Kernel::CopyChannels { offset };
                let step = backend.bind(&copy, std::slice::from_ref(input), &output, &mut uploads);
                steps.push(step.map_err(context)?);
                nodes.push(node.name.clone());
                offset += B::shape(input).c;
            }
        } else {
            steps.push(
                backend
                    .bind(kernel, &inputs, &output, &mut uploads)
                    .map_err(context)?,
            );
            nodes.push(node.name.clone());
        }
        values[j] = Some(output);
    }
    let output = match memory.output {
        Value::Input => value_at(n, input_shape, dims_of(input_shape, true))?,
        Value::Node(k) => values[k]
            .clone()
            .ok_or_else(|| Error::Model("the graph output is never computed".into()))?,
    };
    let held = backend.held_bytes(&arenas, &steps);
    let report = MemoryReport {
        activation_bytes: memory
            .placement
            .arena_sizes
            .iter()
            .map(|&s| s.max(16))
            .sum(),
        unshared_activation_bytes,
        buffers: arenas.len(),
        weight_bytes: held.weights,
        staging_bytes: held.staging,
        two_largest_live_bytes: memory.two_largest_live_bytes,
        peak_live_bytes: memory.peak_live_bytes,
    };
    Ok(Plan {
        batch,
        input,
        output,
        steps,
        nodes,
        memory: report,
    })
}

/// The dimensions callers see: `[N, C]` for an output without height and width (logits), else NCHW.
fn dims_of(shape: Shape, is_output: bool) -> Vec<usize> {
    if is_output && shape.h * shape.w == 1 {
        vec![shape.n, shape.c]
    } else {
        vec![shape.n, shape.c, shape.h, shape.w]
    }
}

/// `e` with the node and batch it arose at, keeping its kind: a device lost or out of memory while planning is
/// not a fault of the model.
fn node_error(node: &Node, batch: usize, e: Error) -> Error {
    let at = |what: String| {
        format!(
            "node '{}' ({}) at batch {batch}: {what}",
            node.name,
            node.op.name()
        )
    };
    match e {
        // Too large for this device at this batch size: the model is fine, the request is not.
        Error::ExceedsLimit {
            what,
            bytes,
            limit_name,
            limit,
        } => Error::ExceedsLimit {
            what: at(what),
            bytes,
            limit_name,
            limit,
        },
        Error::Gpu(message) => Error::Gpu(at(message)),
        e @ (Error::DeviceLost(_)
        | Error::NoAdapter { .. }
        | Error::DeviceRequest { .. }
        | Error::Io { .. }) => e,
        e => Error::Model(format!(
            "planning node '{}' ({}): {e}",
            node.name,
            node.op.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::node_error;
    use crate::error::Error;
    use crate::graph::{Node, Op};
    use crate::tensor::Shape;

    fn node() -> Node {
        Node {
            name: "head".into(),
            op: Op::GlobalAvgPool,
            inputs: vec![crate::graph::Value::Input],
            shape: Shape::new(1, 8, 1, 1),
            activation_source: None,
        }
    }

    #[test]
    fn planning_errors_keep_their_kind_and_name_the_node() {
        let lost = node_error(&node(), 2, Error::DeviceLost("destroyed".into()));
        assert!(matches!(lost, Error::DeviceLost(_)), "{lost:?}");
        let gpu = node_error(&node(), 2, Error::Gpu("out of memory".into()));
        assert!(
            matches!(&gpu, Error::Gpu(m) if m.contains("'head'") && m.contains("batch 2")),
            "{gpu:?}"
        );
        let limit = node_error(
            &node(),
            2,
            Error::ExceedsLimit {
                what: "activation".into(),
                bytes: 10,
                limit_name: "max_buffer_size",
                limit: 5,
            },
        );
        assert!(matches!(limit, Error::ExceedsLimit { ref what, .. } if what.contains("'head'")));
        let model = node_error(&node(), 1, Error::invalid_op("pool2d", "bad window"));
        assert!(
            matches!(&model, Error::Model(m) if m.contains("'head'")),
            "{model:?}"
        );
    }
}
