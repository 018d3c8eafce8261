//! The WGSL sources: one file per kernel in `shaders/`, shared modules in `shaders/shared/`, and the declared
//! interface of each (its bindings), from which bind group layouts are made. `tests/shaders.rs` checks the
//! declarations against what naga reads from the sources.

/// How a kernel accesses one binding. All bindings are in group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`: weights and other constants.
    Read,
    /// `var<storage, read_write>`: outputs, and activations a kernel only reads. A plan keeps all activations
    /// in one arena buffer, and WebGPU forbids binding a buffer read-only and writable in one dispatch.
    ReadWrite,
    /// `texture_2d<f32>` of unfilterable `rgba32float` texels, read through the table sampler
    /// (shaders/shared/table.wgsl). Used for lookup tables and staged inputs (shaders/shared/staged_input.wgsl):
    /// on CPU-emulated adapters a texel read at a different address per invocation is a vector gather, where a
    /// storage-buffer load at one is a loop over the invocations.
    Table,
    /// `var<uniform>`: a kernel's sizes, where they are not override constants (so that layers of one kind
    /// share a pipeline).
    Uniform,
    /// `sampler`, non-filtering: the one through which kernels read their tables
    /// (shaders/shared/table.wgsl), at [`TABLE_SAMPLER_BINDING`]. Bound by [`Dispatch`](super::Dispatch)
    /// itself; launchers do not supply it.
    Sampler,
}

/// How a kernel reads its input (binding 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Through its own binding, declared in its file.
    Own,
    /// Through the input stage (shaders/shared/staged_input.wgsl): binding 0 is an [`Access::Table`].
    Staged,
    /// A [`Input::Staged`] kernel with shaders/shared/buffer_input.wgsl in the stage's place: binding 0 is the
    /// storage buffer ([`Access::ReadWrite`]). For contexts that do not stage (see
    /// [`InputStage`](super::InputStage)).
    Buffer,
}

/// A WGSL kernel: its file, entry point `main`, and bindings.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File name under `shaders/`, also the pipeline label.
    pub name: &'static str,
    /// The file's text, before includes are resolved.
    pub source: &'static str,
    /// `(binding, access)` of every binding in group 0, as the file declares them (see [`Shader::bindings`]).
    pub declared_bindings: &'static [(u32, Access)],
    /// `@workgroup_size` of `main` (one-dimensional).
    pub workgroup_size: u32,
    /// How it reads its input.
    pub input: Input,
}

/// Binding that every kernel with an activation uses for the PWLU table (an [`Access::Table`]).
pub const ACTIVATION_PARAMS_BINDING: u32 = 7;

/// Binding of the sampler through which kernels with tables read them (an [`Access::Sampler`]).
pub const TABLE_SAMPLER_BINDING: u32 = 6;

// Constants the WGSL kernels share with their launchers, written once here: `Shader::prelude` defines each in
// every composed shader under the same name.

/// Output channels per invocation of the dense kernel, in vec4s (conv2d.wgsl).
pub(crate) const DENSE_TILE_OC4: usize = 4;
/// Output pixels per invocation of the dense kernel (conv2d.wgsl).
pub(crate) const DENSE_TILE_PIXELS: usize = 8;
/// Output pixels per invocation of `conv2d_depthwise.wgsl` along a row.
pub(crate) const DEPTHWISE_TILE_W: u64 = 4;
/// Rows of C per invocation (matmul.wgsl).
pub(crate) const MATMUL_TILE_M: usize = 8;
/// Vec4 columns of C per invocation (matmul.wgsl).
pub(crate) const MATMUL_TILE_N4: usize = 4;
/// `OP` of elementwise_binary.wgsl for `a + b` (its `OP_ADD`).
pub(crate) const OP_ADD: u32 = 0;
/// `OP` for `a * b[n, c]` (`OP_MUL_CHANNELS`).
pub(crate) const OP_MUL_CHANNELS: u32 = 1;

