//! The caller-owned key/value cache: per layer, K and V tensors preallocated to `capacity`
//! positions (`[kv_heads, capacity, head_dim]`), a length, and `truncate(len)` for speculative
//! rollback. Appending writes in place (`slice_assign` on a uniquely owned tensor); truncation only
//! moves the length. An impossible request is an error, never a silent no-op.

use burn::tensor::{DType, Tensor, backend::Backend};

use crate::error::{EngineError, Result};

/// One layer's preallocated K and V.
#[derive(Debug)]
pub struct LayerCache<B: Backend> {
    // `Option` so a write can take ownership (keeping the buffer uniquely owned, hence updated in
    // place) and put it back.
    k: Option<Tensor<B, 3>>,
    v: Option<Tensor<B, 3>>,
}

impl<B: Backend> LayerCache<B> {
    /// Zeroed K/V of shape `[kv_heads, capacity, head_dim]`.
    pub fn new(
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
        dtype: DType,
    ) -> Self {
        let shape = [kv_heads, capacity.max(1), head_dim];
        Self {
            k: Some(Tensor::zeros(shape, (device, dtype))),
            v: Some(Tensor::zeros(shape, (device, dtype))),
        }
    }

    /// Write `key`/`value` (`[kv_heads, n, head_dim]`) at positions `start..start+n`.
    pub fn write(&mut self, start: usize, key: Tensor<B, 3>, value: Tensor<B, 3>) {
        let [h, n, d] = key.dims();
        let range = [0..h, start..start + n, 0..d];
        if let Some(k) = self.k.take() {
            self.k = Some(k.slice_assign(range.clone(), key));
        }
        if let Some(v) = self.v.take() {
            self.v = Some(v.slice_assign(range, value));
        }
    }

    /// Views of the first `len` positions: `([kv_heads, len, d], [kv_heads, len, d])`.
    pub fn prefix(&self, len: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let view = |t: &Option<Tensor<B, 3>>| {
            let t = t
                .as_ref()
                .expect("layer cache holds its tensors between writes");
            let [h, _, d] = t.dims();
            t.clone().slice([0..h, 0..len, 0..d])
        };
        (view(&self.k), view(&self.v))
    }
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
}
