"""The Piecewise Linear Unit (Zhou, Zhu, Zhong, ICCV 2021) as PyTorch modules.

Semantics match the pwlu engine exactly (docs/pwlu.md): left tail iff x < B_L, right tail iff x >= B_R, the
interior index clamped to N - 1, NaN in gives NaN out, and +-inf on a tail of slope 0 gives the tail's value.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PWLU", "NonUniformPWLU"]

#: Phase I of statistics-based realignment: behave as ReLU and track the input's statistics.
PHASE_STATISTICS = "statistics"
#: Phase II: the unit is a free PWLU and every parameter learns.
PHASE_LEARN = "learn"


def _channels_first(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[N, C, ...] -> [C, N * ...] (channel-wise) or [1, numel] (layer-wise)."""
    if channels == 1:
        return x.reshape(1, -1)
    return x.transpose(0, 1).reshape(channels, -1)


def _restore(y: torch.Tensor, like: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 1:
        return y.reshape(like.shape)
    shape = (like.shape[1], like.shape[0]) + tuple(like.shape[2:])
    return y.reshape(shape).transpose(0, 1)


def _tail(value: torch.Tensor, slope: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """value + slope * dx, except that a flat tail at +-inf gives `value` (the limit), not 0 * inf = NaN."""
    flat_at_infinity = (slope == 0) & torch.isinf(dx)
    return value + torch.where(flat_at_infinity, torch.zeros_like(dx), slope * dx)


class _Realigned(nn.Module):
    """Statistics-based realignment, shared by both units: in phase I the unit computes ReLU and tracks its
    input's mean and variance per unit (momentum 0.9, the paper's); `realign_()` places the unit's grid on
    mean +- k std (phase II), after which every parameter learns."""

    def _init_realignment(self, units: int, realign: bool, momentum: float) -> None:
        self.momentum = float(momentum)
        self.phase = PHASE_STATISTICS if realign else PHASE_LEARN
        self.register_buffer("running_mean", torch.zeros(units))
        self.register_buffer("running_var", torch.ones(units))

    @property
    def units(self) -> int:
        return self.points.shape[0]

    @torch.no_grad()
    def _track(self, x: torch.Tensor) -> None:
        flat = _channels_first(x.detach().float(), self.units)
        mean, var = flat.mean(dim=1), flat.var(dim=1, unbiased=False)
        self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
        self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)

    def _statistics_bounds(self, k: float) -> tuple[torch.Tensor, torch.Tensor]:
        """[C] left and right ends: running mean -+ k running std (at least 1e-3 apart from the mean)."""
        std = self.running_var.clamp(min=1e-12).sqrt()
        half = torch.clamp(k * std, min=1e-3)
        return self.running_mean - half, self.running_mean + half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.phase == PHASE_STATISTICS:
            if self.training:
                self._track(x)
            return torch.relu(x)
        return self._pwlu(x)

    def _pwlu(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _granularity(self) -> str:
        return "channel-wise" if self.channel_wise else "layer-wise"


class PWLU(_Realigned):
    """Uniform PWLU: `intervals` equal intervals on [B_L, B_R], one unit per channel or one per layer.

    State dict: `points` [C, N + 1], `bounds` [C, 2] (B_L, B_R), `slopes` [C, 2] (K_L, K_R), all parameters;
    plus the realignment buffers `running_mean`, `running_var` [C]. C = 1 for a layer-wise unit.

    A new unit is ReLU at its grid points: exactly ReLU on [-bound, bound] when N is even (0 is then a grid
    point); with an odd N the interval around 0 joins (x_i, 0) and (x_i+1, x_i+1) by a line. With
    `realign=True` it starts in phase I of the paper's statistics-based realignment: it computes ReLU and
    tracks its input's mean and variance (momentum 0.9) until `realign_()` resets the bounds to
    mean +- k std and the points to ReLU on that grid (phase II), after which everything learns.
    """

    def __init__(
        self,
        channels: int | None = None,
        intervals: int = 16,
        bound: float = 3.0,
        realign: bool = False,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if intervals < 1:
            raise ValueError(f"intervals must be >= 1, got {intervals}")
        units = 1 if channels is None else int(channels)
        self.intervals = int(intervals)
        self.channel_wise = channels is not None
        self.points = nn.Parameter(torch.zeros(units, intervals + 1))
        self.bounds = nn.Parameter(torch.tensor([[-bound, bound]] * units, dtype=torch.float32))
        self.slopes = nn.Parameter(torch.tensor([[0.0, 1.0]] * units, dtype=torch.float32))
        self._init_realignment(units, realign, momentum)
        self.reset_to_relu_()

    @torch.no_grad()
    def reset_to_relu_(self) -> None:
        """Points := ReLU on the current grid; tail slopes 0 and 1."""
        grid = self.grid()
        self.points.copy_(grid.clamp(min=0))
        self.slopes.copy_(torch.tensor([0.0, 1.0]).expand_as(self.slopes))

    def grid(self) -> torch.Tensor:
        """The N + 1 grid points of every unit, [C, N + 1]."""
        steps = torch.arange(self.intervals + 1, dtype=self.bounds.dtype, device=self.bounds.device)
        left, right = self.bounds[:, :1], self.bounds[:, 1:]
        return left + (right - left) * steps / self.intervals

    @torch.no_grad()
    def realign_(self, k: float = 3.0) -> None:
        """Phase II: bounds := running mean +- k running std, points := ReLU on the new grid."""
        left, right = self._statistics_bounds(k)
        self.bounds.copy_(torch.stack([left, right], dim=1))
        self.reset_to_relu_()
        self.phase = PHASE_LEARN

    def _pwlu(self, x: torch.Tensor) -> torch.Tensor:
        flat = _channels_first(x, self.units)
        n = self.intervals
        left, right = self.bounds[:, :1], self.bounds[:, 1:]
        d = (right - left) / n
        t = (flat - left) / d
        # NaN and the tails get an arbitrary valid index; their values come from the branches below.
        index = torch.nan_to_num(torch.floor(t), nan=0.0, posinf=0.0, neginf=0.0).clamp(0, n - 1).long()
        y0 = torch.gather(self.points, 1, index)
        y1 = torch.gather(self.points, 1, index + 1)
        interior = y0 + (y1 - y0) / d * (flat - (left + index.to(flat.dtype) * d))
        k_left, k_right = self.slopes[:, :1], self.slopes[:, 1:]
        left_tail = _tail(self.points[:, :1], k_left, flat - left)
        right_tail = _tail(self.points[:, n:], k_right, flat - right)
        y = torch.where(flat < left, left_tail, torch.where(flat >= right, right_tail, interior))
        return _restore(y, x, self.units)

    def extra_repr(self) -> str:
        return f"units={self.units}, intervals={self.intervals}, {self._granularity()}, phase={self.phase}"


class NonUniformPWLU(_Realigned):
    """Non-uniform PWLU (the journal version): N + 1 learned, strictly increasing breakpoints per unit, one unit
    per channel or one per layer.

    State dict: `breakpoints` [C, N + 1], `points` [C, N + 1], `slopes` [C, 2], plus the realignment buffers
    `running_mean`, `running_var` [C]. Breakpoints are kept sorted: the forward pass reads them through
    `torch.sort` (with the points following their breakpoints), and `sort_()` writes the order back, for
    instance after each optimiser step.

    With `realign=True` it starts in phase I like `PWLU`: ReLU while the input's statistics are tracked; then
    `realign_()` places the breakpoints evenly on mean +- k std and the points on ReLU there (phase II), from
    where the breakpoints learn where the function needs them.
    """

    def __init__(
        self,
        channels: int | None = None,
        intervals: int = 4,
        bound: float = 3.0,
        realign: bool = False,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if intervals < 1:
            raise ValueError(f"intervals must be >= 1, got {intervals}")
        units = 1 if channels is None else int(channels)
        self.intervals = int(intervals)
        self.channel_wise = channels is not None
        grid = torch.linspace(-bound, bound, intervals + 1).expand(units, -1).clone()
        self.breakpoints = nn.Parameter(grid)
        self.points = nn.Parameter(grid.clamp(min=0))
        self.slopes = nn.Parameter(torch.tensor([[0.0, 1.0]] * units))
        self._init_realignment(units, realign, momentum)

    @torch.no_grad()
    def sort_(self) -> None:
        order = torch.argsort(self.breakpoints, dim=1)
        self.breakpoints.copy_(torch.gather(self.breakpoints, 1, order))
        self.points.copy_(torch.gather(self.points, 1, order))

    @torch.no_grad()
    def realign_(self, k: float = 3.0) -> None:
        """Phase II: breakpoints := N + 1 even steps over running mean +- k running std, points := ReLU there,
        tail slopes 0 and 1."""
        left, right = self._statistics_bounds(k)
        steps = torch.arange(self.intervals + 1, dtype=left.dtype, device=left.device) / self.intervals
        grid = left[:, None] + (right - left)[:, None] * steps
        self.breakpoints.copy_(grid)
        self.points.copy_(grid.clamp(min=0))
        self.slopes.copy_(torch.tensor([0.0, 1.0]).expand_as(self.slopes))
        self.phase = PHASE_LEARN

    def _pwlu(self, x: torch.Tensor) -> torch.Tensor:
        flat = _channels_first(x, self.units)
        n = self.intervals
        breakpoints, order = torch.sort(self.breakpoints, dim=1)
        points = torch.gather(self.points, 1, order)
        # Index i with p_i <= x < p_{i+1}, clamped to the interior segments.
        inner = breakpoints[:, 1:n].contiguous()
        index = torch.searchsorted(inner, torch.nan_to_num(flat.contiguous(), nan=0.0), right=True)
        index = index.clamp(0, n - 1)
        x0, x1 = torch.gather(breakpoints, 1, index), torch.gather(breakpoints, 1, index + 1)
        y0, y1 = torch.gather(points, 1, index), torch.gather(points, 1, index + 1)
        interior = y0 + (y1 - y0) / (x1 - x0) * (flat - x0)
        left, right = breakpoints[:, :1], breakpoints[:, n:]
        left_tail = _tail(points[:, :1], self.slopes[:, :1], flat - left)
        right_tail = _tail(points[:, n:], self.slopes[:, 1:], flat - right)
        y = torch.where(flat < left, left_tail, torch.where(flat >= right, right_tail, interior))
        return _restore(y, x, self.units)

    def extra_repr(self) -> str:
        return f"units={self.units}, intervals={self.intervals}, {self._granularity()}, non-uniform, phase={self.phase}"
