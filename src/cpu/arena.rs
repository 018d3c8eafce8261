//! Activation memory: one zero-filled block per arena, values at planned offsets in it.
//!
//! Lowering places values so that a kernel's output never overlaps its inputs (the CPU kernels do not read
//! their inputs before writing), and a plan runs through `&mut`, one run at a time, so the slices a step takes
//! are disjoint and unaliased; `CpuValue::overlaps` lets binding check the first half of that.

use std::cell::UnsafeCell;
use std::sync::Arc;

use crate::tensor::Shape;

/// One block of activation memory.
pub struct Arena {
    cells: Box<[UnsafeCell<f32>]>,
}

// Safety: the cells are only reached through `CpuValue::slice` and `slice_mut`, whose callers (a plan's steps,
// run one at a time through `&mut Plan`) never hold a mutable slice that overlaps another slice.
unsafe impl Sync for Arena {}
unsafe impl Send for Arena {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Arena({} floats)", self.cells.len())
    }
}

impl Arena {
    /// `floats` zeros (calloc'd: pages are touched when a kernel first writes them).
    pub fn zeroed(floats: usize) -> Arena {
        let data: Box<[f32]> = vec![0.0f32; floats].into_boxed_slice();
        // Safety: UnsafeCell<f32> has the layout of f32.
        let cells = unsafe { Box::from_raw(Box::into_raw(data) as *mut [UnsafeCell<f32>]) };
        Arena { cells }
    }

    /// Floats in the arena.
    pub fn len(&self) -> usize {
        self.cells.len()
    }
}

/// An activation in NHWC order at its place in an arena.
#[derive(Clone, Debug)]
pub struct CpuValue {
    pub(crate) arena: Arc<Arena>,
    /// Offset in floats.
    pub(crate) offset: usize,
    pub(crate) shape: Shape,
    /// What callers see (`[N, C]` for logits, else `[N, C, H, W]`).
    pub(crate) dims: Vec<usize>,
}

impl CpuValue {
    /// Floats in the value.
    pub fn len(&self) -> usize {
        self.shape.len()
    }

    /// Whether the value is empty (never, for a planned value).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value's shape (its data is NHWC).
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Whether the two values share bytes.
    pub fn overlaps(&self, other: &CpuValue) -> bool {
        Arc::ptr_eq(&self.arena, &other.arena)
            && self.offset < other.offset + other.len()
            && other.offset < self.offset + self.len()
    }

    pub(crate) fn in_bounds(&self) -> bool {
        self.offset
            .checked_add(self.len())
            .is_some_and(|end| end <= self.arena.len())
    }

    /// The value's floats.
    ///
    /// # Safety
    /// No mutable slice of an overlapping value may be alive.
    pub(crate) unsafe fn slice(&self) -> &[f32] {
        debug_assert!(self.in_bounds());
        std::slice::from_raw_parts(
            (self.arena.cells.as_ptr() as *const f32).add(self.offset),
            self.len(),
        )
    }

    /// The value's floats, to write.
    ///
    /// # Safety
    /// No other slice of an overlapping value may be alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self) -> &mut [f32] {
        debug_assert!(self.in_bounds());
        std::slice::from_raw_parts_mut(
            UnsafeCell::raw_get(self.arena.cells.as_ptr()).add(self.offset),
            self.len(),
        )
    }
}