/// Activation codes of `shaders/shared/activation.wgsl` (its `ACT_*` constants).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActivationCode {
    Identity = 0,
    Relu = 1,
    Relu6 = 2,
    LeakyRelu = 3,
    Sigmoid = 4,
    Silu = 5,
    Hardsigmoid = 6,
    Hardswish = 7,
    Gelu = 8,
    GeluTanh = 9,
    Pwlu = 10,
}

impl ActivationCode {
    /// Every code with its WGSL name.
    pub(crate) const ALL: [(&'static str, ActivationCode); 11] = [
        ("ACT_IDENTITY", ActivationCode::Identity),
        ("ACT_RELU", ActivationCode::Relu),
        ("ACT_RELU6", ActivationCode::Relu6),
        ("ACT_LEAKY_RELU", ActivationCode::LeakyRelu),
        ("ACT_SIGMOID", ActivationCode::Sigmoid),
        ("ACT_SILU", ActivationCode::Silu),
        ("ACT_HARDSIGMOID", ActivationCode::Hardsigmoid),
        ("ACT_HARDSWISH", ActivationCode::Hardswish),
        ("ACT_GELU", ActivationCode::Gelu),
        ("ACT_GELU_TANH", ActivationCode::GeluTanh),
        ("ACT_PWLU", ActivationCode::Pwlu),
    ];
}

use Access::{Read, ReadWrite, Sampler, Table, Uniform};

const EPILOGUE_BINDINGS: &[(u32, Access)] = &[
    (0, ReadWrite),
    (1, Read),
    (2, Read),
    (3, ReadWrite),
    (4, ReadWrite),
    (TABLE_SAMPLER_BINDING, Sampler),
    (ACTIVATION_PARAMS_BINDING, Table),
];

/// The epilogue's bindings with the input staged into a table (shaders/shared/staged_input.wgsl), the weights in
/// a table, for kernels where every invocation reads its own, and the layer's sizes as a uniform
/// (shaders/shared/conv_shape.wgsl).
const TABLE_WEIGHT_BINDINGS: &[(u32, Access)] = &[
    (0, Table),
    (1, Table),
    (2, Read),
    (3, ReadWrite),
    (4, ReadWrite),
    (5, Uniform),
    (TABLE_SAMPLER_BINDING, Sampler),
    (ACTIVATION_PARAMS_BINDING, Table),
];

macro_rules! shader {
    ($name:literal, $bindings:expr) => {
        shader!($name, $bindings, 64, Input::Own)
    };
    ($name:literal, $bindings:expr, $workgroup_size:literal, $input:expr) => {
        Shader {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name)),
            declared_bindings: $bindings,
            workgroup_size: $workgroup_size,
            input: $input,
        }
    };
}

/// Dense convolution (implicit GEMM), its weights a table.
pub const CONV2D: Shader = shader!("conv2d.wgsl", TABLE_WEIGHT_BINDINGS, 32, Input::Staged);
/// Depthwise convolution, its weights a table.
pub const CONV2D_DEPTHWISE: Shader = shader!(
    "conv2d_depthwise.wgsl",
    TABLE_WEIGHT_BINDINGS,
    64,
    Input::Staged
);
/// Any other grouped convolution.
pub const CONV2D_GROUPED: Shader = shader!("conv2d_grouped.wgsl", EPILOGUE_BINDINGS);
/// Activation or batch norm, element-wise.
pub const ELEMENTWISE_UNARY: Shader = shader!(
    "elementwise_unary.wgsl",
    &[
        (0, ReadWrite),
        (1, Read),
        (4, ReadWrite),
        (TABLE_SAMPLER_BINDING, Sampler),
        (ACTIVATION_PARAMS_BINDING, Table)
    ]
);
/// Add or channel-broadcast multiply, element-wise; sizes in a uniform.
pub const ELEMENTWISE_BINARY: Shader = shader!(
    "elementwise_binary.wgsl",
    &[
        (0, ReadWrite),
        (1, ReadWrite),
        (4, ReadWrite),
        (5, Uniform),
        (TABLE_SAMPLER_BINDING, Sampler),
        (ACTIVATION_PARAMS_BINDING, Table)
    ]
);
/// Max and average pooling.
pub const POOL2D: Shader = shader!("pool2d.wgsl", &[(0, ReadWrite), (4, ReadWrite)]);
/// Global average pooling; input staged into a table, sizes in a uniform.
pub const GLOBAL_AVG_POOL: Shader = shader!(
    "global_avg_pool.wgsl",
    &[
        (0, Table),
        (4, ReadWrite),
        (5, Uniform),
        (TABLE_SAMPLER_BINDING, Sampler)
    ],
    64,
    Input::Staged
);
/// NCHW-ordered flatten.
pub const FLATTEN: Shader = shader!("flatten.wgsl", &[(0, ReadWrite), (4, ReadWrite)]);
/// Softmax over channels.
pub const SOFTMAX: Shader = shader!("softmax.wgsl", &[(0, ReadWrite), (4, ReadWrite)]);

