//! The browser's GEMM: weights packed once into panels of 8 columns, multiplied 4 rows at a time by a wasm
//! SIMD128 micro-kernel.
//!
//! Each step of the micro-kernel loads 8 weights (two vectors) and broadcasts one value of each of the 4 rows
//! straight from memory (`v128.load32_splat`), so that its 8 sums, the 2 weight vectors and the broadcast
//! value fit in the 16 vector registers V8 and SpiderMonkey have on x86-64. `matrixmultiply`'s 8x8 kernel
//! broadcasts by shuffles and keeps 16 sums, more than those registers hold; this one measured 1.3-1.6x its
//! speed in V8 on the engine's shapes (docs/cpu.md). The depth goes in blocks of 256, so that a block of a
//! panel (8 KiB) stays in the L1 cache across all the rows.
//!
//! Products are accumulated in the order `matrixmultiply` and the reference use (one multiply, then one add,
//! depth by depth): wasm has no fused multiply-add outside the relaxed-SIMD proposal, which not every browser
//! runs. Elsewhere (the native unit tests) the same blocking runs a plain-Rust twin of the micro-kernel.

/// Columns per panel: two vectors.
const NR: usize = 8;
/// Rows per micro-kernel call.
const MR: usize = 4;
/// Depth per block.
const KC: usize = 256;

/// A `[k, n]` right-hand matrix packed into panels: for each block of `KC` rows, for each group of `NR`
/// columns, the block's rows of those columns side by side (`[kc][NR]`), the last group padded with zeros.
#[derive(Debug)]
pub(crate) struct Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Panels {
    /// Packs `rhs`, `k` rows of `n` floats.
    pub(crate) fn new(k: usize, n: usize, rhs: &[f32]) -> Panels {
        Self::from_rows(k, n, rhs, n)
    }

    /// Packs the `k` x `n` matrix whose rows start `stride` floats apart in `rhs`.
    fn from_rows(k: usize, n: usize, rhs: &[f32], stride: usize) -> Panels {
        let groups = n.div_ceil(NR);
        let mut data = vec![0.0; groups * NR * k];
        let mut at = 0;
        for first_row in (0..k).step_by(KC) {
            let depth = KC.min(k - first_row);
            for group in 0..groups {
                let columns = group * NR..(group * NR + NR).min(n);
                for row in 0..depth {
                    let from = &rhs[(first_row + row) * stride..][columns.clone()];
                    data[at + row * NR..][..from.len()].copy_from_slice(from);
                }
                at += depth * NR;
            }
        }
        Panels { k, n, data }
    }

    /// The bytes the panels hold.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// `dst[m, n] = lhs[m, k] * self`, both row-major and contiguous.
    pub(crate) fn multiply(&self, lhs: &[f32], dst: &mut [f32]) {
        let m = dst.len() / self.n.max(1);
        self.multiply_rows(m, lhs, self.k, dst, self.n);
    }

    /// `dst = lhs * self` for `m` rows of `lhs` (`k` floats each, `lhs_stride` apart) into `m` rows of `dst`
    /// (`n` floats each, `dst_stride` apart).
    fn multiply_rows(
        &self,
        m: usize,
        lhs: &[f32],
        lhs_stride: usize,
        dst: &mut [f32],
        dst_stride: usize,
    ) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            for row in dst.chunks_mut(dst_stride).take(m) {
                row[..n].fill(0.0);
            }
            return;
        }
        // Every pointer the micro-kernels form lies inside these.
        assert!(lhs_stride >= k && lhs.len() >= (m - 1) * lhs_stride + k);
        assert!(dst_stride >= n && dst.len() >= (m - 1) * dst_stride + n);
        let mut block = 0;
        for first_row in (0..k).step_by(KC) {
            let depth = KC.min(k - first_row);
            let first = first_row == 0;
            for group in 0..n.div_ceil(NR) {
                let panel = &self.data[block + group * depth * NR..][..depth * NR];
                let column = group * NR;
                let columns = NR.min(n - column);
                let mut row = 0;
                while row < m {
                    let rows = MR.min(m - row);
                    let a = &lhs[row * lhs_stride + first_row..];
                    let c = &mut dst[row * dst_stride + column..];
                    // Safety: rows `row..row + rows` of `lhs` hold `depth` floats from `first_row`, and of
                    // `dst` `columns` floats from `column` (the asserts above); the panel holds `depth` x NR.
                    unsafe {
                        match rows {
                            4 => tile::<4>(
                                depth, a, lhs_stride, panel, c, dst_stride, columns, first,
                            ),
                            3 => tile::<3>(
                                depth, a, lhs_stride, panel, c, dst_stride, columns, first,
                            ),
                            2 => tile::<2>(
                                depth, a, lhs_stride, panel, c, dst_stride, columns, first,
                            ),
                            _ => tile::<1>(
                                depth, a, lhs_stride, panel, c, dst_stride, columns, first,
                            ),
                        }
                    }
                    row += rows;
                }
            }
            block += n.div_ceil(NR) * depth * NR;
        }
    }
}

