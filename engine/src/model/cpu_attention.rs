//! Causal grouped-query attention over a host-resident KV cache, for the CPU backend (issue #8).
//!
//! burn `flex`'s matmul runs single-threaded below 192³ multiply-adds, so a decode step's
//! `q · Kᵀ → softmax → · V` over a long cache used one core. This kernel splits the work the way
//! flash-decoding does:
//!
//! - an *item* is one (KV head, block of query rows, range of keys); every query head sharing the
//!   KV head and every query row of the block is handled by the same item, so the keys and values
//!   of a tile are read from memory once and reused from L1 for all of them;
//! - within an item, keys are visited in tiles of `TILE` with the online softmax (running max
//!   `m`, running sum `l`, accumulator `acc` rescaled by `exp(m_old − m_new)` when the max grows);
//! - items over different key ranges of the same rows leave partial `(m, l, acc)` that a second,
//!   row-parallel pass merges: `out = Σ_s acc_s·e^{m_s−M} / Σ_s l_s·e^{m_s−M}`, `M = max_s m_s`.
//!
//! Items run on the forward's `quant::Team` (the spinning helpers that run the products) when
//! one is active, otherwise on rayon's current pool, so at k = 1 with two or three KV heads both
//! cores still work. On rayon inside a forward, the attention's second worker competed with the
//! team's spinning helper for the second core. The AVX2 + FMA path (run-time detected) computes eight
//! key dot products at once and a polynomial `exp`; the portable fallback has the same structure.
//! All scratch lives in [`AttnScratch`], which grows once and is reused for every token.
//!
//! The cache may hold `f32` or IEEE `f16` elements, or ggml's `q8_0`, `q4_0`, `q4_1`, `q5_0` or
//! `q5_1` blocks ([`KvElem`]; llama.cpp's `-ctk/-ctv f16` default and those types; the 4/5-bit
//! blocks as the `q8_0` one below, with their own value rule): an `f16` key or value is widened
//! to `f32` as it is loaded (`vcvtph2ps`, exact), and every operation after that is the `f32` one, so
//! attention over an `f16` cache equals attention over an `f32` cache holding the same rounded
//! values, bit for bit. A `q8_0` row is `head_dim / 32` blocks of 32 int8 values and an `f16`
//! scale: an item dequantizes each tile of `TILE` keys and values once (`scale · q`, one
//! rounding) into an `f32` buffer that every query row of the item then reads with the `f32`
//! kernel — so a `q8_0` cache, too, attends bit for bit like an `f32` cache holding its
//! dequantized values. (Applying the scales per block inside the products instead, without the
//! buffer, ran at half the `f16` kernel's speed at k = 9; dequantized once per tile, k = 9 runs
//! at the `f16` kernel's speed.)

use half::f16;
use rayon::prelude::*;

use crate::quant::QuantFormat;
use crate::quant::interleave32 as iq;
use crate::quant::iq4_nl;

/// An element type the cache may store: widened to `f32` as it is read.
///
/// A cached row of `head_dim` values is `head_dim / PER` elements: one value per element for
/// `f32` / `f16`, a block of 32 for [`Block32`]. Values are addressed by their index `c` in
/// the row, so the kernel never sees how a row is packed.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// Values per element (a row's `head_dim` is a multiple of it).
    const PER: usize;
    /// The zero element.
    const ZERO: Self;
    /// Store one row of values (`src.len() = dst.len() · PER`), rounding them to this type.
    fn put_row(dst: &mut [Self], src: &[f32]);
    /// Value `c` of the row at `row`, as `f32`.
    ///
    /// # Safety
    /// `row` addresses a row of more than `c` values.
    unsafe fn get(row: *const Self, c: usize) -> f32;
    /// The values of one row (`out.len() = row.len() · PER`), as `f32`.
    fn to_f32(row: &[Self], out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            // SAFETY: c < row.len() · PER values.
            *o = unsafe { Self::get(row.as_ptr(), c) };
        }
    }
    /// Values `c..c + 8` of the row at `row` as `f32` lanes, `c` a multiple of 8 — before their
    /// block's [`KvElem::scale8`] when `PER > 1` (a value is `scale · lane`).
    ///
    /// # Safety
    /// `row` addresses a row of at least `c + 8` values; the CPU supports AVX2 and F16C, and the
    /// caller is compiled with them (the attention kernel's `item_avx2`).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(row: *const Self, c: usize) -> std::arch::x86_64::__m256;
    /// The scale of element `e` of the row at `row` (a block's; 1 when `PER = 1`) in every lane.
    ///
    /// # Safety
    /// As [`KvElem::load8`], for an element of the row.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn scale8(row: *const Self, e: usize) -> std::arch::x86_64::__m256 {
        let _ = (row, e);
        // SAFETY: AVX enabled in the caller.
        unsafe { std::arch::x86_64::_mm256_set1_ps(1.0) }
    }
    /// Whether a value is `scale · lane + min` rather than `scale · lane` (the product of an `f16`
    /// scale and a small integer lane is exact in `f32`, so the sum is the one rounding).
    const HAS_MIN: bool = false;
    /// The minimum of element `e` in every lane, when [`KvElem::HAS_MIN`].
    ///
    /// # Safety
    /// As [`KvElem::scale8`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn min8(row: *const Self, e: usize) -> std::arch::x86_64::__m256 {
        let _ = (row, e);
        // SAFETY: AVX enabled in the caller.
        unsafe { std::arch::x86_64::_mm256_setzero_ps() }
    }
}

impl KvElem for f32 {
    const PER: usize = 1;
    const ZERO: Self = 0.0;

    fn put_row(dst: &mut [Self], src: &[f32]) {
        dst.copy_from_slice(src);
    }

    #[inline(always)]
    unsafe fn get(row: *const Self, c: usize) -> f32 {
        // SAFETY: forwarded (value c exists).
        unsafe { *row.add(c) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(row: *const Self, c: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded (8 readable floats at c).
        unsafe { avx2::load(row.add(c)) }
    }
}

impl KvElem for f16 {
    const PER: usize = 1;
    const ZERO: Self = f16::ZERO;

    fn put_row(dst: &mut [Self], src: &[f32]) {
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, &s)| *d = f16::from_f32(s));
    }

