//! Building a [`Graph`] from the JSON graph of a model file (docs/format.md) and its tensors, validating
//! every node: operands, parameters, attributes and shapes. The file's schema is in `format.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::attrs::{
    ActivationAttrs, AdaptivePoolAttrs, ConvAttrs, EpsAttrs, LinearAttrs, PadOnlyAttrs, PoolAttrs,
    PwluAttrs, ShuffleAttrs, SliceAttrs,
};
use super::format::{GraphSpec, NodeSpec, StoredTensor};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Op, Value};
use crate::ops::{
    Activation, BatchNorm, BinaryOp, ChannelSelection, Conv2d, Conv2dLayer, Epilogue, LayerNorm,
    Linear, Padding, Pool2d, PoolKind, Pwlu,
};
use crate::tensor::Shape;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PwluKey {
    intervals: usize,
    units: usize,
    grid: String,
    points: String,
    slopes: String,
}

/// The file's tensors; tracks which ones the graph used, so that leftovers are reported. A tensor named by
/// several nodes is stored once: each node holds the same `Arc`, so memory stays proportional to the file
/// however often its tensors are referenced.
pub struct TensorStore {
    tensors: HashMap<String, StoredTensor>,
    used: HashSet<String>,
    pwlu_units: HashMap<PwluKey, Arc<Pwlu>>,
}

impl TensorStore {
    /// Wraps the tensors read from a file.
    pub fn new(tensors: HashMap<String, StoredTensor>) -> Self {
        TensorStore {
            tensors,
            used: HashSet::new(),
            pwlu_units: HashMap::new(),
        }
    }

    fn take(&mut self, node: &str, role: &str, name: &str, dims: &[usize]) -> Result<Arc<[f32]>> {
        let tensor = self.tensors.get(name).ok_or_else(|| {
            Error::Model(format!(
                "node '{node}': {role} tensor '{name}' is not in the file"
            ))
        })?;
        if tensor.dims != dims {
            return Err(Error::Model(format!(
                "node '{node}': {role} tensor '{name}' has shape {:?}, expected {dims:?}",
                tensor.dims
            )));
        }
        if !self.used.contains(name) {
            if let Some(i) = tensor.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Model(format!(
                    "node '{node}': {role} tensor '{name}' holds {} at index {i}",
                    tensor.data[i]
                )));
            }
            self.used.insert(name.to_string());
        }
        Ok(Arc::clone(&tensor.data))
    }

    fn unused(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }
}

/// Largest dimension accepted anywhere in a graph: far beyond any classifier, small enough that products of a
/// few dimensions cannot overflow.
const MAX_DIM: usize = 1 << 20;
/// The most elements one tensor may have (u64, so that 32-bit targets can state it).
const MAX_ELEMENTS: u64 = 1 << 40;

struct NodeBuilder<'a> {
    spec: &'a NodeSpec,
    store: &'a mut TensorStore,
    input_shapes: &'a [Shape],
}

