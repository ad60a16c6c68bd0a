//! The caller-owned key/value cache: per layer, K and V preallocated to `capacity` positions
//! (`[kv_heads, capacity, head_dim]`), a length, and `truncate(len)` for speculative rollback.
//! Appending writes in place; truncation only moves the length. An impossible request is an
//! error, never a silent no-op.
//!
//! A layer's K/V live either in backend tensors (GPU backends: `slice_assign` on a uniquely owned
//! tensor) or, for the CPU backend, in host vectors read by
//! [`cpu_attention::attend`](crate::model::cpu_attention::attend) ([`HostKv`], issue #8).
//!
//! The element types are the cache's own choice, one for K and one for V ([`KvTypes`] of two
//! [`KvType`]s, llama.cpp's `--cache-type-k` / `--cache-type-v`): `f32` by default — the reference
//! numerics, what the logit-parity tests compare — `f16`, llama.cpp's default, at half the bytes
//! held and read at depth, or (CPU only) ggml's blocks of 32 values: `q8_0` (8-bit, 34 bytes),
//! `q4_0` / `q5_0` (4/5-bit, 18 / 22 bytes), `q4_1` / `q5_1` (4/5-bit with a minimum, 20 / 24
//! bytes) and `iq4_nl` (4-bit indices into a non-linear grid, 18 bytes). Values are rounded
//! once, when written; the attention reads them widened to `f32`.

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use half::f16;

use crate::error::{EngineError, Result};
use crate::model::cpu_attention::{
    AttnScratch, AttnShape, BlockIq4Nl, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
    KvElem, attend,
};

/// Element type of a KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvType {
    /// 4 bytes per element: the model's own values (on a GPU backend: the model's dtype).
    #[default]
    F32,
    /// 2 bytes per element, IEEE half, rounded to nearest when written (llama.cpp's default).
    F16,
    /// ggml's `q8_0`: blocks of 32 values of one head's row, int8 with an `f16` scale (34 bytes
    /// per 32 values, `-ctk q8_0 -ctv q8_0`). The CPU backend's host caches only; `head_dim` must
    /// be a multiple of 32.
    Q8_0,
    /// ggml's `q4_0`: blocks of 32 4-bit values `d · (q − 8)` with an `f16` scale (18 bytes per
    /// 32 values, `-ctk q4_0 -ctv q4_0`). Host caches only, as `q8_0`.
    Q4_0,
    /// ggml's `q4_1`: blocks of 32 4-bit values `d · q + m` with `f16` scale and minimum (20
    /// bytes per 32 values, `-ctk q4_1 -ctv q4_1`). Host caches only, as `q8_0`.
    Q4_1,
    /// ggml's `q5_0`: blocks of 32 5-bit values `d · (q − 16)` with an `f16` scale (22 bytes per
    /// 32 values, `-ctk q5_0 -ctv q5_0`). Host caches only, as `q8_0`.
    Q5_0,
    /// ggml's `q5_1`: blocks of 32 5-bit values `d · q + m` with `f16` scale and minimum (24
    /// bytes per 32 values, `-ctk q5_1 -ctv q5_1`). Host caches only, as `q8_0`.
    Q5_1,
    /// ggml's `iq4_nl`: blocks of 32 4-bit indices into a fixed non-linear grid of 16 levels with
    /// an `f16` scale (18 bytes per 32 values, `-ctk iq4_nl -ctv iq4_nl`), quantized as
    /// llama.cpp's CPU backend writes its cache. Host caches only, as `q8_0`.
    Iq4Nl,
}

impl KvType {
    /// Every type, in the order help texts list them.
    pub const ALL: [KvType; 8] = [
        KvType::F32,
        KvType::F16,
        KvType::Q8_0,
        KvType::Q4_0,
        KvType::Q4_1,
        KvType::Q5_0,
        KvType::Q5_1,
        KvType::Iq4Nl,
    ];

    /// Bytes of one cached row of `head_dim` values (one head, one position; K or V).
    pub fn row_bytes(self, head_dim: usize) -> usize {
        match self {
            KvType::F32 => 4 * head_dim,
            KvType::F16 => 2 * head_dim,
            KvType::Q8_0 => head_dim.div_ceil(32) * std::mem::size_of::<BlockQ8_0>(),
            KvType::Q4_0 => head_dim.div_ceil(32) * std::mem::size_of::<BlockQ4_0>(),
            KvType::Q4_1 => head_dim.div_ceil(32) * std::mem::size_of::<BlockQ4_1>(),
            KvType::Q5_0 => head_dim.div_ceil(32) * std::mem::size_of::<BlockQ5_0>(),
            KvType::Q5_1 => head_dim.div_ceil(32) * std::mem::size_of::<BlockQ5_1>(),
            KvType::Iq4Nl => head_dim.div_ceil(32) * std::mem::size_of::<BlockIq4Nl>(),
        }
    }

