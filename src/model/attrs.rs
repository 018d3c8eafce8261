//! The attributes of each op as a model file writes them (docs/format.md): one struct per shape of `attrs`,
//! each refusing fields it does not know.

use serde::Deserialize;

use crate::ops::Padding;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PadAttr {
    pub(super) top: usize,
    pub(super) left: usize,
    pub(super) bottom: usize,
    pub(super) right: usize,
}

impl From<PadAttr> for Padding {
    fn from(p: PadAttr) -> Self {
        Padding {
            top: p.top,
            left: p.left,
            bottom: p.bottom,
            right: p.right,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConvAttrs {
    pub(super) in_channels: usize,
    pub(super) out_channels: usize,
    pub(super) kernel: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) dilation: [usize; 2],
    pub(super) padding: PadAttr,
    pub(super) groups: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EpsAttrs {
    pub(super) eps: f32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActivationAttrs {
    pub(super) kind: String,
    #[serde(default)]
    pub(super) negative_slope: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PwluAttrs {
    pub(super) intervals: usize,
    pub(super) granularity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PoolAttrs {
    pub(super) kernel: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) padding: PadAttr,
    #[serde(default)]
    pub(super) dilation: Option<[usize; 2]>,
    pub(super) ceil_mode: bool,
    #[serde(default)]
    pub(super) count_include_pad: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinearAttrs {
    pub(super) in_features: usize,
    pub(super) out_features: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShuffleAttrs {
    pub(super) groups: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SliceAttrs {
    pub(super) start: usize,
    pub(super) end: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdaptivePoolAttrs {
    pub(super) output_size: [usize; 2],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PadOnlyAttrs {
    pub(super) padding: PadAttr,
}
