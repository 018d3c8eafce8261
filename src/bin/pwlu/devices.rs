//! `pwlu devices`.

use pwlu::device::DeviceOptions;
use pwlu::gpu::{list_adapters, Backend};
use serde_json::json;

use crate::CliResult;

pub fn print(options: &DeviceOptions, as_json: bool) -> CliResult {
    let backend = options.gpu.backend.resolve().map_err(|e| e.to_string())?;
    // With the CPU backend chosen, the adapters are still worth listing.
    let listed = if backend == Backend::Cpu {
        Backend::Auto
    } else {
        options.gpu.backend
    };
    let adapters = pollster::block_on(list_adapters(listed)).map_err(|e| e.to_string())?;
    if adapters.is_empty() && backend != Backend::Auto && backend != Backend::Cpu {
        return Err(format!(
            "no GPU adapter found for backend {backend}: {}",
            backend.install_hint()
        ));
    }
    let selected = pwlu::device::select_blocking(options).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    for (index, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features: Vec<String> = adapter
            .features()
            .iter_names()
            .map(|(name, _)| name.to_string())
            .collect();
        if as_json {
            entries.push(json!({
                "index": index,
                "name": info.name,
                "backend": format!("{:?}", info.backend),
                "device_type": format!("{:?}", info.device_type),
                "driver": format!("{} {}", info.driver, info.driver_info).trim(),
                "limits": {
                    "max_compute_invocations_per_workgroup": limits.max_compute_invocations_per_workgroup,
                    "max_compute_workgroup_storage_size": limits.max_compute_workgroup_storage_size,
                    "max_storage_buffer_binding_size": limits.max_storage_buffer_binding_size,
                    "max_buffer_size": limits.max_buffer_size,
                    "max_storage_buffers_per_shader_stage": limits.max_storage_buffers_per_shader_stage,
                    "max_compute_workgroups_per_dimension": limits.max_compute_workgroups_per_dimension,
                },
                "features": features,
            }));
        } else {
            println!(
                "[{index}] {} ({:?}, {:?})",
                info.name, info.backend, info.device_type
            );
            println!("    driver: {} {}", info.driver, info.driver_info);
            println!(
                "    limits: {} invocations/workgroup, {} KiB workgroup memory, {} MiB per storage binding, {} storage buffers/stage",
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_storage_size / 1024,
                limits.max_storage_buffer_binding_size >> 20,
                limits.max_storage_buffers_per_shader_stage
            );
            println!(
                "    features: {}",
                if features.is_empty() {
                    "none".into()
                } else {
                    features.join(", ")
                }
            );
        }
    }
    if as_json {
        let doc = json!({
            "adapters": entries,
            "models_run_on": {
                "backend": selected.device.backend_name(),
                "device": selected.device.describe(),
                "reason": selected.reason,
            },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "models run on: {} ({}): {}",
            selected.device.describe(),
            selected.device.backend_name(),
            selected.reason
        );
    }
    Ok(())
}
