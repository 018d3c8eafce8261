//! A plan's activation memory, backend-neutral: when each value is live, where in which arena it lives, and
//! what that costs against the least any plan could use.
//!
//! Activations live at offsets in arenas (`place_values`): a value's bytes are free again after its last
//! reader, and values are placed largest first, each in the tightest gap left by the values live at the same
//! time. A kernel that reads all its inputs before it writes anything (the backend says which, see
//! [`Backend::reads_inputs_first`](super::Backend::reads_inputs_first)) may write its output over them.

use crate::graph::{Graph, Value};

/// Where the plan's memory goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of all activation buffers (input and output included), after reuse.
    pub activation_bytes: u64,
    /// Bytes the activations would take without reuse.
    pub unshared_activation_bytes: u64,
    /// Number of activation buffers (arenas; more than one only where one would exceed `max_buffer_size`).
    pub buffers: usize,
    /// Bytes of everything else the dispatches bind: packed weights, biases, PWLU tables.
    pub weight_bytes: u64,
    /// Bytes of the texture that convolutions and global pooling read their input through (a copy of the
    /// largest such input, rounded up to whole rows; see shaders/shared/staged_input.wgsl).
    pub staging_bytes: u64,
    /// The largest sum of two activations that are live at the same time: with the weights, the least
    /// memory any plan that keeps a layer's input and output apart could use.
    pub two_largest_live_bytes: u64,
    /// The largest sum of all activations live at one step (a residual block's skip input, a layer's input
    /// and its output): the least any plan that keeps a layer's input and output apart can use.
    pub peak_live_bytes: u64,
}

impl MemoryReport {
    /// All the GPU memory the plan holds.
    pub fn total_bytes(&self) -> u64 {
        self.weight_bytes + self.activation_bytes + self.staging_bytes
    }

    /// `total_bytes` over weights plus the two largest live activations (1.0 would be perfect reuse).
    pub fn overhead_ratio(&self) -> f64 {
        self.total_bytes() as f64 / (self.weight_bytes + self.two_largest_live_bytes).max(1) as f64
    }
}

/// Where every value of a graph lives, for one batch size.
#[derive(Debug)]
pub(crate) struct MemoryPlan {
    /// For each node, the node whose bytes hold its value (itself unless it is an alias), or the input.
    pub source: Vec<Value>,
    /// The value the graph returns, resolved like `source`.
    pub output: Value,
    /// Where each node's value is (index `i`) and where the input is (index `nodes.len()`).
    pub placement: Placement,
    /// The largest sum of two values live at one step (see [`MemoryReport::two_largest_live_bytes`]).
    pub two_largest_live_bytes: u64,
    /// The largest sum of the values live at one step (see [`MemoryReport::peak_live_bytes`]).
    pub peak_live_bytes: u64,
}

impl MemoryPlan {
    /// `value` resolved through aliases to the value whose bytes hold it.
    pub fn resolve(&self, value: Value) -> Value {
        resolve(&self.source, value)
    }
}

/// Plans the memory of `graph`'s values: `value_bytes[i]` is node `i`'s size (0 for an alias, which shares its
/// input's bytes), `input_bytes` the input's; `reads_inputs_first(i)` says whether node `i`'s kernel reads all
/// its inputs before writing, so that its output may take their bytes. Offsets are multiples of `alignment`;
/// an arena holds at most `capacity` bytes.
pub(crate) fn plan_memory(
    graph: &Graph,
    value_bytes: &[u64],
    input_bytes: u64,
    reads_inputs_first: impl Fn(usize) -> bool,
    alignment: u64,
    capacity: u64,
) -> MemoryPlan {
    let n = graph.nodes.len();
    let mut source: Vec<Value> = (0..n).map(Value::Node).collect();
    for i in 0..n {
        if graph.is_alias(i) {
            source[i] = resolve(&source, graph.nodes[i].inputs[0]);
        }
    }
    let output = resolve(&source, graph.output);
    // The last step that reads each value, and the last that reads it from its bytes: a kernel that reads its
    // inputs first has copied them out before it writes, so its output may take their bytes.
    let mut last_use = vec![0usize; n];
    let mut last_byte_use = vec![0usize; n];
    let mut input_last_use = 0;
    for (j, node) in graph.nodes.iter().enumerate() {
        let first_input = node.inputs.first().map(|&v| resolve(&source, v));
        let read_first = reads_inputs_first(j)
            && node
                .inputs
                .iter()
                .all(|&v| Some(resolve(&source, v)) == first_input);
        for &v in &node.inputs {
            match resolve(&source, v) {
                Value::Node(k) => {
                    last_use[k] = last_use[k].max(j);
                    // k < j: nodes only read earlier values.
                    let until = if read_first { j - 1 } else { j };
                    last_byte_use[k] = last_byte_use[k].max(until);
                }
                Value::Input => input_last_use = j,
            }
        }
    }
    // Nodes' values, then the graph input. A node's output is live from its step to its last reader's step,
    // both included, so it never shares bytes with the inputs it is computed from: the floor the memory report
    // compares with. The plan places values by when their bytes are last read instead.
    let lifetimes_until = |last_use: &[usize]| -> Vec<Lifetime> {
        (0..n)
            .map(|j| Lifetime {
                bytes: value_bytes[j],
                first: j,
                last: if Value::Node(j) == output {
                    n
                } else {
                    last_use[j].max(j)
                },
            })
            .chain([Lifetime {
                bytes: input_bytes,
                first: 0,
                last: if output == Value::Input {
                    n
                } else {
                    input_last_use
                },
            }])
            .collect()
    };
    let placement = place_values(&lifetimes_until(&last_byte_use), alignment, capacity);
    let (two_largest_live_bytes, peak_live_bytes) = live_bytes(&lifetimes_until(&last_use), n);
    MemoryPlan {
        source,
        output,
        placement,
        two_largest_live_bytes,
        peak_live_bytes,
    }
}