    /// Why a model with `head_dim` cannot keep its cache in this type — on the host when
    /// `host` (the CPU backend), else in device tensors — or `None` when it can.
    pub fn unsupported(self, head_dim: usize, host: bool) -> Option<String> {
        match self {
            KvType::F32 | KvType::F16 => None,
            block if !host => Some(format!(
                "KV cache type {block} is kept by the CPU backend only (its attention kernel \
                 reads the blocks); use f16 or f32 on a GPU backend"
            )),
            block if !head_dim.is_multiple_of(32) => Some(format!(
                "KV cache type {block} needs a head_dim that is a multiple of 32 (blocks of 32 \
                 values); this model's is {head_dim}"
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
            KvType::Q4_1 => "q4_1",
            KvType::Q5_0 => "q5_0",
            KvType::Q5_1 => "q5_1",
            KvType::Iq4Nl => "iq4_nl",
        })
    }
}

impl std::str::FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            "q4_0" => Ok(KvType::Q4_0),
            "q4_1" => Ok(KvType::Q4_1),
            "q5_0" => Ok(KvType::Q5_0),
            "q5_1" => Ok(KvType::Q5_1),
            "iq4_nl" => Ok(KvType::Iq4Nl),
            _ => Err(format!(
                "unknown KV cache type `{s}` (expected f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1 or \
                 iq4_nl)"
            )),
        }
    }
}

/// The element types of a cache's K and V (llama.cpp's `-ctk` / `-ctv`), written `T` when
/// they are equal and `K/V` when not (`q8_0/q4_0`: 8-bit keys, 4-bit values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KvTypes {
    pub k: KvType,
    pub v: KvType,
}

impl From<KvType> for KvTypes {
    fn from(t: KvType) -> Self {
        KvTypes { k: t, v: t }
    }
}

impl KvTypes {
    /// Why a model with `head_dim` cannot keep K or V in its type (see
    /// [`KvType::unsupported`]), or `None` when it can.
    pub fn unsupported(self, head_dim: usize, host: bool) -> Option<String> {
        let k = self.k.unsupported(head_dim, host);
        k.or_else(|| self.v.unsupported(head_dim, host))
    }

    /// Bytes of a cache for `capacity` positions of a model with this KV shape (K and V).
    pub fn cache_bytes(
        self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> u64 {
        let row = self.k.row_bytes(head_dim) + self.v.row_bytes(head_dim);
        (layers * kv_heads * capacity * row) as u64
    }
}

impl std::fmt::Display for KvTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.k == self.v {
            write!(f, "{}", self.k)
        } else {
            write!(f, "{}/{}", self.k, self.v)
        }
    }
}

impl std::str::FromStr for KvTypes {
    type Err = String;

    /// `T` (K and V) or `K/V`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once('/') {
            None => s.parse::<KvType>().map(KvTypes::from),
            Some((k, v)) => {
                let part = |t: &str, which: &str| {
                    t.parse::<KvType>()
                        .map_err(|e| format!("in `{s}` (K/V), the {which} type: {e}"))
                };
                Ok(KvTypes {
                    k: part(k, "K")?,
                    v: part(v, "V")?,
                })
            }
        }
    }
}

/// The host rows of one layer's K or V, in one element type.
#[derive(Clone)]
enum HostBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q5_0(Vec<BlockQ5_0>),
    Q5_1(Vec<BlockQ5_1>),
    Iq4Nl(Vec<BlockIq4Nl>),
}

/// `$body` with `$rows` bound to the elements of whichever type `$buf` (a [`HostBuf`], by value
/// or reference) holds — one instantiation of a generic body per type.
macro_rules! with_rows {
    ($buf:expr, |$rows:ident| $body:expr) => {
        match $buf {
            HostBuf::F32($rows) => $body,
            HostBuf::F16($rows) => $body,
            HostBuf::Q8_0($rows) => $body,
            HostBuf::Q4_0($rows) => $body,
            HostBuf::Q4_1($rows) => $body,
            HostBuf::Q5_0($rows) => $body,
            HostBuf::Q5_1($rows) => $body,
            HostBuf::Iq4Nl($rows) => $body,
        }
    };
}

impl HostBuf {
    /// `n` zero values of `kv_type`.
    fn zeroed(kv_type: KvType, n: usize) -> Self {
        fn zeroed<E: KvElem>(n: usize, buf: fn(Vec<E>) -> HostBuf) -> HostBuf {
            buf(vec![E::ZERO; n / E::PER])
        }
        match kv_type {
            KvType::F32 => zeroed(n, HostBuf::F32),
            KvType::F16 => zeroed(n, HostBuf::F16),
            KvType::Q8_0 => zeroed(n, HostBuf::Q8_0),
            KvType::Q4_0 => zeroed(n, HostBuf::Q4_0),
            KvType::Q4_1 => zeroed(n, HostBuf::Q4_1),
            KvType::Q5_0 => zeroed(n, HostBuf::Q5_0),
            KvType::Q5_1 => zeroed(n, HostBuf::Q5_1),
            KvType::Iq4Nl => zeroed(n, HostBuf::Iq4Nl),
        }
    }

