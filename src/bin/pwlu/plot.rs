//! `pwlu plot`: the learned activation functions, per site, as SVG and PNG.

use std::path::PathBuf;

use plotters::prelude::*;
use pwlu::model::PwluSite;

use crate::{load_checked, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The model (.safetensors).
    model: PathBuf,
    /// Plot only this site (its name in `pwlu info`); default: every site.
    #[arg(long)]
    site: Option<String>,
    /// Output folder for <site>.svg and <site>.png.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Draw each channel in its own panel (up to --max-panels) instead of overlaying them.
    #[arg(long)]
    small_multiples: bool,
    /// Most panels in small-multiples mode.
    #[arg(long, default_value_t = 16)]
    max_panels: usize,
}

const SIZE: (u32, u32) = (900, 640);
const SAMPLES: usize = 400;

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn y_range(curves: &[Vec<(f32, f32)>]) -> (f32, f32) {
    let (lo, hi) = curves
        .iter()
        .flatten()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
    let pad = 0.05 * (hi - lo).max(1e-3);
    (lo - pad, hi + pad)
}

type DrawResult<T> = Result<T, String>;

/// One unit's learned points: `(x_i, Y_i)` at its grid points (uniform) or breakpoints (non-uniform).
fn knots(site: &PwluSite, unit: usize) -> Vec<(f32, f32)> {
    let p = &site.pwlu;
    let Some(u) = p.unit(unit) else {
        return Vec::new();
    };
    let n = p.intervals();
    let xs: Vec<f32> = match (u.bounds, u.breakpoints) {
        (Some([l, r]), _) => (0..=n)
            .map(|i| (f64::from(l) + f64::from(r - l) * i as f64 / n as f64) as f32)
            .collect(),
        (_, Some(b)) => b.to_vec(),
        _ => Vec::new(),
    };
    xs.into_iter().zip(u.points.iter().copied()).collect()
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    curves: &[Vec<(f32, f32)>],
    markers: &[Vec<(f32, f32)>],
    range: (f32, f32),
    labels: bool,
) -> DrawResult<()> {
    let err = |e: String| e;
    let (ylo, yhi) = y_range(curves);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", if labels { 20 } else { 12 }))
        .margin(8)
        .x_label_area_size(if labels { 36 } else { 18 })
        .y_label_area_size(if labels { 48 } else { 28 })
        .build_cartesian_2d(range.0..range.1, ylo..yhi)
        .map_err(|e| err(e.to_string()))?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if labels {
        mesh.x_desc("x").y_desc("PWLU(x)");
    } else {
        mesh.x_labels(5).y_labels(5);
    }
    mesh.draw().map_err(|e| err(e.to_string()))?;
    for (i, points) in curves.iter().enumerate() {
        let color = Palette99::pick(i).mix(if curves.len() > 1 { 0.6 } else { 1.0 });
        let series = chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?;
        if i == 0 {
            let label = if curves.len() > 1 {
                "PWLU, one line per channel"
            } else {
                "PWLU"
            };
            series.label(label).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
    }
    // The learned points, where the function bends: breakpoints of a non-uniform unit, the grid of a uniform one.
    for (i, points) in markers.iter().enumerate() {
        let color = Palette99::pick(i).mix(if markers.len() > 1 { 0.6 } else { 1.0 });
        let series = chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )
            .map_err(|e| err(e.to_string()))?;
        if i == 0 {
            series
                .label("breakpoints (x_i, Y_i)")
                .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.filled()));
        }
    }
    // ReLU, faint and dashed, on top so it stays visible.
    let faint = BLACK.mix(0.35);
    chart
        .draw_series(DashedLineSeries::new(
            [(range.0, 0.0), (0.0, 0.0), (range.1, range.1)],
            6,
            4,
            faint.stroke_width(1),
        ))
        .map_err(|e| err(e.to_string()))?
        .label("ReLU")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], faint));
    if labels {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

fn svg_for(site: &PwluSite, small_multiples: bool, max_panels: usize) -> DrawResult<String> {
    let p = &site.pwlu;
    let sampled = site.curves(SAMPLES);
    let range = (sampled.x[0], sampled.x[sampled.x.len() - 1]);
    let curve = |unit: usize| -> Vec<(f32, f32)> {
        sampled
            .x
            .iter()
            .copied()
            .zip(sampled.y[unit].iter().copied())
            .collect()
    };
    let granularity = if p.is_layer_wise() {
        "layer-wise"
    } else {
        "channel-wise"
    };
    let grid = match p.grid() {
        pwlu::ops::Grid::Uniform { .. } => "uniform",
        pwlu::ops::Grid::NonUniform { .. } => "non-uniform (learned breakpoints)",
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = format!(
            "{}: N = {}, {grid}, {granularity}, {} unit(s)",
            site.name,
            p.intervals(),
            p.units()
        );
        if small_multiples && p.units() > 1 {
            let panels = p.units().min(max_panels.max(1));
            let cols = (panels as f64).sqrt().ceil() as usize;
            let rows = panels.div_ceil(cols);
            let (top, body) = root.split_vertically(34);
            top.titled(&title, ("sans-serif", 20))
                .map_err(|e| e.to_string())?;
            for (unit, area) in body
                .split_evenly((rows, cols))
                .iter()
                .enumerate()
                .take(panels)
            {
                draw_panel(
                    area,
                    &format!("channel {unit}"),
                    &[curve(unit)],
                    &[knots(site, unit)],
                    range,
                    false,
                )?;
            }
        } else {
            let curves: Vec<_> = (0..p.units()).map(curve).collect();
            let markers: Vec<_> = (0..p.units()).map(|u| knots(site, u)).collect();
            draw_panel(&root, &title, &curves, &markers, range, true)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn png_from_svg(svg: &str) -> DrawResult<Vec<u8>> {
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    // The SVG asks for the generic "sans-serif", which fontdb maps to Arial unless told otherwise.
    let family = fonts
        .faces()
        .flat_map(|face| face.families.iter().map(|(name, _)| name.clone()))
        .find(|name| {
            [
                "DejaVu Sans",
                "Liberation Sans",
                "Arial",
                "Helvetica",
                "Noto Sans",
            ]
            .contains(&name.as_str())
        })
        .or_else(|| {
            fonts
                .faces()
                .next()
                .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
        });
    if let Some(family) = family {
        fonts.set_sans_serif_family(family);
    }
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or("cannot allocate the PNG image")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| e.to_string())
}

/// Plots from the file alone: no GPU is started.
pub fn run(args: &Args) -> CliResult {
    let model = load_checked(&args.model)?;
    let sites: Vec<PwluSite> = model
        .pwlu_sites()
        .into_iter()
        .filter(|s| args.site.as_ref().is_none_or(|name| &s.name == name))
        .collect();
    if sites.is_empty() {
        return Err(match &args.site {
            Some(name) => format!("the model has no PWLU site named '{name}' (see `pwlu info`)"),
            None => "the model has no PWLU sites".into(),
        });
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    for site in &sites {
        let svg = svg_for(site, args.small_multiples, args.max_panels)
            .map_err(|e| format!("{}: {e}", site.name))?;
        let png = png_from_svg(&svg).map_err(|e| format!("{}: {e}", site.name))?;
        let stem = args.out.join(file_stem(&site.name));
        let (svg_path, png_path) = (stem.with_extension("svg"), stem.with_extension("png"));
        std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
        std::fs::write(&png_path, png).map_err(|e| format!("{}: {e}", png_path.display()))?;
    }
    eprintln!(
        "wrote {} site(s) to {} (SVG and PNG)",
        sites.len(),
        args.out.display()
    );
    Ok(())
}