/// The largest sum of two values live at one step, and the largest sum of all values live at one step, over
/// the steps `0..steps`.
fn live_bytes(lifetimes: &[Lifetime], steps: usize) -> (u64, u64) {
    let (mut two, mut all) = (0, 0);
    for step in 0..steps {
        let mut live: Vec<u64> = lifetimes
            .iter()
            .filter(|v| v.bytes > 0 && v.first <= step && step <= v.last)
            .map(|v| v.bytes)
            .collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        two = two.max(live.iter().take(2).sum());
        all = all.max(live.iter().sum());
    }
    (two, all)
}

/// A value's bytes and the steps it is live, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lifetime {
    bytes: u64,
    first: usize,
    last: usize,
}

impl Lifetime {
    fn overlaps(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Where [`place_values`] put each value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// `(arena, byte offset)` of each value (`None` for values without bytes).
    pub of: Vec<Option<(usize, u64)>>,
    /// Bytes of each arena.
    pub arena_sizes: Vec<u64>,
}

/// Gives each value with bytes an aligned offset in an arena such that values live at the same step never
/// share a byte. Greedy by size, as TFLite plans its arena: the largest value first, each at the start of the
/// smallest gap between the values already placed that are live at the same time, or after the last of them.
/// An arena holds at most `capacity` bytes; a value that fits in none opens another.
fn place_values(values: &[Lifetime], alignment: u64, capacity: u64) -> Placement {
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| values[i].bytes > 0).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(values[i].bytes), values[i].first, i));
    let mut of = vec![None; values.len()];
    // Per arena: (offset, value) of what it holds.
    let mut arenas: Vec<Vec<(u64, usize)>> = Vec::new();
    for &i in &order {
        let value = &values[i];
        let fits = |placed: &Vec<(u64, usize)>| -> Option<u64> {
            let mut busy: Vec<(u64, u64)> = placed
                .iter()
                .filter(|&&(_, k)| values[k].overlaps(value))
                .map(|&(offset, k)| {
                    (
                        offset,
                        (offset + values[k].bytes).next_multiple_of(alignment),
                    )
                })
                .collect();
            busy.sort_unstable();
            let (mut end, mut best): (u64, Option<(u64, u64)>) = (0, None);
            for (start, stop) in busy {
                let gap = start.saturating_sub(end);
                if gap >= value.bytes && best.is_none_or(|(smallest, _)| gap < smallest) {
                    best = Some((gap, end));
                }
                end = end.max(stop);
            }
            let offset = best.map_or(end, |(_, offset)| offset);
            (offset + value.bytes <= capacity).then_some(offset)
        };
        let (arena, offset) = match arenas
            .iter()
            .enumerate()
            .find_map(|(a, placed)| fits(placed).map(|o| (a, o)))
        {
            Some(found) => found,
            None => {
                arenas.push(Vec::new());
                (arenas.len() - 1, 0)
            }
        };
        arenas[arena].push((offset, i));
        of[i] = Some((arena, offset));
    }
    let arena_sizes = arenas
        .iter()
        .map(|placed| {
            placed
                .iter()
                .map(|&(offset, k)| (offset + values[k].bytes).next_multiple_of(alignment))
                .max()
                .unwrap_or(0)
        })
        .collect();
    Placement { of, arena_sizes }
}