    /// The element type.
    fn kv_type(&self) -> KvType {
        match self {
            HostBuf::F32(_) => KvType::F32,
            HostBuf::F16(_) => KvType::F16,
            HostBuf::Q8_0(_) => KvType::Q8_0,
            HostBuf::Q4_0(_) => KvType::Q4_0,
            HostBuf::Q4_1(_) => KvType::Q4_1,
            HostBuf::Q5_0(_) => KvType::Q5_0,
            HostBuf::Q5_1(_) => KvType::Q5_1,
            HostBuf::Iq4Nl(_) => KvType::Iq4Nl,
        }
    }

    /// Positions `0..len` of every head as `f32`, `[heads][len][d]`, from rows of `d` values at
    /// `cap` positions per head.
    fn prefix_f32(&self, heads: usize, cap: usize, len: usize, d: usize) -> Vec<f32> {
        fn gather<E: KvElem>(src: &[E], h: usize, cap: usize, len: usize, d: usize) -> Vec<f32> {
            let rs = d / E::PER;
            let mut out = vec![0.0; h * len * d];
            let rows = (0..h)
                .flat_map(|head| src[head * cap * rs..(head * cap + len) * rs].chunks_exact(rs));
            for (row, o) in rows.zip(out.chunks_exact_mut(d)) {
                E::to_f32(row, o);
            }
            out
        }
        with_rows!(self, |rows| gather(rows, heads, cap, len, d))
    }

    /// Rows of `d` values for positions `start..start + n` of every head (`cap` positions per
    /// head) from `src`, `[heads][n][d]`.
    fn put(&mut self, src: &[f32], cap: usize, start: usize, n: usize, d: usize) {
        fn put<E: KvElem>(
            dst: &mut [E],
            src: &[f32],
            cap: usize,
            start: usize,
            n: usize,
            d: usize,
        ) {
            let rs = d / E::PER;
            for (h, src) in src.chunks_exact(n * d).enumerate() {
                let dst = &mut dst[(h * cap + start) * rs..(h * cap + start + n) * rs];
                for (row, x) in dst.chunks_exact_mut(rs).zip(src.chunks_exact(d)) {
                    E::put_row(row, x);
                }
            }
        }
        with_rows!(self, |rows| put(rows, src, cap, start, n, d))
    }
}

thread_local! {
    /// The attention kernel's reusable buffers, one set per calling thread and shared by every
    /// layer (a forward runs its layers one after another). Per layer, a 128-token prefill of
    /// SmolLM2-135M kept 20 MiB of them alive across its 30 layers — a fifth of the model.
    static SCRATCH: std::cell::RefCell<AttnScratch> = std::cell::RefCell::default();
}

/// One layer's K and V on the host, `[kv_heads][capacity][head_dim]` values each (rows of
/// `head_dim / 32` blocks for the block types), each in its own element type.
pub struct HostKv {
    kv_heads: usize,
    capacity: usize,
    head_dim: usize,
    k: HostBuf,
    v: HostBuf,
}

impl std::fmt::Debug for HostKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKv")
            .field("kv_heads", &self.kv_heads)
            .field("capacity", &self.capacity)
            .field("head_dim", &self.head_dim)
            .field("kv_type", &self.kv_type())
            .finish_non_exhaustive()
    }
}

