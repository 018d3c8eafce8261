//! A small but complete model file, written from Rust: a residual PWLU block and a classifier.
#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::{json, Value as Json};

/// Tensors and metadata of a model file, editable before serialisation.
#[derive(Clone)]
pub struct FileParts {
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
    pub graph: Json,
}

impl FileParts {
    pub fn bytes(&self) -> Vec<u8> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, d, v)| {
                (
                    n.clone(),
                    d.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = raw
            .iter()
            .map(|(n, d, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, d.clone(), b)
                        .expect("view"),
                )
            })
            .collect();
        let mut metadata = self.metadata.clone();
        metadata.insert("graph".into(), self.graph.to_string());
        safetensors::serialize(views, Some(metadata)).expect("serialise")
    }

    pub fn node(&mut self, name: &str) -> &mut Json {
        self.graph["nodes"]
            .as_array_mut()
            .expect("nodes")
            .iter_mut()
            .find(|n| n["name"] == name)
            .expect("node")
    }

    pub fn tensor(&mut self, name: &str) -> &mut (String, Vec<usize>, Vec<f32>) {
        self.tensors
            .iter_mut()
            .find(|t| t.0 == name)
            .expect("tensor")
    }
}

fn pad(p: usize) -> Json {
    json!({"top": p, "left": p, "bottom": p, "right": p})
}

/// A residual PWLU block and classifier: conv-bn-pwlu, conv-bn, add, pwlu, max pool, gap, flatten, linear.
pub fn small_model() -> FileParts {
    let mut rng = super::rng(40);
    let mut tensors = Vec::new();
    let mut add = |name: &str, dims: Vec<usize>, scale: f32| {
        let len = dims.iter().product();
        tensors.push((
            name.to_string(),
            dims,
            super::random_vec(&mut rng, len, scale),
        ));
    };
    add("c1.weight", vec![6, 3, 3, 3], 0.3);
    add("c1.bias", vec![6], 0.1);
    add("c2.weight", vec![6, 6, 3, 3], 0.2);
    for bn in ["bn1", "bn2"] {
        add(&format!("{bn}.weight"), vec![6], 0.5);
        add(&format!("{bn}.bias"), vec![6], 0.5);
        add(&format!("{bn}.running_mean"), vec![6], 0.5);
    }
    add("fc.weight", vec![4, 6], 0.5);
    add("fc.bias", vec![4], 0.1);
    tensors.push(("bn1.running_var".into(), vec![6], vec![1.5; 6]));
    tensors.push(("bn2.running_var".into(), vec![6], vec![0.7; 6]));
    for site in ["p1", "p2"] {
        let mut points = Vec::new();
        for c in 0..6 {
            for i in 0..=8 {
                let x = -2.0 + 0.5 * i as f32;
                points.push(x.max(0.0) + 0.05 * ((c * 7 + i) % 5) as f32);
            }
        }
        tensors.push((format!("{site}.points"), vec![6, 9], points));
        tensors.push((format!("{site}.bounds"), vec![6, 2], [-2.0, 2.0].repeat(6)));
        tensors.push((format!("{site}.slopes"), vec![6, 2], [0.1, 1.0].repeat(6)));
    }
    let conv = |name: &str, input: &str, cin: usize, bias: bool| {
        let mut params = json!({"weight": format!("{name}.weight")});
        if bias {
            params["bias"] = json!(format!("{name}.bias"));
        }
        json!({"name": name, "op": "conv2d", "inputs": [input], "params": params,
               "attrs": {"in_channels": cin, "out_channels": 6, "kernel": [3, 3], "stride": [1, 1],
                         "dilation": [1, 1], "padding": pad(1), "groups": 1}})
    };
    let bn = |name: &str, input: &str| {
        json!({"name": name, "op": "batch_norm", "inputs": [input],
               "params": {"weight": format!("{name}.weight"), "bias": format!("{name}.bias"),
                          "running_mean": format!("{name}.running_mean"), "running_var": format!("{name}.running_var")},
               "attrs": {"eps": 1e-5}})
    };
    let pwlu = |name: &str, input: &str| {
        json!({"name": name, "op": "pwlu", "inputs": [input],
               "params": {"points": format!("{name}.points"), "bounds": format!("{name}.bounds"),
                          "slopes": format!("{name}.slopes")},
               "attrs": {"intervals": 8, "granularity": "channel"}})
    };
    let graph = json!({
        "inputs": [{"name": "x", "shape": [1, 3, 10, 9]}],
        "outputs": ["fc"],
        "nodes": [
            conv("c1", "x", 3, true), bn("bn1", "c1"), pwlu("p1", "bn1"),
            conv("c2", "p1", 6, false), bn("bn2", "c2"),
            {"name": "add", "op": "add", "inputs": ["bn2", "p1"]},
            pwlu("p2", "add"),
            {"name": "pool", "op": "max_pool2d", "inputs": ["p2"],
             "attrs": {"kernel": [3, 3], "stride": [2, 2], "padding": pad(1), "dilation": [1, 1], "ceil_mode": false}},
            {"name": "gap", "op": "global_avg_pool", "inputs": ["pool"]},
            {"name": "flat", "op": "flatten", "inputs": ["gap"]},
            {"name": "fc", "op": "linear", "inputs": ["flat"], "params": {"weight": "fc.weight", "bias": "fc.bias"},
             "attrs": {"in_features": 6, "out_features": 4}, "shape": [1, 4]}
        ]
    });
    let metadata = HashMap::from([
        ("format".to_string(), "pwlu".to_string()),
        ("format_version".to_string(), "2".to_string()),
        (
            "labels".to_string(),
            json!(["a", "b", "c", "d"]).to_string(),
        ),
    ]);
    FileParts {
        tensors,
        metadata,
        graph,
    }
}