    #[inline(always)]
    unsafe fn get(row: *const Self, c: usize) -> f32 {
        // SAFETY: forwarded (value c exists).
        unsafe { (*row.add(c)).to_f32() }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(row: *const Self, c: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded (8 readable halves = 16 bytes at c; F16C enabled in the caller).
        unsafe { avx2::load_halves(row.add(c) as *const u8) }
    }
}

/// One ggml block of 32 values in the 32-weight format numbered `F`
/// (`crate::quant::interleave32`'s `Q8_0` … `Q5_1`), its `BYTES` exactly as ggml lays them out —
/// llama.cpp's `-ctk/-ctv q8_0 | q4_0 | q4_1 | q5_0 | q5_1`. Written by the weight quantizer
/// (`crate::quant::quantize_block`, ggml's `quantize_row_*_ref`), read back by the GGUF
/// dequantizer (`crate::quant::dequantize_into`) on the portable path and 8 values at a time on
/// the vector path: `d · q` (q8_0), `d · (q − H)` (q4_0 / q5_0, H = 8 / 16) or `d · q + m` (q4_1 /
/// q5_1). The product of an `f16` scale and a small integer is exact in `f32`, so a value has at
/// most one rounding (the sum of the minimum ones), on either path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Block32<const F: u8, const BYTES: usize>(pub [u8; BYTES]);

/// ggml's `q8_0`: an `f16` scale and 32 int8 values, 34 bytes.
pub type BlockQ8_0 = Block32<{ iq::Q8_0 }, 34>;
/// ggml's `q4_0`: an `f16` scale and 32 nibbles, 18 bytes.
pub type BlockQ4_0 = Block32<{ iq::Q4_0 }, 18>;
/// ggml's `q4_1`: `f16` scale and minimum and 32 nibbles, 20 bytes.
pub type BlockQ4_1 = Block32<{ iq::Q4_1 }, 20>;
/// ggml's `q5_0`: an `f16` scale, 32 fifth bits and 32 nibbles, 22 bytes.
pub type BlockQ5_0 = Block32<{ iq::Q5_0 }, 22>;
/// ggml's `q5_1`: `f16` scale and minimum, 32 fifth bits and 32 nibbles, 24 bytes.
pub type BlockQ5_1 = Block32<{ iq::Q5_1 }, 24>;

impl<const F: u8, const BYTES: usize> Block32<F, BYTES> {
    const FORMAT: QuantFormat = iq::format_of(F);
    /// Byte offsets of (`m`, `qh`, values) in the block.
    const FIELDS: (usize, usize, usize) = iq::ggml_fields(Self::FORMAT);
    /// The integer subtracted from a stored nibble value (`H`; 0 for the minimum formats).
    const OFFSET: i32 = iq::layout_of(F).off;

    /// The bytes of `blocks`.
    fn bytes(blocks: &[Self]) -> &[u8] {
        // SAFETY: `repr(transparent)` over `[u8; BYTES]`: the blocks are their bytes.
        unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, BYTES * blocks.len()) }
    }
}

impl<const F: u8, const BYTES: usize> KvElem for Block32<F, BYTES> {
    const PER: usize = 32;
    const ZERO: Self = Self([0; BYTES]);
    const HAS_MIN: bool = Self::FIELDS.0 != 0;

    fn put_row(dst: &mut [Self], src: &[f32]) {
        for (b, x) in dst.iter_mut().zip(src.chunks_exact(32)) {
            crate::quant::quantize_block(Self::FORMAT, x, &mut b.0);
        }
    }

    fn to_f32(row: &[Self], out: &mut [f32]) {
        crate::quant::dequantize_into(Self::FORMAT, Self::bytes(row), out);
    }

