//! Tensors on the GPU.
//!
//! Layout: NHWC with the channels padded to a multiple of 4 ("NHWC4"), so every kernel reads and writes whole
//! `vec4<f32>`s of 4 channels. Padding lanes are always 0. Conversion from and to PyTorch's NCHW happens here,
//! at upload and download.

use super::context::GpuContext;
use super::dispatch::Resource;
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor, TensorView};

/// A tensor in a GPU storage buffer, NHWC4 layout: the whole buffer, or a range of it (a plan places its
/// activations at offsets in one arena).
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: wgpu::Buffer,
    /// Where the tensor starts in `buffer`, in bytes.
    offset: u64,
    shape: Shape,
    dims: Vec<usize>,
}

/// `ceil(c / 4)`.
pub fn channel_vec4s(c: usize) -> usize {
    c.div_ceil(4)
}

/// Number of f32 values an NHWC4 tensor of `shape` occupies, or `None` on overflow.
pub fn nhwc4_len(shape: Shape) -> Option<usize> {
    shape
        .n
        .checked_mul(shape.h)?
        .checked_mul(shape.w)?
        .checked_mul(channel_vec4s(shape.c).checked_mul(4)?)
}

/// NCHW data to NHWC4.
pub fn to_nhwc4<'a>(tensor: impl Into<TensorView<'a>>) -> Vec<f32> {
    let tensor = tensor.into();
    let s = tensor.shape();
    let c4 = channel_vec4s(s.c) * 4;
    let mut out = vec![0.0; s.n * s.h * s.w * c4];
    for n in 0..s.n {
        for c in 0..s.c {
            for y in 0..s.h {
                for x in 0..s.w {
                    out[((n * s.h + y) * s.w + x) * c4 + c] = tensor.data()[s.index(n, c, y, x)];
                }
            }
        }
    }
    out
}

/// NHWC4 data back to NCHW.
pub fn from_nhwc4(shape: Shape, data: &[f32]) -> Vec<f32> {
    let c4 = channel_vec4s(shape.c) * 4;
    let mut out = vec![0.0; shape.len()];
    for n in 0..shape.n {
        for c in 0..shape.c {
            for y in 0..shape.h {
                for x in 0..shape.w {
                    out[shape.index(n, c, y, x)] = data[((n * shape.h + y) * shape.w + x) * c4 + c];
                }
            }
        }
    }
    out
}

impl GpuTensor {
    /// Uploads a host tensor.
    pub fn upload(ctx: &GpuContext, tensor: &Tensor) -> Result<Self> {
        let shape = tensor.shape();
        Self::check_shape(shape)?;
        let buffer = ctx.storage_buffer("tensor", &to_nhwc4(tensor))?;
        Ok(GpuTensor {
            buffer,
            offset: 0,
            shape,
            dims: tensor.dims().to_vec(),
        })
    }

    /// A zero-filled tensor of `shape`, to be written by a kernel.
    pub fn zeros(ctx: &GpuContext, shape: Shape) -> Result<Self> {
        Self::zeros_with_dims(ctx, shape, vec![shape.n, shape.c, shape.h, shape.w])
    }

    /// A zero-filled tensor that downloads with `dims` (e.g. `[N, F]` for a `[N, F, 1, 1]` shape).
    pub fn zeros_with_dims(ctx: &GpuContext, shape: Shape, dims: Vec<usize>) -> Result<Self> {
        Self::check_shape(shape)?;
        let len = nhwc4_len(shape)
            .ok_or_else(|| Error::invalid_op("tensor", format!("{shape} overflows")))?;
        let bytes = (len as u64).saturating_mul(4);
        ctx.check_buffer_size(&format!("tensor {shape}"), bytes)?;
        let buffer = ctx.tensor_buffer("tensor", bytes);
        Ok(GpuTensor {
            buffer,
            offset: 0,
            shape,
            dims,
        })
    }

    /// A view of `buffer` from `offset` (a multiple of the device's `min_storage_buffer_offset_alignment`), which
    /// must hold the NHWC4 bytes of `shape` from there.
    pub(crate) fn in_buffer(
        buffer: wgpu::Buffer,
        offset: u64,
        shape: Shape,
        dims: Vec<usize>,
    ) -> Self {
        GpuTensor {
            buffer,
            offset,
            shape,
            dims,
        }
    }

    fn check_shape(shape: Shape) -> Result<()> {
        if shape.is_empty() || nhwc4_len(shape).is_none() {
            return Err(Error::invalid_op(
                "tensor",
                format!("cannot place {shape} on the GPU"),
            ));
        }
        Ok(())
    }

    /// The logical NCHW shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The dims a download returns.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The storage buffer the tensor lies in.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Where the tensor starts in [`GpuTensor::buffer`], in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether `other` is this very tensor's data (the same range of the same buffer).
    pub(crate) fn same_data(&self, other: &GpuTensor) -> bool {
        self.buffer == other.buffer && self.offset == other.offset
    }

    /// The tensor's range of its buffer, for a kernel's binding.
    pub(crate) fn resource(&self) -> Resource<'_> {
        Resource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.byte_len()),
        })
    }

    /// The binding of a kernel that reads the tensor through the input stage (shaders/shared/staged_input.wgsl).
    pub(crate) fn staged(&self) -> Resource<'_> {
        Resource::Staged {
            buffer: &self.buffer,
            offset: self.offset,
            texels: self.byte_len() / 16,
        }
    }

    /// Copies the tensor back to the host, in NCHW order.
    pub async fn download(&self, ctx: &GpuContext) -> Result<Tensor> {
        let bytes = ctx
            .read_buffer(&self.buffer, self.offset, self.byte_len())
            .await?;
        self.decode_read_back(&bytes)
    }

    /// Bytes of the NHWC4 data.
    pub(crate) fn byte_len(&self) -> u64 {
        nhwc4_len(self.shape).unwrap_or(0) as u64 * 4
    }

    /// NHWC4 bytes read back from this tensor's buffer, as an NCHW host tensor.
    pub(crate) fn decode_read_back(&self, bytes: &[u8]) -> Result<Tensor> {
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::new(self.dims.clone(), from_nhwc4(self.shape, &values))
    }

    /// [`GpuTensor::download`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download_blocking(&self, ctx: &GpuContext) -> Result<Tensor> {
        pollster::block_on(self.download(ctx))
    }
}
