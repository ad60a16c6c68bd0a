//! `out = x · Wᵀ` for a small batch of activation rows `x` (`m × cols`; m = 1 in decode, k + 1 in
//! speculative verify, the prompt length in prefill) against a [`QuantMatrix`] `W` (`rows × cols`),
//! dequantizing the weights on the fly inside the dot products.
//!
//! The scheme is llama.cpp's CPU `mul_mat`: for block formats the activations are quantized once per
//! call to 8-bit blocks of 32, or 256 for the K-quants ([`ActBlocks`]) and every weight block is multiplied with integer dot
//! products; dense formats multiply in f32. Output rows are split across rayon's current pool (the
//! caller picks the thread count with `ThreadPool::install`); each task walks its rows in slabs of
//! [`ROW_SLAB`] and, for `m > TILE_M`, in tiles of [`TILE_M`] activation rows, so a weight slab is
//! decoded from L2 once per tile rather than once per activation row. The activation buffer lives in
//! the caller's [`MatmulScratch`], so the decode loop allocates nothing after its first call.
//! Where a register-blocked kernel exists (Q4_K / Q6_K on [`Isa::Avx512Vnni`]) the rows of a slab
//! go two per call, each activation chunk loaded once for both (see `super::avx512`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use super::matrix::QuantMatrix;
use super::quantize::ActBlocks;
use super::scalar;
use crate::error::{EngineError, Result};

/// Activation rows handled together by one kernel call (each weight block is decoded once for them).
pub(crate) const TILE_M: usize = 16;
/// Weight rows per slab: small enough that a slab of the widest row (Q8_0, 8960 columns, ~9.5 KB
/// per row) stays in L2 while the activation tiles pass over it.
const ROW_SLAB: usize = 32;
/// Below this many multiply-adds a call runs on the calling thread (a rayon dispatch costs a few µs).
const PARALLEL_MIN_MACS: usize = 1 << 16;
/// Row tasks per pool thread for large products (work stealing evens out a slow thread) and the
/// size below which one task per thread is enough (dispatching and stealing cost more than the
/// imbalance; measured on SmolLM2-135M: +5 % decode tok/s).
const TASKS_PER_THREAD: usize = 4;
const ONE_TASK_PER_THREAD_MACS: usize = 1 << 22;

/// Which kernel family runs: chosen once at run time from the CPU's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (any CPU).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C intrinsics.
    Avx2,
    /// AVX2 plus AVX-512 F/BW/VL for Q4_K and Q6_K (`super::avx512`).
    Avx512,
    /// [`Isa::Avx512`] plus AVX-512 VNNI (`vpdpbusd` / `vpdpwssd`) for Q4_K and Q6_K (and BMI2).
    Avx512Vnni,
    /// [`Isa::Avx512Vnni`] plus AMX-INT8 tiles for Q4_K and Q6_K at batch sizes where they are
    /// faster (from 9 and 16 rows: `super::amx`) and outside [`without_tiles`]; smaller batches
    /// and the other formats run as [`Isa::Avx512Vnni`].
    Amx,
}

thread_local! {
    /// Whether this thread's products must not use the AMX tiles (see [`without_tiles`]).
    static NO_TILES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with the AMX tiles off for this thread's products, so that every output row is
/// computed with the same arithmetic whatever the batch size.
///
/// The VNNI kernels are batch-invariant: a row's float operations do not depend on how many
/// activation rows share the call, so a speculative verify of k + 1 tokens produces bit for bit
/// the logits that k + 1 single-token steps would, and greedy speculative output equals plain
/// greedy output. The tiles sum in another order; used in a verify, they flipped near-tie argmaxes
/// (measured: `matrices/cpu-speculation.toml`, 2 of 6 outputs differed at k = 8). The engine
/// therefore uses them only for a sequence's first forward (the prefill, which the speculative
/// and the plain run share) and runs every later forward inside this.
pub fn without_tiles<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_TILES.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NO_TILES.with(|c| c.replace(true)));
    f()
}

/// The family [`Isa::select`] chose for this process, as its index in [`Isa::ALL`] (`u8::MAX`: none).
static SELECTED: AtomicU8 = AtomicU8::new(u8::MAX);

