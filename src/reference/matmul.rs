//! Twin of `shaders/matmul.wgsl`: C = A B for row-major matrices, accumulated in f64.

use crate::error::Result;

/// `a` is `m x k`, `b` is `k x n`, both row-major; returns the `m x n` product.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    crate::ops::check_matmul_operands(a, b, m, k, n)?;
    let mut c = Vec::with_capacity(m * n);
    for row in a.chunks_exact(k.max(1)).take(m) {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|i| f64::from(row[i]) * f64::from(b[i * n + j]))
                .sum();
            c.push(dot as f32);
        }
    }
    // k = 0: every entry is an empty sum.
    c.resize(m * n, 0.0);
    Ok(c)
}