/// The small model with preprocessing metadata, so that it classifies images.
pub fn small_classifier() -> FileParts {
    let mut parts = small_model();
    parts.metadata.insert(
        "preprocess".into(),
        json!({"resize": 12, "crop": [10, 9], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]})
            .to_string(),
    );
    parts.metadata.insert("name".into(), "small".into());
    parts
}

/// `nodes` chained 3x3 convolutions of `channels` channels that all name one weight tensor, each followed by a
/// batch norm of its own (so the optimiser is tempted to fold a copy of the weights into each).
pub fn shared_weight_file(channels: usize, nodes: usize) -> FileParts {
    let mut rng = super::rng(90);
    let weight_len = channels * channels * 9;
    let mut tensors = vec![(
        "shared.weight".to_string(),
        vec![channels, channels, 3, 3],
        super::random_vec(&mut rng, weight_len, 0.01),
    )];
    let mut graph_nodes = Vec::new();
    let mut previous = "x".to_string();
    for i in 0..nodes {
        let conv = format!("conv{i}");
        let bn = format!("bn{i}");
        graph_nodes.push(json!({
            "name": conv, "op": "conv2d", "inputs": [previous],
            "params": {"weight": "shared.weight"},
            "attrs": {"in_channels": channels, "out_channels": channels, "kernel": [3, 3],
                      "stride": [1, 1], "dilation": [1, 1], "groups": 1,
                      "padding": {"top": 1, "left": 1, "bottom": 1, "right": 1}}
        }));
        let mut params = serde_json::Map::new();
        for (role, scale) in [
            ("weight", 0.1),
            ("bias", 0.1),
            ("running_mean", 0.1),
            ("running_var", 0.1),
        ] {
            let name = format!("{bn}.{role}");
            let mut values = super::random_vec(&mut rng, channels, scale);
            if role == "running_var" || role == "weight" {
                values.iter_mut().for_each(|v| *v += 1.0);
            }
            tensors.push((name.clone(), vec![channels], values));
            params.insert(role.into(), json!(name));
        }
        graph_nodes.push(json!({
            "name": bn, "op": "batch_norm", "inputs": [conv], "params": params,
            "attrs": {"eps": 1e-5}
        }));
        previous = bn;
    }
    FileParts {
        tensors,
        metadata: [
            ("format".to_string(), "pwlu".to_string()),
            ("format_version".to_string(), "2".to_string()),
        ]
        .into(),
        graph: json!({
            "inputs": [{"name": "x", "shape": [1, channels, 2, 2]}],
            "outputs": [previous],
            "nodes": graph_nodes,
        }),
    }
}