impl Isa {
    /// Every family, portable first.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Amx,
    ];

    /// The kernel family the model's products use: the one [`Isa::select`] chose, else the best
    /// this CPU supports.
    pub fn detect() -> Isa {
        match Isa::ALL.get(SELECTED.load(Ordering::Relaxed) as usize) {
            Some(&isa) => isa,
            None => Isa::best(),
        }
    }

    /// Run every later product of this process on `isa` instead of the best family (to measure
    /// one family against another end to end, as `specsweep bench --kernels` does). An error if
    /// this CPU cannot run it.
    pub fn select(isa: Isa) -> Result<()> {
        if !Isa::available().contains(&isa) {
            return Err(EngineError::Invalid(format!(
                "{} kernels requested on a CPU that runs only {}",
                isa.name(),
                Isa::available()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let index = Isa::ALL.iter().position(|&i| i == isa).unwrap_or(0);
        SELECTED.store(index as u8, Ordering::Relaxed);
        Ok(())
    }

    /// The best kernel family this CPU supports (detected once).
    pub fn best() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // (BMI2, which every AVX-512 CPU has, for the IQ1_SHIFT kernel's `pdep`)
                    if std::arch::is_x86_feature_detected!("avx512vnni")
                        && std::arch::is_x86_feature_detected!("bmi2")
                    {
                        if super::amx::usable() {
                            return Isa::Amx;
                        }
                        return Isa::Avx512Vnni;
                    }
                    return Isa::Avx512;
                }
                return Isa::Avx2;
            }
            Isa::Scalar
        })
    }

    /// The family named `name` (as [`Isa::name`] spells it).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Short name for records and bench output.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Amx => "amx",
        }
    }

    /// Every kernel family this CPU can run, portable first (for tests that compare them).
    pub fn available() -> Vec<Isa> {
        let best = Isa::best();
        let n = Isa::ALL
            .iter()
            .position(|&i| i == best)
            .map_or(1, |i| i + 1);
        Isa::ALL[..n].to_vec()
    }

    /// The family that runs everything [`Isa::Amx`] does not take over.
    fn vector_family(self) -> Isa {
        if self == Isa::Amx {
            Isa::Avx512Vnni
        } else {
            self
        }
    }
}

/// Reusable buffers of [`matmul`]: keep one per model (or per thread driving a model).
#[derive(Debug, Default, Clone)]
pub struct MatmulScratch {
    /// Activations in blocks of 32 (Q8_0 / Q4_* / Q5_* weights).
    act: ActBlocks,
    /// Activations in blocks of 256 (K-quant weights).
    act256: ActBlocks,
    /// The 256-block activations in AMX tile layout (only with [`Isa::Amx`]).
    #[cfg(target_arch = "x86_64")]
    tiles: super::amx::TileActs,
    /// Group sums of the 256-block activations for interleaved matrices.
    sums: super::interleave::GroupSums,
    /// Row tasks of the current call.
    tasks: Vec<(usize, usize, usize)>,
}

impl MatmulScratch {
    /// An empty scratch; it grows to the largest call it sees and keeps that capacity.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A tile of quantized activation rows as the block kernels see it.
pub(crate) struct ActTile<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
    pub(crate) bsums: &'a [i16],
    /// Values per scale in `d`: 32, or 256 for the K-quants.
    pub(crate) block: usize,
    pub(crate) cols: usize,
    pub(crate) m: usize,
}

impl ActTile<'_> {
    /// Group `b` (of 32 values) of row `i`: its values, scale and scaled sum.
    #[inline(always)]
    pub(crate) fn block(&self, i: usize, b: usize) -> (&[i8], f32, f32) {
        let nb = self.cols / 32;
        let at = i * self.cols + 32 * b;
        (
            &self.qs[at..at + 32],
            self.d[at / self.block],
            self.s[i * nb + b],
        )
    }
}

/// A tile of f32 activation rows as the dense kernels see it.
pub(crate) struct FloatTile<'a> {
    pub(crate) x: &'a [f32],
    pub(crate) cols: usize,
    pub(crate) m: usize,
}

