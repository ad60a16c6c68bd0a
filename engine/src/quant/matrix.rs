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
    /// Rows interleaved 16 at a time (`super::interleave`) rather than one after another.
    interleaved: bool,
    /// A power of two every product and dequantized value is multiplied by (1 but for exact
    /// copies of GGUF types whose scales f16 cannot hold, `super::recode`).
    out_scale: f32,
    data: Storage,
}

/// Where the blocks live.
enum Storage {
    /// Quantized here, or rows reordered on load.
    Owned(Vec<u8>),
    /// A byte range of a read-only file map shared with the loader.
    Mapped(Arc<Mmap>, Range<usize>),
    /// Anonymous memory mapped for this matrix (the interleaved layout: see
    /// [`QuantMatrix::interleave`] for why not a `Vec`).
    Anon(memmap2::MmapMut),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(map, range) => &map[range.clone()],
            Storage::Anon(map) => map,
        }
    }
}

impl Clone for Storage {
    fn clone(&self) -> Self {
        match self {
            Storage::Owned(v) => Storage::Owned(v.clone()),
            Storage::Mapped(map, range) => Storage::Mapped(Arc::clone(map), range.clone()),
            Storage::Anon(map) => Storage::Owned(map.to_vec()),
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Storage::Mapped(_, r) => write!(f, "Mapped({r:?})"),
            Storage::Anon(m) => write!(f, "Anon({} bytes)", m.len()),
        }
    }
}

