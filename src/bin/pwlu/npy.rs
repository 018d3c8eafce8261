//! float32 tensors in NumPy's .npy format.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use npyz::WriterBuilder;
use pwlu::Tensor;

use crate::CliResult;

/// Reads a C-order float32 array of rank 1 to 4.
pub fn read(path: &Path) -> CliResult<Tensor> {
    let name = path.display();
    let file = File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .map_err(|e| format!("{name} is not a .npy file: {e}"))?;
    if npy.order() != npyz::Order::C {
        return Err(format!(
            "{name}: Fortran-order arrays are not supported; save with np.ascontiguousarray"
        ));
    }
    let dtype = npy.dtype().descr();
    if dtype != "'<f4'" {
        return Err(format!(
            "{name}: dtype {dtype}; expected little-endian float32 ('<f4')"
        ));
    }
    let dims: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{name}: dimension {d} is too large")))
        .collect::<CliResult<_>>()?;
    let data: Vec<f32> = npy.into_vec().map_err(|e| format!("{name}: {e}"))?;
    Tensor::new(dims, data).map_err(|e| format!("{name}: {e}"))
}

/// Writes a tensor as a C-order float32 array.
pub fn write(path: &Path, tensor: &Tensor) -> CliResult {
    let name = path.display();
    let file = File::create(path).map_err(|e| format!("cannot write {name}: {e}"))?;
    let shape: Vec<u64> = tensor.dims().iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(|e| format!("cannot write {name}: {e}"))?;
    writer
        .extend(tensor.data().iter().copied())
        .map_err(|e| format!("cannot write {name}: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("cannot write {name}: {e}"))
}
