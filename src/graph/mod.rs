//! The computation graph: ops with their weights, in topological order, each with its inferred shape.
//!
//! `Graph::from_spec` (in `model/build.rs`) builds and validates it from a model file; [`passes::optimize`]
//! folds and fuses it into the form the planner lowers to a backend's kernels; `Graph::run_reference` (in
//! [`crate::reference`]) evaluates it plainly, the ground truth for any graph.

pub mod passes;

use crate::error::{Error, Result};
use crate::ops::{
    Activation, BatchNorm, BinaryOp, ChannelSelection, Conv2dLayer, LayerNorm, Linear, Padding,
    Pool2d,
};
use crate::tensor::Shape;

/// A value in the graph: the input, or the output of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// The graph's input.
    Input,
    /// The output of node `i`.
    Node(usize),
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Convolution with its fused epilogue; a second input is the residual when the epilogue adds one.
    Conv(Conv2dLayer),
    /// Inference batch norm, then an activation.
    BatchNorm(BatchNorm, Activation),
    /// A standalone activation.
    Activation(Activation),
    /// `act(a + b)` or `act(a * b[n, c])`.
    Binary(BinaryOp, Activation),
    /// Max or average pooling.
    Pool(Pool2d),
    /// Mean over height and width, keeping `[N, C, 1, 1]`.
    GlobalAvgPool,
    /// `[N, C, H, W] -> [N, C * H * W]`.
    Flatten,
    /// Fully connected layer with its activation.
    Linear(Linear),
    /// Zero padding (folded into the next convolution by the optimiser).
    Pad(Padding),
    /// Average pooling to `[OH, OW]` with PyTorch's adaptive windows (the optimiser turns it into a plain
    /// pooling where the windows are uniform).
    AdaptiveAvgPool([usize; 2]),
    /// The inputs one after the other along the channels.
    Concat,
    /// Channels picked from the input by index (a shuffle or a slice).
    SelectChannels(ChannelSelection),
    /// Layer normalisation over the channels of each pixel.
    LayerNorm(LayerNorm),
}

