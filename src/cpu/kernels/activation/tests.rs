//! The gather-free lookups (`avx512.rs`, `avx2.rs`) against the gather path, value for value, and what each
//! costs.

use std::cell::Cell;
use std::sync::Arc;

use super::{Permutes, PwluRows, RowActivation};
use crate::cpu::kernels::simd::{detected, limit_this_thread, Isa};
use crate::ops::{Activation, Pwlu, ResidualAdd};

thread_local! {
    /// Set: this thread's kernels take the portable path (gathers, or counting sorted breakpoints) where the
    /// permutes or the search would run, to compare the two.
    pub(super) static GATHERS_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// The permute kernels this CPU runs, with the instruction-set limit that selects each.
fn permute_kernels() -> Vec<(Isa, Permutes)> {
    let mut kernels = vec![];
    if detected() == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512dq") {
        kernels.push((Isa::Avx512, Permutes::Avx512));
    }
    if detected() >= Isa::Avx2Fma {
        kernels.push((Isa::Avx2Fma, Permutes::Avx2));
    }
    kernels
}

/// A small deterministic generator (xorshift), values in [0, 1).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.unit()
    }
}

/// A uniform PWLU with random bounds and points, some flat tails and some flat interior segments, and
/// the values where it changes segment (every grid point and the floats beside each bound).
fn random_pwlu(rng: &mut Rng, units: usize, intervals: usize) -> (Arc<Pwlu>, Vec<f32>) {
    let (mut bounds, mut points, mut slopes, mut edges) = (vec![], vec![], vec![], vec![]);
    for unit in 0..units {
        let center = rng.uniform(-1.0, 1.0);
        let half = rng.uniform(0.5, 4.0);
        let (left, right) = (center - half, center + half);
        bounds.push([left, right]);
        let mut previous = 0.0;
        for i in 0..=intervals {
            let y = if i > 0 && unit % 2 == 0 && i % 3 == 0 {
                previous
            } else {
                rng.uniform(-2.0, 3.0)
            };
            points.push(y);
            previous = y;
            edges.push(left + (right - left) * i as f32 / intervals as f32);
        }
        let tail = |rng: &mut Rng, flat: bool| if flat { 0.0 } else { rng.uniform(-0.5, 1.5) };
        slopes.push([tail(rng, unit % 3 == 0), tail(rng, unit % 4 == 1)]);
        for bound in [left, right] {
            edges.extend([
                bound,
                f32::from_bits(bound.to_bits() - 1),
                f32::from_bits(bound.to_bits() + 1),
            ]);
        }
    }
    // Cannot fail: finite bounds with left < right (half >= 0.5), N + 1 finite points and two finite
    // slopes per unit, built above.
    let pwlu = Pwlu::uniform(intervals, bounds, points, slopes).expect("a valid random PWLU");
    (Arc::new(pwlu), edges)
}

/// One input of an epilogue: whole pixels of values, the bias, the residual and how it is added.
struct Case<'a> {
    pixels: usize,
    input: &'a [f32],
    bias: Option<&'a [f32]>,
    residual: &'a [f32],
    mode: ResidualAdd,
}

/// `check` on every case for `channels` channels: 1 to 40 pixels whose values mix `edges`, infinities, NaN,
/// zeros of both signs, tiny and huge values and random ones, each residual mode with and without a bias.
fn for_each_case(rng: &mut Rng, channels: usize, edges: &[f32], mut check: impl FnMut(&Case)) {
    let specials = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        1e-40,
    ];
    for pixels in [1, 7, 16, 17, 40] {
        let len = pixels * channels;
        let input: Vec<f32> = (0..len)
            .map(|i| match i % 5 {
                0 | 3 => edges[(i * 7) % edges.len()],
                1 => specials[(i / 5) % specials.len()],
                _ => rng.uniform(-8.0, 8.0),
            })
            .collect();
        let bias: Vec<f32> = (0..channels).map(|_| rng.uniform(-0.5, 0.5)).collect();
        let residual: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
        for mode in [
            ResidualAdd::None,
            ResidualAdd::BeforeActivation,
            ResidualAdd::AfterActivation,
        ] {
            for bias in [None, Some(&bias[..])] {
                check(&Case {
                    pixels,
                    input: &input,
                    bias,
                    residual: &residual,
                    mode,
                });
            }
        }
    }
}