impl FloatTile<'_> {
    /// Row `i` of the tile.
    #[inline(always)]
    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.cols..(i + 1) * self.cols]
    }
}

/// `out[i·rows + r] = Σ_j x[i·cols + j] · W[r, j]` for `i < m`, with the best kernels of this CPU.
///
/// # Shapes
/// - `x`: `m × cols` row-major (`cols = w.cols()`)
/// - `out`: `m × rows` row-major (`rows = w.rows()`)
pub fn matmul(
    x: &[f32],
    m: usize,
    w: &QuantMatrix,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    matmul_with(Isa::detect(), x, m, w, out, scratch)
}

/// [`matmul`] with an explicit kernel family (one of [`Isa::available`]).
pub fn matmul_with(
    isa: Isa,
    x: &[f32],
    m: usize,
    w: &QuantMatrix,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    matmul_many_with(isa, x, m, &[w], &mut [out], scratch)
}

/// Several products of the same activations in one parallel region — `outs[j] = x · ws[j]ᵀ`
/// (a layer's q/k/v projections, or an MLP's gate and up): the activations are quantized once
/// per block size and the rows of all matrices are split across the pool together, so the pool
/// is woken once rather than once per matrix.
///
/// # Shapes
/// - `x`: `m × cols`; every `ws[j]` has `cols` columns; `outs[j]`: `m × ws[j].rows()`
pub fn matmul_many(
    x: &[f32],
    m: usize,
    ws: &[&QuantMatrix],
    outs: &mut [&mut [f32]],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    matmul_many_with(Isa::detect(), x, m, ws, outs, scratch)
}

