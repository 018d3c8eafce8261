//! The Piecewise Linear Unit: its parameters, their validation, the defining formula in f64, and the packed
//! lookup table that the GPU kernels (and their CPU twin, `reference::activation::pwlu_lookup`) evaluate.
//!
//! Semantics (see `docs/pwlu.md`): left tail iff `x < B_L`, right tail iff `x >= B_R`, the interior index is
//! clamped to `N - 1`, NaN in gives NaN out, and `±inf` on a tail of slope 0 gives that tail's constant value (the
//! limit), not the `0 * inf = NaN` that a literal evaluation of the formula would produce.

use crate::error::{Error, Result};

/// The largest number of intervals a unit may have. The paper uses 16; the journal's non-uniform units use 4.
pub const MAX_INTERVALS: usize = 1024;

/// Where the breakpoints of a unit lie.
#[derive(Clone, Debug, PartialEq)]
pub enum Grid {
    /// `N` equal intervals on `[B_L, B_R]`, one `[B_L, B_R]` pair per unit.
    Uniform {
        /// `(B_L, B_R)` per unit.
        bounds: Vec<[f32; 2]>,
    },
    /// `N + 1` strictly increasing breakpoints per unit (the journal version's non-uniform PWLU).
    NonUniform {
        /// `units x (N + 1)` breakpoints, row-major.
        breakpoints: Vec<f32>,
    },
}

/// The parameters of one PWLU activation site: one unit per channel (channel-wise) or one for the whole
/// tensor (layer-wise).
#[derive(Clone, Debug, PartialEq)]
pub struct Pwlu {
    intervals: usize,
    units: usize,
    grid: Grid,
    points: Vec<f32>,
    slopes: Vec<[f32; 2]>,
    /// The lookup form, packed once when the parameters are validated.
    table: PwluTable,
}

/// One unit's parameters, borrowed from a [`Pwlu`].
#[derive(Clone, Copy, Debug)]
pub struct PwluUnit<'a> {
    /// `Y_0..Y_N`.
    pub points: &'a [f32],
    /// `(K_L, K_R)`.
    pub slopes: [f32; 2],
    /// `(B_L, B_R)` for a uniform unit.
    pub bounds: Option<[f32; 2]>,
    /// The sorted breakpoints of a non-uniform unit.
    pub breakpoints: Option<&'a [f32]>,
}

impl Pwlu {
    /// A uniform PWLU: `bounds` and `slopes` have one entry per unit, `points` has `N + 1` values per unit.
    pub fn uniform(
        intervals: usize,
        bounds: Vec<[f32; 2]>,
        points: Vec<f32>,
        slopes: Vec<[f32; 2]>,
    ) -> Result<Self> {
        let pwlu = Pwlu {
            intervals,
            units: bounds.len(),
            grid: Grid::Uniform { bounds },
            points,
            slopes,
            table: PwluTable::empty(),
        };
        pwlu.validated()
    }

    /// A non-uniform PWLU: `breakpoints` and `points` have `N + 1` values per unit, `slopes` one pair per unit.
    pub fn non_uniform(
        intervals: usize,
        breakpoints: Vec<f32>,
        points: Vec<f32>,
        slopes: Vec<[f32; 2]>,
    ) -> Result<Self> {
        let pwlu = Pwlu {
            intervals,
            units: slopes.len(),
            grid: Grid::NonUniform { breakpoints },
            points,
            slopes,
            table: PwluTable::empty(),
        };
        pwlu.validated()
    }

    /// The paper's initialisation: ReLU on `[-bound, bound]` with `N` (even) intervals, exact.
    pub fn relu(units: usize, intervals: usize, bound: f32) -> Result<Self> {
        if !intervals.is_multiple_of(2) {
            return Err(Error::InvalidPwlu(format!(
                "ReLU needs an even number of intervals so that 0 is a grid point, got {intervals}"
            )));
        }
        Self::from_fn(units, intervals, [-bound, bound], [0.0, 1.0], |x| {
            x.max(0.0)
        })
    }

    /// ReLU6 as an exact PWLU: 16 intervals on `[-2, 6]` (both kinks on grid points), flat tails.
    pub fn relu6(units: usize) -> Result<Self> {
        Self::from_fn(units, 16, [-2.0, 6.0], [0.0, 0.0], |x| x.clamp(0.0, 6.0))
    }

