//! The GGUF container: header, metadata key/values and tensor infos, read from a byte slice.
//!
//! Layout (GGUF v3, little-endian, as specified in ggml's `docs/gguf.md`): magic `GGUF`, version
//! u32, tensor count u64, metadata count u64; then `count` key/value pairs (key: u64-length string,
//! value type u32, value: one of 13 types, arrays carrying an element type and u64 length); then
//! one info per tensor (name, n_dims u32, dims u64 × n_dims with `ne[0]` the innermost,
//! ggml type u32, offset u64 from the data section). The data section starts at the end of the
//! infos rounded up to `general.alignment` (default 32). Every read is bounds-checked: a truncated
//! or corrupt file gives an error naming what was being read.

use std::collections::BTreeMap;

use super::dequant::{GgmlType, ggml_type_name};

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// JSON form; arrays longer than `max_array` are summarised as `{"array_len": n}`.
    pub fn to_json(&self, max_array: usize) -> serde_json::Value {
        use serde_json::{Value, json};
        match self {
            Self::String(s) => Value::String(s.clone()),
            Self::Bool(b) => Value::Bool(*b),
            Self::F32(v) => json!(v),
            Self::F64(v) => json!(v),
            Self::Array(a) if a.len() > max_array => json!({ "array_len": a.len() }),
            Self::Array(a) => Value::Array(a.iter().map(|v| v.to_json(max_array)).collect()),
            other => match other.as_u64() {
                Some(u) => json!(u),
                None => json!(other.as_f64().unwrap_or(f64::NAN) as i64),
            },
        }
    }
}

/// One tensor's entry in the GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// GGUF (llama.cpp) name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dims, `ne[0]` innermost (the reverse of PyTorch's shape).
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: usize,
    /// Byte length of the tensor's data.
    pub byte_len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// The shape in PyTorch (HF) order: ggml dims reversed.
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF header: version, metadata and tensor infos (data stays in the caller's bytes).
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the data section.
    pub data_offset: usize,
}

/// Bounds-checked little-endian cursor; errors name what was being read.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated file: {} needs {n} bytes at offset {}, file has {}",
                what(),
                self.pos,
                self.bytes.len()
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], String> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, String> {
        let len = self.u64(what)?;
        let len = usize::try_from(len)
            .map_err(|_| format!("{}: string length {len} too large", what()))?;
        let s = self.take(len, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| format!("{}: string is not valid UTF-8", what()))
    }

    fn value(
        &mut self,
        ty: u32,
        what: &dyn Fn() -> String,
        depth: usize,
    ) -> Result<MetaValue, String> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(what)?[0]),
            1 => MetaValue::I8(self.array::<1>(what)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(format!("{}: invalid bool byte {b}", what())),
            },
            8 => MetaValue::String(self.string(what)?),
            9 => {
                if depth > 0 {
                    return Err(format!("{}: nested arrays are not supported", what()));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte: a larger count is corrupt.
                let remaining = (self.bytes.len() - self.pos) as u64;
                if n > remaining {
                    return Err(format!(
                        "{}: array of {n} elements cannot fit in the {remaining} bytes left",
                        what()
                    ));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(format!("{}: unknown metadata value type {other}", what())),
        })
    }
}