/// Asserts that `a` and `b` hold the same values (NaN for NaN), `what` naming the pair at a failing index.
fn assert_same(a: &[f32], b: &[f32], what: impl Fn(usize) -> String) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{}: {x} against {y}",
            what(i)
        );
    }
}

#[test]
fn the_gather_free_lookups_give_the_values_of_the_gathers() {
    let kernels = permute_kernels();
    if kernels.is_empty() {
        eprintln!("this CPU has no AVX2: the gather-free lookups were not run");
        return;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (channels, intervals, one unit for the layer): whole and partial groups of 8 and 16 channels, blocks of
    // 64, the fewest and the most segments the permutes take (1 to 4 AVX2 registers, 1 or 2 AVX-512 ones).
    for (channels, intervals, layer_wise) in [
        (16, 16, false),
        (37, 16, false),
        (80, 30, false),
        (48, 1, false),
        (21, 5, true),
        (64, 16, true),
        (130, 14, false),
        (19, 6, false),
        (9, 22, false),
    ] {
        let units = if layer_wise { 1 } else { channels };
        let (pwlu, edges) = random_pwlu(&mut rng, units, intervals);
        let act = RowActivation::new(&Activation::Pwlu(pwlu), channels);
        let Some(PwluRows::Uniform(uniform)) = &act.pwlu else {
            panic!("a uniform PWLU is laid out as one");
        };
        for &(isa, how) in &kernels {
            limit_this_thread(isa);
            let permuted = uniform.permuted().map(|(_, how)| how);
            limit_this_thread(Isa::Avx512);
            assert_eq!(permuted, Some(how), "{channels} channels, N = {intervals}");
        }
        for_each_case(&mut rng, channels, &edges, |case| {
            let run = |isa, gathers| {
                limit_this_thread(isa);
                GATHERS_ONLY.set(gathers);
                let mut rows = case.input.to_vec();
                act.finish_rows(&mut rows, case.bias, Some(case.residual), case.mode);
                GATHERS_ONLY.set(false);
                limit_this_thread(Isa::Avx512);
                rows
            };
            for &(isa, how) in &kernels {
                assert_same(&run(isa, false), &run(isa, true), |i| {
                    format!(
                        "{how:?}: {channels} channels, N = {intervals}, {} pixels, {:?}, bias {}: \
                         value {i} (x = {}) without gathers and with",
                        case.pixels,
                        case.mode,
                        case.bias.is_some(),
                        case.input[i],
                    )
                });
            }
        });
    }
}

/// A PWLU with sorted breakpoints at random gaps (some a few floats wide), flat segments and tails, and the
/// values where it changes segment (every breakpoint and the floats beside it).
fn random_sorted_pwlu(rng: &mut Rng, units: usize, intervals: usize) -> (Arc<Pwlu>, Vec<f32>) {
    let (mut breakpoints, mut points, mut slopes, mut edges) = (vec![], vec![], vec![], vec![]);
    for unit in 0..units {
        let mut at = rng.uniform(-4.0, 0.0);
        let mut previous = 0.0;
        for i in 0..=intervals {
            breakpoints.push(at);
            edges.extend([at, at.next_down(), at.next_up()]);
            let y = if i > 0 && unit % 2 == 0 && i % 3 == 0 {
                previous
            } else {
                rng.uniform(-2.0, 3.0)
            };
            points.push(y);
            previous = y;
            // Every fifth gap a few floats wide, the rest up to a unit.
            at = if i % 5 == 4 {
                at.next_up().next_up().next_up()
            } else {
                at + rng.uniform(0.01, 1.0)
            };
        }
        let tail = |rng: &mut Rng, flat: bool| if flat { 0.0 } else { rng.uniform(-0.5, 1.5) };
        slopes.push([tail(rng, unit % 3 == 0), tail(rng, unit % 4 == 1)]);
    }
    // Cannot fail: N + 1 finite, strictly increasing breakpoints per unit (each gap at least three floats),
    // N + 1 finite points and two finite slopes.
    let pwlu =
        Pwlu::non_uniform(intervals, breakpoints, points, slopes).expect("a valid sorted PWLU");
    (Arc::new(pwlu), edges)
}

/// The AVX-512 search over sorted breakpoints and the count of them give the values of each other and of the
/// table's binary search, value for value, at every breakpoint and its neighbours, infinities and NaN, with and
/// without a bias and a residual.
#[test]
fn the_sorted_search_and_count_give_the_values_of_the_binary_search() {
    let search = detected() == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512dq");
    if !search {
        eprintln!("this CPU has no AVX-512 (F, VL, DQ): only the count was run");
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for (channels, intervals, layer_wise) in [
        (16, 16, false),
        (37, 6, false),
        (80, 30, false),
        (48, 1, false),
        (21, 5, true),
        (64, 16, true),
        (19, 29, false),
    ] {
        let units = if layer_wise { 1 } else { channels };
        let (pwlu, edges) = random_sorted_pwlu(&mut rng, units, intervals);
        let act = RowActivation::new(&Activation::Pwlu(Arc::clone(&pwlu)), channels);
        let Some(PwluRows::NonUniform {
            columns, sorted, ..
        }) = &act.pwlu
        else {
            panic!("a sorted PWLU is laid out as one");
        };
        assert!(
            columns.is_some() && sorted.is_some() == search,
            "{channels} channels, N = {intervals}"
        );
        for_each_case(&mut rng, channels, &edges, |case| {
            let run = |binary_search| {
                GATHERS_ONLY.set(binary_search);
                let mut rows = case.input.to_vec();
                act.finish_rows(&mut rows, case.bias, Some(case.residual), case.mode);
                GATHERS_ONLY.set(false);
                rows
            };
            let describe = |i: usize| {
                format!(
                    "{channels} channels, N = {intervals}, {} pixels, {:?}, bias {}: value {i} (x = {})",
                    case.pixels,
                    case.mode,
                    case.bias.is_some(),
                    case.input[i],
                )
            };
            // Without AVX-512 both runs count.
            let (searched, counted) = (run(false), run(true));
            assert_same(&searched, &counted, |i| {
                format!("{} by the search and by counting", describe(i))
            });
            if case.mode != ResidualAdd::None {
                return;
            }
            // And both are the table's binary search.
            let table: Vec<f32> = (0..case.input.len())
                .map(|i| {
                    let c = i % channels;
                    let x = case.input[i] + case.bias.map_or(0.0, |b| b[c]);
                    pwlu.table().lookup(pwlu.unit_for_channel(c), x)
                })
                .collect();
            assert_same(&counted, &table, |i| {
                format!("{} by counting and by the table", describe(i))
            });
        });
    }
}

/// A grid four floats wide, far from zero: `|left| / d` is about 2^26, where `x * inv_d + origin` is off by
/// segments (with it, this test fails), so the lookup takes the spec's `(x - left) * inv_d` and the gathers,
/// and gives the reference's values on every float of the interior and beside it. With a fused multiply-add
/// only: the non-fused `slope * x + intercept` of a segment this steep loses the value itself.
#[test]
fn a_grid_far_from_zero_takes_the_exact_coordinate() {
    if detected() < Isa::Avx2Fma {
        eprintln!("this CPU has no FMA: the lookup far from zero was not run");
        return;
    }
    let left = 1000.1f32;
    let right = f32::from_bits(left.to_bits() + 4);
    let intervals = 13;
    let mut rng = Rng(11);
    let points: Vec<f32> = (0..=intervals).map(|_| rng.uniform(-3.0, 3.0)).collect();
    // Cannot fail: finite bounds four floats apart (d = 2^-12 / 13, normal), 14 finite points.
    let pwlu = Pwlu::uniform(intervals, vec![[left, right]], points, vec![[0.5, 2.0]])
        .expect("a valid PWLU");
    let pwlu = Arc::new(pwlu);
    let act = RowActivation::new(&Activation::Pwlu(Arc::clone(&pwlu)), 1);
    let Some(PwluRows::Uniform(uniform)) = &act.pwlu else {
        panic!("a uniform PWLU is laid out as one");
    };
    assert!(!uniform.fused_index);
    assert!(uniform.permuted().is_none());
    let input: Vec<f32> = (-3..8)
        .map(|k| f32::from_bits((left.to_bits() as i32 + k) as u32))
        .collect();
    for isa in [Isa::Avx512, Isa::Avx2Fma]
        .into_iter()
        .filter(|&isa| isa <= detected())
    {
        limit_this_thread(isa);
        let mut rows = input.clone();
        act.finish_rows(&mut rows, None, None, ResidualAdd::None);
        limit_this_thread(Isa::Avx512);
        for (&x, &y) in input.iter().zip(&rows) {
            let expected = pwlu.table().lookup(0, x);
            assert!(
                (y - expected).abs() <= 1e-4 * (1.0 + expected.abs()),
                "{isa:?}: x = {x} gives {y}, the reference {expected}"
            );
        }
    }
}

/// The shape `lookup_cost_per_value` times: `PWLU_LOOKUP_SHAPE=CHANNELS,PIXELS[,PIXELS_PER_CALL]`, by default
/// 96 channels by 64 pixels in one call (a block that stays in the L1 cache). Calls of fewer pixels than a
/// tile show what a layer's partial tiles cost (7 x 7 outputs split between threads, rows of 7 or 14 pixels).
fn lookup_cost_shape() -> (usize, usize, usize) {
    let Some(shape) = std::env::var("PWLU_LOOKUP_SHAPE")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        return (96, 64, 64);
    };
    let numbers: Option<Vec<usize>> = shape.split(',').map(|n| n.trim().parse().ok()).collect();
    match numbers.as_deref() {
        Some(&[channels, pixels]) if channels > 0 && pixels > 0 => (channels, pixels, pixels),
        Some(&[channels, pixels, per_call]) if channels > 0 && pixels > 0 && per_call > 0 => {
            (channels, pixels, per_call)
        }
        _ => panic!(
            "PWLU_LOOKUP_SHAPE={shape:?}: expected CHANNELS,PIXELS[,PIXELS_PER_CALL], all above 0"
        ),
    }
}

/// Not a test: the cost per value of the epilogue, ReLU6 against the PWLU by permutes and by gathers
/// (docs/cpu.md), on the shape [`lookup_cost_shape`] reads. `cargo test --release --lib lookup_cost --
/// --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints figures, asserts nothing"]
fn lookup_cost_per_value() {
    if permute_kernels().is_empty() {
        eprintln!("this CPU has no AVX2");
        return;
    }
    let (channels, pixels, per_call) = lookup_cost_shape();
    // About 50 million values per timing, whatever the shape.
    let rounds = (50_000_000 / (channels * pixels)).max(1);
    let mut rng = Rng(7);
    // Points inside the bounds, so that repeated rounds stay inside them (no drift to infinity).
    let bounds = (0..channels).map(|_| {
        let center = rng.uniform(-0.5, 0.5);
        [center - 2.0, center + 2.0]
    });
    let bounds: Vec<[f32; 2]> = bounds.collect();
    let points = (0..channels * 17).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let slopes = (0..channels).map(|_| [rng.uniform(0.0, 0.5), rng.uniform(0.5, 1.5)]);
    // Cannot fail: bounds 4 apart, 17 finite points and two finite slopes per channel.
    let pwlu = Pwlu::uniform(16, bounds, points, slopes.collect()).expect("a valid PWLU");
    let pwlu = Arc::new(pwlu);
    let input: Vec<f32> = (0..channels * pixels)
        .map(|_| rng.uniform(-4.0, 4.0))
        .collect();
    // A convolution's epilogue adds its bias first: tiny, so that repeated rounds stay inside the bounds.
    let bias: Vec<f32> = (0..channels).map(|c| c as f32 * 1e-7).collect();
    let time = |act: &RowActivation, bias: Option<&[f32]>| {
        let mut best = f64::INFINITY;
        let mut rows = input.clone();
        for _ in 0..5 {
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                for part in rows.chunks_mut(per_call * channels) {
                    act.finish_rows(part, bias, None, ResidualAdd::None);
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        best / (channels * pixels * rounds) as f64 * 1e9
    };
    // The same unit for every channel: the first unit of the one above.
    let first = pwlu
        .unit(0)
        .map(|unit| (unit.bounds, unit.points.to_vec(), unit.slopes));
    // Cannot fail: the valid uniform PWLU above has a unit 0, with bounds.
    let (first_bounds, first_points, first_slopes) = first.expect("a unit");
    let first_bounds = first_bounds.expect("a uniform unit");
    let layer_wise = Pwlu::uniform(16, vec![first_bounds], first_points, vec![first_slopes]);
    // Cannot fail: that unit's own valid bounds, points and slopes.
    let layer_wise = Activation::Pwlu(Arc::new(layer_wise.expect("a valid PWLU")));
    // The same units with their grids as sorted breakpoints.
    let sorted = {
        let units = (0..channels).filter_map(|u| pwlu.unit(u));
        let grid = |unit: crate::ops::pwlu::PwluUnit| {
            let [left, right] = unit.bounds.unwrap_or_default();
            (0..=16).map(move |i| left + (right - left) * i as f32 / 16.0)
        };
        let breakpoints = units.clone().flat_map(grid).collect();
        let points = units
            .clone()
            .flat_map(|unit| unit.points.to_vec())
            .collect();
        let slopes = units.map(|unit| unit.slopes).collect();
        // Cannot fail: 17 strictly increasing grid points 0.25 apart, and the valid units' points and slopes.
        Pwlu::non_uniform(16, breakpoints, points, slopes).expect("a valid sorted PWLU")
    };
    let sorted = Activation::Pwlu(Arc::new(sorted));
    let pwlu = Activation::Pwlu(pwlu);
    let mut cases = vec![("ReLU6".to_string(), Activation::Relu6, Isa::Avx512, false)];
    if detected() == Isa::Avx512 {
        let name = "sorted, Avx512 search".to_string();
        cases.push((name, sorted.clone(), Isa::Avx512, false));
    }
    for (isa, _) in permute_kernels() {
        cases.push((
            format!("sorted, {isa:?} counted"),
            sorted.clone(),
            isa,
            true,
        ));
    }
    for (isa, how) in permute_kernels() {
        cases.push((format!("PWLU, {how:?} permutes"), pwlu.clone(), isa, false));
        cases.push((format!("PWLU, {isa:?} gathers"), pwlu.clone(), isa, true));
        cases.push((
            format!("layer-wise, {how:?} permutes"),
            layer_wise.clone(),
            isa,
            false,
        ));
    }
    for (name, activation, isa, gathers) in cases {
        let act = RowActivation::new(&activation, channels);
        limit_this_thread(isa);
        GATHERS_ONLY.set(gathers);
        let (ns, with_bias) = (time(&act, None), time(&act, Some(&bias)));
        GATHERS_ONLY.set(false);
        limit_this_thread(Isa::Avx512);
        println!("{name:>24}: {ns:.3} ns per value, {with_bias:.3} with a bias");
    }
}