/// `dst = lhs * rhs` for row-major matrices with the given row strides, packing `rhs` for this one product.
///
/// # Safety
/// As [`super::gemm_rows`]: the pointers address matrices of those sizes and strides, `dst` apart from the
/// others.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn multiply_unpacked(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_stride: usize,
    lhs: *const f32,
    lhs_stride: usize,
    rhs: *const f32,
    rhs_stride: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let span = |rows: usize, stride: usize, len: usize| (rows.max(1) - 1) * stride + len;
    // Safety: the caller's matrices span exactly these lengths.
    let (lhs, rhs, dst) = unsafe {
        (
            std::slice::from_raw_parts(lhs, span(m, lhs_stride, k)),
            std::slice::from_raw_parts(rhs, span(k, rhs_stride, n)),
            std::slice::from_raw_parts_mut(dst, span(m, dst_stride, n)),
        )
    };
    Panels::from_rows(k, n, rhs, rhs_stride).multiply_rows(m, lhs, lhs_stride, dst, dst_stride);
}

/// `R` rows by up to `NR` columns: `c (+)= a * panel` over `depth`, `c` overwritten where `first`.
///
/// # Safety
/// `a` holds `R` rows of `depth` floats, `lhs_stride` apart; `c` holds `R` rows of `columns` floats,
/// `dst_stride` apart; `panel` holds `depth * NR` floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<const R: usize>(
    depth: usize,
    a: &[f32],
    lhs_stride: usize,
    panel: &[f32],
    c: &mut [f32],
    dst_stride: usize,
    columns: usize,
    first: bool,
) {
    // Safety: forwarded from the caller.
    let sums: [[f32; NR]; R] = unsafe { sums::<R>(depth, a.as_ptr(), lhs_stride, panel.as_ptr()) };
    for (i, sums) in sums.iter().enumerate() {
        let row = &mut c[i * dst_stride..][..columns];
        if first {
            row.copy_from_slice(&sums[..columns]);
        } else {
            for (c, s) in row.iter_mut().zip(sums) {
                *c += s;
            }
        }
    }
}

/// The micro-kernel: `R` rows of `a` times a panel, over `depth`.
///
/// # Safety
/// As [`tile`].
#[cfg(target_arch = "wasm32")]
#[inline(always)]
unsafe fn sums<const R: usize>(
    depth: usize,
    a: *const f32,
    lhs_stride: usize,
    panel: *const f32,
) -> [[f32; NR]; R] {
    use std::arch::wasm32::*;
    let mut low = [f32x4_splat(0.0); R];
    let mut high = [f32x4_splat(0.0); R];
    for d in 0..depth {
        // Safety: d < depth, so the panel's row d and each row's value d lie inside (the caller's contract).
        unsafe {
            let b_low = v128_load(panel.add(d * NR) as *const v128);
            let b_high = v128_load(panel.add(d * NR + 4) as *const v128);
            for i in 0..R {
                let x = v128_load32_splat(a.add(i * lhs_stride + d) as *const u32);
                low[i] = f32x4_add(low[i], f32x4_mul(x, b_low));
                high[i] = f32x4_add(high[i], f32x4_mul(x, b_high));
            }
        }
    }
    let mut sums = [[0.0; NR]; R];
    for i in 0..R {
        // Safety: each row of `sums` holds NR = 8 floats, two vectors.
        unsafe {
            v128_store(sums[i].as_mut_ptr() as *mut v128, low[i]);
            v128_store(sums[i].as_mut_ptr().add(4) as *mut v128, high[i]);
        }
    }
    sums
}

