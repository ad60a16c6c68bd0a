//! The caller-owned key/value cache: per layer, K and V preallocated to `capacity` positions
//! (`[kv_heads, capacity, head_dim]`), a length, and `truncate(len)` for speculative rollback.
//! Appending writes in place; truncation only moves the length. An impossible request is an
//! error, never a silent no-op.
//!
//! A layer's K/V live either in backend tensors (GPU backends: `slice_assign` on a uniquely owned
//! tensor) or, for the CPU backend, in host `Vec<f32>`s read by
//! [`cpu_attention::attend`](crate::model::cpu_attention::attend) ([`HostKv`], issue #8).

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};

use crate::error::{EngineError, Result};
use crate::model::cpu_attention::{AttnScratch, AttnShape, attend};

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
    k: Vec<f32>,
    v: Vec<f32>,
}

impl std::fmt::Debug for HostKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKv")
            .field("kv_heads", &self.kv_heads)
            .field("capacity", &self.capacity)
            .field("head_dim", &self.head_dim)
            .finish_non_exhaustive()
    }
}

impl HostKv {
    /// Zeroed K/V for `capacity` positions.
    pub fn new(kv_heads: usize, capacity: usize, head_dim: usize) -> Self {
        let capacity = capacity.max(1);
        let n = kv_heads * capacity * head_dim;
        Self {
            kv_heads,
            capacity,
            head_dim,
            k: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// Positions the buffers hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// `[kv_heads][capacity][head_dim]`
    pub fn keys(&self) -> &[f32] {
        &self.k
    }

    /// `[kv_heads][capacity][head_dim]`
    pub fn values(&self) -> &[f32] {
        &self.v
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
        for h in 0..self.kv_heads {
            let dst = (h * self.capacity + start) * d..(h * self.capacity + start + n) * d;
            let src = h * n * d..(h + 1) * n * d;
            self.k[dst.clone()].copy_from_slice(&key[src.clone()]);
            self.v[dst].copy_from_slice(&value[src]);
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
        let mut run = |scratch: &mut AttnScratch| {
            attend(
                q,
                &self.k,
                &self.v,
                self.capacity,
                shape,
                start,
                k,
                out,
                scratch,
            )
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
    Device {
        k: Option<Tensor<B, 3>>,
        v: Option<Tensor<B, 3>>,
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
    /// Zeroed K/V tensors of shape `[kv_heads, capacity, head_dim]` on `device`.
    pub fn new(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
    ) -> Self {
        let shape = [kv_heads, capacity.max(1), head_dim];
        Self {
            storage: Storage::Device {
                k: Some(Tensor::zeros(shape, (device, dtype))),
                v: Some(Tensor::zeros(shape, (device, dtype))),
            },
        }
    }

    /// Zeroed host K/V (`[kv_heads][capacity][head_dim]` `f32`), attended by the CPU kernel.
    /// `device`/`dtype` are those of the model's tensors.
    pub fn new_host(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
    ) -> Self {
        Self {
            storage: Storage::Host {
                kv: HostKv::new(kv_heads, capacity, head_dim),
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
            Storage::Device { k, v } => {
                let range = [0..h, start..start + n, 0..d];
                if let Some(t) = k.take() {
                    *k = Some(t.slice_assign(range.clone(), key));
                }
                if let Some(t) = v.take() {
                    *v = Some(t.slice_assign(range, value));
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
            Storage::Device { k, v } => {
                let view = |t: &Option<Tensor<B, 3>>| {
                    let t = t
                        .as_ref()
                        .expect("layer cache holds its tensors between writes");
                    let [h, _, d] = t.dims();
                    t.clone().slice([0..h, 0..len, 0..d])
                };
                (view(k), view(v))
            }
            Storage::Host { kv, device, dtype } => {
                let (h, cap, d) = (kv.kv_heads, kv.capacity, kv.head_dim);
                let upload = |src: &[f32]| {
                    let mut data = Vec::with_capacity(h * len * d);
                    for head in 0..h {
                        data.extend_from_slice(&src[head * cap * d..(head * cap + len) * d]);
                    }
                    Tensor::from_data(TensorData::new(data, [h, len, d]), (device, *dtype))
                };
                (upload(&kv.k), upload(&kv.v))
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
        let mut layer = LayerCache::<Flex>::new(1, 4, 2, &dev, DType::F32);
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
        let mut layer = LayerCache::<Flex>::new_host(2, 4, 2, &dev, DType::F32);
        let kv = |v: Vec<f32>| Tensor::<Flex, 3>::from_data(TensorData::new(v, [2, 1, 2]), &dev);
        layer.write(
            2,
            kv(vec![1.0, 2.0, 3.0, 4.0]),
            kv(vec![5.0, 6.0, 7.0, 8.0]),
        );
        let host = layer.host().unwrap();
        assert_eq!(&host.keys()[4..6], &[1.0, 2.0]);
        assert_eq!(&host.keys()[12..14], &[3.0, 4.0]);
        assert_eq!(&host.values()[12..14], &[7.0, 8.0]);
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
            LayerCache::<Flex>::new(1, 4, 2, &dev, DType::F32)
                .host()
                .is_none()
        );
    }
}