impl HostKv {
    /// Zeroed K and V of `types` for `capacity` positions.
    ///
    /// # Panics
    /// For a block type with a `head_dim` that is not a multiple of 32 ([`KvTypes::unsupported`];
    /// the engine checks it before making a cache).
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize, types: KvTypes) -> Self {
        if let Some(why) = types.unsupported(head_dim, true) {
            panic!("{why}");
        }
        let capacity = capacity.max(1);
        let n = kv_heads * capacity * head_dim;
        Self {
            kv_heads,
            capacity,
            head_dim,
            k: HostBuf::zeroed(types.k, n),
            v: HostBuf::zeroed(types.v, n),
        }
    }

    /// Positions the buffers hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The element types of K and V.
    pub fn kv_type(&self) -> KvTypes {
        KvTypes {
            k: self.k.kv_type(),
            v: self.v.kv_type(),
        }
    }

    /// Keys and values of positions `0..len` as `f32`, `[kv_heads][len][head_dim]` each.
    pub fn prefix_f32(&self, len: usize) -> (Vec<f32>, Vec<f32>) {
        let (h, cap, d) = (self.kv_heads, self.capacity, self.head_dim);
        (
            self.k.prefix_f32(h, cap, len, d),
            self.v.prefix_f32(h, cap, len, d),
        )
    }

    /// Write `n` positions at `start..start+n` from `key`/`value` laid out
    /// `[kv_heads][n][head_dim]` (a `[kv_heads, n, head_dim]` tensor's data).
    ///
    /// # Panics
    /// When the lengths do not match or the positions exceed the capacity (the caller checks
    /// [`KvCache`]'s capacity first).
    pub fn write(&mut self, start: usize, n: usize, key: &[f32], value: &[f32]) {
        let d = self.head_dim;
        assert_eq!(key.len(), self.kv_heads * n * d, "key rows");
        assert_eq!(value.len(), self.kv_heads * n * d, "value rows");
        assert!(start + n <= self.capacity, "write beyond the cache");
        if n == 0 {
            return;
        }
        self.k.put(key, self.capacity, start, n, d);
        self.v.put(value, self.capacity, start, n, d);
    }

    /// Causal attention of `k` query rows at `start..start+k` (`q`: `[n_heads][k][head_dim]`)
    /// over positions `0..start+k` into `out` (`[k][n_heads·head_dim]`); see
    /// [`attend`].
    pub fn attend(&mut self, q: &[f32], n_heads: usize, start: usize, k: usize, out: &mut [f32]) {
        let shape = AttnShape {
            n_heads,
            n_kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        };
        let capacity = self.capacity;
        let (kb, vb) = (&self.k, &self.v);
        // one instantiation per (K, V) pair of element types
        let mut run = |scratch: &mut AttnScratch| {
            with_rows!(kb, |keys| with_rows!(vb, |values| attend(
                q, keys, values, capacity, shape, start, k, out, scratch
            )))
        };
        // A rayon worker waiting inside `attend` may steal another forward's attention job; that
        // nested call gets buffers of its own instead of a double borrow.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => run(&mut scratch),
            Err(_) => run(&mut AttnScratch::default()),
        });
    }
}

/// Where a layer's K/V live.
#[derive(Debug)]
enum Storage<B: Backend> {
    // `Option` so a write can take ownership (keeping the buffer uniquely owned, hence updated in
    // place) and put it back.
    /// The tensors are held in `store` (K's and V's type) and read back as `compute` (the
    /// model's dtype); they are equal unless an `f16` cache serves an `f32` / `bf16` model.
    Device {
        k: Option<Tensor<B, 3>>,
        v: Option<Tensor<B, 3>>,
        store: [DType; 2],
        compute: DType,
    },
    /// Host buffers (CPU backend); `device`/`dtype` serve [`LayerCache::prefix`].
    Host {
        kv: HostKv,
        device: B::Device,
        dtype: DType,
    },
}

/// One layer's preallocated K and V.
#[derive(Debug)]
pub struct LayerCache<B: Backend> {
    storage: Storage<B>,
}

impl<B: Backend> LayerCache<B> {
    /// Zeroed K/V tensors of shape `[kv_heads, capacity, head_dim]` on `device`, for a model
    /// computing in `dtype`: held in `dtype` for an `f32` cache type, in `f16` for `f16`.
    ///
    /// # Panics
    /// For the block types, which only host caches hold ([`KvType::unsupported`]; the engine
    /// checks it before making a cache).
    pub fn new(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
        types: KvTypes,
    ) -> Self {
        let shape = [kv_heads, capacity.max(1), head_dim];
        let store = [types.k, types.v].map(|t| match t {
            KvType::F32 => dtype,
            KvType::F16 => DType::F16,
            block => {
                panic!("{}", block.unsupported(head_dim, false).unwrap_or_default())
            }
        });
        Self {
            storage: Storage::Device {
                k: Some(Tensor::zeros(shape, (device, store[0]))),
                v: Some(Tensor::zeros(shape, (device, store[1]))),
                store,
                compute: dtype,
            },
        }
    }

    /// Zeroed host K/V (`[kv_heads][capacity][head_dim]` of `types`), attended by the CPU
    /// kernel. `device`/`dtype` are those of the model's tensors.
    pub fn new_host(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
        types: KvTypes,
    ) -> Self {
        Self {
            storage: Storage::Host {
                kv: HostKv::new(kv_heads, capacity, head_dim, types),
                device: device.clone(),
                dtype,
            },
        }
    }

    /// The host buffers, when this cache keeps them.
    pub fn host(&self) -> Option<&HostKv> {
        match &self.storage {
            Storage::Host { kv, .. } => Some(kv),
            Storage::Device { .. } => None,
        }
    }

    /// The host buffers, mutably, when this cache keeps them.
    pub fn host_mut(&mut self) -> Option<&mut HostKv> {
        match &mut self.storage {
            Storage::Host { kv, .. } => Some(kv),
            Storage::Device { .. } => None,
        }
    }