impl Op {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "conv2d",
            Op::BatchNorm(..) => "batch_norm",
            Op::Activation(_) => "activation",
            Op::Binary(BinaryOp::Add, _) => "add",
            Op::Binary(BinaryOp::MulChannels, _) => "mul",
            Op::Pool(_) => "pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Linear(_) => "linear",
            Op::Pad(_) => "pad",
            Op::AdaptiveAvgPool(_) => "adaptive_avg_pool2d",
            Op::Concat => "concat",
            Op::SelectChannels(_) => "select_channels",
            Op::LayerNorm(_) => "layer_norm",
        }
    }

    /// The activation the op applies to its output, if it applies one.
    pub fn activation(&self) -> Option<&Activation> {
        match self {
            Op::Conv(layer) => Some(&layer.epilogue.activation),
            Op::Linear(linear) => Some(&linear.activation),
            Op::BatchNorm(_, act) | Op::Activation(act) | Op::Binary(_, act) => Some(act),
            Op::Pool(_)
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Pad(_)
            | Op::AdaptiveAvgPool(_)
            | Op::Concat
            | Op::SelectChannels(_)
            | Op::LayerNorm(_) => None,
        }
    }

    /// Output shape for the given input shapes.
    pub fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let first = *inputs
            .first()
            .ok_or_else(|| Error::invalid_op(self.name(), "no input"))?;
        let want_inputs = |n: usize| -> Result<()> {
            if inputs.len() != n {
                return Err(Error::invalid_op(
                    self.name(),
                    format!("takes {n} inputs, got {}", inputs.len()),
                ));
            }
            Ok(())
        };
        let need_channels = |c: usize| -> Result<()> {
            if first.c != c {
                return Err(Error::invalid_op(
                    self.name(),
                    format!("expects {c} channels, the input {first} has {}", first.c),
                ));
            }
            Ok(())
        };
        match self {
            Op::Conv(layer) => {
                let residual = layer.epilogue.residual != crate::ops::ResidualAdd::None;
                want_inputs(if residual { 2 } else { 1 })?;
                need_channels(layer.conv.in_channels)?;
                let [h, w] = layer.conv.output_size([first.h, first.w])?;
                let out = Shape::new(first.n, layer.conv.out_channels, h, w);
                if residual && inputs[1] != out {
                    return Err(Error::invalid_op(
                        "conv2d",
                        format!("residual {} is not the output {out}", inputs[1]),
                    ));
                }
                Ok(out)
            }
            Op::BatchNorm(bn, act) => {
                want_inputs(1)?;
                need_channels(bn.channels())?;
                act.check_channels(first.c)?;
                Ok(first)
            }
            Op::Activation(act) => {
                want_inputs(1)?;
                act.check_channels(first.c)?;
                Ok(first)
            }
            Op::Binary(op, act) => {
                want_inputs(2)?;
                let expected = match op {
                    BinaryOp::Add => first,
                    BinaryOp::MulChannels => Shape::new(first.n, first.c, 1, 1),
                };
                if inputs[1] != expected {
                    return Err(Error::invalid_op(
                        self.name(),
                        format!("second operand {} should be {expected}", inputs[1]),
                    ));
                }
                act.check_channels(first.c)?;
                Ok(first)
            }
            Op::Pool(pool) => {
                want_inputs(1)?;
                let [h, w] = pool.output_size([first.h, first.w])?;
                Ok(Shape::new(first.n, first.c, h, w))
            }
            Op::GlobalAvgPool => {
                want_inputs(1)?;
                Ok(Shape::new(first.n, first.c, 1, 1))
            }
            Op::Flatten => {
                want_inputs(1)?;
                let features = first
                    .c
                    .checked_mul(first.h)
                    .and_then(|v| v.checked_mul(first.w))
                    .ok_or_else(|| Error::invalid_op("flatten", format!("{first} overflows")))?;
                Ok(Shape::new(first.n, features, 1, 1))
            }
            Op::Linear(linear) => {
                want_inputs(1)?;
                if first.h * first.w != 1 || first.c != linear.in_features {
                    return Err(Error::invalid_op(
                        "linear",
                        format!("expects [N, {}], got {first}", linear.in_features),
                    ));
                }
                linear.activation.check_channels(linear.out_features)?;
                Ok(Shape::new(first.n, linear.out_features, 1, 1))
            }
            Op::Pad(p) => {
                want_inputs(1)?;
                Ok(Shape::new(
                    first.n,
                    first.c,
                    first.h + p.top + p.bottom,
                    first.w + p.left + p.right,
                ))
            }
            Op::AdaptiveAvgPool([oh, ow]) => {
                want_inputs(1)?;
                if *oh == 0 || *ow == 0 {
                    return Err(Error::invalid_op(
                        self.name(),
                        "output size must be positive",
                    ));
                }
                Ok(Shape::new(first.n, first.c, *oh, *ow))
            }
            Op::Concat => {
                let mut channels = 0usize;
                for s in inputs {
                    if (s.n, s.h, s.w) != (first.n, first.h, first.w) {
                        return Err(Error::invalid_op(
                            self.name(),
                            format!("{s} and {first} differ in more than their channels"),
                        ));
                    }
                    channels = channels.checked_add(s.c).ok_or_else(|| {
                        Error::invalid_op(self.name(), "the channel count overflows")
                    })?;
                }
                Ok(Shape::new(first.n, channels, first.h, first.w))
            }
            Op::SelectChannels(selection) => {
                want_inputs(1)?;
                selection.check(first.c)?;
                Ok(Shape::new(
                    first.n,
                    selection.output_channels(),
                    first.h,
                    first.w,
                ))
            }
            Op::LayerNorm(norm) => {
                want_inputs(1)?;
                need_channels(norm.channels())?;
                Ok(first)
            }
        }
    }
}