/// [`matmul_many`] with an explicit kernel family.
pub fn matmul_many_with(
    isa: Isa,
    x: &[f32],
    m: usize,
    ws: &[&QuantMatrix],
    outs: &mut [&mut [f32]],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    if ws.len() != outs.len() || ws.len() > MAX_MANY {
        return Err(EngineError::Invalid(format!(
            "matmul: {} weight matrices and {} outputs (equal counts, at most {MAX_MANY})",
            ws.len(),
            outs.len()
        )));
    }
    for (w, out) in ws.iter().zip(outs.iter()) {
        let (rows, cols) = (w.rows(), w.cols());
        if x.len() != m * cols || out.len() != m * rows {
            return Err(EngineError::Invalid(format!(
                "matmul: {m} input rows of {cols} ({} values given) into {m}x{rows} outputs ({} given)",
                x.len(),
                out.len()
            )));
        }
    }
    if !Isa::available().contains(&isa) {
        return Err(EngineError::Invalid(format!(
            "matmul: {} kernels requested on a CPU without them",
            isa.name()
        )));
    }
    if m == 0 {
        return Ok(());
    }
    // K-quants take one activation scale per 256 (ggml's Q8_K), the others one per 32 (Q8_1).
    let act_block = |w: &QuantMatrix| w.format().block_elems().max(32);
    for block in [32, 256] {
        let buf = if block == 32 {
            &mut scratch.act
        } else {
            &mut scratch.act256
        };
        if let Some(w) = ws
            .iter()
            .find(|w| w.format().is_block_quantized() && act_block(w) == block)
        {
            // ggml's Q8_1 sums (an IEEE half) for the formats with a min term
            let q8_1 = ws.iter().any(|w| {
                matches!(
                    w.format(),
                    super::QuantFormat::Q4_1 | super::QuantFormat::Q5_1
                )
            });
            buf.quantize_for(x, m, w.cols(), block, q8_1);
        }
    }
    if let Some(w) = ws
        .iter()
        .find(|w| w.is_interleaved() && act_block(w) == 256)
    {
        let needs = |f| ws.iter().any(|w| w.is_interleaved() && w.format() == f);
        scratch.sums.fill(&scratch.act256, m, w.cols(), needs);
    }
    if let Some(w) = ws.iter().find(|w| w.is_interleaved() && act_block(w) == 32) {
        super::interleave32::fill_sums(&scratch.act, m, w.cols(), &mut scratch.sums.sum32);
    }
    // AMX: Q4_K / Q6_K matrices (either layout) run on tiles where the batch is large enough
    // (amx::takes) and the forward allows them (`without_tiles`)
    let on_tiles = |w: &QuantMatrix| amx_takes(w.format(), m);
    let tiles = isa == Isa::Amx && !NO_TILES.with(|c| c.get()) && ws.iter().any(|w| on_tiles(w));
    #[cfg(target_arch = "x86_64")]
    if tiles {
        scratch.tiles.pack(&scratch.act256, m, x.len() / m);
    }
    let isa_rest = isa.vector_family();
    let threads = rayon::current_num_threads();
    let macs: usize = ws.iter().map(|w| m * w.rows() * w.cols()).sum();
    let per_thread = if macs < ONE_TASK_PER_THREAD_MACS {
        1
    } else {
        TASKS_PER_THREAD
    };
    // (matrix, first row, end row) per task; each matrix split in proportion to its work
    let tasks = &mut scratch.tasks;
    tasks.clear();
    for (j, w) in ws.iter().enumerate() {
        let rows = w.rows();
        let n = if threads <= 1 || macs < PARALLEL_MIN_MACS {
            1
        } else {
            let share = (threads * per_thread * m * rows * w.cols()).div_ceil(macs.max(1));
            share.clamp(1, rows.div_ceil(8).max(1))
        };
        let mut per = rows.div_ceil(n).max(1);
        if (tiles && on_tiles(w)) || w.is_interleaved() {
            // whole 16-row tiles per task
            per = per.next_multiple_of(16);
        }
        tasks.extend(
            (0..rows)
                .step_by(per)
                .map(|r0| (j, r0, (r0 + per).min(rows))),
        );
    }
    let mut out_ptrs = [OutPtr(std::ptr::null_mut()); MAX_MANY];
    for (p, o) in out_ptrs.iter_mut().zip(outs.iter_mut()) {
        *p = OutPtr(o.as_mut_ptr());
    }
    let (act32, act256, sums) = (&scratch.act, &scratch.act256, &scratch.sums);
    #[cfg(target_arch = "x86_64")]
    let tile_acts = &scratch.tiles;
    let task = |&(j, r0, r1): &(usize, usize, usize)| {
        let w = ws[j];
        #[cfg(target_arch = "x86_64")]
        if tiles && on_tiles(w) && w.is_interleaved() {
            // SAFETY: as below; whole groups of 16 rows (the split above).
            unsafe { super::amx::rows(w, r0..r1, tile_acts, out_ptrs[j].0, w.rows()) };
            return;
        }
        if w.is_interleaved() {
            let act = if act_block(w) == 32 { act32 } else { act256 };
            // SAFETY: as below; rows r0..r1 are whole groups of 16 (the split above).
            unsafe { interleaved_rows(isa, w, act, sums, m, r0..r1, out_ptrs[j]) };
            return;
        }
        let mut r0 = r0;
        #[cfg(target_arch = "x86_64")]
        if tiles && on_tiles(w) {
            let end = r0 + (r1 - r0) / 16 * 16;
            if end > r0 {
                // SAFETY: `Isa::Amx` is only detected once `amx::usable` succeeded on a CPU with
                // AVX-512 F/BW/VL/VNNI; the rows r0..end are this task's alone (as below).
                unsafe { super::amx::rows(w, r0..end, tile_acts, out_ptrs[j].0, w.rows()) };
            }
            r0 = end;
        }
        if r0 == r1 {
            return;
        }
        let input = if !w.format().is_block_quantized() {
            Input::Dense(x)
        } else if act_block(w) == 32 {
            Input::Blocks(act32)
        } else {
            Input::Blocks(act256)
        };
        // SAFETY: tasks own disjoint row ranges of their matrix's output, so no two tasks write
        // the same element, and every output outlives the (blocking) parallel loop.
        unsafe { compute_rows(isa_rest, w, input, m, r0..r1, out_ptrs[j]) };
    };
    if tasks.len() == 1 {
        task(&tasks[0]);
    } else if !super::team::for_each(tasks.len(), &|i| task(&tasks[i])) {
        tasks.par_iter().for_each(task);
    }
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        // exact (a power of two): as if the blocks held the scaled values
        if w.out_scale() != 1.0 {
            out.iter_mut().for_each(|v| *v *= w.out_scale());
        }
    }
    Ok(())
}