/// Adaptive average pooling over non-uniform windows.
pub const ADAPTIVE_AVG_POOL: Shader =
    shader!("adaptive_avg_pool.wgsl", &[(0, ReadWrite), (4, ReadWrite)]);
/// One operand of a concatenation into its channels of the output; sizes in a uniform.
pub const COPY_CHANNELS: Shader = shader!(
    "copy_channels.wgsl",
    &[(0, ReadWrite), (4, ReadWrite), (5, Uniform)]
);
/// Channels picked by index; sizes in a uniform.
pub const SELECT_CHANNELS: Shader = shader!(
    "select_channels.wgsl",
    &[(0, ReadWrite), (1, Read), (4, ReadWrite), (5, Uniform)]
);
/// Layer normalisation over channels.
pub const LAYER_NORM: Shader = shader!(
    "layer_norm.wgsl",
    &[(0, ReadWrite), (1, Read), (4, ReadWrite)]
);

/// Matrix multiply: the GEMM yardstick of `pwlu bench`.
pub const MATMUL: Shader = shader!(
    "matmul.wgsl",
    &[
        (0, Table),
        (1, Table),
        (4, ReadWrite),
        (TABLE_SAMPLER_BINDING, Sampler)
    ],
    64,
    Input::Staged
);

/// Every kernel, for tests and tools that check them all.
pub const ALL: &[Shader] = &[
    CONV2D,
    CONV2D_DEPTHWISE,
    CONV2D_GROUPED,
    ELEMENTWISE_UNARY,
    ELEMENTWISE_BINARY,
    POOL2D,
    GLOBAL_AVG_POOL,
    FLATTEN,
    SOFTMAX,
    MATMUL,
    ADAPTIVE_AVG_POOL,
    COPY_CHANNELS,
    SELECT_CHANNELS,
    LAYER_NORM,
];

/// Every kernel in every variant a context may create: [`ALL`], and for each that reads its input through the
/// input stage, also the one that reads it from the buffer.
pub fn variants() -> Vec<Shader> {
    ALL.iter()
        .flat_map(|shader| {
            let buffer = shader.with_buffer_input();
            std::iter::once(*shader).chain((buffer.input != shader.input).then_some(buffer))
        })
        .collect()
}

/// The shared modules that kernels `#include`.
const INCLUDES: &[(&str, &str)] = &[
    (
        "shared/common.wgsl",
        include_str!("../../shaders/shared/common.wgsl"),
    ),
    (
        "shared/channels.wgsl",
        include_str!("../../shaders/shared/channels.wgsl"),
    ),
    (
        "shared/conv_shape.wgsl",
        include_str!("../../shaders/shared/conv_shape.wgsl"),
    ),
    (
        "shared/table.wgsl",
        include_str!("../../shaders/shared/table.wgsl"),
    ),
    (
        STAGED_INPUT,
        include_str!("../../shaders/shared/staged_input.wgsl"),
    ),
    (
        BUFFER_INPUT,
        include_str!("../../shaders/shared/buffer_input.wgsl"),
    ),
    (
        "shared/activation.wgsl",
        include_str!("../../shaders/shared/activation.wgsl"),
    ),
    (
        "shared/epilogue.wgsl",
        include_str!("../../shaders/shared/epilogue.wgsl"),
    ),
];

