//! The caller-owned key/value cache: per layer, K and V preallocated to `capacity` positions
//! (`[kv_heads, capacity, head_dim]`), a length, and `truncate(len)` for speculative rollback.
//! Appending writes in place; truncation only moves the length. An impossible request is an
//! error, never a silent no-op.
//!
//! A layer's K/V live either in backend tensors (GPU backends: `slice_assign` on a uniquely owned
//! tensor) or, for the CPU backend, in host vectors read by
//! [`cpu_attention::attend`](crate::model::cpu_attention::attend) ([`HostKv`], issue #8).
//!
//! The element type is the cache's own choice ([`KvType`], llama.cpp's `--cache-type-k/-v`):
//! `f32` by default — the reference numerics, what the logit-parity tests compare — or `f16`,
//! llama.cpp's default, at half the bytes held and read at depth. Values are rounded to `f16` once,
//! when written; the attention reads them widened to `f32`.

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use half::f16;

use crate::error::{EngineError, Result};
use crate::model::cpu_attention::{AttnScratch, AttnShape, KvElem, attend};

/// Element type of a KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvType {
    /// 4 bytes per element: the model's own values (on a GPU backend: the model's dtype).
    #[default]
    F32,
    /// 2 bytes per element, IEEE half, rounded to nearest when written (llama.cpp's default).
    F16,
}

impl KvType {
    /// Every type, in the order help texts list them.
    pub const ALL: [KvType; 2] = [KvType::F32, KvType::F16];

    /// Bytes per cached element.
    pub fn bytes(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    /// Bytes of a cache for `capacity` positions of a model with this KV shape (K and V).
    pub fn cache_bytes(
        self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> u64 {
        (2 * layers * kv_heads * head_dim * capacity * self.bytes()) as u64
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
        })
    }
}

impl std::str::FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            _ => Err(format!("unknown KV cache type `{s}` (expected f32 or f16)")),
        }
    }
}

/// Host K and V of one layer in one element type.
#[derive(Clone)]
enum HostBuf {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

thread_local! {
    /// The attention kernel's reusable buffers, one set per calling thread and shared by every
    /// layer (a forward runs its layers one after another). Per layer, a 128-token prefill of
    /// SmolLM2-135M kept 20 MiB of them alive across its 30 layers — a fifth of the model.
    static SCRATCH: std::cell::RefCell<AttnScratch> = std::cell::RefCell::default();
}

/// One layer's K and V on the host, `[kv_heads][capacity][head_dim]` each.
pub struct HostKv {
    kv_heads: usize,
    capacity: usize,
    head_dim: usize,
    buf: HostBuf,
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
    /// Zeroed K/V of `kv_type` for `capacity` positions.
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize, kv_type: KvType) -> Self {
        let capacity = capacity.max(1);
        let n = kv_heads * capacity * head_dim;
        let buf = match kv_type {
            KvType::F32 => HostBuf::F32 {
                k: vec![0.0; n],
                v: vec![0.0; n],
            },
            KvType::F16 => HostBuf::F16 {
                k: vec![f16::ZERO; n],
                v: vec![f16::ZERO; n],
            },
        };
        Self {
            kv_heads,
            capacity,
            head_dim,
            buf,
        }
    }

    /// Positions the buffers hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The element type.
    pub fn kv_type(&self) -> KvType {
        match self.buf {
            HostBuf::F32 { .. } => KvType::F32,
            HostBuf::F16 { .. } => KvType::F16,
        }
    }

    /// Keys and values of positions `0..len` as `f32`, `[kv_heads][len][head_dim]` each.
    pub fn prefix_f32(&self, len: usize) -> (Vec<f32>, Vec<f32>) {
        fn gather<E: KvElem>(src: &[E], h: usize, cap: usize, len: usize, d: usize) -> Vec<f32> {
            let mut out = Vec::with_capacity(h * len * d);
            for head in 0..h {
                let rows = &src[head * cap * d..(head * cap + len) * d];
                out.extend(rows.iter().map(|x| x.to_f32()));
            }
            out
        }
        let (h, cap, d) = (self.kv_heads, self.capacity, self.head_dim);
        match &self.buf {
            HostBuf::F32 { k, v } => (gather(k, h, cap, len, d), gather(v, h, cap, len, d)),
            HostBuf::F16 { k, v } => (gather(k, h, cap, len, d), gather(v, h, cap, len, d)),
        }
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
        fn put<E: KvElem>(dst: &mut [E], src: &[f32]) {
            dst.iter_mut()
                .zip(src)
                .for_each(|(d, &s)| *d = E::from_f32(s));
        }
        for h in 0..self.kv_heads {
            let dst = (h * self.capacity + start) * d..(h * self.capacity + start + n) * d;
            let src = h * n * d..(h + 1) * n * d;
            match &mut self.buf {
                HostBuf::F32 { k, v } => {
                    put(&mut k[dst.clone()], &key[src.clone()]);
                    put(&mut v[dst], &value[src]);
                }
                HostBuf::F16 { k, v } => {
                    put(&mut k[dst.clone()], &key[src.clone()]);
                    put(&mut v[dst], &value[src]);
                }
            }
        }
    }