    /// A uniform PWLU whose points sample `f` on the grid, the same in every unit.
    pub fn from_fn(
        units: usize,
        intervals: usize,
        bounds: [f32; 2],
        slopes: [f32; 2],
        f: impl Fn(f64) -> f64,
    ) -> Result<Self> {
        let [left, right] = bounds.map(f64::from);
        let d = (right - left) / intervals.max(1) as f64;
        let row: Vec<f32> = (0..=intervals)
            .map(|i| f(left + i as f64 * d) as f32)
            .collect();
        let points = row
            .iter()
            .copied()
            .cycle()
            .take(row.len() * units)
            .collect();
        Self::uniform(intervals, vec![bounds; units], points, vec![slopes; units])
    }

    /// Checks the parameters and packs the lookup table.
    fn validated(mut self) -> Result<Self> {
        let n = self.intervals;
        if n == 0 || n > MAX_INTERVALS {
            return Err(Error::InvalidPwlu(format!(
                "the number of intervals must be 1 to {MAX_INTERVALS}, got {n}"
            )));
        }
        if self.units == 0 {
            return Err(Error::InvalidPwlu("a PWLU needs at least one unit".into()));
        }
        let per_unit = |what: &str, len: usize, each: usize| -> Result<()> {
            if Some(len) != self.units.checked_mul(each) {
                return Err(Error::InvalidPwlu(format!(
                    "{what} has {len} values, expected {} units x {each}",
                    self.units
                )));
            }
            Ok(())
        };
        per_unit("points", self.points.len(), n + 1)?;
        per_unit("slopes", self.slopes.len(), 1)?;
        if let Some(i) = self.points.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidPwlu(format!(
                "point {} of unit {} is {}",
                i % (n + 1),
                i / (n + 1),
                self.points[i]
            )));
        }
        if let Some(u) = self
            .slopes
            .iter()
            .position(|s| !s.iter().all(|v| v.is_finite()))
        {
            return Err(Error::InvalidPwlu(format!(
                "tail slopes of unit {u} are {:?}",
                self.slopes[u]
            )));
        }
        match &self.grid {
            Grid::Uniform { bounds } => {
                for (u, &[left, right]) in bounds.iter().enumerate() {
                    let width = f64::from(right) - f64::from(left);
                    if !(left.is_finite() && right.is_finite() && left < right) {
                        return Err(Error::InvalidPwlu(format!(
                            "unit {u} needs finite bounds with B_L < B_R, got B_L = {left}, B_R = {right}"
                        )));
                    }
                    if !((width / n as f64) as f32).is_normal()
                        || !((n as f64 / width) as f32).is_finite()
                    {
                        return Err(Error::InvalidPwlu(format!(
                            "unit {u}: interval width ({right} - {left}) / {n} is not representable in f32"
                        )));
                    }
                }
            }
            Grid::NonUniform { breakpoints } => {
                per_unit("breakpoints", breakpoints.len(), n + 1)?;
                for (u, row) in breakpoints.chunks(n + 1).enumerate() {
                    if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                        return Err(Error::InvalidPwlu(format!(
                            "breakpoint {i} of unit {u} is {}",
                            row[i]
                        )));
                    }
                    if let Some(i) = row.windows(2).position(|w| w[0] >= w[1]) {
                        return Err(Error::InvalidPwlu(format!(
                            "breakpoints of unit {u} must be strictly increasing, but breakpoint {i} = {} >= breakpoint {} = {}",
                            row[i],
                            i + 1,
                            row[i + 1]
                        )));
                    }
                }
            }
        }
        // The lookup form must be representable too (huge rises over tiny intervals overflow f32).
        let table = PwluTable::pack(&self);
        if let Some(i) = table.data.iter().position(|v| !v.is_finite()) {
            let unit = i / table.stride();
            return Err(Error::InvalidPwlu(format!(
                "unit {unit}: a segment's slope or intercept overflows f32"
            )));
        }
        self.table = table;
        Ok(self)
    }

    /// Number of intervals `N`.
    pub fn intervals(&self) -> usize {
        self.intervals
    }

    /// Number of units: 1 for layer-wise, the channel count for channel-wise.
    pub fn units(&self) -> usize {
        self.units
    }

    /// True for a single unit shared by all channels.
    pub fn is_layer_wise(&self) -> bool {
        self.units == 1
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// One unit's parameters; `None` if `unit` is out of range.
    pub fn unit(&self, unit: usize) -> Option<PwluUnit<'_>> {
        if unit >= self.units {
            return None;
        }
        let n1 = self.intervals + 1;
        let (bounds, breakpoints) = match &self.grid {
            Grid::Uniform { bounds } => (Some(bounds[unit]), None),
            Grid::NonUniform { breakpoints } => (None, Some(&breakpoints[unit * n1..][..n1])),
        };
        Some(PwluUnit {
            points: &self.points[unit * n1..][..n1],
            slopes: self.slopes[unit],
            bounds,
            breakpoints,
        })
    }

    /// The unit that channel `channel` uses.
    pub fn unit_for_channel(&self, channel: usize) -> usize {
        if self.is_layer_wise() {
            0
        } else {
            channel
        }
    }

    /// The defining formula, evaluated in f64 (point-slope form, division by `d`). This is the ground truth the
    /// lookup form is tested against; it is not used for inference.
    pub fn eval_f64(&self, unit: usize, x: f64) -> f64 {
        let Some(p) = self.unit(unit) else {
            return f64::NAN;
        };
        let n = self.intervals;
        let y = |i: usize| f64::from(p.points[i]);
        let [k_left, k_right] = p.slopes.map(f64::from);
        let grid_point = |i: usize| match (p.bounds, p.breakpoints) {
            (Some([l, r]), _) => {
                let (l, r) = (f64::from(l), f64::from(r));
                l + i as f64 * (r - l) / n as f64
            }
            (_, Some(b)) => f64::from(b[i]),
            _ => f64::NAN,
        };
        let (left, right) = (grid_point(0), grid_point(n));
        // The limit at infinity on a flat tail; see the module documentation.
        let tail = |value: f64, slope: f64, dx: f64| {
            if slope == 0.0 && dx.is_infinite() {
                value
            } else {
                value + slope * dx
            }
        };
        if x < left {
            return tail(y(0), k_left, x - left);
        }
        if x >= right {
            return tail(y(n), k_right, x - right);
        }
        if x.is_nan() {
            return f64::NAN;
        }
        let i = match p.bounds {
            Some(_) => {
                let d = (right - left) / n as f64;
                (((x - left) / d).floor() as usize).min(n - 1)
            }
            None => (0..n).rev().find(|&i| grid_point(i) <= x).unwrap_or(0),
        };
        let (x0, x1) = (grid_point(i), grid_point(i + 1));
        y(i) + (y(i + 1) - y(i)) / (x1 - x0) * (x - x0)
    }

    /// The packed lookup form the kernels read (built once, at construction).
    pub fn table(&self) -> &PwluTable {
        &self.table
    }
}

