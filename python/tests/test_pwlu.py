import math

import numpy as np
import pytest
import torch
from torch import nn

from pwlu_torch import PWLU, NonUniformPWLU


def reference(x, points, bounds, slopes, breakpoints=None):
    """The definition in docs/pwlu.md, in f64, one unit."""
    n = len(points) - 1
    if breakpoints is None:
        left, right = bounds
        grid = [left + (right - left) * i / n for i in range(n + 1)]
    else:
        grid = list(breakpoints)
    left, right = grid[0], grid[-1]
    if math.isnan(x):
        return math.nan
    if x < left:
        return points[0] if (slopes[0] == 0 and math.isinf(x)) else points[0] + slopes[0] * (x - left)
    if x >= right:
        return points[n] if (slopes[1] == 0 and math.isinf(x)) else points[n] + slopes[1] * (x - right)
    i = max(k for k in range(n) if grid[k] <= x)
    return points[i] + (points[i + 1] - points[i]) / (grid[i + 1] - grid[i]) * (x - grid[i])


def probe_inputs(grid):
    xs = [math.nan, math.inf, -math.inf, 1e4, -1e4, 0.0]
    for g in grid:
        xs += [g, np.nextafter(np.float32(g), np.float32(np.inf)), np.nextafter(np.float32(g), np.float32(-np.inf))]
    return [float(np.float32(x)) for x in xs]


def random_unit(channels, intervals, seed=0):
    torch.manual_seed(seed)
    unit = PWLU(channels, intervals, bound=2.0)
    with torch.no_grad():
        unit.points.add_(torch.randn_like(unit.points) * 0.3)
        unit.bounds.add_(torch.randn_like(unit.bounds) * 0.2)
        unit.slopes.copy_(torch.tensor([[0.0, 1.3]] * unit.units))
    return unit


@pytest.mark.parametrize("intervals", [1, 2, 5, 16, 255, 256])
@pytest.mark.parametrize("channels", [None, 3])
def test_forward_matches_the_definition(intervals, channels):
    unit = random_unit(channels, intervals)
    for c in range(unit.units):
        points = unit.points[c].tolist()
        bounds = unit.bounds[c].tolist()
        slopes = unit.slopes[c].tolist()
        grid = unit.grid()[c].tolist()
        xs = probe_inputs(grid)
        x = torch.tensor(xs)
        if channels is None:
            y = unit(x.reshape(1, 1, -1, 1)).flatten()
        else:
            batch = torch.zeros(1, unit.units, len(xs), 1)
            batch[0, c, :, 0] = x
            y = unit(batch)[0, c, :, 0]
        # f32 evaluation error grows with the steepest segment: a few ulps of |slope * x|.
        width = (bounds[1] - bounds[0]) / intervals
        steepest = max([abs(b - a) / width for a, b in zip(points, points[1:])] + [abs(s) for s in slopes])
        for xi, yi in zip(xs, y.tolist()):
            expected = reference(xi, points, bounds, slopes)
            if math.isnan(expected):
                assert math.isnan(yi), xi
            elif math.isinf(expected):
                assert yi == expected, xi
            else:
                tolerance = 1e-6 * (1.0 + abs(expected) + steepest * (abs(xi) + abs(bounds[0]) + abs(bounds[1])))
                assert abs(yi - expected) <= tolerance, (xi, yi, expected)


def test_relu_initialisation_is_exact_and_nan_stays_nan():
    unit = PWLU(4, 16, bound=3.0)
    x = torch.randn(2, 4, 5, 5) * 4
    assert torch.equal(unit(x), torch.relu(x))
    x[0, 0, 0, 0] = math.nan
    assert torch.isnan(unit(x)[0, 0, 0, 0])
    layer_wise = PWLU(None, 16, bound=3.0)
    assert layer_wise(torch.tensor([-math.inf, math.inf]).reshape(1, 1, 2, 1)).flatten().tolist() == [0.0, math.inf]