/// Rows `rows` (whole groups of 16) of an interleaved matrix: the VNNI kernels where the CPU has
/// them, the AVX2 ones below that, the portable reference elsewhere (an [`Isa`] chosen below the
/// one the layout was made for). Every one computes the same bits (`super::interleave`); every
/// interleaved format has all three (`super::interleave::has_layout`).
///
/// # Safety
/// `out` points to `m × w.rows()` floats and no other thread writes these rows' elements.
unsafe fn interleaved_rows(
    isa: Isa,
    w: &QuantMatrix,
    act: &super::quantize::ActBlocks,
    sums: &super::interleave::GroupSums,
    m: usize,
    rows: std::ops::Range<usize>,
    out: OutPtr,
) {
    let (format, cols, n_rows) = (w.format(), w.cols(), w.rows());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: these families are only used once `Isa::detect` confirmed AVX-512 VNNI and
        // everything below it; the rest is forwarded from the caller.
        Isa::Avx512Vnni | Isa::Amx => unsafe {
            super::x16::rows_vnni(format, w.bytes(), cols, act, sums, m, rows, out.0, n_rows)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: every family but the scalar one implies AVX2, FMA and F16C (`Isa::best`); an
        // interleaved matrix's format has a layout, which the kernels take; the rest is forwarded
        // from the caller.
        Isa::Avx2 | Isa::Avx512 => unsafe {
            super::x16_avx2::rows_avx2(format, w.bytes(), cols, act, sums, m, rows, out.0, n_rows)
        },
        // SAFETY: forwarded from the caller.
        _ if format.block_elems() == 32 => unsafe {
            super::interleave32::rows_scalar(
                format,
                w.bytes(),
                cols,
                act,
                &sums.sum32,
                m,
                rows,
                out.0,
                n_rows,
            )
        },
        // SAFETY: forwarded from the caller.
        _ => unsafe {
            super::interleave::rows_scalar(
                format,
                w.bytes(),
                cols,
                act,
                sums,
                m,
                rows,
                out.0,
                n_rows,
            )
        },
    }
}

/// Whether the kernel family of this process ([`Isa::detect`]) has vector kernels for interleaved
/// `format` matrices, so that loading a model interleaves them (every format of
/// `super::interleave::has_layout`), on AVX-512 VNNI (and AMX) CPUs (`super::x16`) and on AVX2
/// CPUs (`super::x16_avx2`). AVX-512 CPUs without VNNI keep the row-major blocks.
pub(crate) fn interleaved_kernel(format: super::QuantFormat) -> bool {
    #[cfg(target_arch = "x86_64")]
    return match Isa::detect() {
        Isa::Avx2 | Isa::Avx512Vnni | Isa::Amx => super::interleave::has_layout(format),
        _ => false,
    };
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = format;
        false
    }
}

/// Whether the AMX kernels take `m` activation rows against weights of `format`.
fn amx_takes(format: super::QuantFormat, m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::amx::takes(format, m);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (format, m);
        false
    }
}

/// Most matrices one [`matmul_many`] call takes.
pub const MAX_MANY: usize = 8;