/// A PWLU in lookup form, packed as the kernels read it.
///
/// Per unit, `stride()` floats: `[B_L, B_R, 1/d, 0]`, then `N + 2` segments (left tail, the `N` interior
/// segments, right tail) as `[slope, intercept, 0, 0]`, one texel each, then for a non-uniform unit its `N + 1`
/// breakpoints, then zeros up to a multiple of 4 floats. Slopes and intercepts are computed in f64 and rounded
/// once.
#[derive(Clone, Debug, PartialEq)]
pub struct PwluTable {
    intervals: usize,
    units: usize,
    uniform: bool,
    data: Vec<f32>,
}

/// Floats before the segments in each unit's record.
pub const PWLU_HEADER_LEN: usize = 4;

/// Floats per segment in a record: `[slope, intercept, 0, 0]`, one texel, so that the kernels read a segment
/// with one fetch and no choice between the halves of a texel.
pub const PWLU_SEGMENT_LEN: usize = 4;

impl PwluTable {
    fn empty() -> Self {
        PwluTable {
            intervals: 0,
            units: 0,
            uniform: true,
            data: Vec::new(),
        }
    }

    fn pack(pwlu: &Pwlu) -> Self {
        let n = pwlu.intervals;
        let uniform = matches!(pwlu.grid, Grid::Uniform { .. });
        let mut table = PwluTable {
            intervals: n,
            units: pwlu.units,
            uniform,
            data: Vec::new(),
        };
        table.data.reserve(table.stride() * pwlu.units);
        for unit in 0..pwlu.units {
            let Some(p) = pwlu.unit(unit) else { break };
            let grid: Vec<f64> = match (p.bounds, p.breakpoints) {
                (Some([l, r]), _) => {
                    let (l, r) = (f64::from(l), f64::from(r));
                    (0..=n).map(|i| l + i as f64 * (r - l) / n as f64).collect()
                }
                (_, Some(b)) => b.iter().map(|&v| f64::from(v)).collect(),
                _ => break,
            };
            let (left, right) = (grid[0], grid[n]);
            let y: Vec<f64> = p.points.iter().map(|&v| f64::from(v)).collect();
            let inv_d = if uniform {
                n as f64 / (right - left)
            } else {
                0.0
            };
            table
                .data
                .extend([left as f32, right as f32, inv_d as f32, 0.0]);
            let [k_left, k_right] = p.slopes.map(f64::from);
            let mut segment = |slope: f64, x0: f64, y0: f64| {
                table
                    .data
                    .extend([slope as f32, (y0 - slope * x0) as f32, 0.0, 0.0]);
            };
            segment(k_left, left, y[0]);
            for i in 0..n {
                segment((y[i + 1] - y[i]) / (grid[i + 1] - grid[i]), grid[i], y[i]);
            }
            segment(k_right, right, y[n]);
            if !uniform {
                table.data.extend(grid.iter().map(|&v| v as f32));
            }
            table.data.resize((unit + 1) * table.stride(), 0.0);
        }
        table
    }

