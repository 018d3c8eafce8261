//! The CPU backend as lowering sees it ([`crate::plan::Backend`]): NHWC values in host arenas, and a kernel
//! with its packed weights for each node.

use std::collections::HashMap;
use std::sync::Arc;

use super::arena::{Arena, CpuValue};
use super::kernels::activation::RowActivation;
use super::kernels::channels::Selection;
use super::kernels::conv::{ConvChoice, ConvKernel, ConvWeights};
use super::CpuContext;
use crate::error::{Error, Result};
use crate::ops::{BinaryOp, Conv2d, LayerNorm, Pool2d};
use crate::plan::{Backend, HeldBytes, Kernel};
use crate::tensor::Shape;

/// What a step computes.
#[derive(Debug)]
pub(crate) enum StepKernel {
    Conv(ConvKernel),
    /// An activation, after a per-channel affine map where the node is a batch norm.
    ScaleShift {
        activation: RowActivation,
        scale_shift: Option<(Vec<f32>, Vec<f32>)>,
    },
    Binary(BinaryOp, RowActivation),
    Pool(Pool2d),
    GlobalAvgPool,
    Flatten,
    AdaptiveAvgPool,
    CopyChannels {
        offset: usize,
    },
    SelectChannels(Selection),
    LayerNorm(LayerNorm),
}

/// A kernel bound to its operands.
#[derive(Debug)]
pub struct CpuStep {
    pub(crate) kernel: StepKernel,
    pub(crate) inputs: Vec<CpuValue>,
    pub(crate) output: CpuValue,
}

impl CpuStep {
    /// The kernel's name, for profiles.
    pub fn label(&self) -> &'static str {
        match &self.kernel {
            StepKernel::Conv(conv) => conv.label(),
            StepKernel::ScaleShift {
                scale_shift: Some(_),
                ..
            } => "cpu batch_norm",
            StepKernel::ScaleShift { .. } => "cpu activation",
            StepKernel::Binary(BinaryOp::Add, _) => "cpu add",
            StepKernel::Binary(BinaryOp::MulChannels, _) => "cpu mul_channels",
            StepKernel::Pool(_) => "cpu pool2d",
            StepKernel::GlobalAvgPool => "cpu global_avg_pool",
            StepKernel::Flatten => "cpu flatten",
            StepKernel::AdaptiveAvgPool => "cpu adaptive_avg_pool2d",
            StepKernel::CopyChannels { .. } => "cpu concat",
            StepKernel::SelectChannels(_) => "cpu select_channels",
            StepKernel::LayerNorm(_) => "cpu layer_norm",
        }
    }

    /// Multiply-adds of a run (convolutions; other kernels count as none).
    pub fn macs(&self) -> u64 {
        match &self.kernel {
            StepKernel::Conv(conv) => conv.macs(),
            _ => 0,
        }
    }
}

/// Packed weights, shared by every node that names the same tensor with the same convolution and layout.
#[derive(Default)]
pub struct PackedWeights {
    by_source: HashMap<(usize, usize, Conv2d, ConvChoice), Arc<ConvWeights>>,
}

impl Backend for CpuContext {
    type Value = CpuValue;
    type Step = CpuStep;
    type Arena = Arc<Arena>;
    type Uploads = PackedWeights;

    fn value_bytes(&self, what: &str, shape: Shape) -> Result<u64> {
        let bytes = shape
            .checked_len()
            .and_then(|len| (len as u64).checked_mul(4))
            .ok_or_else(|| Error::invalid_op("plan", format!("{what}: {shape} overflows")))?;
        if bytes > self.memory_limit {
            return Err(Error::ExceedsLimit {
                what: what.to_string(),
                bytes,
                limit_name: "CPU memory_limit",
                limit: self.memory_limit,
            });
        }
        Ok(bytes)
    }

    fn arena_alignment(&self) -> u64 {
        // A cache line, so that values handed to different threads do not share one.
        64
    }

    fn max_arena_bytes(&self) -> u64 {
        self.memory_limit
    }

    fn arena(&self, bytes: u64) -> Result<Arc<Arena>> {
        if bytes > self.memory_limit {
            return Err(Error::ExceedsLimit {
                what: "activation memory".into(),
                bytes,
                limit_name: "CPU memory_limit",
                limit: self.memory_limit,
            });
        }
        let floats = usize::try_from(bytes.div_ceil(4))
            .map_err(|_| Error::Cpu(format!("{bytes} bytes do not fit in this address space")))?;
        Ok(Arc::new(Arena::zeroed(floats)))
    }

