//! A desktop window: an image, the model's top 5 for it, and the model's learned PWLU curves.
//! Drop another image on the window to classify it.
//!
//! ```text
//! cargo run --release --features viewer --example viewer -- models/efficientnet_lite0.safetensors models/photos/coffee.png
//! ```
//!
//! `scripts/viewer-screenshot.sh` runs it under Xvfb and takes a screenshot.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use eframe::egui::{
    self, Color32, ColorImage, Pos2, Rect, Sense, Shape, Stroke, TextureHandle, Vec2,
};
use pwlu::gpu::{GpuContext, GpuOptions};
use pwlu::model::PwluSite;
use pwlu::preprocess::decode_image;
use pwlu::{Class, Model};

struct Classified {
    name: String,
    texture: TextureHandle,
    top: Vec<Class>,
    millis: f64,
}

struct Viewer {
    model: Model,
    adapter: String,
    sites: Vec<PwluSite>,
    site: usize,
    current: Option<Classified>,
    message: Option<String>,
}

impl Viewer {
    fn classify(&mut self, ctx: &egui::Context, name: String, bytes: &[u8]) {
        let result = decode_image(bytes).and_then(|image| {
            let start = Instant::now();
            let top = self.model.classify_bytes_blocking(bytes, 5)?;
            let millis = start.elapsed().as_secs_f64() * 1e3;
            let rgb = image.to_rgb8();
            let size = [rgb.width() as usize, rgb.height() as usize];
            let texture = ctx.load_texture(
                "image",
                ColorImage::from_rgb(size, rgb.as_raw()),
                Default::default(),
            );
            Ok(Classified {
                name: name.clone(),
                texture,
                top,
                millis,
            })
        });
        match result {
            Ok(c) => {
                self.current = Some(c);
                self.message = None;
            }
            Err(e) => self.message = Some(format!("{name}: {e}")),
        }
    }

    fn top5(&self, ui: &mut egui::Ui) {
        let Some(c) = &self.current else { return };
        ui.heading(&c.name);
        ui.label(format!("{:.0} ms on {}", c.millis, self.adapter));
        ui.add_space(8.0);
        for class in &c.top {
            let width = ui.available_width();
            let (rect, _) = ui.allocate_exact_size(Vec2::new(width, 24.0), Sense::hover());
            let painter = ui.painter_at(rect);
            painter.rect_filled(rect, 3.0, Color32::from_gray(235));
            let bar = Rect::from_min_size(
                rect.min,
                Vec2::new(width * class.prob.clamp(0.0, 1.0), rect.height()),
            );
            painter.rect_filled(bar, 3.0, Color32::from_rgb(90, 140, 220));
            painter.text(
                rect.left_center() + Vec2::new(6.0, 0.0),
                egui::Align2::LEFT_CENTER,
                format!("{:5.1}%  {}", class.prob * 100.0, class.label),
                egui::FontId::proportional(14.0),
                Color32::BLACK,
            );
            ui.add_space(4.0);
        }
    }

