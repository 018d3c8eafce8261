//! Reading the model file format (docs/format.md): a safetensors file whose metadata holds the graph, the
//! preprocessing and the labels. Everything is validated before use; nothing here trusts the file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::preprocess::Preprocess;

/// The `graph` entry of a model file's metadata.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// Exactly one input.
    pub inputs: Vec<InputSpec>,
    /// Exactly one output: a node name.
    pub outputs: Vec<String>,
    /// Nodes in topological order.
    pub nodes: Vec<NodeSpec>,
}

/// The graph input.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Name nodes use to refer to it.
    pub name: String,
    /// `[N, C, H, W]` of the example the model was exported with (N is free at run time).
    pub shape: Vec<usize>,
}

/// One node as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique name.
    pub name: String,
    /// Operator, e.g. `conv2d`.
    pub op: String,
    /// Names of the input or earlier nodes.
    pub inputs: Vec<String>,
    /// Parameter role -> tensor name.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Operator attributes.
    #[serde(default)]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// Output shape at export, checked against inference when present.
    #[serde(default)]
    pub shape: Option<Vec<usize>>,
}

/// A tensor from the file: dims and f32 data.
#[derive(Clone, Debug)]
pub struct StoredTensor {
    /// Dimensions as stored.
    pub dims: Vec<usize>,
    /// Values, converted to f32; shared by every node that names the tensor.
    pub data: Arc<[f32]>,
}

/// The newest format version this engine reads (it reads every version from 1 up to it).
pub const FORMAT_VERSION: u32 = 2;

/// Ops that version 2 added: a version-1 file that uses one is refused rather than guessed at.
const VERSION_2_OPS: &[&str] = &[
    "concat",
    "channel_shuffle",
    "slice_channels",
    "adaptive_avg_pool2d",
    "layer_norm",
];

/// A parsed, not yet built, model file.
#[derive(Clone, Debug)]
pub struct ModelFile {
    /// The graph as written.
    pub graph: GraphSpec,
    /// How images become input tensors; `None` for models that take tensors only.
    pub preprocess: Option<Preprocess>,
    /// Class names, one per output.
    pub labels: Option<Vec<String>>,
    /// A display name.
    pub name: Option<String>,
    /// Every tensor, as f32.
    pub tensors: HashMap<String, StoredTensor>,
}

fn meta_json<T: for<'de> Deserialize<'de>>(
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>> {
    metadata
        .get(key)
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| Error::Model(format!("metadata '{key}' is not valid: {e}")))
        })
        .transpose()
}

/// Parses and validates the bytes of a model file.
pub fn parse(bytes: &[u8]) -> Result<ModelFile> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Model(format!("not a safetensors file: {e}")))?;
    let metadata = header.metadata().as_ref().ok_or_else(|| {
        Error::Model("not a pwlu model: the safetensors file has no metadata".into())
    })?;
    match metadata.get("format").map(String::as_str) {
        Some("pwlu") => {}
        Some(other) => {
            return Err(Error::Model(format!(
                "not a pwlu model: its format is '{other}'"
            )))
        }
        None => {
            return Err(Error::Model(
                "not a pwlu model: no 'format' entry in the metadata".into(),
            ))
        }
    }
    let version: u32 = metadata
        .get("format_version")
        .ok_or_else(|| Error::Model("no 'format_version' in the metadata".into()))?
        .parse()
        .map_err(|_| Error::Model("'format_version' is not a number".into()))?;
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(Error::Model(format!(
            "format version {version} is not supported (this engine reads versions 1 to {FORMAT_VERSION})"
        )));
    }
    let graph: GraphSpec = meta_json(metadata, "graph")?
        .ok_or_else(|| Error::Model("no 'graph' in the metadata".into()))?;
    if version < 2 {
        if let Some(node) = graph
            .nodes
            .iter()
            .find(|n| VERSION_2_OPS.contains(&n.op.as_str()))
        {
            return Err(Error::Model(format!(
                "node '{}': op '{}' needs format version 2, the file says version {version}",
                node.name, node.op
            )));
        }
    }
    let preprocess: Option<Preprocess> = meta_json(metadata, "preprocess")?;
    if let Some(p) = &preprocess {
        p.validate()?;
    }
    let labels: Option<Vec<String>> = meta_json(metadata, "labels")?;

    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Model(format!("not a valid safetensors file: {e}")))?;
    let mut tensors = HashMap::new();
    for (name, view) in file.iter() {
        let raw = view.data();
        let data: std::sync::Arc<[f32]> = match view.dtype() {
            safetensors::Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            safetensors::Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Model(format!(
                    "tensor '{name}' is {other:?}; weights must be F32, F16 or BF16"
                )))
            }
        };
        tensors.insert(
            name.to_string(),
            StoredTensor {
                dims: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(ModelFile {
        graph,
        preprocess,
        labels,
        name: metadata.get("name").cloned(),
        tensors,
    })
}
