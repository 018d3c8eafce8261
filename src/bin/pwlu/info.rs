//! `pwlu info`.

use pwlu::model::CheckedModel;
use pwlu::ops::Grid;
use serde_json::json;

use crate::CliResult;

fn site_bounds(pwlu: &pwlu::ops::Pwlu) -> [f32; 2] {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    match pwlu.grid() {
        Grid::Uniform { bounds } => {
            for [l, r] in bounds {
                lo = lo.min(*l);
                hi = hi.max(*r);
            }
        }
        Grid::NonUniform { breakpoints } => {
            let n1 = pwlu.intervals() + 1;
            for row in breakpoints.chunks(n1) {
                lo = lo.min(row[0]);
                hi = hi.max(row[n1 - 1]);
            }
        }
    }
    [lo, hi]
}

/// Everything `info` shows comes from the file and the optimised graph: no GPU is started.
pub fn print(model: &CheckedModel, as_json: bool) -> CliResult {
    let graph = &model.graph;
    let input = graph.input;
    let flops = graph.flops();
    let dispatches = graph.kernel_count();
    let sites = model.pwlu_sites();
    let layers: Vec<_> = graph
        .nodes
        .iter()
        .map(|n| {
            let s = n.shape;
            let act = n.op.activation().map_or("", |a| a.name());
            json!({"name": n.name, "op": n.op.name(), "activation": act, "shape": [s.c, s.h, s.w]})
        })
        .collect();
    let pwlu: Vec<_> = sites
        .iter()
        .map(|site| {
            let p = &site.pwlu;
            json!({
                "name": site.name,
                "runs_in": site.node,
                "intervals": p.intervals(),
                "granularity": if p.is_layer_wise() { "layer" } else { "channel" },
                "uniform": matches!(p.grid(), Grid::Uniform { .. }),
                "units": p.units(),
                "bounds": site_bounds(p),
            })
        })
        .collect();
    if as_json {
        let doc = json!({
            "name": model.name,
            "input": [input.c, input.h, input.w],
            "preprocess": model.preprocess,
            "classes": model.labels.len(),
            "parameters": model.parameters,
            "flops": flops,
            "nodes_in_file": model.source_nodes,
            "nodes_after_fusion": graph.nodes.len(),
            "dispatches": dispatches,
            "layers": layers,
            "pwlu": pwlu,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("model        {}", model.name);
    println!("input        [N, {}, {}, {}]", input.c, input.h, input.w);
    match &model.preprocess {
        Some(p) => println!("preprocess   {p}"),
        None => println!("preprocess   none (tensor input only)"),
    }
    println!("classes      {}", model.labels.len());
    println!("parameters   {}", model.parameters);
    println!(
        "FLOPs        {:.3} G per image (2 per multiply-add)",
        flops as f64 / 1e9
    );
    println!(
        "layers       {} in the file, {} after folding and fusion, {} kernels per run",
        model.source_nodes,
        graph.nodes.len(),
        dispatches
    );
    println!("PWLU sites   {}", sites.len());
    if !sites.is_empty() {
        let width = sites.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
        println!(
            "  {:<width$}  {:>4}  {:<7}  {:<11}  {:>5}  bounds",
            "site", "N", "grid", "granularity", "units"
        );
        for site in &sites {
            let p = &site.pwlu;
            let [lo, hi] = site_bounds(p);
            println!(
                "  {:<width$}  {:>4}  {:<7}  {:<11}  {:>5}  [{lo:.3}, {hi:.3}]",
                site.name,
                p.intervals(),
                if matches!(p.grid(), Grid::Uniform { .. }) {
                    "uniform"
                } else {
                    "sorted"
                },
                if p.is_layer_wise() {
                    "layer"
                } else {
                    "channel"
                },
                p.units()
            );
        }
    }
    Ok(())
}