    fn value(&self, arena: &Arc<Arena>, offset: u64, shape: Shape, dims: Vec<usize>) -> CpuValue {
        CpuValue {
            arena: Arc::clone(arena),
            offset: (offset / 4) as usize,
            shape,
            dims,
        }
    }

    fn shape(value: &CpuValue) -> Shape {
        value.shape
    }

    /// No CPU kernel reads all its input before writing: outputs never share bytes with inputs.
    fn reads_inputs_first(&self, _kernel: &Kernel<'_>) -> bool {
        false
    }

    fn reserve_scratch(&self, _largest_input_read_first: Option<u64>) -> Result<()> {
        Ok(())
    }

    fn bind(
        &self,
        kernel: &Kernel<'_>,
        inputs: &[CpuValue],
        output: &CpuValue,
        uploads: &mut PackedWeights,
    ) -> Result<CpuStep> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid_op("plan", "a kernel without inputs"));
        };
        for value in inputs.iter().chain([output]) {
            if !value.in_bounds() {
                return Err(Error::Cpu("a value lies outside its arena".into()));
            }
        }
        if inputs.iter().any(|input| input.overlaps(output)) {
            return Err(Error::Cpu(
                "a kernel's output shares memory with its input".into(),
            ));
        }
        let x = first.shape;
        let y = output.shape;
        let expect_inputs = |count: usize| {
            if inputs.len() == count {
                Ok(())
            } else {
                Err(Error::invalid_op(
                    "plan",
                    format!("a kernel with {} inputs, {count} expected", inputs.len()),
                ))
            }
        };
        let kernel = match kernel {
            Kernel::Conv(layer) => {
                let conv = &layer.conv;
                let [oh, ow] = conv.output_size([x.h, x.w])?;
                if x.c != conv.in_channels || y != Shape::new(x.n, conv.out_channels, oh, ow) {
                    return Err(Error::invalid_op(
                        "conv2d",
                        format!("{conv} does not take {x} to {y}"),
                    ));
                }
                let residual = layer.epilogue.residual != crate::ops::ResidualAdd::None;
                expect_inputs(1 + usize::from(residual))?;
                if residual && inputs[1].shape != y {
                    return Err(Error::invalid_op(
                        "epilogue",
                        format!("residual {} differs from the output {y}", inputs[1].shape),
                    ));
                }
                let choice = ConvChoice::of(conv, y, self.threads(), self.winograd());
                let key = (
                    layer.weight.as_ptr() as usize,
                    layer.weight.len(),
                    *conv,
                    choice,
                );
                let weights = match uploads.by_source.get(&key) {
                    Some(weights) => Arc::clone(weights),
                    None => {
                        // On the pool, whose threads share the larger packings (Winograd's transform).
                        let pack = || Ok(ConvWeights::pack(conv, &layer.weight, choice));
                        let weights = Arc::new(self.run_in_pool(pack)?);
                        uploads.by_source.insert(key, Arc::clone(&weights));
                        weights
                    }
                };
                StepKernel::Conv(ConvKernel::new(layer, choice, weights, x, y))
            }
            Kernel::BatchNorm(bn, act) => {
                expect_inputs(1)?;
                same_shape(x, y)?;
                if bn.channels() != x.c {
                    return Err(Error::invalid_op(
                        "batch_norm",
                        format!("{} channels, input has {}", bn.channels(), x.c),
                    ));
                }
                act.check_channels(x.c)?;
                let (scale, shift) = bn.scale_shift()?;
                StepKernel::ScaleShift {
                    activation: RowActivation::new(act, x.c),
                    scale_shift: Some((
                        scale.iter().map(|&s| s as f32).collect(),
                        shift.iter().map(|&s| s as f32).collect(),
                    )),
                }
            }
            Kernel::Activation(act) => {
                expect_inputs(1)?;
                same_shape(x, y)?;
                act.check_channels(x.c)?;
                StepKernel::ScaleShift {
                    activation: RowActivation::new(act, x.c),
                    scale_shift: None,
                }
            }
            Kernel::Binary(op, act) => {
                expect_inputs(2)?;
                same_shape(x, y)?;
                act.check_channels(x.c)?;
                let expected_b = match op {
                    BinaryOp::Add => x,
                    BinaryOp::MulChannels => Shape::new(x.n, x.c, 1, 1),
                };
                if inputs[1].shape != expected_b {
                    return Err(Error::invalid_op(
                        "binary",
                        format!(
                            "{op:?} of {x} needs a second operand of {expected_b}, got {}",
                            inputs[1].shape
                        ),
                    ));
                }
                StepKernel::Binary(*op, RowActivation::new(act, x.c))
            }
            Kernel::Pool(pool) => {
                expect_inputs(1)?;
                let [oh, ow] = pool.output_size([x.h, x.w])?;
                if y != Shape::new(x.n, x.c, oh, ow) {
                    return Err(Error::invalid_op(
                        "pool2d",
                        format!("pooling does not take {x} to {y}"),
                    ));
                }
                StepKernel::Pool(**pool)
            }
            Kernel::GlobalAvgPool => {
                expect_inputs(1)?;
                if y != Shape::new(x.n, x.c, 1, 1) || x.h * x.w == 0 {
                    return Err(Error::invalid_op(
                        "global_avg_pool",
                        format!("{x} does not pool to {y}"),
                    ));
                }
                StepKernel::GlobalAvgPool
            }
            Kernel::Flatten => {
                expect_inputs(1)?;
                if y.len() != x.len() || y.n != x.n {
                    return Err(Error::invalid_op(
                        "flatten",
                        format!("{x} does not flatten to {y}"),
                    ));
                }
                StepKernel::Flatten
            }
            Kernel::AdaptiveAvgPool([oh, ow]) => {
                expect_inputs(1)?;
                if y != Shape::new(x.n, x.c, *oh, *ow) || x.h * x.w == 0 {
                    return Err(Error::invalid_op(
                        "adaptive_avg_pool2d",
                        format!("{x} does not pool to {y}"),
                    ));
                }
                StepKernel::AdaptiveAvgPool
            }
            Kernel::Concat => {
                return Err(Error::invalid_op(
                    "concat",
                    "lowering binds a concatenation as one copy per operand",
                ))
            }
            Kernel::CopyChannels { offset } => {
                expect_inputs(1)?;
                if (x.n, x.h, x.w) != (y.n, y.h, y.w) || offset + x.c > y.c {
                    return Err(Error::invalid_op(
                        "concat",
                        format!("{x} does not fit {y} at channel {offset}"),
                    ));
                }
                StepKernel::CopyChannels { offset: *offset }
            }
            Kernel::SelectChannels(selection) => {
                expect_inputs(1)?;
                selection.check(x.c)?;
                if y != Shape::new(x.n, selection.output_channels(), x.h, x.w) {
                    return Err(Error::invalid_op(
                        "select_channels",
                        format!("a selection does not take {x} to {y}"),
                    ));
                }
                StepKernel::SelectChannels(Selection::new(&selection.indices, x.c))
            }
            Kernel::LayerNorm(norm) => {
                expect_inputs(1)?;
                same_shape(x, y)?;
                if norm.channels() != x.c {
                    return Err(Error::invalid_op(
                        "layer_norm",
                        format!("{} channels, input has {}", norm.channels(), x.c),
                    ));
                }
                StepKernel::LayerNorm((*norm).clone())
            }
        };
        Ok(CpuStep {
            kernel,
            inputs: inputs.to_vec(),
            output: output.clone(),
        })
    }

    fn held_bytes(&self, _arenas: &[Arc<Arena>], steps: &[CpuStep]) -> HeldBytes {
        let mut weights: Vec<&Arc<ConvWeights>> = Vec::new();
        let mut scratch = 0;
        let mut tables = 0;
        for step in steps {
            let activation = match &step.kernel {
                StepKernel::Conv(conv) => {
                    if !weights.iter().any(|w| Arc::ptr_eq(w, conv.weights())) {
                        weights.push(conv.weights());
                    }
                    scratch = scratch.max(conv.scratch_floats(self.threads()));
                    Some(conv.activation())
                }
                StepKernel::ScaleShift { activation, .. } | StepKernel::Binary(_, activation) => {
                    Some(activation)
                }
                _ => None,
            };
            tables += activation.map_or(0, |a| a.table_bytes() as u64);
        }
        HeldBytes {
            weights: weights.iter().map(|w| w.bytes() as u64).sum::<u64>() + tables,
            staging: scratch as u64 * 4,
        }
    }
}

fn same_shape(x: Shape, y: Shape) -> Result<()> {
    if x == y {
        Ok(())
    } else {
        Err(Error::invalid_op(
            "plan",
            format!("an element-wise kernel from {x} to {y}"),
        ))
    }
}