    /// Write `key`/`value` (`[kv_heads, n, head_dim]`) at positions `start..start+n`.
    pub fn write(&mut self, start: usize, key: Tensor<B, 3>, value: Tensor<B, 3>) {
        let [h, n, d] = key.dims();
        match &mut self.storage {
            Storage::Device {
                k,
                v,
                store,
                compute,
            } => {
                let range = [0..h, start..start + n, 0..d];
                let stored = |t: Tensor<B, 3>, store: DType| {
                    if store == *compute { t } else { t.cast(store) }
                };
                if let Some(t) = k.take() {
                    *k = Some(t.slice_assign(range.clone(), stored(key, store[0])));
                }
                if let Some(t) = v.take() {
                    *v = Some(t.slice_assign(range, stored(value, store[1])));
                }
            }
            Storage::Host { kv, .. } => {
                kv.write(start, n, &host_f32(key), &host_f32(value));
            }
        }
    }

    /// The first `len` positions: `([kv_heads, len, d], [kv_heads, len, d])` (views of the
    /// tensors, or uploads of the host buffers).
    pub fn prefix(&self, len: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
        match &self.storage {
            Storage::Device {
                k,
                v,
                store,
                compute,
            } => {
                let view = |t: &Option<Tensor<B, 3>>, store: DType| {
                    let t = t
                        .as_ref()
                        .expect("layer cache holds its tensors between writes");
                    let [h, _, d] = t.dims();
                    let t = t.clone().slice([0..h, 0..len, 0..d]);
                    if store == *compute {
                        t
                    } else {
                        t.cast(*compute)
                    }
                };
                (view(k, store[0]), view(v, store[1]))
            }
            Storage::Host { kv, device, dtype } => {
                let (h, d) = (kv.kv_heads, kv.head_dim);
                let (keys, values) = kv.prefix_f32(len);
                let upload = |data: Vec<f32>| {
                    Tensor::from_data(TensorData::new(data, [h, len, d]), (device, *dtype))
                };
                (upload(keys), upload(values))
            }
        }
    }
}

/// A tensor's elements as host `f32` in logical (row-major) order.
pub(crate) fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("data converted to f32 reads back as f32")
}

/// The backend-specific layer caches behind [`KvCache`].
#[derive(Debug)]
pub(crate) enum CacheLayers {
    Flex(Vec<LayerCache<burn::backend::Flex>>),
    #[cfg(feature = "wgpu")]
    Wgpu(Vec<LayerCache<burn::backend::Wgpu>>),
    #[cfg(feature = "cuda")]
    Cuda(Vec<LayerCache<burn::backend::Cuda>>),
}

