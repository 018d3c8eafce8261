//! Host tensors: f32 data in PyTorch's row-major NCHW order.
//!
//! Every op is specified in NCHW terms. A rank-2 tensor `[N, F]` (the input of a linear layer) is treated as
//! `[N, F, 1, 1]`; GPU kernels use their own layout internally and convert at upload and download.

use crate::error::{Error, Result};

/// Logical 4-D shape in PyTorch's order: batch, channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// A shape from its four dimensions.
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }

    /// The same shape with batch size `n`.
    pub const fn with_batch(self, n: usize) -> Self {
        Shape { n, ..self }
    }

    /// Number of elements, or `None` if it overflows `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.n
            .checked_mul(self.c)?
            .checked_mul(self.h)?
            .checked_mul(self.w)
    }

    /// Number of elements. Shapes built by this crate never overflow; use [`Shape::checked_len`] on
    /// untrusted dimensions.
    pub fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// True when any dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of element `(n, c, h, w)` in NCHW order.
    pub fn index(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
        ((n * self.c + c) * self.h + h) * self.w + w
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}

/// An f32 tensor of rank 1 to 4 in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dims: Vec<usize>,
    data: Vec<f32>,
}

/// Whether `dims` (rank 1 to 4) describe `len` values.
fn check_dims(dims: &[usize], len: usize) -> Result<()> {
    if dims.is_empty() || dims.len() > 4 {
        return Err(Error::invalid_op(
            "tensor",
            format!("rank must be 1 to 4, got dims {dims:?}"),
        ));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid_op("tensor", format!("dims {dims:?} overflow")))?;
    if expected != len {
        return Err(Error::ShapeMismatch {
            dims: dims.to_vec(),
            expected,
            actual: len,
        });
    }
    Ok(())
}

/// The NCHW shape of rank-1 to rank-4 dims (see [`Tensor::shape`]).
fn nchw(dims: &[usize]) -> Shape {
    match *dims {
        [f] => Shape::new(1, f, 1, 1),
        [n, f] => Shape::new(n, f, 1, 1),
        [c, h, w] => Shape::new(1, c, h, w),
        [n, c, h, w] => Shape::new(n, c, h, w),
        // Construction rejects every other rank.
        _ => Shape::new(0, 0, 0, 0),
    }
}

/// A tensor whose values live elsewhere (a caller's buffer, a NumPy array): what runs read their input from,
/// so that it need not be copied into a [`Tensor`] first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    dims: &'a [usize],
    data: &'a [f32],
}

impl<'a> TensorView<'a> {
    /// A view of `data` as `dims`; fails if they disagree or the rank is not 1 to 4.
    pub fn new(dims: &'a [usize], data: &'a [f32]) -> Result<Self> {
        check_dims(dims, data.len())?;
        Ok(TensorView { dims, data })
    }

    /// The dimensions as given.
    pub fn dims(&self) -> &'a [usize] {
        self.dims
    }

    /// The data in row-major order.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// The NCHW view of the dims, as [`Tensor::shape`].
    pub fn shape(&self) -> Shape {
        nchw(self.dims)
    }
}

impl<'a> From<&'a Tensor> for TensorView<'a> {
    fn from(tensor: &'a Tensor) -> Self {
        TensorView {
            dims: &tensor.dims,
            data: &tensor.data,
        }
    }
}

impl Tensor {
    /// A tensor from its dimensions and data; fails if they disagree or the rank is not 1 to 4.
    pub fn new(dims: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        let dims = dims.into();
        check_dims(&dims, data.len())?;
        Ok(Tensor { dims, data })
    }

    /// The tensor as a view.
    pub fn view(&self) -> TensorView<'_> {
        self.into()
    }

    /// A zero-filled tensor of a 4-D shape.
    pub fn zeros(shape: Shape) -> Self {
        Tensor {
            dims: vec![shape.n, shape.c, shape.h, shape.w],
            data: vec![0.0; shape.len()],
        }
    }

    /// A 4-D tensor from a shape and data.
    pub fn from_shape(shape: Shape, data: Vec<f32>) -> Result<Self> {
        Tensor::new(vec![shape.n, shape.c, shape.h, shape.w], data)
    }

    /// The dimensions as given.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The data in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable access to the data.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The data, consuming the tensor.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The NCHW view of the dims: rank 4 as is, rank 2 `[N, F]` as `[N, F, 1, 1]`, rank 1 `[F]` as
    /// `[1, F, 1, 1]`, rank 3 `[C, H, W]` as `[1, C, H, W]`.
    pub fn shape(&self) -> Shape {
        nchw(&self.dims)
    }

    /// The same data under other dims with the same element count.
    pub fn reshape(self, dims: impl Into<Vec<usize>>) -> Result<Self> {
        Tensor::new(dims, self.data)
    }
}