    /// Causal attention of `k` query rows at `start..start+k` (`q`: `[n_heads][k][head_dim]`)
    /// over positions `0..start+k` into `out` (`[k][n_heads·head_dim]`); see
    /// [`attend`](crate::model::cpu_attention::attend).
    pub fn attend(&mut self, q: &[f32], n_heads: usize, start: usize, k: usize, out: &mut [f32]) {
        let shape = AttnShape {
            n_heads,
            n_kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        };
        let capacity = self.capacity;
        let buf = &self.buf;
        let mut run = |scratch: &mut AttnScratch| match buf {
            HostBuf::F32 { k: keys, v } => {
                attend(q, keys, v, capacity, shape, start, k, out, scratch)
            }
            HostBuf::F16 { k: keys, v } => {
                attend(q, keys, v, capacity, shape, start, k, out, scratch)
            }
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
    /// The tensors are held in `store` (the cache's type) and read back as `compute` (the
    /// model's dtype); the two are equal unless an `f16` cache serves an `f32` / `bf16` model.
    Device {
        k: Option<Tensor<B, 3>>,
        v: Option<Tensor<B, 3>>,
        store: DType,
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
    pub fn new(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
        kv_type: KvType,
    ) -> Self {
        let shape = [kv_heads, capacity.max(1), head_dim];
        let store = match kv_type {
            KvType::F32 => dtype,
            KvType::F16 => DType::F16,
        };
        Self {
            storage: Storage::Device {
                k: Some(Tensor::zeros(shape, (device, store))),
                v: Some(Tensor::zeros(shape, (device, store))),
                store,
                compute: dtype,
            },
        }
    }

    /// Zeroed host K/V (`[kv_heads][capacity][head_dim]` of `kv_type`), attended by the CPU
    /// kernel. `device`/`dtype` are those of the model's tensors.
    pub fn new_host(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
        kv_type: KvType,
    ) -> Self {
        Self {
            storage: Storage::Host {
                kv: HostKv::new(kv_heads, capacity, head_dim, kv_type),
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
                let stored = |t: Tensor<B, 3>| if store == compute { t } else { t.cast(*store) };
                if let Some(t) = k.take() {
                    *k = Some(t.slice_assign(range.clone(), stored(key)));
                }
                if let Some(t) = v.take() {
                    *v = Some(t.slice_assign(range, stored(value)));
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
                let view = |t: &Option<Tensor<B, 3>>| {
                    let t = t
                        .as_ref()
                        .expect("layer cache holds its tensors between writes");
                    let [h, _, d] = t.dims();
                    let t = t.clone().slice([0..h, 0..len, 0..d]);
                    if store == compute {
                        t
                    } else {
                        t.cast(*compute)
                    }
                };
                (view(k), view(v))
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
        let mut layer = LayerCache::<Flex>::new(1, 4, 2, &dev, DType::F32, KvType::F32);
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
        let mut layer = LayerCache::<Flex>::new_host(2, 4, 2, &dev, DType::F32, KvType::F32);
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
            LayerCache::<Flex>::new(1, 4, 2, &dev, DType::F32, KvType::F32)
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
        for kv_type in KvType::ALL {
            let want = match kv_type {
                KvType::F32 => &vals,
                KvType::F16 => &rounded,
            };
            for host in [true, false] {
                let new = if host {
                    LayerCache::<Flex>::new_host
                } else {
                    LayerCache::<Flex>::new
                };
                let mut layer = new(1, 3, 2, &dev, DType::F32, kv_type);
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
        let err = "q8_0".parse::<KvType>().unwrap_err();
        assert!(err.contains("q8_0") && err.contains("f16"), "{err}");
        // Qwen2.5-Coder-1.5B: 28 layers, 2 KV heads of 128, 2048 positions
        assert_eq!(KvType::F16.cache_bytes(28, 2, 128, 2048), 58_720_256);
        assert_eq!(KvType::F32.cache_bytes(28, 2, 128, 2048), 2 * 58_720_256);
    }
}