impl NodeBuilder<'_> {
    fn err(&self, reason: impl std::fmt::Display) -> Error {
        Error::Model(format!(
            "node '{}' ({}): {reason}",
            self.spec.name, self.spec.op
        ))
    }

    fn attrs<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(serde_json::Value::Object(self.spec.attrs.clone()))
            .map_err(|e| self.err(format!("attributes: {e}")))
    }

    fn no_attrs(&self) -> Result<()> {
        if !self.spec.attrs.is_empty() {
            return Err(self.err(format!(
                "takes no attributes, got {:?}",
                self.spec.attrs.keys().collect::<Vec<_>>()
            )));
        }
        Ok(())
    }

    fn check_params(&self, required: &[&str], optional: &[&str]) -> Result<()> {
        for role in self.spec.params.keys() {
            if !required.contains(&role.as_str()) && !optional.contains(&role.as_str()) {
                return Err(self.err(format!("unknown parameter '{role}'")));
            }
        }
        for role in required {
            if !self.spec.params.contains_key(*role) {
                return Err(self.err(format!("missing parameter '{role}'")));
            }
        }
        Ok(())
    }

    fn param(&mut self, role: &str, dims: &[usize]) -> Result<Option<Arc<[f32]>>> {
        match self.spec.params.get(role) {
            None => Ok(None),
            Some(name) => {
                let name = name.clone();
                self.store
                    .take(&self.spec.name, role, &name, dims)
                    .map(Some)
            }
        }
    }

    fn required(&mut self, role: &str, dims: &[usize]) -> Result<Arc<[f32]>> {
        self.param(role, dims)?
            .ok_or_else(|| self.err(format!("missing parameter '{role}'")))
    }

    /// Channels of the first operand (the op's own shape inference reports a missing one).
    fn input_channels(&self) -> Result<usize> {
        self.input_shapes
            .first()
            .map(|s| s.c)
            .ok_or_else(|| self.err("no input"))
    }

    fn dims_ok(&self, values: &[usize]) -> Result<()> {
        if let Some(v) = values.iter().find(|&&v| v > MAX_DIM) {
            return Err(self.err(format!("dimension {v} is out of range")));
        }
        Ok(())
    }

    fn build(mut self) -> Result<Op> {
        let op = match self.spec.op.as_str() {
            "conv2d" => {
                self.check_params(&["weight"], &["bias"])?;
                let a: ConvAttrs = self.attrs()?;
                self.dims_ok(&[
                    a.in_channels,
                    a.out_channels,
                    a.kernel[0],
                    a.kernel[1],
                    a.groups,
                ])?;
                let conv = Conv2d {
                    in_channels: a.in_channels,
                    out_channels: a.out_channels,
                    kernel: a.kernel,
                    stride: a.stride,
                    dilation: a.dilation,
                    padding: a.padding.into(),
                    groups: a.groups,
                };
                conv.validate().map_err(|e| self.err(e))?;
                let per_group = a.in_channels / a.groups;
                let weight = self.required(
                    "weight",
                    &[a.out_channels, per_group, a.kernel[0], a.kernel[1]],
                )?;
                let bias = self.param("bias", &[a.out_channels])?;
                Op::Conv(
                    Conv2dLayer::new(conv, weight, bias, Epilogue::default())
                        .map_err(|e| self.err(e))?,
                )
            }
            "batch_norm" => {
                self.check_params(&["weight", "bias", "running_mean", "running_var"], &[])?;
                let a: EpsAttrs = self.attrs()?;
                let c = self.input_shapes.first().map_or(0, |s| s.c);
                let bn = BatchNorm {
                    gamma: self.required("weight", &[c])?,
                    beta: self.required("bias", &[c])?,
                    mean: self.required("running_mean", &[c])?,
                    var: self.required("running_var", &[c])?,
                    eps: a.eps,
                };
                if !(a.eps.is_finite() && a.eps >= 0.0) || bn.var.iter().any(|&v| v + a.eps <= 0.0)
                {
                    return Err(self.err("variance + eps must be positive"));
                }
                Op::BatchNorm(bn, Activation::Identity)
            }
            "activation" => {
                self.check_params(&[], &[])?;
                let a: ActivationAttrs = self.attrs()?;
                let act = match (a.kind.as_str(), a.negative_slope) {
                    ("relu", None) => Activation::Relu,
                    ("relu6", None) => Activation::Relu6,
                    ("leaky_relu", Some(s)) if s.is_finite() => {
                        Activation::LeakyRelu { negative_slope: s }
                    }
                    ("sigmoid", None) => Activation::Sigmoid,
                    ("silu", None) => Activation::Silu,
                    ("hardsigmoid", None) => Activation::Hardsigmoid,
                    ("hardswish", None) => Activation::Hardswish,
                    ("gelu", None) => Activation::Gelu,
                    ("gelu_tanh", None) => Activation::GeluTanh,
                    (kind, slope) => {
                        let slope = slope.map_or("none".into(), |s| s.to_string());
                        return Err(self.err(format!(
                            "unknown activation '{kind}' with negative_slope {slope} (leaky_relu \
                             needs a finite one, the others none)"
                        )));
                    }
                };
                Op::Activation(act)
            }
            "pwlu" | "pwlu_non_uniform" => {
                let uniform = self.spec.op == "pwlu";
                if uniform {
                    self.check_params(&["points", "bounds", "slopes"], &[])?;
                } else {
                    self.check_params(&["points", "breakpoints", "slopes"], &[])?;
                }
                let a: PwluAttrs = self.attrs()?;
                let channels = self.input_shapes.first().map_or(0, |s| s.c);
                let units = match a.granularity.as_str() {
                    "channel" => channels,
                    "layer" => 1,
                    other => {
                        return Err(
                            self.err(format!("granularity '{other}' (expected channel or layer)"))
                        )
                    }
                };
                if a.intervals == 0 || a.intervals > crate::ops::pwlu::MAX_INTERVALS {
                    return Err(self.err(format!(
                        "{} intervals (1 to {})",
                        a.intervals,
                        crate::ops::pwlu::MAX_INTERVALS
                    )));
                }
                let n1 = a.intervals + 1;
                let grid_role = if uniform { "bounds" } else { "breakpoints" };
                let name_of = |role: &str| self.spec.params.get(role).cloned().unwrap_or_default();
                let key = PwluKey {
                    intervals: a.intervals,
                    units,
                    grid: format!("{grid_role}:{}", name_of(grid_role)),
                    points: name_of("points"),
                    slopes: name_of("slopes"),
                };
                let points = self.required("points", &[units, n1])?;
                let slopes = self.required("slopes", &[units, 2])?;
                let grid = if uniform {
                    self.required("bounds", &[units, 2])?
                } else {
                    self.required("breakpoints", &[units, n1])?
                };
                if let Some(shared) = self.store.pwlu_units.get(&key) {
                    return Ok(Op::Activation(Activation::Pwlu(Arc::clone(shared))));
                }
                let (points, slopes) = (points.to_vec(), pairs(&slopes));
                let pwlu = if uniform {
                    Pwlu::uniform(a.intervals, pairs(&grid), points, slopes)
                } else {
                    Pwlu::non_uniform(a.intervals, grid.to_vec(), points, slopes)
                }
                .map_err(|e| self.err(e))?;
                let pwlu = Arc::new(pwlu);
                self.store.pwlu_units.insert(key, Arc::clone(&pwlu));
                Op::Activation(Activation::Pwlu(pwlu))
            }
            "add" | "mul" => {
                self.check_params(&[], &[])?;
                self.no_attrs()?;
                let op = if self.spec.op == "add" {
                    BinaryOp::Add
                } else {
                    BinaryOp::MulChannels
                };
                Op::Binary(op, Activation::Identity)
            }
            "max_pool2d" | "avg_pool2d" => {
                self.check_params(&[], &[])?;
                let a: PoolAttrs = self.attrs()?;
                let kind = if self.spec.op == "max_pool2d" {
                    if a.count_include_pad.is_some() {
                        return Err(self.err("count_include_pad applies to average pooling only"));
                    }
                    PoolKind::Max
                } else {
                    PoolKind::Average {
                        count_include_pad: a.count_include_pad.unwrap_or(true),
                    }
                };
                self.dims_ok(&[a.kernel[0], a.kernel[1], a.stride[0], a.stride[1]])?;
                Op::Pool(Pool2d {
                    kind,
                    kernel: a.kernel,
                    stride: a.stride,
                    padding: a.padding.into(),
                    dilation: a.dilation.unwrap_or([1, 1]),
                    ceil_mode: a.ceil_mode,
                })
            }
            "global_avg_pool" | "flatten" => {
                self.check_params(&[], &[])?;
                self.no_attrs()?;
                if self.spec.op == "flatten" {
                    Op::Flatten
                } else {
                    Op::GlobalAvgPool
                }
            }
            "linear" => {
                self.check_params(&["weight"], &["bias"])?;
                let a: LinearAttrs = self.attrs()?;
                self.dims_ok(&[a.in_features, a.out_features])?;
                if a.in_features == 0 || a.out_features == 0 {
                    return Err(self.err("features must be positive"));
                }
                Op::Linear(Linear {
                    in_features: a.in_features,
                    out_features: a.out_features,
                    weight: self.required("weight", &[a.out_features, a.in_features])?,
                    bias: self.param("bias", &[a.out_features])?,
                    activation: Activation::Identity,
                })
            }
            "pad" => {
                self.check_params(&[], &[])?;
                let a: PadOnlyAttrs = self.attrs()?;
                let p: Padding = a.padding.into();
                self.dims_ok(&[p.top, p.left, p.bottom, p.right])?;
                Op::Pad(p)
            }
            "concat" => {
                self.check_params(&[], &[])?;
                self.no_attrs()?;
                Op::Concat
            }
            "channel_shuffle" => {
                self.check_params(&[], &[])?;
                let a: ShuffleAttrs = self.attrs()?;
                let channels = self.input_channels()?;
                Op::SelectChannels(
                    ChannelSelection::shuffle(channels, a.groups).map_err(|e| self.err(e))?,
                )
            }
            "slice_channels" => {
                self.check_params(&[], &[])?;
                let a: SliceAttrs = self.attrs()?;
                let channels = self.input_channels()?;
                Op::SelectChannels(
                    ChannelSelection::slice(channels, a.start, a.end).map_err(|e| self.err(e))?,
                )
            }
            "adaptive_avg_pool2d" => {
                self.check_params(&[], &[])?;
                let a: AdaptivePoolAttrs = self.attrs()?;
                self.dims_ok(&a.output_size)?;
                Op::AdaptiveAvgPool(a.output_size)
            }
            "layer_norm" => {
                self.check_params(&["weight", "bias"], &[])?;
                let a: EpsAttrs = self.attrs()?;
                let c = self.input_channels()?;
                let weight = self.required("weight", &[c])?;
                let bias = self.required("bias", &[c])?;
                Op::LayerNorm(LayerNorm::new(weight, bias, a.eps).map_err(|e| self.err(e))?)
            }
            other => return Err(self.err(format!("unknown op '{other}'"))),
        };
        Ok(op)
    }
}