    fn curves(&mut self, ui: &mut egui::Ui) {
        if self.sites.is_empty() {
            ui.label("This model has no PWLU sites.");
            return;
        }
        let names: Vec<String> = self.sites.iter().map(|s| s.name.clone()).collect();
        egui::ComboBox::from_label("PWLU site")
            .selected_text(&names[self.site])
            .show_ui(ui, |ui| {
                for (i, name) in names.iter().enumerate() {
                    ui.selectable_value(&mut self.site, i, name);
                }
            });
        let site = &self.sites[self.site];
        let sampled = site.curves(200);
        let (x0, x1) = (sampled.x[0], sampled.x[sampled.x.len() - 1]);
        let curves: Vec<Vec<(f32, f32)>> = sampled
            .y
            .iter()
            .map(|ys| sampled.x.iter().copied().zip(ys.iter().copied()).collect())
            .collect();
        let (y0, y1) = curves
            .iter()
            .flatten()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(_, y)| {
                (lo.min(y), hi.max(y))
            });
        let size = ui.available_size();
        let (response, painter) = ui.allocate_painter(size, Sense::hover());
        let rect = response.rect.shrink(8.0);
        painter.rect_filled(response.rect, 4.0, Color32::WHITE);
        let to_screen = |(x, y): (f32, f32)| {
            Pos2::new(
                rect.left() + (x - x0) / (x1 - x0) * rect.width(),
                rect.bottom() - (y - y0) / (y1 - y0).max(1e-6) * rect.height(),
            )
        };
        let axis = Stroke::new(1.0, Color32::from_gray(200));
        painter.line_segment([to_screen((x0, 0.0)), to_screen((x1, 0.0))], axis);
        painter.line_segment([to_screen((0.0, y0)), to_screen((0.0, y1))], axis);
        for (i, points) in curves.iter().enumerate() {
            let hue = (i as f32 * 0.618_034).fract();
            let color = egui::ecolor::Hsva::new(hue, 0.7, 0.8, 0.7);
            painter.add(Shape::line(
                points.iter().map(|&p| to_screen(p)).collect(),
                Stroke::new(1.5, color),
            ));
        }
        let end = x1.min(y1).max(0.0);
        let relu: Vec<Pos2> = [(x0, 0.0), (0.0, 0.0), (end, end)].map(to_screen).to_vec();
        painter.extend(Shape::dashed_line(
            &relu,
            Stroke::new(1.0, Color32::from_gray(90)),
            6.0,
            4.0,
        ));
        painter.text(
            rect.left_top(),
            egui::Align2::LEFT_TOP,
            format!(
                "{}: N = {}, {} unit(s); dashed: ReLU",
                site.name,
                site.pwlu.intervals(),
                site.pwlu.units()
            ),
            egui::FontId::proportional(13.0),
            Color32::DARK_GRAY,
        );
    }
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let dropped: Vec<egui::DroppedFileHandle> = ui.ctx().input(|i| i.raw.dropped_files.clone());
        for file in dropped {
            let name = file.path().display().to_string();
            match file.bytes() {
                Ok(bytes) => {
                    let ctx = ui.ctx().clone();
                    self.classify(&ctx, name, &bytes);
                }
                Err(e) => self.message = Some(format!("{name}: {e}")),
            }
        }
        egui::Panel::bottom("curves")
            .resizable(true)
            .default_size(280.0)
            .show(ui, |ui| self.curves(ui));
        egui::Panel::right("top5")
            .default_size(380.0)
            .show(ui, |ui| {
                self.top5(ui);
                if let Some(message) = &self.message {
                    ui.colored_label(Color32::RED, message);
                }
            });
        egui::CentralPanel::default().show(ui, |ui| match &self.current {
            Some(c) => {
                ui.add(
                    egui::Image::new(&c.texture)
                        .max_size(ui.available_size())
                        .maintain_aspect_ratio(true),
                );
            }
            None => {
                ui.centered_and_justified(|ui| ui.label("Drop an image here"));
            }
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_path, image_path) = match args.as_slice() {
        [m] => (m.clone(), None),
        [m, i] => (m.clone(), Some(i.clone())),
        _ => return Err("usage: viewer MODEL.safetensors [IMAGE]".into()),
    };
    let ctx = Arc::new(GpuContext::new_blocking(&GpuOptions::default())?);
    let adapter = ctx.adapter().to_string();
    let model = Model::load(ctx, &model_path)?;
    let sites = model.pwlu_sites();
    let initial = match &image_path {
        Some(p) => Some((
            p.clone(),
            std::fs::read(Path::new(p)).map_err(|e| format!("{p}: {e}"))?,
        )),
        None => None,
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(format!("pwlu: {}", model.name()))
            .with_inner_size([1100.0, 760.0]),
        ..Default::default()
    };
    eframe::run_native(
        "pwlu viewer",
        options,
        Box::new(move |cc| {
            let mut viewer = Viewer {
                model,
                adapter,
                sites,
                site: 0,
                current: None,
                message: None,
            };
            if let Some((name, bytes)) = initial {
                viewer.classify(&cc.egui_ctx, name, &bytes);
            }
            Ok(Box::new(viewer))
        }),
    )?;
    Ok(())
}
