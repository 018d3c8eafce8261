//! The channel ops on NHWC activations: a concatenation's copies, channel selection, layer normalisation over
//! each pixel's channels, and adaptive average pooling. The same results as `reference::channels`.

use std::sync::Arc;

use rayon::prelude::*;

use super::rows_per_task;
use super::simd::multiversion;
use crate::ops::{adaptive_window, LayerNorm};
use crate::tensor::Shape;

/// Writes each pixel of `input` (`x`) into channels `offset..offset + x.c` of the same pixel of `output`, whose
/// pixels have `out_channels`.
pub(crate) fn copy_channels(
    x: Shape,
    offset: usize,
    out_channels: usize,
    input: &[f32],
    output: &mut [f32],
) {
    let pixels = x.n * x.h * x.w;
    let rows = rows_per_task(pixels, x.c);
    output[..pixels * out_channels]
        .par_chunks_mut(out_channels * rows)
        .zip(input[..pixels * x.c].par_chunks(x.c * rows))
        .for_each(|(out, inp)| {
            for (o, i) in out
                .chunks_exact_mut(out_channels)
                .zip(inp.chunks_exact(x.c))
            {
                o[offset..offset + x.c].copy_from_slice(i);
            }
        });
}

/// `output[p][c] = input[p][indices[c]]` for every pixel `p`, the indices as `selection` copies them.
pub(crate) fn select_channels(x: Shape, selection: &Selection, input: &[f32], output: &mut [f32]) {
    let pixels = x.n * x.h * x.w;
    let out_c = selection.output_channels;
    let rows = rows_per_task(pixels, out_c);
    output[..pixels * out_c]
        .par_chunks_mut(out_c * rows)
        .zip(input[..pixels * x.c].par_chunks(x.c * rows))
        .for_each(|(out, inp)| select_rows(selection, x.c, inp, out));
}

/// How a channel selection copies a pixel's channels, found once from its indices when the plan is lowered:
/// slices and shuffles as loops that are vectorised, not one indexed load per value.
#[derive(Clone, Debug)]
pub(crate) struct Selection {
    copy: SelectionCopy,
    output_channels: usize,
}

#[derive(Clone, Debug)]
enum SelectionCopy {
    /// Runs of consecutive channels (a slice is one): (first input channel, first output channel, length).
    Runs(Vec<(usize, usize, usize)>),
    /// ShuffleNet's shuffle of all the channels: output channel `k * groups + g` is input channel
    /// `g * (channels / groups) + k`.
    Shuffle { groups: usize },
    /// Anything else, value by value.
    Gather(Arc<[usize]>),
}

impl Selection {
    /// The copies of `indices` from pixels of `channels`.
    pub(crate) fn new(indices: &Arc<[usize]>, channels: usize) -> Self {
        Selection {
            copy: SelectionCopy::of(indices, channels),
            output_channels: indices.len(),
        }
    }
}

impl SelectionCopy {
    fn of(indices: &Arc<[usize]>, channels: usize) -> Self {
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (to, &from) in indices.iter().enumerate() {
            match runs.last_mut() {
                Some((start, _, len)) if *start + *len == from => *len += 1,
                _ => runs.push((from, to, 1)),
            }
        }
        // Runs of four or more channels on average copy faster than channel by channel.
        if runs.len() * 4 <= indices.len() {
            return SelectionCopy::Runs(runs);
        }
        let per_group = indices.get(1).copied().unwrap_or(0);
        if indices.len() == channels && per_group > 0 && channels.is_multiple_of(per_group) {
            let groups = channels / per_group;
            let shuffle = (0..channels).map(|c| (c % groups) * per_group + c / groups);
            if shuffle.eq(indices.iter().copied()) {
                return SelectionCopy::Shuffle { groups };
            }
        }
        SelectionCopy::Gather(Arc::clone(indices))
    }
}

multiversion! {
    fn select_rows(selection: &Selection, channels: usize, input: &[f32], output: &mut [f32])
        => select_rows_body
}