fn pairs(flat: &[f32]) -> Vec<[f32; 2]> {
    flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

impl Graph {
    /// Builds and validates the graph of a model file. Every tensor must be used by some node.
    pub fn from_spec(spec: &GraphSpec, store: &mut TensorStore) -> Result<Graph> {
        let [input] = spec.inputs.as_slice() else {
            return Err(Error::Model(format!(
                "a model has exactly one input, this one has {}",
                spec.inputs.len()
            )));
        };
        let input_shape = match *input.shape.as_slice() {
            [_, c, h, w] if [c, h, w].iter().all(|&d| (1..=MAX_DIM).contains(&d)) => {
                Shape::new(1, c, h, w)
            }
            _ => {
                return Err(Error::Model(format!(
                    "input '{}' must be [N, C, H, W] with positive sizes, got {:?}",
                    input.name, input.shape
                )))
            }
        };
        let mut names: HashMap<&str, Value> = HashMap::new();
        names.insert(input.name.as_str(), Value::Input);
        let mut graph = Graph {
            input: input_shape,
            nodes: Vec::with_capacity(spec.nodes.len()),
            output: Value::Input,
        };
        for spec_node in &spec.nodes {
            if names.contains_key(spec_node.name.as_str()) {
                return Err(Error::Model(format!(
                    "node name '{}' is used twice",
                    spec_node.name
                )));
            }
            let inputs = spec_node
                .inputs
                .iter()
                .map(|name| {
                    names.get(name.as_str()).copied().ok_or_else(|| {
                        Error::Model(format!(
                            "node '{}' reads '{name}', which is neither the input nor an earlier node",
                            spec_node.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let input_shapes: Vec<Shape> = inputs.iter().map(|&v| graph.shape(v)).collect();
            let op = NodeBuilder {
                spec: spec_node,
                store,
                input_shapes: &input_shapes,
            }
            .build()?;
            let shape = op
                .output_shape(&input_shapes)
                .map_err(|e| Error::Model(format!("node '{}': {e}", spec_node.name)))?;
            if shape
                .checked_len()
                .is_none_or(|len| len as u64 > MAX_ELEMENTS)
            {
                return Err(Error::Model(format!(
                    "node '{}': output {shape} is too large",
                    spec_node.name
                )));
            }
            if let Some(recorded) = &spec_node.shape {
                let agrees = match *recorded.as_slice() {
                    [_, c] => c == shape.c && shape.h * shape.w == 1,
                    [_, c, h, w] => [c, h, w] == [shape.c, shape.h, shape.w],
                    _ => false,
                };
                if !agrees {
                    return Err(Error::Model(format!(
                        "node '{}': computes {shape}, the file records {recorded:?}",
                        spec_node.name
                    )));
                }
            }
            names.insert(spec_node.name.as_str(), Value::Node(graph.nodes.len()));
            let activation_source = matches!(op, Op::Activation(_)).then(|| spec_node.name.clone());
            graph.nodes.push(Node {
                name: spec_node.name.clone(),
                op,
                inputs,
                shape,
                activation_source,
            });
        }
        let [output] = spec.outputs.as_slice() else {
            return Err(Error::Model(format!(
                "a model has exactly one output, this one has {}",
                spec.outputs.len()
            )));
        };
        graph.output = *names
            .get(output.as_str())
            .ok_or_else(|| Error::Model(format!("the output '{output}' is not a node")))?;
        let unused = store.unused();
        if !unused.is_empty() {
            return Err(Error::Model(format!(
                "{} tensor(s) are not used by any node: {}",
                unused.len(),
                unused
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(graph)
    }
}
