//! A plan's weights on the GPU, each uploaded once however many nodes share it: a model file may name one
//! tensor in any number of nodes, and GPU memory must stay proportional to the file (docs/format.md).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::ops::Pwlu;

/// What an upload was made from. Held by the cache, so that no address in a key can be freed and reused by
/// other data while the cache lives.
#[derive(Debug)]
pub(crate) enum Source {
    /// Tensors of the model (weights, biases, batch-norm statistics).
    Floats(Vec<Arc<[f32]>>),
    /// A PWLU unit.
    Pwlu(Arc<Pwlu>),
    /// Nothing: the upload depends on `layout` alone (zeros).
    None,
}

impl Source {
    fn addresses(&self) -> Vec<usize> {
        match self {
            Source::Floats(tensors) => tensors
                .iter()
                .map(|t| Arc::as_ptr(t).cast::<f32>() as usize)
                .collect(),
            Source::Pwlu(pwlu) => vec![Arc::as_ptr(pwlu) as usize],
            Source::None => Vec::new(),
        }
    }
}

/// An upload: what it is for, the sources' addresses and the layout parameters that decide its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    what: &'static str,
    sources: Vec<usize>,
    layout: Vec<usize>,
}

/// A GPU copy of a source, as one kernel binds it.
#[derive(Clone, Debug)]
pub(crate) enum Upload {
    Texture(wgpu::Texture),
    Buffer(wgpu::Buffer),
}

/// Uploads by source and layout. One lives while a plan's kernels are prepared; a kernel prepared on its own
/// gets a fresh one.
#[derive(Debug, Default)]
pub struct SharedUploads {
    uploads: HashMap<Key, (Source, Upload)>,
}

impl SharedUploads {
    /// The upload of `source` laid out by `layout` for `what`, made by `make` the first time it is asked for.
    pub(crate) fn get_or_make(
        &mut self,
        what: &'static str,
        source: Source,
        layout: &[usize],
        make: impl FnOnce() -> Result<Upload>,
    ) -> Result<Upload> {
        let key = Key {
            what,
            sources: source.addresses(),
            layout: layout.to_vec(),
        };
        if let Some((_, upload)) = self.uploads.get(&key) {
            return Ok(upload.clone());
        }
        let upload = make()?;
        self.uploads.insert(key, (source, upload.clone()));
        Ok(upload)
    }

    /// A texture upload (see [`Self::get_or_make`]).
    pub(crate) fn texture(
        &mut self,
        what: &'static str,
        source: Source,
        layout: &[usize],
        make: impl FnOnce() -> Result<wgpu::Texture>,
    ) -> Result<wgpu::Texture> {
        match self.get_or_make(what, source, layout, || make().map(Upload::Texture))? {
            Upload::Texture(texture) => Ok(texture),
            Upload::Buffer(_) => unreachable_kind(what),
        }
    }

    /// A storage-buffer upload (see [`Self::get_or_make`]).
    pub(crate) fn buffer(
        &mut self,
        what: &'static str,
        source: Source,
        layout: &[usize],
        make: impl FnOnce() -> Result<wgpu::Buffer>,
    ) -> Result<wgpu::Buffer> {
        match self.get_or_make(what, source, layout, || make().map(Upload::Buffer))? {
            Upload::Buffer(buffer) => Ok(buffer),
            Upload::Texture(_) => unreachable_kind(what),
        }
    }
}

/// `what` names one kind of upload, and each is made by one of the typed methods, so a key can't hold the
/// other kind; an error rather than a panic all the same.
fn unreachable_kind<T>(what: &'static str) -> Result<T> {
    Err(crate::error::Error::Gpu(format!(
        "{what}: a texture and a buffer were both cached under one key"
    )))
}