/// The activations in the form the weight format needs.
#[derive(Clone, Copy)]
enum Input<'a> {
    Blocks(&'a ActBlocks),
    Dense(&'a [f32]),
}

/// The output pointer shared by the row tasks.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes a disjoint set of elements (see `matmul_with`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Compute output rows `rows` for every activation row.
///
/// # Safety
/// `out` points to `m × w.rows()` floats and no other thread writes these rows' elements.
unsafe fn compute_rows(
    isa: Isa,
    w: &QuantMatrix,
    input: Input<'_>,
    m: usize,
    rows: std::ops::Range<usize>,
    out: OutPtr,
) {
    let (n_rows, cols, format) = (w.rows(), w.cols(), w.format());
    let mut tile_out = [0.0f32; TILE_M];
    let mut pair_out = [[0.0f32; TILE_M]; 2];
    for slab in rows.clone().step_by(ROW_SLAB) {
        let slab_end = (slab + ROW_SLAB).min(rows.end);
        for t0 in (0..m).step_by(TILE_M) {
            let tm = TILE_M.min(m - t0);
            let mut r = slab;
            while r < slab_end {
                let w_row = w.row(r);
                match input {
                    Input::Blocks(act) => {
                        let (nb, nd, n16) = (cols / 32, cols / act.block, cols / 16);
                        let tile = ActTile {
                            qs: &act.qs[t0 * cols..(t0 + tm) * cols],
                            d: &act.d[t0 * nd..(t0 + tm) * nd],
                            s: &act.s[t0 * nb..(t0 + tm) * nb],
                            bsums: &act.bsums[t0 * n16..(t0 + tm) * n16],
                            block: act.block,
                            cols,
                            m: tm,
                        };
                        if r + 1 < slab_end {
                            let [o0, o1] = &mut pair_out;
                            let pair = [w_row, w.row(r + 1)];
                            if rows2_dot_blocks(isa, format, pair, &tile, [o0, o1]) {
                                for (k, o) in pair_out.iter().enumerate() {
                                    for (i, v) in o[..tm].iter().enumerate() {
                                        // SAFETY: as below, for rows r and r + 1 < slab_end.
                                        unsafe { *out.0.add((t0 + i) * n_rows + r + k) = *v };
                                    }
                                }
                                r += 2;
                                continue;
                            }
                        }
                        row_dot_blocks(isa, format, w_row, &tile, &mut tile_out);
                    }
                    Input::Dense(x) => {
                        let tile = FloatTile {
                            x: &x[t0 * cols..(t0 + tm) * cols],
                            cols,
                            m: tm,
                        };
                        row_dot_dense(isa, format, w_row, &tile, &mut tile_out);
                    }
                }
                for (i, v) in tile_out[..tm].iter().enumerate() {
                    // SAFETY: (t0 + i) < m and r < n_rows; the caller guarantees exclusivity.
                    unsafe { *out.0.add((t0 + i) * n_rows + r) = *v };
                }
                r += 1;
            }
        }
    }
}

#[inline]
fn row_dot_blocks(
    isa: Isa,
    format: super::QuantFormat,
    w: &[u8],
    tile: &ActTile<'_>,
    out: &mut [f32],
) {
    if format.is_code_copy() {
        return super::iq_codes::row_dot(isa, format, w, tile, out);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only used once `Isa::detect` has confirmed AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { super::avx2::row_dot_blocks(format, w, tile, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only used once `Isa::detect` has confirmed AVX-512 F/BW/VL
        // besides AVX2, FMA and F16C.
        Isa::Avx512 => unsafe { super::avx512::row_dot_blocks(format, w, tile, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512Vnni` is only used once `Isa::detect` has confirmed AVX-512 VNNI
        // besides everything `Isa::Avx512` needs.
        Isa::Avx512Vnni => unsafe { super::avx512::row_dot_blocks_vnni(format, w, tile, out) },
        _ => scalar::row_dot_blocks(format, w, tile, out),
    }
}

/// Two weight rows at once where a register-blocked kernel exists for `isa` and `format` (it loads
/// each activation chunk once for both rows); `false`, computing nothing, elsewhere.
#[inline]
fn rows2_dot_blocks(
    isa: Isa,
    format: super::QuantFormat,
    w: [&[u8]; 2],
    tile: &ActTile<'_>,
    out: [&mut [f32]; 2],
) -> bool {
    if format.is_code_copy() {
        return super::iq_codes::rows2_dot(isa, format, w, tile, out);
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_dot_blocks`.
        Isa::Avx512Vnni => unsafe { super::avx512::rows2_dot_blocks_vnni(format, w, tile, out) },
        _ => false,
    }
}

#[inline]
fn row_dot_dense(
    isa: Isa,
    format: super::QuantFormat,
    w: &[u8],
    tile: &FloatTile<'_>,
    out: &mut [f32],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_dot_blocks`.
        Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx if tile.cols.is_multiple_of(32) => unsafe {
            super::avx512::row_dot_dense(format, w, tile, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_dot_blocks`.
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx => unsafe {
            super::avx2::row_dot_dense(format, w, tile, out)
        },
        _ => scalar::row_dot_dense(format, w, tile, out),
    }
}