    /// Number of intervals `N`.
    /// Unit `unit` at `x`, as every kernel evaluates it (`pwlu4()` in shaders/shared/activation.wgsl, NaN
    /// passed through): the segment's slope and intercept, found by interval arithmetic on a uniform grid and
    /// by binary search over the breakpoints otherwise.
    pub fn lookup(&self, unit: usize, x: f32) -> f32 {
        if x.is_nan() {
            return x;
        }
        let n = self.intervals();
        let record = &self.data()[unit * self.stride()..][..self.stride()];
        let (left, right, inv_d) = (record[0], record[1], record[2]);
        let segment = if x < left {
            0
        } else if x >= right {
            n + 1
        } else if self.is_uniform() {
            // The shader's floor and clamp to [0, N - 1] in f32: for x >= B_L the product is >= 0, so truncation
            // is the floor, and `as` saturates like the clamp.
            1 + (((x - left) * inv_d) as usize).min(n - 1)
        } else {
            let breakpoints = &record[self.breakpoints_offset()..];
            let (mut lo, mut hi) = (0, n);
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if breakpoints[mid] <= x {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            1 + lo
        };
        let at = Self::segment_offset(segment);
        let (slope, intercept) = (record[at], record[at + 1]);
        // A flat segment gives its value, also at +-inf (its limit, where the formula gives 0 * inf = NaN).
        if slope == 0.0 {
            intercept
        } else {
            slope.mul_add(x, intercept)
        }
    }

    pub fn intervals(&self) -> usize {
        self.intervals
    }

    /// Number of units.
    pub fn units(&self) -> usize {
        self.units
    }

    /// Uniform grid (O(1) index) or sorted breakpoints (binary search).
    pub fn is_uniform(&self) -> bool {
        self.uniform
    }

    /// Floats per unit: a whole number of vec4s (texels).
    pub fn stride(&self) -> usize {
        (self.breakpoints_offset() + if self.uniform { 0 } else { self.intervals + 1 })
            .next_multiple_of(4)
    }

    /// Where segment `segment` (0: left tail, 1 to `N`: interior, `N + 1`: right tail) starts in a record.
    pub fn segment_offset(segment: usize) -> usize {
        PWLU_HEADER_LEN + PWLU_SEGMENT_LEN * segment
    }

    /// Where a non-uniform unit's breakpoints start in its record.
    pub fn breakpoints_offset(&self) -> usize {
        Self::segment_offset(self.intervals + 2)
    }

    /// The packed floats, `units * stride()` of them.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}
