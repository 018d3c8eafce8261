//! Ops that move or normalise whole channels: concatenation, channel selection (ShuffleNet's shuffle, a slice),
//! and layer normalisation over the channels of each pixel (ConvNeXt).

use std::sync::Arc;

use crate::error::{Error, Result};

/// Which input channel each output channel copies: `output[c] = input[indices[c]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSelection {
    /// One input channel per output channel, each below `input_channels`.
    pub indices: Arc<[usize]>,
    /// Channels of the input.
    pub input_channels: usize,
}

impl ChannelSelection {
    /// ShuffleNet's channel shuffle: `x.view(n, groups, c / groups, h, w).transpose(1, 2).reshape(n, c, h, w)`.
    pub fn shuffle(channels: usize, groups: usize) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::invalid_op(
                "channel_shuffle",
                format!("{groups} groups do not divide {channels} channels"),
            ));
        }
        let per_group = channels / groups;
        let indices = (0..channels)
            .map(|c| (c % groups) * per_group + c / groups)
            .collect();
        Ok(ChannelSelection {
            indices,
            input_channels: channels,
        })
    }

    /// Channels `start..end` (`x[:, start:end]`, as `torch.chunk` and `torch.split` take them).
    pub fn slice(channels: usize, start: usize, end: usize) -> Result<Self> {
        if start >= end || end > channels {
            return Err(Error::invalid_op(
                "slice_channels",
                format!("channels {start}..{end} are not a non-empty range of {channels}"),
            ));
        }
        Ok(ChannelSelection {
            indices: (start..end).collect(),
            input_channels: channels,
        })
    }

    /// Channels of the output.
    pub fn output_channels(&self) -> usize {
        self.indices.len()
    }

    /// Checks the selection against an input of `channels`.
    pub fn check(&self, channels: usize) -> Result<()> {
        if channels != self.input_channels
            || self.indices.is_empty()
            || self.indices.iter().any(|&i| i >= channels)
        {
            return Err(Error::invalid_op(
                "select_channels",
                format!(
                    "a selection of {} from {} channels does not apply to {channels}",
                    self.indices.len(),
                    self.input_channels
                ),
            ));
        }
        Ok(())
    }
}

/// Layer normalisation over the channels of each pixel: `(x - mean_c) / sqrt(var_c + eps) * weight + bias`, with
/// the biased variance (PyTorch's `LayerNorm` over the last dimension of a channels-last tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    /// `[C]`.
    pub weight: Arc<[f32]>,
    /// `[C]`.
    pub bias: Arc<[f32]>,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Validates the parameters.
    pub fn new(weight: Arc<[f32]>, bias: Arc<[f32]>, eps: f32) -> Result<Self> {
        if weight.is_empty() || weight.len() != bias.len() {
            return Err(Error::invalid_op(
                "layer_norm",
                format!(
                    "weight ({}) and bias ({}) need one value per channel",
                    weight.len(),
                    bias.len()
                ),
            ));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::invalid_op(
                "layer_norm",
                format!("eps {eps} must be finite and non-negative"),
            ));
        }
        Ok(LayerNorm { weight, bias, eps })
    }

    /// Channels it normalises.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }
}

/// Rows of input covered by output row `index` of an adaptive pooling from `input` to `output` rows:
/// `floor(index * input / output) .. ceil((index + 1) * input / output)`, PyTorch's windows.
pub fn adaptive_window(index: usize, input: usize, output: usize) -> (usize, usize) {
    // In u64: the products overflow a 32-bit usize (wasm32) for sizes a file may name.
    let (index, input, output) = (index as u64, input as u64, output.max(1) as u64);
    let start = index * input / output;
    let end = ((index + 1) * input).div_ceil(output);
    (start as usize, end as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_matches_torch_view_transpose() {
        // torch.arange(6).view(2, 3).t().flatten() == [0, 3, 1, 4, 2, 5]
        // Cannot fail: 6 channels split into 2 groups of 3.
        let s = ChannelSelection::shuffle(6, 2).unwrap();
        assert_eq!(&*s.indices, &[0, 3, 1, 4, 2, 5]);
        assert!(ChannelSelection::shuffle(6, 4).is_err());
        assert!(ChannelSelection::slice(6, 3, 3).is_err());
        assert!(ChannelSelection::slice(6, 3, 7).is_err());
    }

    #[test]
    fn adaptive_windows_cover_the_input() {
        // PyTorch: 5 -> 3 takes [0, 2), [1, 4), [3, 5); 1 -> 7 repeats the pixel.
        let w: Vec<_> = (0..3).map(|i| adaptive_window(i, 5, 3)).collect();
        assert_eq!(w, [(0, 2), (1, 4), (3, 5)]);
        assert!((0..7).all(|i| adaptive_window(i, 1, 7) == (0, 1)));
    }
}
