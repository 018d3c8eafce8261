//! CPU reference of the convolution kernels (`conv2d*.wgsl`): direct NCHW loops, f64 accumulation.

use super::activation::ActivationFn;
use crate::error::{Error, Result};
use crate::ops::{Conv2dLayer, ResidualAdd};
use crate::tensor::{Shape, Tensor};

/// Runs `layer` on `input` (NCHW); `residual` must be given exactly when the epilogue adds one, with the
/// output's shape.
pub fn conv2d(layer: &Conv2dLayer, input: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
    let conv = &layer.conv;
    let x = input.shape();
    if x.c != conv.in_channels {
        return Err(Error::invalid_op(
            "conv2d",
            format!(
                "input has {} channels, the layer expects {}",
                x.c, conv.in_channels
            ),
        ));
    }
    let [oh, ow] = conv.output_size([x.h, x.w])?;
    let out_shape = Shape::new(x.n, conv.out_channels, oh, ow);
    check_residual(layer.epilogue.residual, residual, out_shape)?;

    let icg = conv.in_channels / conv.groups;
    let ocg = conv.out_channels / conv.groups;
    let [kh, kw] = conv.kernel;
    let (pt, pl) = (conv.padding.top as isize, conv.padding.left as isize);
    let act = ActivationFn::new(&layer.epilogue.activation);
    let mut out = Tensor::zeros(out_shape);
    let data = input.data();
    for n in 0..x.n {
        for oc in 0..conv.out_channels {
            let g = oc / ocg;
            let bias = layer.bias.as_ref().map_or(0.0, |b| f64::from(b[oc]));
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias;
                    for i in 0..icg {
                        let ic = g * icg + i;
                        for ky in 0..kh {
                            let iy = (oy * conv.stride[0] + ky * conv.dilation[0]) as isize - pt;
                            if iy < 0 || iy >= x.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix =
                                    (ox * conv.stride[1] + kx * conv.dilation[1]) as isize - pl;
                                if ix < 0 || ix >= x.w as isize {
                                    continue;
                                }
                                let w = layer.weight[((oc * icg + i) * kh + ky) * kw + kx];
                                let v = data[x.index(n, ic, iy as usize, ix as usize)];
                                acc += f64::from(w) * f64::from(v);
                            }
                        }
                    }
                    let idx = out_shape.index(n, oc, oy, ox);
                    out.data_mut()[idx] = epilogue(
                        acc as f32,
                        oc,
                        layer.epilogue.residual,
                        residual.map(|r| r.data()[idx]),
                        &act,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Residual add and activation, in the order the epilogue says (the twin of `shared/epilogue.wgsl`).
pub(crate) fn epilogue(
    value: f32,
    channel: usize,
    mode: ResidualAdd,
    residual: Option<f32>,
    act: &ActivationFn,
) -> f32 {
    let r = residual.unwrap_or(0.0);
    match mode {
        ResidualAdd::None => act.eval(value, channel),
        ResidualAdd::BeforeActivation => act.eval(value + r, channel),
        ResidualAdd::AfterActivation => act.eval(value, channel) + r,
    }
}

pub(crate) fn check_residual(
    mode: ResidualAdd,
    residual: Option<&Tensor>,
    out: Shape,
) -> Result<()> {
    match (mode, residual) {
        (ResidualAdd::None, None) => Ok(()),
        (ResidualAdd::None, Some(_)) => Err(Error::invalid_op(
            "epilogue",
            "a residual tensor was given but the epilogue adds none",
        )),
        (_, None) => Err(Error::invalid_op(
            "epilogue",
            "the epilogue adds a residual but none was given",
        )),
        (_, Some(r)) if r.shape() != out => Err(Error::invalid_op(
            "epilogue",
            format!(
                "residual shape {} differs from the output shape {out}",
                r.shape()
            ),
        )),
        _ => Ok(()),
    }
}
