//! Graph optimisation: turn adaptive poolings with uniform windows into plain ones, fold zero padding and
//! batch norm into convolutions, fuse residual adds and activations into their producers' epilogues. Each pass preserves the graph's meaning exactly up to float rounding; the
//! result is what the planner turns into dispatches.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Graph, Node, Op, Value};
use crate::error::Result;
use crate::ops::{Activation, Pool2d, PoolKind, ResidualAdd};

/// Runs every pass, in order, and validates the result.
pub fn optimize(graph: Graph) -> Result<Graph> {
    let graph = uniform_adaptive_pools(graph);
    let graph = fold_padding(graph);
    let graph = fold_batch_norm(graph)?;
    let graph = fuse_residual_add(graph);
    let graph = fuse_activation(graph);
    graph.validate()?;
    Ok(graph)
}

/// Adaptive average pooling whose output divides its input pools uniform windows: the same as a plain average
/// pooling with kernel and stride `input / output` (a copy where the sizes match), which every backend runs
/// faster than the general windows.
pub fn uniform_adaptive_pools(mut graph: Graph) -> Graph {
    for i in 0..graph.nodes.len() {
        let Op::AdaptiveAvgPool([oh, ow]) = graph.nodes[i].op else {
            continue;
        };
        let input = graph.shape(graph.nodes[i].inputs[0]);
        if input.h.is_multiple_of(oh) && input.w.is_multiple_of(ow) {
            let kernel = [input.h / oh, input.w / ow];
            graph.nodes[i].op = Op::Pool(Pool2d::new(
                PoolKind::Average {
                    count_include_pad: true,
                },
                kernel,
            ));
        }
    }
    graph
}

/// What a rule makes of a (producer, consumer) pair: the merged op, its operands, and whose name it keeps.
struct Merged {
    op: Op,
    inputs: Vec<Value>,
    keep_consumer_name: bool,
}

impl Merged {
    /// A merge named after the producer (the convolution that absorbs a batch norm or activation).
    fn into_producer(op: Op, inputs: Vec<Value>) -> Option<Merged> {
        Some(Merged {
            op,
            inputs,
            keep_consumer_name: false,
        })
    }
}

/// Replaces producer `i` and its only consumer `j` by one node at `j`'s position (so that every other operand
/// of `j` is already computed), computing `merged.op` from `merged.inputs`.
fn merge(graph: Graph, i: usize, j: usize, merged: Merged) -> Graph {
    let Merged {
        op,
        inputs,
        keep_consumer_name,
    } = merged;
    let name = if keep_consumer_name {
        &graph.nodes[j].name
    } else {
        &graph.nodes[i].name
    };
    let remap = |v: Value| match v {
        Value::Node(k) if k > i => Value::Node(k - 1),
        v => v,
    };
    let mut nodes = Vec::with_capacity(graph.nodes.len() - 1);
    for (k, node) in graph.nodes.iter().enumerate() {
        if k == i {
            continue;
        }
        if k == j {
            nodes.push(Node {
                name: name.clone(),
                op: op.clone(),
                inputs: inputs.iter().map(|&v| remap(v)).collect(),
                shape: graph.nodes[j].shape,
                activation_source: graph.nodes[j]
                    .activation_source
                    .clone()
                    .or_else(|| graph.nodes[i].activation_source.clone()),
            });
        } else {
            nodes.push(Node {
                inputs: node.inputs.iter().map(|&v| remap(v)).collect(),
                ..node.clone()
            });
        }
    }
    Graph {
        input: graph.input,
        nodes,
        output: remap(graph.output),
    }
}

/// Finds the first (producer, consumer) pair that `rule` can merge and merges it; repeats until none is left.
fn merge_all(mut graph: Graph, rule: impl Fn(&Graph, usize, usize) -> Option<Merged>) -> Graph {
    loop {
        let consumers = graph.consumers();
        let found = graph.nodes.iter().enumerate().find_map(|(j, node)| {
            node.inputs.iter().find_map(|&v| match v {
                Value::Node(i) if consumers[i] == 1 && graph.output != Value::Node(i) => {
                    rule(&graph, i, j).map(|merged| (i, j, merged))
                }
                _ => None,
            })
        });
        match found {
            Some((i, j, merged)) => graph = merge(graph, i, j, merged),
            None => return graph,
        }
    }
}

fn is_plain_conv(op: &Op) -> bool {
    matches!(op, Op::Conv(layer) if layer.epilogue.activation == Activation::Identity
        && layer.epilogue.residual == ResidualAdd::None)
}