impl PartialEq for QuantMatrix {
    fn eq(&self, other: &Self) -> bool {
        (self.format, self.rows, self.cols, self.interleaved)
            == (other.format, other.rows, other.cols, other.interleaved)
            && self.out_scale == other.out_scale
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
            interleaved: false,
            out_scale: 1.0,
            data: Storage::Owned(data),
        })
    }

    /// A matrix whose row-major blocks `fill(rows, out)` writes 1024 rows at a time
    /// (`out`: `format.bytes_for(rows.len(), cols)` bytes), returning whether it could; `None`
    /// once it could not. Where this process takes the kernel layout
    /// ([`QuantMatrix::takes_kernel_layout`]) each chunk is interleaved as it comes, so no
    /// second full-size copy of the tensor exists at any time (the exact copies of
    /// `super::recode`, which would otherwise be a `Vec` until [`QuantMatrix::interleave`]
    /// copied it).
    pub fn from_row_chunks(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        cols: usize,
        mut fill: impl FnMut(Range<usize>, &mut [u8]) -> bool,
    ) -> Result<Option<Self>> {
        let row_bytes = format.bytes_for(1, cols);
        let len = super::interleave::bytes_for(format, rows, cols);
        let anon = Self::takes_kernel_layout(format, rows, cols)
            .then(|| populated_anon(len))
            .flatten();
        let Some(mut data) = anon else {
            let mut data = vec![0u8; rows * row_bytes];
            for r0 in (0..rows).step_by(ROW_CHUNK) {
                let r1 = (r0 + ROW_CHUNK).min(rows);
                if !fill(r0..r1, &mut data[r0 * row_bytes..r1 * row_bytes]) {
                    return Ok(None);
                }
            }
            return Self::from_raw(tensor, format, rows, cols, data).map(Some);
        };
        let out_row_bytes = len / rows;
        let mut chunk = vec![0u8; ROW_CHUNK.min(rows) * row_bytes];
        for r0 in (0..rows).step_by(ROW_CHUNK) {
            let r1 = (r0 + ROW_CHUNK).min(rows);
            let src = &mut chunk[..(r1 - r0) * row_bytes];
            if !fill(r0..r1, src) {
                return Ok(None);
            }
            super::interleave::repack_into(
                format,
                r1 - r0,
                cols,
                src,
                &mut data[r0 * out_row_bytes..r1 * out_row_bytes],
            );
        }
        Ok(Some(QuantMatrix {
            format,
            rows,
            cols,
            interleaved: true,
            out_scale: 1.0,
            data: Storage::Anon(data),
        }))
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
            interleaved: false,
            out_scale: 1.0,
            data: Storage::Mapped(map, range),
        })
    }

    /// Quantize row-major f32 `values` of a `rows × cols` matrix to `format` (f32, f16, bf16, q8_0,
    /// q4_0, q4_1, q5_0, q5_1, iq4_nl or iq4_xs; the K-quants can only be loaded).
    pub fn quantize(
        tensor: &str,
        format: QuantFormat,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self> {
        // K-quant / IQ4_XS rows that are not whole super-blocks: llama-quantize's fallback
        // (`QuantFormat::for_row_len`)
        let format = format.for_row_len(cols);
        if !format.has_quantizer() {
            return Err(EngineError::Invalid(format!(
                "tensor `{tensor}`: {format} weights can only be loaded from a GGUF file (no {format} quantizer)"
            )));
        }
        check_cols(tensor, format, cols)?;
        if values.len() != rows * cols {
            return Err(EngineError::Shape {
                tensor: tensor.to_string(),
                expected: vec![rows, cols],
                got: vec![values.len()],
            });
        }
        // rows in parallel on the current rayon pool (IQ4_NL / IQ4_XS search 16 scales per block:
        // single-threaded, Qwen2.5-1.5B took 7.8 minutes to quantize at load)
        use rayon::prelude::*;
        const ROWS_PER_TASK: usize = 16;
        let row_bytes = format.bytes_for(1, cols);
        let mut data = vec![0u8; format.bytes_for(rows, cols)];
        data.par_chunks_mut(row_bytes * ROWS_PER_TASK)
            .zip(values.par_chunks(cols * ROWS_PER_TASK))
            .for_each(|(dst, x)| {
                let mut blocks = Vec::with_capacity(dst.len());
                quantize_into(format, x, &mut blocks);
                dst.copy_from_slice(&blocks);
            });
        Ok(QuantMatrix {
            format,
            rows,
            cols,
            interleaved: false,
            out_scale: 1.0,
            data: Storage::Owned(data),
        })
    }

    /// This matrix in the layout the kernels of this CPU read fastest: Q4_K / Q6_K and the
    /// 32-weight formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) with a multiple of 16 rows interleaved 16
    /// rows at a time (`super::interleave`, `super::interleave32`) where the CPU has AVX-512
    /// VNNI and [`set_interleaving`] has not turned it off; otherwise unchanged.
    ///
    /// The interleaved copy is owned; a matrix borrowed from a file map then hands its pages back
    /// to the kernel (`madvise(DONTNEED)`), so resident memory stays about one copy of the weights
    /// while a model loads tensor by tensor.
    pub fn into_kernel_layout(self) -> Self {
        if Self::takes_kernel_layout(self.format, self.rows, self.cols) {
            self.interleave()
        } else {
            self
        }
    }

    /// Whether [`QuantMatrix::into_kernel_layout`] interleaves a `rows × cols` matrix of `format`
    /// in this process.
    pub fn takes_kernel_layout(format: QuantFormat, rows: usize, cols: usize) -> bool {
        kernel_layout() == "x16"
            && super::matmul::interleaved_kernel(format)
            && super::interleave::supports(format, rows, cols)
    }

    /// This matrix with its rows interleaved 16 at a time, when its format and shape allow it
    /// (every format of `super::interleave::has_layout`: the K-quants, IQ4_XS, the code formats
    /// and the 32-weight formats; rows a multiple of 16); otherwise
    /// unchanged.
    pub fn interleave(self) -> Self {
        if self.interleaved || !super::interleave::supports(self.format, self.rows, self.cols) {
            return self;
        }
        let len = super::interleave::bytes_for(self.format, self.rows, self.cols);
        let Some(mut data) = populated_anon(len) else {
            // out of address space or memory: keep the matrix as it is
            return self;
        };
        // ROW_CHUNK rows at a time, handing each chunk's file pages back once it is copied, so
        // that at most one chunk is resident twice
        let (row_bytes, src) = (self.row_bytes(), self.bytes());
        let out_row_bytes = len / self.rows;
        for r0 in (0..self.rows).step_by(ROW_CHUNK) {
            let r1 = (r0 + ROW_CHUNK).min(self.rows);
            super::interleave::repack_into(
                self.format,
                r1 - r0,
                self.cols,
                &src[r0 * row_bytes..r1 * row_bytes],
                &mut data[r0 * out_row_bytes..r1 * out_row_bytes],
            );
            if let Storage::Mapped(map, range) = &self.data {
                release_pages(
                    map,
                    range.start + r0 * row_bytes..range.start + r1 * row_bytes,
                );
            }
        }
        QuantMatrix {
            format: self.format,
            rows: self.rows,
            cols: self.cols,
            interleaved: true,
            out_scale: self.out_scale,
            data: Storage::Anon(data),
        }
    }

    /// This matrix standing for its stored values times `scale`, a power of two (`W = scale ·
    /// blocks`): the products and dequantized values are multiplied by it, exactly.
    pub fn with_out_scale(mut self, scale: f32) -> Self {
        debug_assert!(
            scale > 0.0 && scale.log2().fract() == 0.0,
            "out scale {scale} is not a power of two"
        );
        self.out_scale = scale;
        self
    }

    /// The power of two the stored blocks are multiplied by ([`QuantMatrix::with_out_scale`]).
    pub fn out_scale(&self) -> f32 {
        self.out_scale
    }

    /// Whether the rows are interleaved 16 at a time (see [`QuantMatrix::interleave`]).
    pub fn is_interleaved(&self) -> bool {
        self.interleaved
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

    /// Bytes of one row in ggml's layout.
    pub fn row_bytes(&self) -> usize {
        self.format.bytes_for(1, self.cols)
    }

    /// The raw blocks of row `r` (`r < rows`) of a matrix that is not interleaved.
    pub fn row(&self, r: usize) -> &[u8] {
        debug_assert!(!self.interleaved, "row() of an interleaved matrix");
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
        if self.interleaved {
            // block by block through a stack buffer: an embedding lookup allocates nothing
            let (bb, be) = (self.format.block_bytes(), self.format.block_elems());
            let mut blk = [0u8; 256]; // any block (the largest, Q6_K's, is 210 bytes)
            for (b, o) in out.chunks_exact_mut(be).enumerate() {
                let blk = &mut blk[..bb];
                super::interleave::block(self.format, self.cols, self.bytes(), r, b, blk);
                dequantize_into(self.format, blk, o);
            }
        } else {
            dequantize_into(self.format, self.row(r), out);
        }
        if self.out_scale != 1.0 {
            out.iter_mut().for_each(|v| *v *= self.out_scale);
        }
        Ok(())
    }

    /// The whole matrix as row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        if self.interleaved {
            for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
                // in range: r < rows and the row has `cols` values
                let _ = self.dequantize_row(r, row);
            }
        } else {
            dequantize_into(self.format, self.bytes(), &mut out);
            if self.out_scale != 1.0 {
                out.iter_mut().for_each(|v| *v *= self.out_scale);
            }
        }
        out
    }
}

