//! Safetensors checkpoints as a [`WeightSource`]: one `model.safetensors` or a sharded set listed in
//! `model.safetensors.index.json`, memory-mapped, with f32 / f16 / bf16 tensors converted to f32.
//!
//! Format: 8-byte little-endian header length, a JSON header mapping names to dtype, shape and byte
//! offsets, then the raw little-endian data (<https://github.com/huggingface/safetensors>).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorInfo};

use crate::error::{EngineError, Result};
use crate::weights::{HostTensor, WeightSource};

/// One memory-mapped `.safetensors` file with its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Offset of the data section within the file.
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        // SAFETY: the file is opened read-only; like every mmap-based loader we assume it is not
        // truncated by another process while mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| EngineError::io(path, e))?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| EngineError::Format {
                path: path.to_path_buf(),
                message: format!("invalid safetensors file: {e}"),
            })?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            tensors,
        })
    }

    fn load(&self, name: &str, info: &TensorInfo) -> Result<HostTensor> {
        let (start, end) = info.data_offsets;
        let bytes = self
            .mmap
            .get(self.data_start + start..self.data_start + end)
            .ok_or_else(|| EngineError::Format {
                path: self.path.clone(),
                message: format!("tensor `{name}` lies outside the file (truncated?)"),
            })?;
        let numel: usize = info.shape.iter().product();
        let data = decode(name, info.dtype, bytes)?;
        if data.len() != numel {
            return Err(EngineError::Format {
                path: self.path.clone(),
                message: format!(
                    "tensor `{name}` holds {} values, its shape {:?} needs {numel}",
                    data.len(),
                    info.shape
                ),
            });
        }
        Ok(HostTensor {
            shape: info.shape.clone(),
            data,
        })
    }
}

/// Convert little-endian bytes of a supported dtype to f32.
fn decode(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(EngineError::DType {
                tensor: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(out)
}

/// A Hugging Face checkpoint directory's safetensors weights (single file or sharded).
pub struct SafetensorsSource {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    /// Open `model.safetensors` or `model.safetensors.index.json` in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            Self::open_index(&index)
        } else if single.is_file() {
            Self::open_files(&single, std::slice::from_ref(&single))
        } else {
            Err(EngineError::io(
                &single,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json",
                ),
            ))
        }
    }

    /// Open a sharded checkpoint through its index file (`weight_map`: name → shard file).
    pub fn open_index(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| EngineError::io(index, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EngineError::Format {
                path: index.to_path_buf(),
                message: format!("malformed JSON: {e}"),
            })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::Config {
                path: index.to_path_buf(),
                field: "weight_map".into(),
                message: "missing or not an object".into(),
            })?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| EngineError::Config {
                path: index.to_path_buf(),
                field: format!("weight_map.{name}"),
                message: "expected a file name".into(),
            })?;
            let p = dir.join(file);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        let mut source = Self::open_files(index, &files)?;
        // Every tensor the index promises must be in some shard.
        for name in map.keys() {
            if !source.index.contains_key(name) {
                return Err(EngineError::MissingTensor {
                    path: index.to_path_buf(),
                    tensor: name.clone(),
                });
            }
        }
        source.origin = index.to_path_buf();
        Ok(source)
    }

    fn open_files(origin: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut index = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            let shard = Shard::open(file)?;
            for name in shard.tensors.keys() {
                index.insert(name.clone(), i);
            }
            shards.push(shard);
        }
        Ok(Self {
            origin: origin.to_path_buf(),
            shards,
            index,
        })
    }

    /// Total bytes of tensor data across shards.
    pub fn data_bytes(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.tensors.values())
            .map(|t| t.data_offsets.1 - t.data_offsets.0)
            .sum()
    }
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> String {
        self.origin.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let shard = self
            .index
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.origin.clone(),
                tensor: name.to_string(),
            })?;
        let info = &shard.tensors[name];
        shard.load(name, info)
    }

    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write a safetensors file by hand (header + data) so the test does not depend on the writer.
    fn write(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let start = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let h = serde_json::to_vec(&header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn decodes_f32_f16_bf16_and_reports_missing() {
        let dir = std::env::temp_dir().join(format!("specsweep-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vals = [1.5f32, -2.0, 0.25];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        write(
            &dir.join("model.safetensors"),
            &[
                ("a", "F32", vec![3], f32b),
                ("b", "F16", vec![1, 3], f16b),
                ("c", "BF16", vec![3, 1], bf16b),
            ],
        );
        let src = SafetensorsSource::open_dir(&dir).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(src.load(name).unwrap().data, vals.to_vec(), "{name}");
        }
        assert_eq!(src.load("b").unwrap().shape, vec![1, 3]);
        let e = src.load("zz").unwrap_err().to_string();
        assert!(e.contains("zz") && e.contains("model.safetensors"), "{e}");
        // A truncated file is a one-line error naming it.
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() - 4]).unwrap();
        let e = SafetensorsSource::open_dir(&dir).err().unwrap().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