/// The include through which [`Input::Staged`] kernels read their input, and its stand-in for [`Input::Buffer`].
const STAGED_INPUT: &str = "shared/staged_input.wgsl";
const BUFFER_INPUT: &str = "shared/buffer_input.wgsl";

impl Shader {
    /// The variant that reads its input from the storage buffer, for an [`Input::Staged`] kernel; any other
    /// kernel unchanged.
    pub const fn with_buffer_input(self) -> Shader {
        match self.input {
            Input::Staged => Shader {
                input: Input::Buffer,
                ..self
            },
            Input::Own | Input::Buffer => self,
        }
    }

    /// `(binding, access)` of every binding in group 0 of this variant.
    pub fn bindings(&self) -> Vec<(u32, Access)> {
        self.declared_bindings
            .iter()
            .map(|&(binding, access)| match (self.input, binding) {
                (Input::Buffer, 0) => (0, Access::ReadWrite),
                _ => (binding, access),
            })
            .collect()
    }

    /// The pipeline label: the file, and how it reads its input where that is not the file's own way.
    pub fn label(&self) -> String {
        match self.input {
            Input::Buffer => format!("{} (input from its buffer)", self.name),
            Input::Own | Input::Staged => self.name.to_string(),
        }
    }

    /// The constants WGSL shares with the Rust launchers, generated from the Rust side so that they are written
    /// once: the workgroup size, the input stage's row width, tile sizes, activation and binary-op codes.
    pub fn prelude(&self) -> String {
        let mut constants: Vec<(&str, u64)> = vec![
            ("WORKGROUP_SIZE", u64::from(self.workgroup_size)),
            (
                "STAGE_WIDTH_LOG2",
                u64::from(super::textures::STAGE_WIDTH.trailing_zeros()),
            ),
            ("DENSE_TILE_PIXELS", DENSE_TILE_PIXELS as u64),
            ("DENSE_TILE_OC4", DENSE_TILE_OC4 as u64),
            ("DEPTHWISE_TILE_W", DEPTHWISE_TILE_W),
            ("MATMUL_TILE_M", MATMUL_TILE_M as u64),
            ("MATMUL_TILE_N4", MATMUL_TILE_N4 as u64),
            ("OP_ADD", u64::from(OP_ADD)),
            ("OP_MUL_CHANNELS", u64::from(OP_MUL_CHANNELS)),
        ];
        constants.extend(
            ActivationCode::ALL
                .iter()
                .map(|&(name, code)| (name, code as u64)),
        );
        let mut out = String::from(
            "// ---- generated from the Rust launchers' constants (src/gpu/shaders.rs)\n",
        );
        for (name, value) in constants {
            out.push_str(&format!("const {name}: u32 = {value}u;\n"));
        }
        out.push_str("// ---- end of generated constants\n");
        out
    }

    /// The complete WGSL: the prelude, then each `#include "shared/x.wgsl"` line replaced by that module's text (the input stage
    /// by the buffer read in an [`Input::Buffer`] variant).
    pub fn compose(&self) -> String {
        let mut out = String::with_capacity(self.source.len() * 4);
        out.push_str(&self.prelude());
        for line in self.source.lines() {
            let included = line
                .trim()
                .strip_prefix("#include \"")
                .and_then(|rest| rest.strip_suffix('"'))
                .map(|path| match (self.input, path) {
                    (Input::Buffer, STAGED_INPUT) => BUFFER_INPUT,
                    _ => path,
                })
                .and_then(|path| INCLUDES.iter().find(|(name, _)| *name == path));
            match included {
                Some((name, text)) => {
                    out.push_str(&format!("// ---- begin {name}\n"));
                    out.push_str(text);
                    out.push_str(&format!("// ---- end {name}\n"));
                }
                // An unknown include is left in place, where the WGSL parser reports it with its line.
                None => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }
}