/// Whether [`QuantMatrix::into_kernel_layout`] may interleave (see [`set_interleaving`]).
static INTERLEAVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turn the interleaved layout of later loads on or off for this process (on by default), to
/// measure one layout against the other (`specsweep bench --layout`).
pub fn set_interleaving(on: bool) {
    INTERLEAVE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The layout [`QuantMatrix::into_kernel_layout`] gives block-quantized matrices (those with an
/// interleaved layout) in this process:
/// `x16` (interleaved) or `rows`.
pub fn kernel_layout() -> &'static str {
    let isa = super::Isa::detect();
    if INTERLEAVE.load(std::sync::atomic::Ordering::Relaxed)
        && matches!(
            isa,
            super::Isa::Avx2 | super::Isa::Avx512Vnni | super::Isa::Amx
        )
    {
        "x16"
    } else {
        "rows"
    }
}

/// Rows per step when a matrix is interleaved ([`QuantMatrix::interleave`],
/// [`QuantMatrix::from_row_chunks`]): at most this many rows exist twice at once.
const ROW_CHUNK: usize = 1024;

/// One populated anonymous map of `len` bytes rather than a `Vec`: the kernel fills its pages
/// in one call instead of one fault per 4 KiB page on first touch (measured on a KVM guest:
/// those faults took more than half of the load time of Qwen2.5-1.5B); `None` when out of
/// address space or memory.
fn populated_anon(len: usize) -> Option<memmap2::MmapMut> {
    memmap2::MmapOptions::new()
        .len(len)
        .populate()
        .map_anon()
        .ok()
}

/// Drop the resident pages wholly inside `range` of a read-only file map: the file stays mapped
/// and a later read would fault them back in from the file.
pub(crate) fn release_pages(map: &Mmap, range: Range<usize>) {
    const PAGE: usize = 4096;
    let start = range.start.next_multiple_of(PAGE);
    let end = range.end / PAGE * PAGE;
    if end > start {
        // SAFETY: the map is read-only and file-backed, so dropping its pages loses nothing: the
        // next access reads them from the file again. No reference into these pages is used
        // across the call by this matrix (its copy is owned); other holders of the map read the
        // same bytes after the refault.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
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

/// Whether `format` kernels can take a matrix with `cols` columns — for IQ4_XS, rows that are
/// not whole super-blocks count as the IQ4_NL that [`QuantMatrix::quantize`] makes of them
/// (`QuantFormat::for_row_len`); a stored IQ4_XS matrix of such rows is refused by its length
/// check.
pub fn kernel_cols_ok(format: QuantFormat, cols: usize) -> bool {
    let multiple = format.for_row_len(cols).block_elems().max(32);
    cols != 0 && cols.is_multiple_of(multiple)
}

fn check_cols(tensor: &str, format: QuantFormat, cols: usize) -> Result<()> {
    // The integer kernels quantize activations in blocks of 32, so every format needs it.
    let multiple = format.block_elems().max(32);
    if cols == 0 || !cols.is_multiple_of(multiple) {
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

    /// A matrix built chunk by chunk holds the bytes `fill` wrote (interleaved where this CPU
    /// takes the layout, then read back as the same blocks), and a refused chunk gives `None`.
    #[test]
    fn row_chunks_build_the_matrix_the_bytes_describe() {
        let (rows, cols) = (ROW_CHUNK + 48, 64);
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        let whole = QuantMatrix::quantize("w", QuantFormat::Q8_0, rows, cols, &values).unwrap();
        let row_bytes = whole.row_bytes();
        let mut spans = Vec::new();
        let built = QuantMatrix::from_row_chunks("w", QuantFormat::Q8_0, rows, cols, |r, out| {
            out.copy_from_slice(&whole.bytes()[r.start * row_bytes..r.end * row_bytes]);
            spans.push(r);
            true
        })
        .unwrap()
        .expect("every chunk filled");
        assert_eq!(spans, [0..ROW_CHUNK, ROW_CHUNK..rows]);
        assert_eq!(
            built.is_interleaved(),
            QuantMatrix::takes_kernel_layout(QuantFormat::Q8_0, rows, cols)
        );
        assert_eq!(built.dequantize(), whole.dequantize());
        let refused =
            QuantMatrix::from_row_chunks("w", QuantFormat::Q8_0, rows, cols, |r, _| r.start == 0)
                .unwrap();
        assert!(refused.is_none());
    }
}