/// [`select_channels`] on the whole pixels of `input` (`channels` each) and `output`.
#[inline(always)]
fn select_rows_body<const FMA: bool>(
    selection: &Selection,
    channels: usize,
    input: &[f32],
    output: &mut [f32],
) {
    let pixels = output
        .chunks_exact_mut(selection.output_channels.max(1))
        .zip(input.chunks_exact(channels.max(1)));
    match &selection.copy {
        SelectionCopy::Runs(runs) => {
            for (o, i) in pixels {
                for &(from, to, len) in runs {
                    o[to..to + len].copy_from_slice(&i[from..from + len]);
                }
            }
        }
        SelectionCopy::Shuffle { groups: 2 } => {
            for (o, i) in pixels {
                let (first, second) = i.split_at(channels / 2);
                for ((pair, &a), &b) in o.chunks_exact_mut(2).zip(first).zip(second) {
                    pair[0] = a;
                    pair[1] = b;
                }
            }
        }
        &SelectionCopy::Shuffle { groups } => {
            let per_group = channels / groups;
            for (o, i) in pixels {
                for (k, out) in o.chunks_exact_mut(groups).enumerate() {
                    for (g, v) in out.iter_mut().enumerate() {
                        *v = i[g * per_group + k];
                    }
                }
            }
        }
        SelectionCopy::Gather(indices) => {
            for (o, i) in pixels {
                for (v, &c) in o.iter_mut().zip(indices.iter()) {
                    *v = i[c];
                }
            }
        }
    }
}

/// Layer normalisation of each pixel's channels: two passes (mean, then the variance about it) in f32, the
/// order that keeps the variance accurate when the mean is large.
pub(crate) fn layer_norm(norm: &LayerNorm, x: Shape, input: &[f32], output: &mut [f32]) {
    let c = x.c;
    let pixels = x.n * x.h * x.w;
    let rows = rows_per_task(pixels, c);
    output[..pixels * c]
        .par_chunks_mut(c * rows)
        .zip(input[..pixels * c].par_chunks(c * rows))
        .for_each(|(out, inp)| {
            for (o, i) in out.chunks_exact_mut(c).zip(inp.chunks_exact(c)) {
                let mean = i.iter().sum::<f32>() / c as f32;
                let var = i.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
                let inv = 1.0 / (var + norm.eps).sqrt();
                for (((o, &v), &w), &b) in o.iter_mut().zip(i).zip(&*norm.weight).zip(&*norm.bias) {
                    *o = (v - mean) * inv * w + b;
                }
            }
        });
}

/// Average pooling of NHWC `input` (`x`) to `output` (`y`) over PyTorch's adaptive windows.
pub(crate) fn adaptive_avg_pool(x: Shape, y: Shape, input: &[f32], output: &mut [f32]) {
    let c = x.c;
    let row_len = y.w * c;
    let rows = rows_per_task(y.n * y.h, row_len);
    output[..y.n * y.h * row_len]
        .par_chunks_mut(row_len * rows)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (r, out_row) in chunk.chunks_mut(row_len).enumerate() {
                let row = task * rows + r;
                let (n, oy) = (row / y.h, row % y.h);
                let (y0, y1) = adaptive_window(oy, x.h, y.h);
                for (ox, out) in out_row.chunks_exact_mut(c).enumerate() {
                    let (x0, x1) = adaptive_window(ox, x.w, y.w);
                    out.fill(0.0);
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let at = ((n * x.h + iy) * x.w + ix) * c;
                            for (s, &v) in out.iter_mut().zip(&input[at..at + c]) {
                                *s += v;
                            }
                        }
                    }
                    let scale = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                    out.iter_mut().for_each(|s| *s *= scale);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::ChannelSelection;

    #[test]
    fn slices_and_shuffles_take_their_own_loops_with_the_gathers_values() {
        let shape = |c| Shape {
            n: 1,
            h: 2,
            w: 3,
            c,
        };
        // The selections are valid by construction: the unwraps cannot fail.
        let cases = [
            (ChannelSelection::slice(40, 8, 28).unwrap(), "runs"),
            (ChannelSelection::shuffle(48, 2).unwrap(), "shuffle"),
            (ChannelSelection::shuffle(30, 3).unwrap(), "shuffle"),
            (
                ChannelSelection {
                    indices: [3, 1, 4, 1, 5, 9, 2, 6].into(),
                    input_channels: 10,
                },
                "gather",
            ),
        ];
        for (selection, expected) in cases {
            let x = shape(selection.input_channels);
            let indices = &selection.indices[..];
            let copy = Selection::new(&selection.indices, x.c);
            let kind = match copy.copy {
                SelectionCopy::Runs(_) => "runs",
                SelectionCopy::Shuffle { .. } => "shuffle",
                SelectionCopy::Gather(_) => "gather",
            };
            assert_eq!(kind, expected, "{selection:?}");
            let pixels = x.n * x.h * x.w;
            let input: Vec<f32> = (0..pixels * x.c).map(|v| v as f32).collect();
            let mut output = vec![f32::NAN; pixels * indices.len()];
            select_channels(x, &copy, &input, &mut output);
            let expected: Vec<f32> = input
                .chunks_exact(x.c)
                .flat_map(|pixel| indices.iter().map(|&c| pixel[c]))
                .collect();
            assert_eq!(output, expected, "{selection:?}");
        }
    }
}
