//! The textures kernels read through: lookup tables (packed weights, PWLU segments) and the input stage that
//! convolutions copy their input into. Kernels read them through a nearest, clamp-to-edge sampler
//! (shaders/shared/table.wgsl says why).

use std::sync::Mutex;

use crate::error::{Error, Result};

/// Texels per row of the texture that staged inputs are copied into (`STAGE_WIDTH_LOG2` in
/// shaders/shared/staged_input.wgsl): a power of two, so that kernels find a texel with a mask and a shift, and
/// within WebGPU's default `max_texture_dimension_2d` of 8192.
pub(crate) const STAGE_WIDTH: u32 = 4096;

/// The texture kernels read their input through (see [`StageTexture::at_least`]).
#[derive(Debug, Default)]
pub(super) struct StageTexture(Mutex<Option<wgpu::Texture>>);

impl StageTexture {
    /// The stage, at least `rows` rows of [`STAGE_WIDTH`] texels: one per context, shared by every dispatch
    /// that stages its input (each copies its input in just before it runs, see
    /// [`StagedCopy`](super::dispatch::StagedCopy)). A larger request replaces it for later dispatches; those
    /// already bound keep the old one. A plan asks for its largest input first.
    pub(super) fn at_least(
        &self,
        device: &wgpu::Device,
        limits: &wgpu::Limits,
        rows: u32,
    ) -> Result<wgpu::Texture> {
        let limit = limits.max_texture_dimension_2d;
        if STAGE_WIDTH > limit || rows > limit {
            return Err(Error::InvalidOp {
                op: "input staging",
                reason: format!(
                    "an input of {rows} rows of {STAGE_WIDTH} texels does not fit in the device's \
                     max_texture_dimension_2d of {limit}"
                ),
            });
        }
        let mut stage = self
            .0
            .lock()
            .map_err(|_| Error::Gpu("the input stage's lock was poisoned".into()))?;
        match stage.as_ref() {
            Some(texture) if texture.height() >= rows => Ok(texture.clone()),
            _ => {
                let texture = device.create_texture(&table_descriptor(
                    "input stage",
                    STAGE_WIDTH,
                    rows.max(1),
                ));
                *stage = Some(texture.clone());
                Ok(texture)
            }
        }
    }
}

/// Rows per block of a [`table`] of `rows` rows on a device with `limits`.
pub(super) fn table_block_rows(limits: &wgpu::Limits, rows: usize) -> usize {
    let limit = limits.max_texture_dimension_2d as usize;
    // A multiple of 4, so that the 4 rows a kernel reads per vec4 of inputs are in one block.
    if rows <= limit {
        rows
    } else {
        limit - limit % 4
    }
}

/// A matrix of `rgba32float` texels, `width` per row, for an [`Access::Table`](super::shaders::Access::Table)
/// binding; `data.len()` must be a whole number of rows. Row `r` of the matrix is texture row
/// `r % block_rows` ([`table_block_rows`]), starting at texel `(r / block_rows) * width`: blocks of rows side
/// by side where the matrix has more rows than the device's `max_texture_dimension_2d` (`table_read` in
/// shaders/shared/table.wgsl reads it).
pub(super) fn table(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    limits: &wgpu::Limits,
    label: &str,
    data: &[f32],
    width: usize,
) -> Result<wgpu::Texture> {
    let limit = limits.max_texture_dimension_2d as usize;
    let rows = (data.len() / 4).checked_div(width).unwrap_or(0);
    if rows == 0 || width * rows * 4 != data.len() {
        return Err(Error::Gpu(format!(
            "{label}: {} floats do not make rows of {width} texels",
            data.len()
        )));
    }
    let block_rows = table_block_rows(limits, rows);
    let blocks = rows.div_ceil(block_rows);
    if width * blocks > limit {
        return Err(Error::InvalidOp {
            op: "lookup table",
            reason: format!(
                "{label} needs {rows} rows of {width} texels, more than fit in the device's \
                 max_texture_dimension_2d of {limit} squared"
            ),
        });
    }
    let texels = fold_rows(data, width, block_rows);
    let texture = device.create_texture(&table_descriptor(
        label,
        (width * blocks) as u32,
        block_rows as u32,
    ));
    queue.write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(&texels),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some((width * blocks * 16) as u32),
            rows_per_image: None,
        },
        texture.size(),
    );
    Ok(texture)
}

/// `data` (rows of `width` texels) laid out as a table's blocks of `block_rows` rows (see
/// [`table`]), the last block padded with zeros.
fn fold_rows(data: &[f32], width: usize, block_rows: usize) -> Vec<f32> {
    let row_floats = width * 4;
    let rows = data.len() / row_floats;
    if rows <= block_rows {
        return data.to_vec();
    }
    let blocks = rows.div_ceil(block_rows);
    let mut folded = vec![0.0; blocks * row_floats * block_rows];
    for (r, row) in data.chunks_exact(row_floats).enumerate() {
        let at = ((r % block_rows) * blocks + r / block_rows) * row_floats;
        folded[at..at + row_floats].copy_from_slice(row);
    }
    folded
}

/// An `rgba32float` 2-D texture, sampled texel by texel (shaders/shared/table.wgsl): what an
/// [`Access::Table`](super::shaders::Access::Table) binding takes.
pub(super) fn table_descriptor(
    label: &str,
    width: u32,
    height: u32,
) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::fold_rows;

    #[test]
    fn rows_beyond_a_block_continue_in_the_next_block_to_the_right() {
        // 5 rows of 1 texel, blocks of 2 rows: texture rows [r0 r2 r4], [r1 r3 0].
        let data: Vec<f32> = (0..5).flat_map(|r| [r as f32; 4]).collect();
        let folded = fold_rows(&data, 1, 2);
        let texel = |x: usize, y: usize| folded[(y * 3 + x) * 4];
        assert_eq!([texel(0, 0), texel(1, 0), texel(2, 0)], [0.0, 2.0, 4.0]);
        assert_eq!([texel(0, 1), texel(1, 1), texel(2, 1)], [1.0, 3.0, 0.0]);
    }

    #[test]
    fn a_matrix_that_fits_is_left_as_it_is() {
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        assert_eq!(fold_rows(&data, 2, 3), data);
    }
}
