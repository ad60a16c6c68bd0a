//! [`QuantMatrix`]: a `rows × cols` weight matrix (PyTorch `[out, in]` layout) kept in its storage
//! format in host memory, either loaded as raw GGUF blocks or quantized here from f32.
//!
//! Each row is `cols / block_elems` consecutive ggml blocks, so a row's bytes are contiguous and the
//! kernels stream them once per call. Blocks loaded from a GGUF file stay in the file's memory map
//! ([`QuantMatrix::from_mapped`]): loading copies nothing, and resident memory is the file's pages.

use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;

use super::dequant::dequantize_into;
use super::format::QuantFormat;
use super::quantize::quantize_into;
use crate::error::{EngineError, Result};

/// A weight matrix stored in a [`QuantFormat`].
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    data: Storage,
}

/// Where the blocks live.
#[derive(Clone)]
enum Storage {
    /// Quantized here, or rows reordered on load.
    Owned(Vec<u8>),
    /// A byte range of a read-only file map shared with the loader.
    Mapped(Arc<Mmap>, Range<usize>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(map, range) => &map[range.clone()],
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Storage::Mapped(_, r) => write!(f, "Mapped({r:?})"),
        }
    }
}

impl PartialEq for QuantMatrix {
    fn eq(&self, other: &Self) -> bool {
        (self.format, self.rows, self.cols) == (other.format, other.rows, other.cols)
            && self.bytes() == other.bytes()
    }
}

impl QuantMatrix {
    /// Wrap raw little-endian blocks (as stored in a GGUF file) of a `rows × cols` matrix.
    /// `tensor` names the weight in errors.
    pub fn from_raw(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
    ) -> Result<Self> {
        check_len(tensor, format, rows, cols, data.len())?;
        Ok(QuantMatrix {
            format,
            rows,
            cols,
            data: Storage::Owned(data),
        })
    }

    /// Wrap the blocks at `range` of a file map without copying them (GGUF tensors whose row order
    /// needs no change). `tensor` names the weight in errors.
    pub fn from_mapped(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        cols: usize,
        map: Arc<Mmap>,
        range: Range<usize>,
    ) -> Result<Self> {
        if range.end > map.len() || range.start > range.end {
            return Err(EngineError::Invalid(format!(
                "tensor `{tensor}`: bytes {range:?} lie outside the {}-byte file",
                map.len()
            )));
        }
        check_len(tensor, format, rows, cols, range.len())?;
        Ok(QuantMatrix {
            format,
            rows,
            cols,
            data: Storage::Mapped(map, range),
        })
    }

    /// Quantize row-major f32 `values` of a `rows × cols` matrix to `format` (f32, f16, bf16, q8_0,
    /// q4_0 or q4_1; the K-quants and Q5 formats can only be loaded).
    pub fn quantize(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self> {
        check_cols(tensor, format, cols)?;
        if values.len() != rows * cols {
            return Err(EngineError::Shape {
                tensor: tensor.to_string(),
                expected: vec![rows, cols],
                got: vec![values.len()],
            });
        }
        let mut data = Vec::with_capacity(format.bytes_for(rows, cols));
        quantize_into(format, values, &mut data).ok_or_else(|| {
            EngineError::Invalid(format!(
                "tensor `{tensor}`: cannot quantize to {format} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
            ))
        })?;
        Ok(QuantMatrix {
            format,
            rows,
            cols,
            data: Storage::Owned(data),
        })
    }

    /// Whether the blocks are borrowed from a file map rather than owned.
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Storage::Mapped(..))
    }

    /// Storage format.
    pub fn format(&self) -> QuantFormat {
        self.format
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All blocks, row after row.
    pub fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.format.bytes_for(1, self.cols)
    }

    /// The raw blocks of row `r` (`r < rows`).
    pub fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes()[r * n..(r + 1) * n]
    }

    /// Dequantize row `r` into `out` (`cols` values) — an embedding lookup.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows || out.len() != self.cols {
            return Err(EngineError::Invalid(format!(
                "dequantize_row: row {r} of {} rows into {} values (need {})",
                self.rows,
                out.len(),
                self.cols
            )));
        }
        dequantize_into(self.format, self.row(r), out);
        Ok(())
    }

    /// The whole matrix as row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        dequantize_into(self.format, self.bytes(), &mut out);
        out
    }
}

fn check_len(
    tensor: &str,
    format: QuantFormat,
    rows: usize,
    cols: usize,
    len: usize,
) -> Result<()> {
    check_cols(tensor, format, cols)?;
    let expected = format.bytes_for(rows, cols);
    if len != expected {
        return Err(EngineError::Invalid(format!(
            "tensor `{tensor}`: {format} data of {rows}x{cols} needs {expected} bytes, got {len}"
        )));
    }
    Ok(())
}

/// Whether `format` kernels can take a matrix with `cols` columns.
pub fn kernel_cols_ok(format: QuantFormat, cols: usize) -> bool {
    let multiple = format.block_elems().max(32);
    cols != 0 && cols % multiple == 0
}

fn check_cols(tensor: &str, format: QuantFormat, cols: usize) -> Result<()> {
    // The integer kernels quantize activations in blocks of 32, so every format needs it.
    let multiple = format.block_elems().max(32);
    if cols == 0 || cols % multiple != 0 {
        return Err(EngineError::Invalid(format!(
            "tensor `{tensor}`: {cols} columns is not a multiple of {multiple} as {format} kernels require"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry_naming_the_tensor() {
        let err =
            QuantMatrix::from_raw("blk.0.ffn_up.weight", QuantFormat::Q4K, 2, 128, vec![0; 10])
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("blk.0.ffn_up.weight") && err.contains("256"),
            "{err}"
        );
        let err = QuantMatrix::from_raw("w", QuantFormat::Q8_0, 2, 32, vec![0; 67])
            .unwrap_err()
            .to_string();
        assert!(err.contains("68 bytes"), "{err}");
        let err = QuantMatrix::quantize("w", QuantFormat::Q6K, 1, 256, &[0.0; 256])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot quantize to Q6_K"), "{err}");
        assert!(QuantMatrix::quantize("w", QuantFormat::F16, 2, 32, &[0.0; 63]).is_err());
    }

    #[test]
    fn rows_are_contiguous_blocks() {
        let values: Vec<f32> = (0..128).map(|i| i as f32 * 0.5).collect();
        let m = QuantMatrix::quantize("w", QuantFormat::Bf16, 2, 64, &values).expect("quantize");
        assert_eq!(m.row_bytes(), 128);
        let mut row = vec![0.0; 64];
        m.dequantize_row(1, &mut row).expect("row 1");
        assert_eq!(row, values[64..]);
        assert!(m.dequantize_row(2, &mut row).is_err());
        assert_eq!(m.dequantize(), values);
    }
}