/// One node: its name in the model file, its op, its inputs and its output shape (for batch 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name from the model file (fused nodes keep the producer's name).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Its operands.
    pub inputs: Vec<Value>,
    /// Output shape at batch size 1.
    pub shape: Shape,
    /// Name of the file node whose activation this node applies (itself, or the activation fused into it).
    pub activation_source: Option<String>,
}

impl Node {
    /// Floating-point operations per image (2 per multiply-add) if a convolution or linear layer, else 0.
    pub fn flops(&self) -> u64 {
        match &self.op {
            Op::Conv(layer) => {
                let c = &layer.conv;
                let per_output = (c.in_channels / c.groups * c.kernel[0] * c.kernel[1]) as u64;
                2 * per_output * self.shape.c as u64 * (self.shape.h * self.shape.w) as u64
            }
            Op::Linear(l) => 2 * (l.in_features * l.out_features) as u64,
            _ => 0,
        }
    }
}

/// A validated graph in topological order.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// Input shape at batch size 1, `[1, C, H, W]`.
    pub input: Shape,
    /// The nodes; a node's inputs are the graph input or earlier nodes.
    pub nodes: Vec<Node>,
    /// The value the graph returns.
    pub output: Value,
}

impl Graph {
    /// Whether node `i` only renames its input: a flatten of a `[N, C, 1, 1]` tensor, whose data every layout
    /// keeps as it is. Such a node runs no kernel.
    pub fn is_alias(&self, i: usize) -> bool {
        matches!(self.nodes[i].op, Op::Flatten) && {
            let s = self.shape(self.nodes[i].inputs[0]);
            s.h * s.w == 1
        }
    }

    /// The kernels a run dispatches: one per node that is not an alias, one per operand of a concatenation.
    pub fn kernel_count(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&i| !self.is_alias(i))
            .map(|i| match self.nodes[i].op {
                Op::Concat => self.nodes[i].inputs.len(),
                _ => 1,
            })
            .sum()
    }

    /// Shape of `value` at batch size 1.
    pub fn shape(&self, value: Value) -> Shape {
        match value {
            Value::Input => self.input,
            Value::Node(i) => self.nodes[i].shape,
        }
    }

    /// Floating-point operations per image (2 per multiply-add) of the convolutions and linear layers.
    pub fn flops(&self) -> u64 {
        self.nodes.iter().map(Node::flops).sum()
    }

    /// How many nodes read each node's output (the graph output counts as a reader).
    pub fn consumers(&self) -> Vec<usize> {
        let mut count = vec![0; self.nodes.len()];
        for node in &self.nodes {
            for input in &node.inputs {
                if let Value::Node(i) = input {
                    count[*i] += 1;
                }
            }
        }
        if let Value::Node(i) = self.output {
            count[i] += 1;
        }
        count
    }

    /// Checks the topological order and the shapes; every constructor and pass upholds this.
    pub fn validate(&self) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let shapes = node
                .inputs
                .iter()
                .map(|&v| match v {
                    Value::Node(j) if j >= i => Err(Error::Model(format!(
                        "node '{}' reads node {j}, which does not precede it",
                        node.name
                    ))),
                    v => Ok(self.shape(v)),
                })
                .collect::<Result<Vec<_>>>()?;
            let shape = node
                .op
                .output_shape(&shapes)
                .map_err(|e| Error::Model(format!("node '{}': {e}", node.name)))?;
            if shape != node.shape {
                return Err(Error::Model(format!(
                    "node '{}' produces {shape}, recorded as {}",
                    node.name, node.shape
                )));
            }
        }
        match self.output {
            Value::Node(i) if i >= self.nodes.len() => {
                Err(Error::Model("the output is not a node".into()))
            }
            _ => Ok(()),
        }
    }
}
