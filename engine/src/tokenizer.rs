//! The model's tokenizer: a thin wrapper over Hugging Face `tokenizers` (tokenizer.json) that adds
//! the end-of-sequence / beginning-of-sequence ids from the model config and one-line errors.

use std::path::Path;

use crate::error::{EngineError, Result};

/// A loaded tokenizer with the special ids the generation loop needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
}

impl Tokenizer {
    /// Load `tokenizer.json`.
    pub fn from_file(path: &Path, eos_ids: Vec<u32>, bos_id: Option<u32>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self::from_tokenizer(inner, eos_ids, bos_id))
    }

    /// Wrap an already-built tokenizer (e.g. one reconstructed from GGUF metadata).
    pub fn from_tokenizer(
        inner: tokenizers::Tokenizer,
        eos_ids: Vec<u32>,
        bos_id: Option<u32>,
    ) -> Self {
        Self {
            inner,
            eos_ids,
            bos_id,
        }
    }

    /// Encode text; `add_special` adds the template's special tokens (e.g. BOS).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| EngineError::Tokenizer(format!("encode: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EngineError::Tokenizer(format!("decode: {e}")))
    }

    /// End-of-sequence ids (from config.json / generation_config.json).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
