//! CPU reference of `pool2d.wgsl` and `global_avg_pool.wgsl`.

use crate::error::Result;
use crate::ops::{Pool2d, PoolKind};
use crate::tensor::{Shape, Tensor};

/// Max or average pooling with PyTorch's semantics (window clipping, `ceil_mode`, `count_include_pad`).
pub fn pool2d(pool: &Pool2d, input: &Tensor) -> Result<Tensor> {
    let x = input.shape();
    let [oh, ow] = pool.output_size([x.h, x.w])?;
    let out_shape = Shape::new(x.n, x.c, oh, ow);
    let mut out = Tensor::zeros(out_shape);
    let (pt, pl) = (pool.padding.top as isize, pool.padding.left as isize);
    for n in 0..x.n {
        for c in 0..x.c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * pool.stride[0]) as isize - pt;
                    let x0 = (ox * pool.stride[1]) as isize - pl;
                    let value = match pool.kind {
                        PoolKind::Max => {
                            let mut m = f32::NEG_INFINITY;
                            for ky in 0..pool.kernel[0] {
                                for kx in 0..pool.kernel[1] {
                                    let iy = y0 + (ky * pool.dilation[0]) as isize;
                                    let ix = x0 + (kx * pool.dilation[1]) as isize;
                                    if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize
                                    {
                                        continue;
                                    }
                                    let v = input.data()[x.index(n, c, iy as usize, ix as usize)];
                                    if v > m || v.is_nan() {
                                        m = v;
                                    }
                                    if m.is_nan() {
                                        break;
                                    }
                                }
                            }
                            m
                        }
                        PoolKind::Average { count_include_pad } => {
                            // PyTorch: the divisor counts the window clipped to the padded input...
                            let y1 = (y0 + pool.kernel[0] as isize)
                                .min((x.h + pool.padding.bottom) as isize);
                            let x1 = (x0 + pool.kernel[1] as isize)
                                .min((x.w + pool.padding.right) as isize);
                            let padded_count = (y1 - y0) * (x1 - x0);
                            // ...or, without count_include_pad, clipped to the input itself.
                            let (cy0, cx0) = (y0.max(0), x0.max(0));
                            let (cy1, cx1) = (y1.min(x.h as isize), x1.min(x.w as isize));
                            let mut sum = 0.0f64;
                            for iy in cy0..cy1 {
                                for ix in cx0..cx1 {
                                    sum += f64::from(
                                        input.data()[x.index(n, c, iy as usize, ix as usize)],
                                    );
                                }
                            }
                            let count = if count_include_pad {
                                padded_count
                            } else {
                                (cy1 - cy0) * (cx1 - cx0)
                            };
                            (sum / count as f64) as f32
                        }
                    };
                    out.data_mut()[out_shape.index(n, c, oy, ox)] = value;
                }
            }
        }
    }
    Ok(out)
}

/// Mean over height and width: `[N, C, H, W] -> [N, C, 1, 1]`.
pub fn global_avg_pool(input: &Tensor) -> Tensor {
    let x = input.shape();
    let plane = x.h * x.w;
    let data = input
        .data()
        .chunks(plane.max(1))
        .map(|p| (p.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64) as f32)
        .collect();
    Tensor::new(vec![x.n, x.c, 1, 1], data)
        .unwrap_or_else(|_| Tensor::zeros(Shape::new(x.n, x.c, 1, 1)))
}