fn resolve(source: &[Value], v: Value) -> Value {
    match v {
        Value::Node(k) if source[k] != Value::Node(k) => resolve(source, source[k]),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::{place_values, Lifetime, Placement};

    fn lifetimes(list: &[(u64, usize, usize)]) -> Vec<Lifetime> {
        list.iter()
            .map(|&(bytes, first, last)| Lifetime { bytes, first, last })
            .collect()
    }

    /// No two values live at one step share a byte, offsets are aligned and arenas hold what they are given.
    fn check(values: &[Lifetime], placement: &Placement, alignment: u64, capacity: u64) {
        for (i, a) in values.iter().enumerate() {
            let Some((arena, offset)) = placement.of[i] else {
                assert_eq!(a.bytes, 0, "value {i} has bytes but no place");
                continue;
            };
            assert_eq!(offset % alignment, 0, "value {i} is not aligned");
            assert!(offset + a.bytes <= placement.arena_sizes[arena].min(capacity));
            for (k, b) in values.iter().enumerate().skip(i + 1) {
                if let Some((other_arena, other)) = placement.of[k] {
                    let disjoint = offset + a.bytes <= other || other + b.bytes <= offset;
                    assert!(
                        other_arena != arena || !a.overlaps(b) || disjoint,
                        "values {i} and {k} are live together and share bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn a_chain_needs_only_its_largest_neighbouring_pair() {
        // 0 -> 1 -> 2 -> 3, each read by the next; 3 is the output.
        let values = lifetimes(&[(10, 0, 1), (40, 1, 2), (20, 2, 3), (30, 3, 4)]);
        let placement = place_values(&values, 1, u64::MAX);
        check(&values, &placement, 1, u64::MAX);
        assert_eq!(placement.arena_sizes, vec![60]);
    }

    #[test]
    fn a_value_freed_early_makes_room_for_two_smaller_ones() {
        // A big value dies at step 1; two smaller values live together later and fit in its place, which
        // whole buffers per value could not do.
        let values = lifetimes(&[(100, 0, 1), (10, 1, 2), (50, 2, 3), (50, 2, 3)]);
        let placement = place_values(&values, 1, u64::MAX);
        check(&values, &placement, 1, u64::MAX);
        assert_eq!(placement.arena_sizes, vec![110]);
    }

    #[test]
    fn a_skip_connection_keeps_its_bytes_until_the_add() {
        // 0 is read by 1 and by the add 3; 2 reads 1; 3 reads 2 and 0.
        let values = lifetimes(&[(8, 0, 3), (32, 1, 2), (16, 2, 3), (8, 3, 4)]);
        let placement = place_values(&values, 1, u64::MAX);
        check(&values, &placement, 1, u64::MAX);
        assert_eq!(placement.arena_sizes, vec![8 + 32 + 16]);
    }

    #[test]
    fn offsets_are_aligned_and_values_without_bytes_get_no_place() {
        let values = lifetimes(&[(20, 0, 1), (0, 1, 1), (20, 1, 2)]);
        let placement = place_values(&values, 256, u64::MAX);
        check(&values, &placement, 256, u64::MAX);
        assert_eq!(placement.of, vec![Some((0, 0)), None, Some((0, 256))]);
    }

    #[test]
    fn values_that_do_not_fit_one_arena_open_another() {
        let values = lifetimes(&[(60, 0, 2), (60, 1, 2), (30, 2, 3)]);
        let placement = place_values(&values, 1, 100);
        check(&values, &placement, 1, 100);
        assert_eq!(placement.arena_sizes.len(), 2);
        assert!(placement.arena_sizes.iter().all(|&size| size <= 100));
    }

    #[test]
    fn random_lifetimes_never_share_live_bytes() {
        // A small linear congruential generator keeps the test deterministic without a dependency.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % bound
        };
        for _ in 0..200 {
            let count = 1 + next(30) as usize;
            let values: Vec<Lifetime> = (0..count)
                .map(|first| Lifetime {
                    bytes: next(5) * 16 * (1 + next(64)),
                    first,
                    last: first + next(6) as usize,
                })
                .collect();
            let alignment = [16, 256][next(2) as usize];
            let capacity = 64 * 16 * 8;
            let placement = place_values(&values, alignment, capacity);
            check(&values, &placement, alignment, capacity);
        }
    }
}