def test_all_parameters_receive_gradients():
    unit = random_unit(3, 8)
    x = torch.randn(4, 3, 6, 6) * 3
    unit(x).square().sum().backward()
    for name, p in unit.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_realignment_tracks_statistics_then_resets_to_relu_on_the_new_grid():
    torch.manual_seed(4)
    unit = PWLU(2, 16, realign=True)
    unit.train()
    x = torch.randn(64, 2, 8, 8) * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1) + torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)
    for _ in range(60):
        assert torch.equal(unit(x), torch.relu(x)), "phase I behaves as ReLU"
    unit.realign_(k=3.0)
    assert unit.phase == "learn"
    assert torch.allclose(unit.bounds[:, 0], torch.tensor([0.5 - 3.0, -1.0 - 6.0]), atol=0.1)
    assert torch.allclose(unit.bounds[:, 1], torch.tensor([0.5 + 3.0, -1.0 + 6.0]), atol=0.1)
    assert torch.allclose(unit.points, unit.grid().clamp(min=0))
    assert unit.slopes.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(ValueError):
        PWLU(2, 0)


@pytest.mark.parametrize("intervals", [1, 3, 7])
def test_odd_intervals_start_as_relu_at_the_grid_points(intervals):
    # The engine takes any N from 1 to 1024; so does the module. 0 is no grid point when N is odd, so the
    # interval around it is a chord of ReLU, exactly ReLU elsewhere.
    unit = PWLU(2, intervals, bound=3.0)
    grid = unit.grid()
    assert torch.equal(unit(grid[None, :, :, None].clone())[0, :, :, 0], grid.clamp(min=0))
    x = torch.linspace(-6.0, 6.0, 241)
    y = unit(x.reshape(1, 1, -1, 1).expand(1, 2, -1, 1))[0, 0, :, 0]
    d = 6.0 / intervals
    # With an odd N the interval holding 0 is [-d/2, d/2].
    outside = x.abs() >= d / 2 + 1e-6
    assert torch.allclose(y[outside], torch.relu(x[outside]), atol=1e-5)
    assert (y >= torch.relu(x) - 1e-6).all(), "a chord of a convex function lies above it"


def test_momentum_is_the_papers():
    unit = PWLU(None, 4, realign=True)
    unit.train()
    unit(torch.full((1, 1, 4, 4), 2.0))
    assert unit.running_mean.item() == pytest.approx(0.1 * 2.0)


def test_non_uniform_matches_the_definition_and_stays_sorted():
    torch.manual_seed(3)
    unit = NonUniformPWLU(2, intervals=4)
    with torch.no_grad():
        unit.breakpoints.copy_(torch.tensor([[-2.0, -0.5, 0.0, 1.5, 3.0], [-1.0, -0.7, 0.2, 0.3, 1.0]]))
        unit.points.add_(torch.randn_like(unit.points))
        unit.slopes.copy_(torch.tensor([[0.2, 0.0], [0.0, 2.0]]))
    for c in range(2):
        grid = unit.breakpoints[c].tolist()
        xs = probe_inputs(grid)
        batch = torch.zeros(1, 2, len(xs), 1)
        batch[0, c, :, 0] = torch.tensor(xs)
        y = unit(batch)[0, c, :, 0].tolist()
        for xi, yi in zip(xs, y):
            expected = reference(xi, unit.points[c].tolist(), None, unit.slopes[c].tolist(), grid)
            if math.isnan(expected):
                assert math.isnan(yi)
            elif math.isinf(expected):
                assert yi == expected
            else:
                assert abs(yi - expected) <= 1e-5 * max(1.0, abs(expected)), (xi, yi, expected)
    with torch.no_grad():
        unit.breakpoints[0, 1], unit.breakpoints[0, 2] = 0.5, -0.5
    unit.sort_()
    assert bool((unit.breakpoints[:, 1:] > unit.breakpoints[:, :-1]).all())