/// A KV cache for one sequence, created by `Engine::new_cache` and passed to every forward.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: CacheLayers,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn new(layers: CacheLayers, capacity: usize) -> Self {
        Self {
            layers,
            len: 0,
            capacity,
        }
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Roll back to the first `len` positions. Growing is impossible → `CacheRollback`.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(EngineError::CacheRollback {
                len: self.len,
                requested: len,
            });
        }
        self.len = len;
        Ok(())
    }

    /// Check that `n` more positions fit.
    pub(crate) fn reserve(&self, n: usize) -> Result<()> {
        let needed = self.len + n;
        if needed > self.capacity {
            return Err(EngineError::CacheFull {
                needed,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Record that `n` positions were appended (after a successful forward).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn truncate_moves_the_length_and_refuses_to_grow() {
        let mut cache = KvCache::new(CacheLayers::Flex(Vec::new()), 8);
        cache.reserve(8).unwrap();
        assert!(matches!(
            cache.reserve(9),
            Err(EngineError::CacheFull {
                needed: 9,
                capacity: 8
            })
        ));
        cache.advance(5);
        cache.truncate(3).unwrap();
        assert_eq!(cache.len(), 3);
        assert!(matches!(
            cache.truncate(4),
            Err(EngineError::CacheRollback {
                len: 3,
                requested: 4
            })
        ));
        assert!(matches!(
            cache.reserve(6),
            Err(EngineError::CacheFull { .. })
        ));
    }

    #[test]
    fn writes_land_at_their_positions() {
        let dev = Default::default();
        let mut layer = LayerCache::<Flex>::new(1, 4, 2, &dev, DType::F32, KvType::F32.into());
        let kv = |v: Vec<f32>| Tensor::<Flex, 3>::from_data(TensorData::new(v, [1, 2, 2]), &dev);
        layer.write(
            1,
            kv(vec![1.0, 2.0, 3.0, 4.0]),
            kv(vec![5.0, 6.0, 7.0, 8.0]),
        );
        let (k, v) = layer.prefix(3);
        assert_eq!(
            k.into_data().into_vec::<f32>().unwrap(),
            vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(
            v.into_data().into_vec::<f32>().unwrap(),
            vec![0.0, 0.0, 5.0, 6.0, 7.0, 8.0]
        );
    }

    #[test]
    fn host_writes_land_at_their_positions_and_read_back_as_tensors() {
        let dev = Default::default();
        let mut layer = LayerCache::<Flex>::new_host(2, 4, 2, &dev, DType::F32, KvType::F32.into());
        let kv = |v: Vec<f32>| Tensor::<Flex, 3>::from_data(TensorData::new(v, [2, 1, 2]), &dev);
        layer.write(
            2,
            kv(vec![1.0, 2.0, 3.0, 4.0]),
            kv(vec![5.0, 6.0, 7.0, 8.0]),
        );
        let (keys, values) = layer.host().unwrap().prefix_f32(4);
        assert_eq!(&keys[4..6], &[1.0, 2.0]);
        assert_eq!(&keys[12..14], &[3.0, 4.0]);
        assert_eq!(&values[12..14], &[7.0, 8.0]);
        let (k, v) = layer.prefix(3);
        assert_eq!(k.dims(), [2, 3, 2]);
        assert_eq!(
            k.into_data().into_vec::<f32>().unwrap(),
            vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0]
        );
        assert_eq!(
            v.into_data().into_vec::<f32>().unwrap(),
            vec![0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 7.0, 8.0]
        );
        assert!(
            LayerCache::<Flex>::new(1, 4, 2, &dev, DType::F32, KvType::F32.into())
                .host()
                .is_none()
        );
    }

    /// An `f16` cache, on the host or in backend tensors, hands back the written values rounded
    /// to the nearest half, as the model's dtype; an `f32` cache the values themselves.
    #[test]
    fn f16_caches_round_once_on_write() {
        let dev = Default::default();
        // rounding up (3/4 of an ulp above 1), a tie to even, a subnormal half, a value past the range
        let vals = vec![1.0 + 3.0 / 4096.0, 1.0 + 1.0 / 2048.0, 1e-5, 70000.5];
        let rounded: Vec<f32> = vals.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        assert_ne!(rounded, vals);
        let kv =
            |v: &[f32]| Tensor::<Flex, 3>::from_data(TensorData::new(v.to_vec(), [1, 2, 2]), &dev);
        for kv_type in [KvType::F32, KvType::F16] {
            let want = match kv_type {
                KvType::F16 => &rounded,
                _ => &vals,
            };
            for host in [true, false] {
                let new = if host {
                    LayerCache::<Flex>::new_host
                } else {
                    LayerCache::<Flex>::new
                };
                let mut layer = new(1, 3, 2, &dev, DType::F32, kv_type.into());
                layer.write(1, kv(&vals), kv(&vals));
                let (k, v) = layer.prefix(3);
                for t in [k, v] {
                    assert_eq!(t.dtype(), DType::F32);
                    let got = t.into_data().into_vec::<f32>().unwrap();
                    assert_eq!(&got[2..], &want[..], "{kv_type} host {host}");
                }
            }
        }
    }

    #[test]
    fn kv_types_parse_and_size() {
        assert_eq!("F16".parse::<KvType>(), Ok(KvType::F16));
        assert_eq!("f32".parse::<KvType>(), Ok(KvType::F32));
        assert_eq!("Q8_0".parse::<KvType>(), Ok(KvType::Q8_0));
        assert_eq!("q4_0".parse::<KvType>(), Ok(KvType::Q4_0));
        assert_eq!("Q4_1".parse::<KvType>(), Ok(KvType::Q4_1));
        for t in KvType::ALL {
            assert_eq!(t.to_string().parse::<KvType>(), Ok(t));
        }
        let err = "iq4_xs".parse::<KvType>().unwrap_err();
        assert!(err.contains("iq4_xs") && err.contains("iq4_nl"), "{err}");
        // Qwen2.5-Coder-1.5B: 28 layers, 2 KV heads of 128, 2048 positions
        let bytes = |t: KvTypes| t.cache_bytes(28, 2, 128, 2048);
        assert_eq!(bytes(KvType::F16.into()), 58_720_256);
        assert_eq!(bytes(KvType::F32.into()), 2 * 58_720_256);
        // 34 bytes per 32 values: 17/32 of f16's
        assert_eq!(bytes(KvType::Q8_0.into()), 58_720_256 / 32 * 17);
        // 8-bit keys, 4-bit values: (34 + 18) / 2 bytes per 32 values
        let q8_q4 = "q8_0/q4_0".parse::<KvTypes>().unwrap();
        assert_eq!(bytes(q8_q4), 58_720_256 / 64 * 26);
        assert_eq!(KvType::Q8_0.row_bytes(128), 4 * 34);
        assert_eq!(KvType::Q4_0.row_bytes(128), 4 * 18);
        assert_eq!(KvType::Q4_1.row_bytes(64), 2 * 20);
        assert_eq!(KvType::Q5_0.row_bytes(64), 2 * 22);
        assert_eq!(KvType::Q5_1.row_bytes(32), 24);
        assert_eq!(KvType::Iq4Nl.row_bytes(64), 2 * 18);
        for block in [
            KvType::Q4_0,
            KvType::Q4_1,
            KvType::Q5_0,
            KvType::Q5_1,
            KvType::Iq4Nl,
        ] {
            assert!(block.unsupported(64, true).is_none());
            assert!(block.unsupported(48, true).unwrap().contains("48"));
            assert!(block.unsupported(64, false).unwrap().contains("CPU"));
        }
        assert!(KvType::Q8_0.unsupported(128, true).is_none());
        let why = KvType::Q8_0.unsupported(80, true).unwrap();
        assert!(why.contains("head_dim") && why.contains("80"), "{why}");
        let why = KvType::Q8_0.unsupported(128, false).unwrap();
        assert!(why.contains("CPU"), "{why}");
        assert!(KvType::F16.unsupported(20, false).is_none());
    }

    /// `T` is K and V alike, `K/V` each its own; the written form parses back; a bad half is
    /// named.
    #[test]
    fn kv_type_pairs_parse_print_and_check_both_halves() {
        let pair = |k, v| KvTypes { k, v };
        assert_eq!("q8_0".parse(), Ok(KvTypes::from(KvType::Q8_0)));
        assert_eq!("Q8_0/q4_0".parse(), Ok(pair(KvType::Q8_0, KvType::Q4_0)));
        assert_eq!("f16/f16".parse::<KvTypes>().unwrap().to_string(), "f16");
        for k in KvType::ALL {
            for v in KvType::ALL {
                let t = pair(k, v);
                assert_eq!(t.to_string().parse(), Ok(t));
                assert_eq!(t.to_string().contains('/'), k != v);
            }
        }
        for bad in ["q8_0/iq4_xs", "q8_0/", "/q4_0", "q8_0/q4_0/f16"] {
            let err = bad.parse::<KvTypes>().unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let err = "iq4_xs/q4_0".parse::<KvTypes>().unwrap_err();
        assert!(err.contains("K type") && err.contains("iq4_xs"), "{err}");
        let err = "q8_0/iq4_xs".parse::<KvTypes>().unwrap_err();
        assert!(err.contains("V type"), "{err}");
        // a block type on either side is refused where blocks are
        let why = pair(KvType::F16, KvType::Q4_0)
            .unsupported(128, false)
            .unwrap();
        assert!(why.contains("q4_0") && why.contains("CPU"), "{why}");
        let why = pair(KvType::Q8_0, KvType::F16)
            .unsupported(80, true)
            .unwrap();
        assert!(why.contains("q8_0") && why.contains("80"), "{why}");
        assert!(
            pair(KvType::F32, KvType::F16)
                .unsupported(80, false)
                .is_none()
        );
    }

    /// A cache of different K and V types holds each half exactly as a cache of that one type
    /// does, and reads back each half's own values.
    #[test]
    fn mixed_caches_keep_each_half_in_its_own_type() {
        let (heads, d, cap) = (2, 64, 5);
        let src: Vec<f32> = (0..heads * 3 * d)
            .map(|i| ((i * 37) as f32 * 0.11).sin() * 3.0)
            .collect();
        let val: Vec<f32> = src.iter().map(|x| x * -0.5 + 0.25).collect();
        let written = |t: KvTypes| {
            let mut kv = HostKv::new(heads, cap, d, t);
            kv.write(1, 3, &src, &val);
            assert_eq!(kv.kv_type(), t);
            kv.prefix_f32(4)
        };
        for (k, v) in [
            (KvType::Q8_0, KvType::Q4_0),
            (KvType::F16, KvType::Q5_1),
            (KvType::Q4_1, KvType::F32),
        ] {
            let (mk, mv) = written(KvTypes { k, v });
            assert_eq!(mk, written(k.into()).0, "{k}/{v} keys");
            assert_eq!(mv, written(v.into()).1, "{k}/{v} values");
            assert_ne!(mk, written(v.into()).0, "{k}/{v}: the halves differ");
        }
    }

    /// A `q8_0` / `q4_0` / `q4_1` / `q5_0` / `q5_1` host cache holds each written row as ggml's
    /// blocks — byte for byte what the weight quantizer (`quantize_row_q*_ref`'s rounding) makes
    /// of it — and reads back their dequantized values (the GGUF dequantizer's, which matches
    /// gguf-py); rows written in one call and one at a time are the same blocks.
    #[test]
    fn block_caches_hold_ggml_blocks_of_each_row() {
        use crate::quant::QuantFormat;
        // the blocks' bytes, as ggml lays them out
        fn bytes<const F: u8, const B: usize>(
            blocks: &[crate::model::cpu_attention::Block32<F, B>],
        ) -> Vec<u8> {
            blocks.iter().flat_map(|b| b.0).collect()
        }
        for (kv_type, format, step) in [
            (KvType::Q8_0, QuantFormat::Q8_0, 1.0 / 127.0),
            // q4_0's grid is [−8d, 7d]: the clamped end of the range is off by a whole step
            (KvType::Q4_0, QuantFormat::Q4_0, 2.0 / 8.0),
            (KvType::Q4_1, QuantFormat::Q4_1, 2.0 / 15.0),
            (KvType::Q5_0, QuantFormat::Q5_0, 2.0 / 16.0),
            (KvType::Q5_1, QuantFormat::Q5_1, 2.0 / 31.0),
        ] {
            let codec = (
                |x: &[f32]| {
                    let mut out = Vec::new();
                    crate::quant::quantize_into(format, x, &mut out);
                    out
                },
                |b: &[u8], out: &mut [f32]| crate::quant::dequantize_into(format, b, out),
            );
            holds_ggml_blocks(kv_type, codec, step, |buf| match buf {
                HostBuf::Q8_0(rows) => bytes(rows),
                HostBuf::Q4_0(rows) => bytes(rows),
                HostBuf::Q4_1(rows) => bytes(rows),
                HostBuf::Q5_0(rows) => bytes(rows),
                HostBuf::Q5_1(rows) => bytes(rows),
                _ => panic!("{kv_type} holds blocks"),
            });
        }
        // iq4_nl: llama.cpp's blocks (quant::iq4_nl, checked against its library's bytes); a
        // value within half the widest gap of its 16 levels, or the clamp at the top one
        use crate::quant::iq4_nl;
        let codec = (
            |x: &[f32]| {
                let mut out = vec![0u8; x.len() / 32 * iq4_nl::BLOCK_BYTES];
                for (x, b) in x.chunks(32).zip(out.chunks_mut(iq4_nl::BLOCK_BYTES)) {
                    iq4_nl::quantize_block(x, b);
                }
                out
            },
            |b: &[u8], out: &mut [f32]| {
                for (b, o) in b.chunks(iq4_nl::BLOCK_BYTES).zip(out.chunks_mut(32)) {
                    iq4_nl::dequantize_block(b, o);
                }
            },
        );
        holds_ggml_blocks(KvType::Iq4Nl, codec, 2.0 * 14.0 / 127.0, |buf| match buf {
            HostBuf::Iq4Nl(rows) => rows.iter().flat_map(|b| b.0).collect(),
            _ => panic!("iq4_nl holds blocks"),
        });
    }

    /// The check of [`block_caches_hold_ggml_blocks_of_each_row`] for one type: `held` gives a
    /// buffer's bytes (K's or V's); values must lie within `step · max|x|` (half a quantization step
    /// and some) of the written ones.
    fn holds_ggml_blocks(
        kv_type: KvType,
        (quantize, dequantize): (impl Fn(&[f32]) -> Vec<u8>, impl Fn(&[u8], &mut [f32])),
        step: f32,
        held: impl Fn(&HostBuf) -> Vec<u8>,
    ) {
        let (heads, d, cap) = (2, 64, 6);
        let row = |h: usize, p: usize| -> Vec<f32> {
            (0..d)
                .map(|c| ((h * 131 + p * 17 + c * 7) as f32 * 0.37).sin() * (1.0 + c as f32))
                .collect()
        };
        // [heads][n][d] for positions 1..4
        let src = |range: std::ops::Range<usize>| -> Vec<f32> {
            (0..heads)
                .flat_map(|h| range.clone().flat_map(move |p| row(h, p)))
                .collect()
        };
        let mut batch = HostKv::new(heads, cap, d, kv_type.into());
        batch.write(1, 3, &src(1..4), &src(1..4));
        let mut single = HostKv::new(heads, cap, d, kv_type.into());
        for p in 1..4 {
            single.write(p, 1, &src(p..p + 1), &src(p..p + 1));
        }
        let (kb, ks, vs) = (held(&batch.k), held(&single.k), held(&single.v));
        assert_eq!(kb, ks, "{kv_type}");
        assert_eq!(ks, vs, "{kv_type}");
        let row_bytes = kv_type.row_bytes(d);
        for h in 0..heads {
            for p in 1..4 {
                let ggml = quantize(&row(h, p));
                let at = (h * cap + p) * row_bytes;
                assert_eq!(
                    ks[at..at + row_bytes],
                    ggml,
                    "{kv_type} head {h} position {p}"
                );
            }
        }
        let (keys, _) = single.prefix_f32(4);
        for h in 0..heads {
            for p in 0..4 {
                let mut want = vec![0.0f32; d];
                if p > 0 {
                    dequantize(&quantize(&row(h, p)), &mut want);
                }
                let got = &keys[(h * 4 + p) * d..(h * 4 + p + 1) * d];
                assert_eq!(got, &want[..], "{kv_type} head {h} position {p}");
                // within half a step of the written values
                if p > 0 {
                    let amax = row(h, p).iter().fold(0.0f32, |a, x| a.max(x.abs()));
                    for (g, x) in got.iter().zip(row(h, p)) {
                        assert!(
                            (g - x).abs() <= amax * step * 0.51 + 1e-3 * amax,
                            "{kv_type}"
                        );
                    }
                }
            }
        }
    }
}