    #[inline(always)]
    unsafe fn get(row: *const Self, c: usize) -> f32 {
        // (the kernels read blocks through `to_f32` and `load8`; this serves generic code only)
        let mut values = [0.0f32; 32];
        // SAFETY: forwarded (value c lies in block c / 32 of the row).
        Self::to_f32(
            std::slice::from_ref(unsafe { &*row.add(c / 32) }),
            &mut values,
        );
        values[c % 32]
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(row: *const Self, c: usize) -> std::arch::x86_64::__m256 {
        let (_, qh_at, qs_at) = Self::FIELDS;
        // SAFETY: forwarded: block c / 32 exists; values c..c + 8 (c a multiple of 8) are 8
        // bytes of it (q8_0), or 8 nibbles of one half and, for the Q5 formats, the 8 bits of
        // `qh` byte (c % 32) / 8.
        unsafe {
            let b = row.add(c / 32) as *const u8;
            let j = c % 32;
            if Self::FORMAT == QuantFormat::Q8_0 {
                avx2::load_i8x8(b.add(qs_at + j))
            } else if qh_at != 0 {
                let fifth = *b.add(qh_at + j / 8);
                avx2::load_q5x8(b.add(qs_at + j % 16), j >= 16, fifth, Self::OFFSET)
            } else {
                avx2::load_nibbles8(b.add(qs_at + j % 16), j >= 16, Self::OFFSET)
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn scale8(row: *const Self, e: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded (element e of the row exists; F16C enabled in the caller).
        unsafe { avx2::load_half8(row.add(e) as *const u8) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn min8(row: *const Self, e: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: as `scale8`, the minimum at its offset in the block (only when HAS_MIN).
        unsafe { avx2::load_half8((row.add(e) as *const u8).add(Self::FIELDS.0)) }
    }
}

/// ggml's `iq4_nl`: an `f16` scale and 32 4-bit indices into a fixed non-linear grid of 16
/// levels (`crate::quant::iq4_nl`), 18 bytes; a value is `d · GRID[q]`, exact in `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct BlockIq4Nl(pub [u8; iq4_nl::BLOCK_BYTES]);

impl KvElem for BlockIq4Nl {
    const PER: usize = 32;
    const ZERO: Self = Self([0; iq4_nl::BLOCK_BYTES]);

    fn put_row(dst: &mut [Self], src: &[f32]) {
        for (b, x) in dst.iter_mut().zip(src.chunks_exact(32)) {
            iq4_nl::quantize_block(x, &mut b.0);
        }
    }

    fn to_f32(row: &[Self], out: &mut [f32]) {
        for (b, o) in row.iter().zip(out.chunks_exact_mut(32)) {
            iq4_nl::dequantize_block(&b.0, o);
        }
    }

    #[inline(always)]
    unsafe fn get(row: *const Self, c: usize) -> f32 {
        let mut values = [0.0f32; 32];
        // SAFETY: forwarded (value c lies in block c / 32 of the row).
        iq4_nl::dequantize_block(unsafe { &(*row.add(c / 32)).0 }, &mut values);
        values[c % 32]
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(row: *const Self, c: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded: block c / 32 exists; values c..c + 8 (c a multiple of 8) are 8
        // nibbles of one half of its 16 index bytes, which follow the 2-byte scale.
        unsafe {
            let b = row.add(c / 32) as *const u8;
            let j = c % 32;
            avx2::load_iq4_nl8(b.add(2 + j % 16), j >= 16)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn scale8(row: *const Self, e: usize) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded (element e of the row exists; F16C enabled in the caller).
        unsafe { avx2::load_half8(row.add(e) as *const u8) }
    }
}

/// Keys per tile: a tile of K and V (`2 · 64 · head_dim` floats) stays in L1 while every row of
/// the item uses it.
const TILE: usize = 64;

/// Query rows per item in prefill / verify forwards.
const ROW_BLOCK: usize = 16;

/// Smallest key range worth its own item.
const MIN_SPLIT_KEYS: usize = 256;

/// Head counts and size of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (`n_heads` is a multiple of it).
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Reusable per-call buffers: partial accumulators, (max, sum) pairs, tile scores and (block
/// cache types) the dequantized tile of K and V per item.
#[derive(Debug, Default, Clone)]
pub struct AttnScratch {
    acc: Vec<f32>,
    ml: Vec<f32>,
    scores: Vec<f32>,
    tiles: Vec<f32>,
}

/// A pointer handed to the tasks of one parallel region, each of which touches its own disjoint
/// part of the buffer.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the regions below derive disjoint slices from it, one per task index.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Elements `i·len..(i + 1)·len`.
    ///
    /// # Safety
    /// In bounds, and no other live reference covers them (one task per `i`).
    #[allow(clippy::mut_from_ref)]
    unsafe fn chunk(&self, i: usize, len: usize) -> &mut [T] {
        // SAFETY: forwarded from the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(i * len), len) }
    }
}

/// Run `f(0..n)` on the forward's team when one is active (`crate::quant::Team`), else on rayon.
fn parallel(n: usize, f: &(dyn Fn(usize) + Sync)) {
    if !crate::quant::team_for_each(n, f) {
        (0..n).into_par_iter().for_each(f);
    }
}

/// Threads that run [`parallel`] regions here.
fn threads() -> usize {
    crate::quant::team_threads().unwrap_or_else(rayon::current_num_threads)
}

/// Grow `v` to at least `n` elements (never shrinks, so steady-state decoding does not allocate).
fn ensure(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// How one call is cut into items.
#[derive(Debug, Clone, Copy)]
struct Plan {
    groups: usize,
    /// Query rows per item (the last block may be shorter).
    rb_size: usize,
    n_rb: usize,
    n_splits: usize,
    /// Keys per split (a multiple of [`TILE`]).
    split_len: usize,
    /// Partial rows per item: `groups · rb_size`.
    rows: usize,
}

impl Plan {
    fn new(shape: AttnShape, start: usize, k: usize, threads: usize) -> Self {
        let groups = shape.n_heads / shape.n_kv_heads;
        let total = start + k;
        let rb_size = k.clamp(1, ROW_BLOCK);
        let n_rb = k.div_ceil(rb_size);
        let base = shape.n_kv_heads * n_rb;
        // enough items for every thread to get a few (load balance), each over enough keys
        let wanted = if threads <= 1 {
            1
        } else {
            (4 * threads).div_ceil(base)
        };
        let max_splits = total.div_ceil(MIN_SPLIT_KEYS).max(1);
        let n_splits = wanted.clamp(1, max_splits);
        let split_len = total.div_ceil(n_splits).next_multiple_of(TILE);
        let n_splits = total.div_ceil(split_len).max(1);
        Self {
            groups,
            rb_size,
            n_rb,
            n_splits,
            split_len,
            rows: groups * rb_size,
        }
    }

    fn items(&self, n_kv_heads: usize) -> usize {
        n_kv_heads * self.n_rb * self.n_splits
    }
}

/// Causal GQA attention of `k` new query rows at absolute positions `start..start+k` against the
/// cached keys/values `0..start+k` (query `i` sees keys `0..=start+i`), scale `1/√head_dim`.
///
/// # Layouts
/// - `q`: `[n_heads][k][head_dim]` (the roped `[heads, k, d]` tensor's data)
/// - `keys`, `values`: `[n_kv_heads][capacity][head_dim / K::PER]` elements of `K` and
///   `[…][head_dim / V::PER]` of `V` (rows of `head_dim` values, [`KvElem`]; llama.cpp's
///   `-ctk` / `-ctv` may differ), positions `0..start+k` filled
/// - `out`: `[k][n_heads·head_dim]` (what `o_proj` takes)
///
/// # Panics
/// When the slices do not have the lengths above or `n_heads` is not a multiple of `n_kv_heads`
/// (internal invariants: the attention block derives every length from the model config).
#[allow(clippy::too_many_arguments)]
pub fn attend<K: KvElem, V: KvElem>(
    q: &[f32],
    keys: &[K],
    values: &[V],
    capacity: usize,
    shape: AttnShape,
    start: usize,
    k: usize,
    out: &mut [f32],
    scratch: &mut AttnScratch,
) {
    let AttnShape {
        n_heads: nq,
        n_kv_heads: nkv,
        head_dim: d,
    } = shape;
    assert!(nkv > 0 && nq % nkv == 0, "{nq} heads over {nkv} KV heads");
    assert_eq!(q.len(), nq * k * d, "query length");
    assert_eq!(out.len(), k * nq * d, "output length");
    assert!(start + k <= capacity, "positions beyond the cache");
    assert!(
        d % K::PER == 0 && d % V::PER == 0,
        "head_dim {d} is not a whole number of cache blocks"
    );
    // elements per cached row of K and of V
    let (rk, rv) = (d / K::PER, d / V::PER);
    assert!(keys.len() >= nkv * capacity * rk && values.len() >= nkv * capacity * rv);
    if k == 0 {
        return;
    }
    let plan = Plan::new(shape, start, k, threads());
    let items = plan.items(nkv);
    let rows = plan.rows;
    ensure(&mut scratch.acc, items * rows * d);
    ensure(&mut scratch.ml, items * rows * 2);
    ensure(&mut scratch.scores, items * rows * TILE);
    // a block type's tile of K and V, dequantized, per item
    let kv_len = if K::PER > 1 || V::PER > 1 {
        2 * TILE * d
    } else {
        0
    };
    ensure(&mut scratch.tiles, items * kv_len);
    let isa = Isa::detect(d);
    let scale = 1.0 / (d as f32).sqrt();

    // 1. partial (m, l, acc) per item
    let acc = Shared(scratch.acc.as_mut_ptr());
    let ml = Shared(scratch.ml.as_mut_ptr());
    let scores = Shared(scratch.scores.as_mut_ptr());
    let tiles = Shared(scratch.tiles.as_mut_ptr());
    parallel(items, &|t| {
        // SAFETY: item t's own rows of the four buffers, sized above for `items` items.
        let (acc, ml, sc, kv) = unsafe {
            (
                acc.chunk(t, rows * d),
                ml.chunk(t, rows * 2),
                scores.chunk(t, rows * TILE),
                tiles.chunk(t, kv_len),
            )
        };
        let s = t % plan.n_splits;
        let hr = t / plan.n_splits;
        let (h, rb) = (hr / plan.n_rb, hr % plan.n_rb);
        let i0 = rb * plan.rb_size;
        let i1 = (i0 + plan.rb_size).min(k);
        let item = Item {
            q,
            keys: &keys[h * capacity * rk..(h + 1) * capacity * rk],
            values: &values[h * capacity * rv..(h + 1) * capacity * rv],
            d,
            k,
            scale,
            start,
            head0: h * plan.groups,
            groups: plan.groups,
            rb_size: plan.rb_size,
            i0,
            i1,
            key_lo: s * plan.split_len,
            // the last row of the block sees keys up to start + i1 - 1
            key_hi: ((s + 1) * plan.split_len).min(start + i1),
        };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::detect` returned Avx2 only after run-time detection of AVX2, FMA
            // and F16C, and only for head_dim a multiple of 8.
            Isa::Avx2 => unsafe { item_avx2(&item, acc, ml, sc, kv) },
            Isa::Scalar => run_item::<Scalar, K, V>(&item, acc, ml, sc, kv),
        }
    });

    // 2. merge the splits per query row
    let (acc, ml) = (&scratch.acc[..], &scratch.ml[..]);
    let out = Shared(out.as_mut_ptr());
    parallel(k, &|i| {
        // SAFETY: query row i of `out` (`k` rows of `nq·d`, checked above), one task per row.
        let orow = unsafe { out.chunk(i, nq * d) };
        let (rb, il) = (i / plan.rb_size, i % plan.rb_size);
        for hq in 0..nq {
            let (h, g) = (hq / plan.groups, hq % plan.groups);
            let r = g * plan.rb_size + il;
            let first = (h * plan.n_rb + rb) * plan.n_splits;
            let at = |s: usize| (first + s) * rows + r;
            let m = (0..plan.n_splits)
                .map(|s| ml[at(s) * 2])
                .fold(f32::NEG_INFINITY, f32::max);
            let o = &mut orow[hq * d..(hq + 1) * d];
            o.fill(0.0);
            let mut l = 0.0f32;
            for s in 0..plan.n_splits {
                let (ms, ls) = (ml[at(s) * 2], ml[at(s) * 2 + 1]);
                if ls == 0.0 {
                    continue;
                }
                let w = (ms - m).exp();
                l += ls * w;
                let a = &acc[at(s) * d..(at(s) + 1) * d];
                o.iter_mut().zip(a).for_each(|(o, a)| *o += w * a);
            }
            let inv = 1.0 / l;
            o.iter_mut().for_each(|o| *o *= inv);
        }
    });
}

/// Which primitive set runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

impl Isa {
    fn detect(head_dim: usize) -> Isa {
        #[cfg(test)]
        if FORCE_SCALAR.with(|f| f.get()) {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if head_dim.is_multiple_of(8)
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2;
            }
        }
        let _ = head_dim;
        Isa::Scalar
    }
}

/// One item's inputs (see the module doc).
struct Item<'a, K, V> {
    q: &'a [f32],
    /// This KV head's `[capacity][d]` keys and values.
    keys: &'a [K],
    values: &'a [V],
    d: usize,
    k: usize,
    scale: f32,
    start: usize,
    /// First query head of this KV head's group.
    head0: usize,
    groups: usize,
    rb_size: usize,
    /// Query rows `i0..i1`.
    i0: usize,
    i1: usize,
    /// Keys `key_lo..key_hi` (may be empty).
    key_lo: usize,
    key_hi: usize,
}

/// The arithmetic an item needs, on raw pointers so the AVX2 version can use unaligned loads
/// without `copy_nonoverlapping`'s debug checks.
///
/// # Safety (every method)
/// The pointers address `d` (or `n`, or `8·d` for `dot8`'s keys) valid values. `dot`, `dot8`
/// and `pv` take one value per element (`E::PER = 1`: `f32`, `f16`; [`tile`] checks it); a block
/// type reaches them dequantized (`dequant`, in [`run_item`]).
trait Simd {
    /// `⟨a, b⟩` over `d` elements.
    unsafe fn dot<E: KvElem>(a: *const f32, b: *const E, d: usize) -> f32;
    /// `out[t] = ⟨q, keys[t·d..]⟩` for `t` in `0..8`.
    unsafe fn dot8<E: KvElem>(q: *const f32, keys: *const E, d: usize, out: *mut f32);
    /// `x[j] = exp(x[j] − m)` for `j < n`; returns their sum.
    unsafe fn exp_sum(x: *mut f32, n: usize, m: f32) -> f32;
    /// `acc[c] += p[j] · v[j·d + c]` for `j` in `0..n`, ascending, for every `c < d` — each
    /// element's additions in key order, as one `acc += p·v` per key would make them.
    unsafe fn pv<E: KvElem>(acc: *mut f32, p: *const f32, n: usize, v: *const E, d: usize);
    /// `out[c]` = value `c` of the row at `row`, for `c < d` (a block type's values with their
    /// scale applied: the one rounding of `scale · q`).
    unsafe fn dequant<E: KvElem>(row: *const E, d: usize, out: *mut f32);
}

/// The item loop, generic over the primitives (inlined into [`item_avx2`] so the intrinsics are
/// compiled with its target features).
#[inline(always)]
fn run_item<S: Simd, K: KvElem, V: KvElem>(
    it: &Item<'_, K, V>,
    acc: &mut [f32],
    ml: &mut [f32],
    sc: &mut [f32],
    kv: &mut [f32],
) {
    let d = it.d;
    // elements per cached row of K and of V
    let (rk, rv) = (d / K::PER, d / V::PER);
    acc.fill(0.0);
    for pair in ml.chunks_exact_mut(2) {
        pair[0] = f32::NEG_INFINITY;
        pair[1] = 0.0;
    }
    // a block type's rows of the tile dequantized once, for every row of the item, into `out`
    // (TILE rows of d); the f32 kernel then reads them. Inlined, as everything under
    // `item_avx2`: a call would compile the vector dequantization without AVX2.
    #[inline(always)]
    fn widen<S: Simd, E: KvElem>(rows: &[E], d: usize, out: &mut [f32]) -> *const f32 {
        for (j, row) in rows.chunks_exact(d / E::PER).enumerate() {
            // SAFETY: a row of d values; TILE ≥ j + 1 rows of d in `out`.
            unsafe { S::dequant(row.as_ptr(), d, out[j * d..].as_mut_ptr()) };
        }
        out.as_ptr()
    }
    let mut t0 = it.key_lo;
    while t0 < it.key_hi {
        let t1 = (t0 + TILE).min(it.key_hi);
        let (keys, values) = (&it.keys[t0 * rk..t1 * rk], &it.values[t0 * rv..t1 * rv]);
        let (kt, vt) = kv.split_at_mut(kv.len() / 2);
        let (kp, vp) = (keys.as_ptr(), values.as_ptr());
        // per-element types are read in place, block types through their dequantized tile
        match (K::PER > 1, V::PER > 1) {
            (false, false) => tile::<S, K, V>(it, t0, t1, kp, vp, acc, ml, sc),
            (true, false) => {
                let kp = widen::<S, K>(keys, d, kt);
                tile::<S, f32, V>(it, t0, t1, kp, vp, acc, ml, sc)
            }
            (false, true) => {
                let vp = widen::<S, V>(values, d, vt);
                tile::<S, K, f32>(it, t0, t1, kp, vp, acc, ml, sc)
            }
            (true, true) => {
                let (kp, vp) = (widen::<S, K>(keys, d, kt), widen::<S, V>(values, d, vt));
                tile::<S, f32, f32>(it, t0, t1, kp, vp, acc, ml, sc)
            }
        }
        t0 = t1;
    }
}

/// Keys `t0..t1` of an item (at most [`TILE`]; rows of `d` values at `kp` of `FK` / `vp` of
/// `FV`, one value per element):
/// their scores, the online-softmax update and `acc += p · V` for every row of the item.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd, FK: KvElem, FV: KvElem>(
    it: &Item<'_, impl Sized, impl Sized>,
    t0: usize,
    t1: usize,
    kp: *const FK,
    vp: *const FV,
    acc: &mut [f32],
    ml: &mut [f32],
    sc: &mut [f32],
) {
    // (run_item instantiates this for block types too, in a branch it never takes)
    debug_assert_eq!(
        (FK::PER, FV::PER),
        (1, 1),
        "the kernels take one value per element"
    );
    let d = it.d;
    let n_rows = it.i1 - it.i0;
    // visible keys of this tile for row il: t0..min(t1, start+i0+il+1)
    let visible = |il: usize| (t1.min(it.start + it.i0 + il + 1)).saturating_sub(t0);
    // 1. scores, eight keys at a time (keys outer so a block of K is reused by every row)
    let mut j = 0;
    while j < t1 - t0 {
        // SAFETY: key t0 + j < t1, within the tile's rows at kp.
        let kp = unsafe { kp.add(j * d) };
        for g in 0..it.groups {
            for il in 0..n_rows {
                let n = visible(il);
                if j >= n {
                    continue;
                }
                let r = g * it.rb_size + il;
                let qp = it.q[((it.head0 + g) * it.k + it.i0 + il) * d..].as_ptr();
                let srow = &mut sc[r * TILE..(r + 1) * TILE];
                if j + 8 <= n {
                    // SAFETY: keys t0+j..t0+j+8 < t1, rows of d; q row of d; srow has
                    // TILE ≥ j + 8 slots.
                    unsafe { S::dot8(qp, kp, d, srow[j..j + 8].as_mut_ptr()) };
                } else {
                    for (jj, s) in srow.iter_mut().enumerate().take(n).skip(j) {
                        // SAFETY: key t0+jj < t1, a row of d.
                        *s = unsafe { S::dot(qp, kp.add((jj - j) * d), d) };
                    }
                }
            }
        }
        j += 8;
    }
    // 2. online softmax update per row
    for g in 0..it.groups {
        for il in 0..n_rows {
            let n = visible(il);
            if n == 0 {
                continue;
            }
            let r = g * it.rb_size + il;
            let srow = &mut sc[r * TILE..r * TILE + n];
            srow.iter_mut().for_each(|s| *s *= it.scale);
            let tile_max = srow.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (m, l) = (ml[2 * r], ml[2 * r + 1]);
            let m_new = m.max(tile_max);
            let arow = &mut acc[r * d..(r + 1) * d];
            let mut l = l;
            if m_new > m && m != f32::NEG_INFINITY {
                let alpha = (m - m_new).exp();
                l *= alpha;
                arow.iter_mut().for_each(|a| *a *= alpha);
            }
            // SAFETY: srow has n elements.
            l += unsafe { S::exp_sum(srow.as_mut_ptr(), n, m_new) };
            ml[2 * r] = m_new;
            ml[2 * r + 1] = l;
        }
    }
    // 3. acc += p · V, rows outer: a row's accumulator stays in registers across the
    // tile's keys (keys outer stored and reloaded it once per key: half the kernel's time
    // at depth 4096 went to those stores)
    for il in 0..n_rows {
        let n = visible(il);
        for g in 0..it.groups {
            let r = g * it.rb_size + il;
            let (a, p) = (
                acc[r * d..(r + 1) * d].as_mut_ptr(),
                sc[r * TILE..].as_ptr(),
            );
            // SAFETY: acc row of d; n ≤ TILE probabilities; keys t0..t0+n < t1, rows of d.
            unsafe { S::pv(a, p, n, vp, d) };
        }
    }
}

/// Portable primitives.
struct Scalar;

impl Simd for Scalar {
    #[inline(always)]
    unsafe fn dot<E: KvElem>(a: *const f32, b: *const E, d: usize) -> f32 {
        // SAFETY: the caller guarantees d readable values at each.
        let a = unsafe { std::slice::from_raw_parts(a, d) };
        // SAFETY: c < d values of the row at b.
        let y = |c: usize| unsafe { E::get(b, c) };
        // four partial sums, so the loop vectorises and rounds like the wide version
        let mut s = [0.0f32; 4];
        let body = d - d % 4;
        for c in (0..body).step_by(4) {
            for t in 0..4 {
                s[t] += a[c + t] * y(c + t);
            }
        }
        let mut tail = 0.0;
        for (c, x) in a.iter().enumerate().skip(body) {
            tail += x * y(c);
        }
        (s[0] + s[1]) + (s[2] + s[3]) + tail
    }

    #[inline(always)]
    unsafe fn dot8<E: KvElem>(q: *const f32, keys: *const E, d: usize, out: *mut f32) {
        for t in 0..8 {
            // SAFETY: the caller guarantees 8 key rows and 8 output slots.
            unsafe { *out.add(t) = Self::dot(q, keys.add(t * d), d) };
        }
    }

    #[inline(always)]
    unsafe fn exp_sum(x: *mut f32, n: usize, m: f32) -> f32 {
        // SAFETY: the caller guarantees n elements.
        let x = unsafe { std::slice::from_raw_parts_mut(x, n) };
        let mut sum = 0.0;
        for v in x {
            *v = (*v - m).exp();
            sum += *v;
        }
        sum
    }

    #[inline(always)]
    unsafe fn pv<E: KvElem>(acc: *mut f32, p: *const f32, n: usize, v: *const E, d: usize) {
        // SAFETY: the caller guarantees d accumulators and n probabilities.
        let (acc, p) = unsafe {
            (
                std::slice::from_raw_parts_mut(acc, d),
                std::slice::from_raw_parts(p, n),
            )
        };
        for (j, &p) in p.iter().enumerate() {
            // SAFETY: the caller guarantees n rows of d values at v.
            let row = unsafe { v.add(j * d) };
            for (c, a) in acc.iter_mut().enumerate() {
                // SAFETY: c < d.
                *a += p * unsafe { E::get(row, c) };
            }
        }
    }

    #[inline(always)]
    unsafe fn dequant<E: KvElem>(row: *const E, d: usize, out: *mut f32) {
        // SAFETY: the caller guarantees a row of d values and d output slots.
        let (row, out) = unsafe {
            (
                std::slice::from_raw_parts(row, d / E::PER),
                std::slice::from_raw_parts_mut(out, d),
            )
        };
        E::to_f32(row, out);
    }
}

#[cfg(target_arch = "x86_64")]
use avx2::item_avx2;

/// `g[i] = silu(g[i]) · u[i]` (SwiGLU's gating), vectorised where the CPU has AVX2 + FMA (the
/// polynomial `exp` of the attention kernel, relative error about 1e-7).
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "silu_mul: gate and up lengths");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected; the lengths are equal.
        unsafe { avx2::silu_mul_avx2(g, u) };
        return;
    }
    for (a, b) in g.iter_mut().zip(u) {
        *a = silu_scalar(*a) * b;
    }
}

fn silu_scalar(a: f32) -> f32 {
    a / (1.0 + (-a).exp())
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Item, KvElem, Simd, run_item};

    /// A value read from any address; see `crate::quant::avx2` for why not `_mm256_loadu_ps`
    /// (its `copy_nonoverlapping` precondition checks under the dev profile's debug assertions).
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct Unaligned<T: Copy>(T);

    /// Unaligned load of 8 floats.
    #[inline(always)]
    pub(super) unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable floats.
        unsafe { (*(p as *const Unaligned<__m256>)).0 }
    }

    /// Eight IEEE halves at `p` (16 bytes, any alignment) widened to floats.
    #[inline(always)]
    pub(super) unsafe fn load_halves(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 16 readable bytes and F16C.
        unsafe { _mm256_cvtph_ps((*(p as *const Unaligned<__m128i>)).0) }
    }

    /// Eight signed bytes at `p` (any alignment) widened to floats.
    #[inline(always)]
    pub(super) unsafe fn load_i8x8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable bytes and AVX2.
        unsafe {
            let v = (*(p as *const Unaligned<i64>)).0;
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)))
        }
    }

    /// The low nibbles of the 8 bytes at `p`, or their high nibbles when `high`, as 8 lanes.
    #[inline(always)]
    unsafe fn nibbles8(p: *const u8, high: bool) -> __m256i {
        // SAFETY: the caller guarantees 8 readable bytes and AVX2.
        unsafe {
            let mut v = _mm_cvtsi64_si128((*(p as *const Unaligned<i64>)).0);
            if high {
                v = _mm_srli_epi16::<4>(v);
            }
            _mm256_cvtepu8_epi32(_mm_and_si128(v, _mm_set1_epi8(0x0F)))
        }
    }

    /// Eight 4-bit values as floats minus `offset`: [`nibbles8`] (a `q4_0` / `q4_1` block's
    /// values `c..c + 8`).
    #[inline(always)]
    pub(super) unsafe fn load_nibbles8(p: *const u8, high: bool, offset: i32) -> __m256 {
        // SAFETY: forwarded.
        unsafe {
            let q = nibbles8(p, high);
            _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(offset)))
        }
    }

    /// Eight `iq4_nl` levels as floats: [`nibbles8`] looked up in the 16-level grid (two 8-lane
    /// permutes, picked by the index's bit 3).
    #[inline(always)]
    pub(super) unsafe fn load_iq4_nl8(p: *const u8, high: bool) -> __m256 {
        let g = crate::quant::iq4_nl::GRID.map(f32::from);
        // SAFETY: forwarded.
        unsafe {
            let q = nibbles8(p, high);
            let lo = _mm256_setr_ps(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
            let hi = _mm256_setr_ps(g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
            let upper = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(q));
            _mm256_blendv_ps(
                _mm256_permutevar8x32_ps(lo, q),
                _mm256_permutevar8x32_ps(hi, q),
                upper,
            )
        }
    }

    /// Eight 5-bit values as floats minus `offset`: [`nibbles8`] with bit `i` of `fifth` as
    /// lane `i`'s bit 4 (a `q5_0` / `q5_1` block's values `c..c + 8`).
    #[inline(always)]
    pub(super) unsafe fn load_q5x8(p: *const u8, high: bool, fifth: u8, offset: i32) -> __m256 {
        // SAFETY: forwarded.
        unsafe {
            let bits = _mm256_srlv_epi32(
                _mm256_set1_epi32(i32::from(fifth)),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let high_bit = _mm256_slli_epi32::<4>(_mm256_and_si256(bits, _mm256_set1_epi32(1)));
            let q = _mm256_or_si256(nibbles8(p, high), high_bit);
            _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(offset)))
        }
    }

    /// One IEEE half at `p` (any alignment) as a float in every lane (broadcast before the
    /// conversion: a scalar insert would merge into, and wait for, whatever register it picks).
    #[inline(always)]
    pub(super) unsafe fn load_half8(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 2 readable bytes and F16C.
        unsafe {
            let bits = (*(p as *const Unaligned<u16>)).0;
            _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
        }
    }

    /// Unaligned store of 8 floats.
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the caller guarantees 8 writable floats.
        unsafe { (*(p as *mut Unaligned<__m256>)).0 = v }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
        }
    }

    /// `e^x` for `x ≤ 0` (Cephes `expf`: range reduction by ln 2, degree-5 polynomial, relative
    /// error about 1e-7); inputs below −87.3 give ≈ 1e-38 instead of 0.
    #[inline(always)]
    unsafe fn exp(x: __m256) -> __m256 {
        unsafe {
            let x = _mm256_max_ps(x, _mm256_set1_ps(-87.336_54));
            let fx = _mm256_round_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
            let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
            let mut y = _mm256_set1_ps(1.987_569_1e-4);
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_199_9e-3));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.166_666_65));
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5));
            let r2 = _mm256_mul_ps(r, r);
            y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
            let n = _mm256_cvtps_epi32(fx);
            let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_add_epi32(n, _mm256_set1_epi32(127)),
                23,
            ));
            _mm256_mul_ps(y, pow2n)
        }
    }

    /// AVX2 + FMA primitives (`d` a multiple of 8).
    pub(super) struct Avx2;

    impl Simd for Avx2 {
        #[inline(always)]
        unsafe fn dot<E: KvElem>(a: *const f32, b: *const E, d: usize) -> f32 {
            unsafe {
                let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut c = 0;
                while c + 16 <= d {
                    s0 = _mm256_fmadd_ps(load(a.add(c)), E::load8(b, c), s0);
                    s1 = _mm256_fmadd_ps(load(a.add(c + 8)), E::load8(b, c + 8), s1);
                    c += 16;
                }
                if c < d {
                    s0 = _mm256_fmadd_ps(load(a.add(c)), E::load8(b, c), s0);
                }
                hsum(_mm256_add_ps(s0, s1))
            }
        }

        #[inline(always)]
        unsafe fn dot8<E: KvElem>(q: *const f32, keys: *const E, d: usize, out: *mut f32) {
            unsafe {
                let mut a = [_mm256_setzero_ps(); 8];
                let mut c = 0;
                while c < d {
                    let qv = load(q.add(c));
                    for (t, a) in a.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(qv, E::load8(keys.add(t * d), c), *a);
                    }
                    c += 8;
                }
                // transpose-reduce: lane t of the result is the sum of a[t]
                let s01 = _mm256_hadd_ps(a[0], a[1]);
                let s23 = _mm256_hadd_ps(a[2], a[3]);
                let s45 = _mm256_hadd_ps(a[4], a[5]);
                let s67 = _mm256_hadd_ps(a[6], a[7]);
                let s0123 = _mm256_hadd_ps(s01, s23);
                let s4567 = _mm256_hadd_ps(s45, s67);
                let lo = _mm256_permute2f128_ps(s0123, s4567, 0x20);
                let hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
                store(out, _mm256_add_ps(lo, hi));
            }
        }

        #[inline(always)]
        unsafe fn exp_sum(x: *mut f32, n: usize, m: f32) -> f32 {
            unsafe {
                let mv = _mm256_set1_ps(m);
                let mut sum = _mm256_setzero_ps();
                let mut j = 0;
                while j + 8 <= n {
                    let e = exp(_mm256_sub_ps(load(x.add(j)), mv));
                    store(x.add(j), e);
                    sum = _mm256_add_ps(sum, e);
                    j += 8;
                }
                let mut tail = 0.0;
                if j < n {
                    let mut buf = [f32::NEG_INFINITY; 8];
                    for (t, b) in buf.iter_mut().enumerate().take(n - j) {
                        *b = *x.add(j + t);
                    }
                    let e = exp(_mm256_sub_ps(load(buf.as_ptr()), mv));
                    store(buf.as_mut_ptr(), e);
                    for (t, b) in buf.iter().enumerate().take(n - j) {
                        *x.add(j + t) = *b;
                        tail += *b;
                    }
                }
                hsum(sum) + tail
            }
        }

        #[inline(always)]
        unsafe fn pv<E: KvElem>(acc: *mut f32, p: *const f32, n: usize, v: *const E, d: usize) {
            unsafe {
                // 64 columns in eight registers, then 8 at a time
                let mut c = 0;
                while c + 64 <= d {
                    let mut a = [_mm256_setzero_ps(); 8];
                    for (i, a) in a.iter_mut().enumerate() {
                        *a = load(acc.add(c + 8 * i));
                    }
                    for j in 0..n {
                        let pj = _mm256_broadcast_ss(&*p.add(j));
                        let row = v.add(j * d);
                        for (i, a) in a.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(pj, E::load8(row, c + 8 * i), *a);
                        }
                    }
                    for (i, a) in a.iter().enumerate() {
                        store(acc.add(c + 8 * i), *a);
                    }
                    c += 64;
                }
                while c < d {
                    let mut a = load(acc.add(c));
                    for j in 0..n {
                        let pj = _mm256_broadcast_ss(&*p.add(j));
                        a = _mm256_fmadd_ps(pj, E::load8(v.add(j * d), c), a);
                    }
                    store(acc.add(c), a);
                    c += 8;
                }
            }
        }

        #[inline(always)]
        unsafe fn dequant<E: KvElem>(row: *const E, d: usize, out: *mut f32) {
            unsafe {
                // element by element, each element's values at constant offsets in it
                for e in 0..d / E::PER {
                    let (el, o) = (row.add(e), out.add(e * E::PER));
                    let s = E::scale8(el, 0);
                    let m = E::min8(el, 0);
                    for c in (0..E::PER).step_by(8) {
                        let v = _mm256_mul_ps(E::load8(el, c), s);
                        store(o.add(c), if E::HAS_MIN { _mm256_add_ps(v, m) } else { v });
                    }
                }
            }
        }
    }

    /// `g[i] = silu(g[i]) · u[i]` with the vector `exp` (see [`super::silu_mul`]).
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `g.len() == u.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_mul_avx2(g: &mut [f32], u: &[f32]) {
        let n = g.len() - g.len() % 8;
        let (gp, up) = (g.as_mut_ptr(), u.as_ptr());
        // SAFETY: offsets stay below `n ≤ len` of both slices.
        unsafe {
            let sign = _mm256_set1_ps(-0.0);
            let one = _mm256_set1_ps(1.0);
            for j in (0..n).step_by(8) {
                let a = load(gp.add(j));
                // t = e^{−|a|} ≤ 1: silu(a) = a / (1 + t) for a ≥ 0, a·t / (1 + t) below
                let t = exp(_mm256_or_ps(a, sign));
                let num = _mm256_blendv_ps(a, _mm256_mul_ps(a, t), a);
                let s = _mm256_div_ps(num, _mm256_add_ps(one, t));
                store(gp.add(j), _mm256_mul_ps(s, load(up.add(j))));
            }
        }
        for j in n..g.len() {
            g[j] = super::silu_scalar(g[j]) * u[j];
        }
    }

    /// [`run_item`] compiled with AVX2 + FMA + F16C.
    ///
    /// # Safety
    /// The CPU supports AVX2, FMA and F16C and `d` is a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn item_avx2<K: KvElem, V: KvElem>(
        it: &Item<'_, K, V>,
        acc: &mut [f32],
        ml: &mut [f32],
        sc: &mut [f32],
        kv: &mut [f32],
    ) {
        run_item::<Avx2, K, V>(it, acc, ml, sc, kv)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn silu_mul_matches_the_formula() {
        let g0: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) * 0.37).collect();
        let u: Vec<f32> = (0..203).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut g = g0.clone();
        super::silu_mul(&mut g, &u);
        for i in 0..g.len() {
            let want = g0[i] / (1.0 + (-g0[i]).exp()) * u[i];
            assert!(
                (g[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{i}: {} vs {want}",
                g[i]
            );
        }
    }

    use super::*;

    /// Deterministic pseudo-random values in about [−2, 2].
    fn fill(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// Naive f64 attention with the same layouts as [`attend`].
    fn reference(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        capacity: usize,
        shape: AttnShape,
        start: usize,
        k: usize,
    ) -> Vec<f32> {
        let AttnShape {
            n_heads: nq,
            n_kv_heads: nkv,
            head_dim: d,
        } = shape;
        let groups = nq / nkv;
        let mut out = vec![0.0f32; k * nq * d];
        for hq in 0..nq {
            let h = hq / groups;
            for i in 0..k {
                let qr = &q[(hq * k + i) * d..(hq * k + i + 1) * d];
                let n = start + i + 1;
                let s: Vec<f64> = (0..n)
                    .map(|j| {
                        let kr = &keys[(h * capacity + j) * d..(h * capacity + j + 1) * d];
                        qr.iter()
                            .zip(kr)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
                let l: f64 = e.iter().sum();
                for c in 0..d {
                    let v: f64 = (0..n)
                        .map(|j| e[j] * values[(h * capacity + j) * d + c] as f64)
                        .sum();
                    out[i * nq * d + hq * d + c] = (v / l) as f32;
                }
            }
        }
        out
    }

    fn check(shape: AttnShape, start: usize, k: usize, threads: usize, force_scalar: bool) {
        let capacity = start + k + 5;
        let d = shape.head_dim;
        let q = fill(shape.n_heads * k * d, 1 + start as u64);
        let keys = fill(shape.n_kv_heads * capacity * d, 2 + k as u64);
        let values = fill(shape.n_kv_heads * capacity * d, 3);
        let want = reference(&q, &keys, &values, capacity, shape, start, k);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut scratch = AttnScratch::default();
        let mut out = vec![f32::NAN; k * shape.n_heads * d];
        pool.install(|| {
            if force_scalar {
                attend_scalar_for_test(
                    &q,
                    &keys,
                    &values,
                    capacity,
                    shape,
                    start,
                    k,
                    &mut out,
                    &mut scratch,
                );
            } else {
                // twice: the second call reuses the scratch
                for _ in 0..2 {
                    attend(
                        &q,
                        &keys,
                        &values,
                        capacity,
                        shape,
                        start,
                        k,
                        &mut out,
                        &mut scratch,
                    );
                }
            }
        });
        assert!(out.iter().all(|x| x.is_finite()), "non-finite output");
        let err = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err <= 1e-5,
            "{shape:?} start {start} k {k} threads {threads} scalar {force_scalar}: {err}"
        );
    }

    /// [`attend`] with the portable primitives whatever the CPU.
    #[allow(clippy::too_many_arguments)]
    fn attend_scalar_for_test(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        capacity: usize,
        shape: AttnShape,
        start: usize,
        k: usize,
        out: &mut [f32],
        scratch: &mut AttnScratch,
    ) {
        FORCE_SCALAR.with(|f| f.set(true));
        attend(q, keys, values, capacity, shape, start, k, out, scratch);
        FORCE_SCALAR.with(|f| f.set(false));
    }

    #[test]
    fn matches_the_f64_reference_for_decode_and_prefill() {
        for (nq, nkv) in [(4, 4), (6, 2), (9, 3)] {
            for d in [64, 128] {
                let shape = AttnShape {
                    n_heads: nq,
                    n_kv_heads: nkv,
                    head_dim: d,
                };
                for (start, k) in [(0, 1), (37, 1), (300, 1), (1000, 1), (21, 7), (530, 7)] {
                    for threads in [1, 2, 3] {
                        check(shape, start, k, threads, false);
                    }
                }
            }
        }
    }

    #[test]
    fn long_prefill_and_odd_head_dim() {
        let shape = AttnShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 64,
        };
        check(shape, 0, 40, 2, false);
        check(shape, 100, 130, 3, false);
        // head_dim not a multiple of 8 takes the portable path
        let odd = AttnShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 20,
        };
        check(odd, 50, 3, 2, false);
    }

    #[test]
    fn portable_path_matches_the_reference() {
        let shape = AttnShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 64,
        };
        for (start, k) in [(0, 1), (300, 1), (21, 7), (90, 20)] {
            check(shape, start, k, 2, true);
        }
    }

    /// A cache of keys `kc` (`K`) and values `vc` (`V`) against an `f32` cache holding the
    /// values they read back as (`k32`, `v32`): the same output bit for bit, on 1–3 threads and
    /// on the vector and the portable paths, and within 1e-5 of the f64 reference over those
    /// values.
    #[allow(clippy::too_many_arguments)]
    fn assert_attends_like_f32<K: KvElem, V: KvElem>(
        shape: AttnShape,
        start: usize,
        k: usize,
        q: &[f32],
        (kc, vc): (&[K], &[V]),
        (k32, v32): (&[f32], &[f32]),
    ) {
        let capacity = k32.len() / (shape.n_kv_heads * shape.head_dim);
        let want = reference(q, k32, v32, capacity, shape, start, k);
        for threads in [1, 2, 3] {
            for scalar in [false, true] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut scratch = AttnScratch::default();
                let mut a = vec![f32::NAN; k * shape.n_heads * shape.head_dim];
                let mut b = a.clone();
                pool.install(|| {
                    FORCE_SCALAR.with(|f| f.set(scalar));
                    attend(q, kc, vc, capacity, shape, start, k, &mut a, &mut scratch);
                    attend(q, k32, v32, capacity, shape, start, k, &mut b, &mut scratch);
                    FORCE_SCALAR.with(|f| f.set(false));
                });
                let what =
                    format!("{shape:?} start {start} k {k} threads {threads} scalar {scalar}");
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{what}");
                let err = a
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(err <= 1e-5, "{what}: {err}");
            }
        }
    }

    /// A cache of `n` random values (`seed`) stored as `E`, rows of `d`, and the values it
    /// reads back as.
    fn stored<E: KvElem>(n: usize, d: usize, seed: u64) -> (Vec<E>, Vec<f32>) {
        let mut rows = vec![E::ZERO; n / E::PER];
        for (row, x) in rows
            .chunks_exact_mut(d / E::PER)
            .zip(fill(n, seed).chunks_exact(d))
        {
            E::put_row(row, x);
        }
        let back = rows
            .chunks_exact(d / E::PER)
            .flat_map(|r| {
                let mut values = vec![0.0f32; d];
                E::to_f32(r, &mut values);
                values
            })
            .collect();
        (rows, back)
    }

    /// An `f16` cache gives exactly the output of an `f32` cache holding the same rounded values
    /// (the widening is exact and everything after it is the `f32` arithmetic), on the vector and
    /// the portable paths; and that output is the f64 reference's over the rounded values.
    #[test]
    fn f16_cache_equals_f32_cache_of_the_rounded_values() {
        let shape = AttnShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 64,
        };
        let d = shape.head_dim;
        for (start, k) in [(0, 1), (300, 1), (1000, 1), (21, 7), (90, 20)] {
            let capacity = start + k + 3;
            let n = shape.n_kv_heads * capacity * d;
            let q = fill(shape.n_heads * k * d, 11 + start as u64);
            let (k16, k32) = stored::<f16>(n, d, 12);
            let (v16, v32) = stored::<f16>(n, d, 13);
            assert_ne!(k32, fill(n, 12), "values were rounded");
            assert_attends_like_f32(shape, start, k, &q, (&k16, &v16), (&k32, &v32));
        }
    }

    /// A `q8_0` / `q4_0` / `q4_1` / `q5_0` / `q5_1` cache gives exactly the output of an `f32`
    /// cache holding its dequantized values (`d · q`, `d · (q − 8)`, `d · q + m`, `d · (q − 16)`,
    /// made as a tile is dequantized),
    /// on the vector and the portable paths, for head sizes of one, two and four blocks; and that
    /// is the f64 reference's over those values.
    #[test]
    fn block_caches_equal_f32_caches_of_the_dequantized_values() {
        block_cache_attends_like_f32::<BlockQ8_0>();
        block_cache_attends_like_f32::<BlockQ4_0>();
        block_cache_attends_like_f32::<BlockQ4_1>();
        block_cache_attends_like_f32::<BlockQ5_0>();
        block_cache_attends_like_f32::<BlockQ5_1>();
        block_cache_attends_like_f32::<BlockIq4Nl>();
    }

    fn block_cache_attends_like_f32<E: KvElem>() {
        for (nq, nkv, d) in [(6, 2, 64), (4, 1, 32), (8, 2, 128)] {
            let shape = AttnShape {
                n_heads: nq,
                n_kv_heads: nkv,
                head_dim: d,
            };
            for (start, k) in [(0, 1), (300, 1), (1000, 1), (21, 7), (90, 20)] {
                let capacity = start + k + 3;
                let n = nkv * capacity * d;
                let q = fill(nq * k * d, 21 + start as u64);
                let (k8, k32) = stored::<E>(n, d, 22);
                let (v8, v32) = stored::<E>(n, d, 23);
                assert_ne!(k32, fill(n, 22), "values were rounded");
                assert_attends_like_f32(shape, start, k, &q, (&k8, &v8), (&k32, &v32));
            }
        }
    }

    /// Keys and values of different types (llama.cpp's `-ctk` ≠ `-ctv`: per-element or block
    /// types, either way round) give exactly the output of an `f32` cache holding the values
    /// each half reads back as, on the vector and the portable paths.
    #[test]
    fn mixed_caches_equal_f32_caches_of_each_halfs_values() {
        mixed_cache_attends_like_f32::<BlockQ8_0, BlockQ4_0>();
        mixed_cache_attends_like_f32::<BlockQ4_0, BlockQ8_0>();
        mixed_cache_attends_like_f32::<f16, BlockQ5_1>();
        mixed_cache_attends_like_f32::<BlockQ4_1, f16>();
        mixed_cache_attends_like_f32::<f16, f32>();
        mixed_cache_attends_like_f32::<f32, BlockQ5_0>();
        mixed_cache_attends_like_f32::<BlockQ8_0, BlockIq4Nl>();
    }

    fn mixed_cache_attends_like_f32<K: KvElem, V: KvElem>() {
        for (nq, nkv, d) in [(6, 2, 64), (8, 2, 128)] {
            let shape = AttnShape {
                n_heads: nq,
                n_kv_heads: nkv,
                head_dim: d,
            };
            for (start, k) in [(0, 1), (300, 1), (21, 7), (90, 20)] {
                let capacity = start + k + 3;
                let n = nkv * capacity * d;
                let q = fill(nq * k * d, 31 + start as u64);
                let (kc, k32) = stored::<K>(n, d, 32);
                let (vc, v32) = stored::<V>(n, d, 33);
                assert_attends_like_f32(shape, start, k, &q, (&kc, &vc), (&k32, &v32));
            }
        }
    }

    /// Inside a forward's team scope the items run on the team (its helpers spinning) and give
    /// the reference's output, for decode (keys split across threads) and prefill.
    #[test]
    fn team_regions_match_the_reference() {
        let shape = AttnShape {
            n_heads: 12,
            n_kv_heads: 2,
            head_dim: 128,
        };
        let d = shape.head_dim;
        for helpers in [1, 2] {
            let team = crate::quant::Team::new(helpers).unwrap();
            for (start, k) in [(0, 1), (2000, 1), (37, 9), (0, 40)] {
                let capacity = start + k;
                let q = fill(shape.n_heads * k * d, 21 + start as u64);
                let keys = fill(shape.n_kv_heads * capacity * d, 22);
                let values = fill(shape.n_kv_heads * capacity * d, 23);
                let want = reference(&q, &keys, &values, capacity, shape, start, k);
                let mut out = vec![f32::NAN; k * shape.n_heads * d];
                let mut scratch = AttnScratch::default();
                let plan = team.scope(|| {
                    attend(
                        &q,
                        &keys,
                        &values,
                        capacity,
                        shape,
                        start,
                        k,
                        &mut out,
                        &mut scratch,
                    );
                    Plan::new(shape, start, k, threads())
                });
                if start >= 2000 {
                    assert!(plan.n_splits > 1, "{plan:?}");
                }
                let err = out
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(err <= 1e-5, "helpers {helpers} start {start} k {k}: {err}");
            }
        }
    }

    #[test]
    fn plan_splits_keys_for_decode_on_two_threads() {
        let shape = AttnShape {
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
        };
        let p = Plan::new(shape, 2048, 1, 2);
        assert!(p.n_splits >= 2, "{p:?}");
        assert!(p.split_len * p.n_splits >= 2049);
        assert_eq!(Plan::new(shape, 2048, 1, 1).n_splits, 1);
        let p = Plan::new(shape, 0, 128, 2);
        assert_eq!((p.rb_size, p.n_rb), (ROW_BLOCK, 8));
    }
}

#[cfg(test)]
thread_local! {
    /// Test hook: make [`Isa::detect`] pick the portable path on this thread.
    static FORCE_SCALAR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