/// `pad -> conv`: zero padding becomes the convolution's own padding.
pub fn fold_padding(graph: Graph) -> Graph {
    merge_all(graph, |g, i, j| match (&g.nodes[i].op, &g.nodes[j].op) {
        (Op::Pad(p), Op::Conv(layer))
            if g.nodes[j].inputs[0] == Value::Node(i) && is_plain_conv(&g.nodes[j].op) =>
        {
            let mut layer = layer.clone();
            let q = &mut layer.conv.padding;
            q.top += p.top;
            q.left += p.left;
            q.bottom += p.bottom;
            q.right += p.right;
            // The convolution is what remains: keep its name, not the pad's.
            Some(Merged {
                op: Op::Conv(layer),
                inputs: g.nodes[i].inputs.clone(),
                keep_consumer_name: true,
            })
        }
        _ => None,
    })
}

/// The weights that more than one node holds (a model file may name one tensor in several nodes).
fn shared_weights(graph: &Graph) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut shared = HashSet::new();
    for node in &graph.nodes {
        let weight = match &node.op {
            Op::Conv(layer) => &layer.weight,
            Op::Linear(linear) => &linear.weight,
            _ => continue,
        };
        let address = Arc::as_ptr(weight).cast::<f32>() as usize;
        if !seen.insert(address) {
            shared.insert(address);
        }
    }
    shared
}

/// `conv -> batch_norm`: the batch norm's scale and shift go into the convolution's weights and bias. A
/// convolution whose weights other nodes share keeps them, and its batch norm stays a node of its own: folding
/// would give each such node a copy, and memory would no longer be bounded by the file's size.
pub fn fold_batch_norm(graph: Graph) -> Result<Graph> {
    // Folding can only fail on inconsistent channels, which validation has excluded; surface it anyway.
    let failure = std::cell::RefCell::new(None);
    let shared = shared_weights(&graph);
    let graph = merge_all(graph, |g, i, j| match (&g.nodes[i].op, &g.nodes[j].op) {
        (Op::Conv(layer), Op::BatchNorm(bn, Activation::Identity))
            if is_plain_conv(&g.nodes[i].op)
                && !shared.contains(&(Arc::as_ptr(&layer.weight).cast::<f32>() as usize)) =>
        {
            let mut layer = layer.clone();
            match layer.fold_batch_norm(bn) {
                Ok(()) => Merged::into_producer(Op::Conv(layer), g.nodes[i].inputs.clone()),
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e);
                    None
                }
            }
        }
        _ => None,
    });
    match failure.into_inner() {
        Some(e) => Err(e),
        None => Ok(graph),
    }
}

/// `add(conv(x), r)`: the add moves into the convolution's epilogue, before its activation (none yet) or,
/// when the convolution already has one, after it.
pub fn fuse_residual_add(graph: Graph) -> Graph {
    merge_all(graph, |g, i, j| {
        let Op::Binary(crate::ops::BinaryOp::Add, Activation::Identity) = &g.nodes[j].op else {
            return None;
        };
        // Of two convolution operands, fuse into the later one; the other is the residual.
        let operands = &g.nodes[j].inputs;
        let fusable = |v: Value| match v {
            Value::Node(k) => {
                matches!(&g.nodes[k].op, Op::Conv(l) if l.epilogue.residual == ResidualAdd::None)
            }
            Value::Input => false,
        };
        let chosen = operands.iter().copied().filter(|&v| fusable(v)).max()?;
        if chosen != Value::Node(i) || operands[0] == operands[1] {
            return None;
        }
        let residual = if operands[0] == chosen {
            operands[1]
        } else {
            operands[0]
        };
        let Op::Conv(layer) = &g.nodes[i].op else {
            return None;
        };
        let mut layer = layer.clone();
        layer.epilogue.residual = if layer.epilogue.activation == Activation::Identity {
            ResidualAdd::BeforeActivation
        } else {
            ResidualAdd::AfterActivation
        };
        let mut inputs = g.nodes[i].inputs.clone();
        inputs.push(residual);
        Merged::into_producer(Op::Conv(layer), inputs)
    })
}

/// `producer -> activation`: the activation runs in the producer's epilogue.
pub fn fuse_activation(graph: Graph) -> Graph {
    merge_all(graph, |g, i, j| {
        let Op::Activation(act) = &g.nodes[j].op else {
            return None;
        };
        let act = act.clone();
        let op = match &g.nodes[i].op {
            Op::Conv(layer)
                if layer.epilogue.activation == Activation::Identity
                    && layer.epilogue.residual != ResidualAdd::AfterActivation =>
            {
                let mut layer = layer.clone();
                layer.epilogue.activation = act;
                Op::Conv(layer)
            }
            Op::BatchNorm(bn, Activation::Identity) => Op::BatchNorm(bn.clone(), act),
            Op::Binary(op, Activation::Identity) => Op::Binary(*op, act),
            Op::Linear(linear) if linear.activation == Activation::Identity => {
                let mut linear = linear.clone();
                linear.activation = act;
                Op::Linear(linear)
            }
            _ => return None,
        };
        Merged::into_producer(op, g.nodes[i].inputs.clone())
    })
}
