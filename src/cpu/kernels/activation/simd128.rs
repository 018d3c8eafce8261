//! The uniform PWLU in the browser (wasm SIMD128): the arithmetic four channels at a time, the table read by
//! scalar loads.
//!
//! wasm has no gathers and its only shuffle picks bytes from one 16-byte register, so a lookup costs two
//! loads per value at best. Written out by hand, the segment index is computed for four channels in one
//! vector, each lane's slope and intercept are loaded from the planar table at that index, and the result is
//! assembled back into a vector; LLVM's own vectorisation of the portable loop took about 4.5 ns per value in
//! Chromium, twice the rest of Lite0. The values are the portable path's (a multiply then an add, as wasm has
//! no fused multiply-add outside relaxed SIMD).

use std::arch::wasm32::*;

use super::UniformPwlu;

/// [`UniformPwlu::apply`] on channels `first_channel..` of one pixel (`values`), with `planar` its
/// `Segments::Planar` table.
#[inline(always)]
pub(super) fn apply(pwlu: &UniformPwlu, planar: &[f32], values: &mut [f32], first_channel: usize) {
    let c = values.len();
    let channels = first_channel..first_channel + c;
    let (inv_d, origin, first) = (
        &pwlu.inv_d[channels.clone()],
        &pwlu.origin[channels.clone()],
        &pwlu.first[channels],
    );
    let n = pwlu.intervals;
    let intercepts = n + 2;
    let last_interior = f32x4_splat((n - 1) as f32);
    let right_bound = f32x4_splat(n as f32);
    let (right_tail, left_tail) = (i32x4_splat(n as i32), i32x4_splat(n as i32 + 1));
    let whole = c - c % 4;
    for j in (0..whole).step_by(4) {
        // Safety: j + 4 <= c, the length of `values` and of each per-channel slice.
        unsafe {
            let load = |s: &[f32]| v128_load(s.as_ptr().add(j) as *const v128);
            let x = load(values);
            // The fused index of `UniformPwlu`, as a multiply and an add.
            let t = f32x4_add(f32x4_mul(x, load(inv_d)), load(origin));
            // The floor clamped to [0, N - 1] (NaN to 0, as the portable path's max and min do).
            let clamped = f32x4_pmin(f32x4_pmax(t, f32x4_splat(0.0)), last_interior);
            let interior = i32x4_trunc_sat_f32x4(clamped);
            let index = v128_bitselect(right_tail, interior, f32x4_ge(t, right_bound));
            let index = v128_bitselect(left_tail, index, f32x4_lt(t, f32x4_splat(0.0)));
            // Each unit's table starts at `first`; the index is at most N + 1 (see `UniformPwlu::apply`).
            let at = i32x4_add(v128_load(first.as_ptr().add(j) as *const v128), index);
            let table = planar.as_ptr();
            let fetch = |k: usize| -> (f32, f32) {
                let at = match k {
                    0 => i32x4_extract_lane::<0>(at),
                    1 => i32x4_extract_lane::<1>(at),
                    2 => i32x4_extract_lane::<2>(at),
                    _ => i32x4_extract_lane::<3>(at),
                } as usize;
                (*table.add(at), *table.add(at + intercepts))
            };
            let ((s0, b0), (s1, b1), (s2, b2), (s3, b3)) = (fetch(0), fetch(1), fetch(2), fetch(3));
            let slope = f32x4(s0, s1, s2, s3);
            let intercept = f32x4(b0, b1, b2, b3);
            let y = f32x4_add(f32x4_mul(slope, x), intercept);
            // A flat segment gives its value (also at infinity, where 0 * inf is NaN); NaN passes through.
            let y = v128_bitselect(intercept, y, f32x4_eq(slope, f32x4_splat(0.0)));
            let y = v128_bitselect(x, y, f32x4_ne(x, x));
            v128_store(values.as_mut_ptr().add(j) as *mut v128, y);
        }
    }
    if whole < c {
        pwlu.apply_portable::<false>(&mut values[whole..], first_channel + whole);
    }
}