def random_non_uniform(channels, intervals, seed=0):
    torch.manual_seed(seed)
    unit = NonUniformPWLU(channels, intervals, bound=2.0)
    with torch.no_grad():
        unit.breakpoints.add_(torch.rand_like(unit.breakpoints) * 0.3)
        unit.points.add_(torch.randn_like(unit.points) * 0.3)
        unit.slopes.copy_(torch.tensor([[0.1, 1.3]] * unit.units))
    return unit


@pytest.mark.parametrize("channels", [None, 3])
def test_non_uniform_parameters_receive_the_right_gradients(channels):
    # Finite differences in f64 against autograd, away from breakpoints (where the function has kinks).
    unit = random_non_uniform(channels, 5).double()
    generator = torch.Generator().manual_seed(6)
    grid = unit.breakpoints.detach().reshape(1, -1)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=generator) * 8 - 4
    while (x.reshape(-1, 1) - grid).abs().min() < 1e-3:
        x = torch.rand(x.shape, dtype=torch.float64, generator=generator) * 8 - 4
    params = (unit.breakpoints, unit.points, unit.slopes)

    def f(breakpoints, points, slopes):
        with torch.no_grad():
            unit.breakpoints.copy_(breakpoints)
            unit.points.copy_(points)
            unit.slopes.copy_(slopes)
        return unit(x).sum()

    loss = unit(x).sum()
    grads = torch.autograd.grad(loss, params)
    for which, (p, g) in enumerate(zip(params, grads)):
        assert torch.isfinite(g).all() and g.abs().sum() > 0, which
        base = [q.detach().clone() for q in params]
        for index in [tuple(i) for i in torch.nonzero(torch.ones_like(p))][:12]:
            plus = [q.clone() for q in base]
            minus = [q.clone() for q in base]
            plus[which][index] += 1e-6
            minus[which][index] -= 1e-6
            numeric = float((f(*plus) - f(*minus)).detach()) / 2e-6
            f(*base)
            assert abs(numeric - float(g[index])) <= 1e-4 * max(1.0, abs(numeric)), (which, index)


@pytest.mark.parametrize("channels", [None, 2])
def test_non_uniform_realignment_places_breakpoints_from_statistics(channels):
    torch.manual_seed(5)
    unit = NonUniformPWLU(channels, 6, realign=True)
    unit.train()
    scale = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    shift = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)
    x = torch.randn(64, 2, 8, 8) * scale + shift
    for _ in range(60):
        assert torch.equal(unit(x), torch.relu(x)), "phase I behaves as ReLU"
    with pytest.raises(Exception, match="phase I"):
        from pwlu_torch import export

        export(nn.Sequential(unit).eval(), "/dev/null", torch.zeros(1, 2, 2, 2))
    unit.realign_(k=3.0)
    assert unit.phase == "learn"
    # 60 steps of momentum 0.9 on one batch leave its own statistics (to 0.9^60 = 0.2 %).
    values = x.transpose(0, 1).reshape(2, -1) if channels else x.reshape(1, -1)
    mean, std = values.mean(dim=1), values.std(dim=1, unbiased=False)
    assert torch.allclose(unit.breakpoints[:, 0], mean - 3 * std, rtol=0.01, atol=0.01)
    assert torch.allclose(unit.breakpoints[:, -1], mean + 3 * std, rtol=0.01, atol=0.01)
    steps = unit.breakpoints[:, 1:] - unit.breakpoints[:, :-1]
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), rtol=1e-4), "evenly spaced at first"
    assert torch.equal(unit.points, unit.breakpoints.clamp(min=0))
    # Then everything learns, the breakpoints included.
    optimiser = torch.optim.SGD(unit.parameters(), lr=0.05)
    before = unit.breakpoints.detach().clone()
    target = torch.tanh(x)
    for _ in range(5):
        optimiser.zero_grad()
        (unit(x) - target).square().mean().backward()
        optimiser.step()
        unit.sort_()
    assert not torch.equal(unit.breakpoints, before)