/// The micro-kernel's plain-Rust twin (the native unit tests run the blocking with it): the same products in
/// the same order.
///
/// # Safety
/// As [`tile`].
#[cfg(not(target_arch = "wasm32"))]
unsafe fn sums<const R: usize>(
    depth: usize,
    a: *const f32,
    lhs_stride: usize,
    panel: *const f32,
) -> [[f32; NR]; R] {
    let mut sums = [[0.0f32; NR]; R];
    for d in 0..depth {
        for (i, row) in sums.iter_mut().enumerate() {
            // Safety: as in the SIMD128 kernel.
            let x = unsafe { *a.add(i * lhs_stride + d) };
            for (j, sum) in row.iter_mut().enumerate() {
                *sum += x * unsafe { *panel.add(d * NR + j) };
            }
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::gemm::tests::{check_product, values};

    #[test]
    fn packed_products_match_the_reference_on_odd_sizes() {
        // Rows below, at and past the 4 of a tile; columns below, at and past a panel's 8; depths across
        // blocks of 256, with a partial last one.
        for (m, k, n) in [
            (1, 1, 1),
            (1, 1280, 1000),
            (3, 5, 7),
            (4, 256, 8),
            (5, 257, 9),
            (9, 600, 17),
            (130, 513, 64),
        ] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let panels = Panels::new(k, n, &b);
            assert_eq!(panels.bytes(), k * n.next_multiple_of(NR) * 4);
            let mut c = vec![f32::NAN; m * n];
            panels.multiply(&a, &mut c);
            check_product(m, k, n, &c, &a, &b);
        }
    }

    #[test]
    fn strided_products_touch_only_their_own_columns() {
        // A group of a grouped layer: its K of each wider input row, its OCg of each wider output row.
        let (m, k, n) = (6, 300, 11);
        let (lhs_stride, rhs_stride, dst_stride) = (k + 7, n + 3, n + 5);
        let lhs = values(m * lhs_stride, 3);
        let rhs = values(k * rhs_stride, 4);
        let mut dst = vec![42.0; m * dst_stride];
        unsafe {
            multiply_unpacked(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                dst_stride,
                lhs.as_ptr(),
                lhs_stride,
                rhs.as_ptr(),
                rhs_stride,
            );
        }
        let a: Vec<f32> = lhs
            .chunks(lhs_stride)
            .flat_map(|r| &r[..k])
            .copied()
            .collect();
        let b: Vec<f32> = rhs
            .chunks(rhs_stride)
            .flat_map(|r| &r[..n])
            .copied()
            .collect();
        let got: Vec<f32> = dst
            .chunks(dst_stride)
            .flat_map(|r| &r[..n])
            .copied()
            .collect();
        check_product(m, k, n, &got, &a, &b);
        assert!(dst
            .chunks(dst_stride)
            .all(|r| r[n..].iter().all(|&v| v == 42.0)));
    }

    #[test]
    fn nan_and_infinity_pass_through() {
        let (m, k, n) = (5, 300, 9);
        let mut a = values(m * k, 5);
        a[k + 3] = f32::NAN;
        a[3 * k + 299] = f32::INFINITY;
        let b = values(k * n, 6);
        let mut c = vec![0.0; m * n];
        Panels::new(k, n, &b).multiply(&a, &mut c);
        assert!(c[n..2 * n].iter().all(|v| v.is_nan()));
        for (j, v) in c[3 * n..4 * n].iter().enumerate() {
            assert_eq!(*v, f32::INFINITY * b[299 * n + j].signum(), "column {j}");
        }
    }
}
