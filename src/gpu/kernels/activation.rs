//! How an [`Activation`] reaches a kernel: override constants plus, for PWLU, the packed table at binding 7
//! (one texture row per unit, see [`PwluTable`](crate::ops::PwluTable)).

use std::sync::Arc;

use super::uploads::{SharedUploads, Source};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::dispatch::Resource;
use crate::gpu::pipelines::Constants;
use crate::gpu::shaders::ActivationCode;
use crate::ops::Activation;

/// An activation prepared for one kernel: its constants and, for PWLU, its table on the GPU.
#[derive(Debug)]
pub(crate) struct ActivationBinding {
    constants: Constants,
    table: Option<wgpu::Texture>,
}

impl ActivationBinding {
    /// Prepares `activation` for a tensor of `channels` channels, its PWLU table taken from `uploads` where
    /// another kernel uploaded it already.
    pub(crate) fn prepare(
        ctx: &GpuContext,
        activation: &Activation,
        channels: usize,
        uploads: &mut SharedUploads,
    ) -> Result<Self> {
        activation.check_channels(channels)?;
        let mut constants = Constants::new();
        let mut table = None;
        let code = match activation {
            Activation::Identity => ActivationCode::Identity,
            Activation::Relu => ActivationCode::Relu,
            Activation::Relu6 => ActivationCode::Relu6,
            Activation::LeakyRelu { negative_slope } => {
                constants.push(("ACT_ALPHA", f64::from(*negative_slope)));
                ActivationCode::LeakyRelu
            }
            Activation::Sigmoid => ActivationCode::Sigmoid,
            Activation::Silu => ActivationCode::Silu,
            Activation::Hardsigmoid => ActivationCode::Hardsigmoid,
            Activation::Hardswish => ActivationCode::Hardswish,
            Activation::Gelu => ActivationCode::Gelu,
            Activation::GeluTanh => ActivationCode::GeluTanh,
            Activation::Pwlu(pwlu) => {
                let packed = pwlu.table();
                constants.extend([
                    ("PWLU_N", packed.intervals() as f64),
                    (
                        "PWLU_PER_CHANNEL",
                        if pwlu.is_layer_wise() { 0.0 } else { 1.0 },
                    ),
                    ("PWLU_UNIFORM", if packed.is_uniform() { 1.0 } else { 0.0 }),
                ]);
                if ctx.table_block_rows(packed.units()) != packed.units() {
                    return Err(Error::invalid_op(
                        "pwlu",
                        format!(
                            "{} units are more than the device's max_texture_dimension_2d of {}",
                            packed.units(),
                            ctx.limits().max_texture_dimension_2d
                        ),
                    ));
                }
                table = Some(uploads.texture(
                    "pwlu table",
                    Source::Pwlu(Arc::clone(pwlu)),
                    &[],
                    || ctx.table("pwlu table", packed.data(), packed.stride() / 4),
                )?);
                ActivationCode::Pwlu
            }
        };
        constants.push(("ACTIVATION", code as u32 as f64));
        Ok(ActivationBinding { constants, table })
    }

    /// The override constants to add to the kernel's (the channel count is the kernel's to pass: see
    /// shaders/shared/channels.wgsl).
    pub(crate) fn constants(&self) -> &Constants {
        &self.constants
    }

    /// What binding 7 takes.
    pub(crate) fn resource<'a>(&'a self, ctx: &'a GpuContext) -> Resource<'a> {
        Resource::Table(self.table.as_ref().unwrap_or(ctx.placeholder_table()))
    }
}