/// Parse the header of a GGUF file held in `bytes`. Errors are one-line messages without the path
/// (the caller adds it).
pub fn parse_header(bytes: &[u8]) -> Result<GgufHeader, String> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.array::<4>(&|| "the magic number".into())?;
    if &magic != b"GGUF" {
        return Err(format!(
            "not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"
        ));
    }
    let version = c.u32(&|| "the version".into())?;
    if version != 2 && version != 3 {
        return Err(format!(
            "unsupported GGUF version {version} (supported: 2, 3)"
        ));
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let what = || format!("metadata `{key}`");
        let ty = c.u32(&what)?;
        let value = c.value(ty, &what, 0)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(format!("metadata `general.alignment`: invalid value {v:?}")),
        },
    };

    let mut raw = Vec::new();
    for i in 0..n_tensors {
        let name = c.string(&|| format!("tensor info #{i}"))?;
        let what = || format!("tensor `{name}` info");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > 4 {
            return Err(format!(
                "tensor `{name}`: {n_dims} dimensions (expected 1 to 4)"
            ));
        }
        let dims = (0..n_dims)
            .map(|_| c.u64(&what))
            .collect::<Result<Vec<_>, _>>()?;
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        raw.push((name, dims, type_id, offset));
    }
    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;

    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, type_id, offset) in raw {
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            format!(
                "tensor `{name}`: unsupported tensor type {} (supported: {})",
                ggml_type_name(type_id),
                GgmlType::ALL.map(GgmlType::name).join(", ")
            )
        })?;
        let n = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let byte_len = n
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| {
                (dims[0] % ggml_type.block_size() as u64 == 0)
                    .then_some(n)
                    .and_then(|n| ggml_type.byte_len(n))
            })
            .ok_or_else(|| {
                format!(
                    "tensor `{name}`: dims {dims:?} are not whole {} blocks of {}",
                    ggml_type.name(),
                    ggml_type.block_size()
                )
            })?;
        if offset % alignment != 0 {
            return Err(format!(
                "tensor `{name}`: data offset {offset} is not aligned to {alignment}"
            ));
        }
        let start = data_offset.checked_add(offset).map(|s| s as usize);
        let end = start.and_then(|s| s.checked_add(byte_len));
        match (start, end) {
            (Some(start), Some(end)) if end <= bytes.len() => tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: start,
                byte_len,
            }),
            _ => {
                return Err(format!(
                    "truncated file: tensor `{name}` data ({byte_len} bytes at offset {}) runs past the end of the file ({} bytes)",
                    data_offset + offset,
                    bytes.len()
                ));
            }
        }
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        data_offset: data_offset as usize,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal GGUF writer for tests: metadata of strings/u32/f32/string arrays and F32 tensors.
    #[derive(Default)]
    pub struct Writer {
        kv: Vec<u8>,
        n_kv: u64,
        tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    impl Writer {
        pub fn string(mut self, k: &str, v: &str) -> Self {
            put_str(&mut self.kv, k);
            self.kv.extend(8u32.to_le_bytes());
            put_str(&mut self.kv, v);
            self.n_kv += 1;
            self
        }
        pub fn u32(mut self, k: &str, v: u32) -> Self {
            put_str(&mut self.kv, k);
            self.kv.extend(4u32.to_le_bytes());
            self.kv.extend(v.to_le_bytes());
            self.n_kv += 1;
            self
        }
        pub fn f32(mut self, k: &str, v: f32) -> Self {
            put_str(&mut self.kv, k);
            self.kv.extend(6u32.to_le_bytes());
            self.kv.extend(v.to_le_bytes());
            self.n_kv += 1;
            self
        }
        pub fn strings(mut self, k: &str, v: &[&str]) -> Self {
            put_str(&mut self.kv, k);
            self.kv.extend(9u32.to_le_bytes());
            self.kv.extend(8u32.to_le_bytes());
            self.kv.extend((v.len() as u64).to_le_bytes());
            for s in v {
                put_str(&mut self.kv, s);
            }
            self.n_kv += 1;
            self
        }
        /// `dims` in ggml order; `data` f32 values.
        pub fn tensor(mut self, name: &str, dims: &[u64], data: &[f32]) -> Self {
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.tensors.push((name.into(), dims.to_vec(), 0, bytes));
            self
        }
        /// A tensor with a raw type id and bytes.
        pub fn raw_tensor(mut self, name: &str, dims: &[u64], ty: u32, bytes: Vec<u8>) -> Self {
            self.tensors.push((name.into(), dims.to_vec(), ty, bytes));
            self
        }
        pub fn build(self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(3u32.to_le_bytes());
            out.extend((self.tensors.len() as u64).to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend(&self.kv);
            let mut offset = 0u64;
            let mut offsets = Vec::new();
            for (name, dims, ty, bytes) in &self.tensors {
                put_str(&mut out, name);
                out.extend((dims.len() as u32).to_le_bytes());
                dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
                out.extend(ty.to_le_bytes());
                out.extend(offset.to_le_bytes());
                offsets.push(offset);
                offset += (bytes.len() as u64).div_ceil(32) * 32;
            }
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
            for (_, _, _, bytes) in &self.tensors {
                out.extend(bytes);
                while !out.len().is_multiple_of(32) {
                    out.push(0);
                }
            }
            out
        }
    }

    #[test]
    fn parses_metadata_and_tensors() {
        let bytes = Writer::default()
            .string("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .f32("llama.rope.freq_base", 10000.0)
            .strings("tokenizer.ggml.tokens", &["a", "b"])
            .tensor("t", &[3, 2], &[1., 2., 3., 4., 5., 6.])
            .build();
        let h = parse_header(&bytes).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.metadata["general.architecture"].as_str(), Some("llama"));
        assert_eq!(h.metadata["llama.block_count"].as_u64(), Some(2));
        assert_eq!(
            h.metadata["tokenizer.ggml.tokens"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(h.tensors[0].hf_shape(), vec![2, 3]);
        assert_eq!(h.tensors[0].byte_len, 24);
        assert_eq!(h.data_offset % 32, 0);
    }

    #[test]
    fn rejects_corrupt_headers() {
        let good = Writer::default()
            .string("general.architecture", "llama")
            .tensor("blk.0.attn_q.weight", &[4], &[1., 2., 3., 4.])
            .build();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(
            parse_header(&bad_magic)
                .unwrap_err()
                .contains("not a GGUF file")
        );
        let data_offset = parse_header(&good).unwrap().data_offset;
        let e = parse_header(&good[..data_offset + 8]).unwrap_err();
        assert!(
            e.contains("truncated") && e.contains("blk.0.attn_q.weight"),
            "{e}"
        );
        let e = parse_header(&good[..54]).unwrap_err();
        assert!(e.contains("general.architecture"), "{e}");
        let nvfp4 = Writer::default()
            .raw_tensor("w", &[256], 40, vec![0; 144])
            .build();
        let e = parse_header(&nvfp4).unwrap_err();
        assert!(e.contains("`w`") && e.contains("NVFP4"), "{e}");
    }
}
