//! `mtp`: drafting with the target's own multi-token-prediction head (DeepSeek-V3 §2.2,
//! Qwen3.5/3.6 `mtp.*`; llama.cpp `draft-mtp`, shared/reference/speculation.md §1.6, §3.3).
//!
//! The head has its own cache in which entry p pairs token x_{p+1} with the target's hidden row
//! h_p (the target batches are mirrored "shifted right by one"); the last hidden row of each
//! batch is carried as `pending` to pair with the next batch's first token. A draft feeds
//! (id_last, pending) first, then each drafted token with the head's own output hidden row, so a
//! one-layer head runs recurrently k times. After verification the draft entries are dropped and
//! the verified tokens are mirrored with the target's true hidden rows; `pending` becomes the
//! target's hidden row at the accepted index. Draft-length rules are the draft model's
//! ([`super::draft_model::draft_chain`]).

use super::draft_model::{DraftChooser, DraftParams, draft_chain};
use super::run::TargetOutput;
use super::{Draft, Drafter};
use crate::{EngineError, Result};

/// An MTP head with its own truncatable cache.
pub trait MtpHead {
    /// Vocabulary size (columns of the logits).
    fn vocab_size(&self) -> usize;
    /// Entries in the head's cache.
    fn len(&self) -> usize;
    /// Whether the head's cache is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Append the pairs (`tokens[i]`, hidden row i) and return, per pair, the logits of the token
    /// after `tokens[i]` and the head's output hidden row.
    fn forward(&mut self, tokens: &[u32], hidden: &[f32]) -> Result<TargetOutput>;
    /// Keep the first `len` entries.
    fn truncate(&mut self, len: usize) -> Result<()>;
}

/// The MTP drafter.
#[derive(Debug)]
pub struct MtpDrafter<H: MtpHead> {
    head: H,
    params: DraftParams,
    chooser: DraftChooser,
    /// The target's hidden row of the last processed position.
    pending: Option<Vec<f32>>,
    /// Head cache length before the last draft, while draft entries are in the cache.
    draft_start: Option<usize>,
    hidden_dim: usize,
}

impl<H: MtpHead> MtpDrafter<H> {
    /// A drafter around `head`.
    pub fn new(head: H, params: DraftParams, chooser: DraftChooser) -> Self {
        Self {
            head,
            params,
            chooser,
            pending: None,
            draft_start: None,
            hidden_dim: 0,
        }
    }

    /// The wrapped head.
    pub fn head(&self) -> &H {
        &self.head
    }

    fn drop_draft_entries(&mut self) -> Result<()> {
        if let Some(len) = self.draft_start.take() {
            self.head.truncate(len)?;
        }
        Ok(())
    }

    fn hidden_of(out: &TargetOutput, what: &str) -> Result<Vec<f32>> {
        out.hidden.clone().ok_or_else(|| {
            EngineError::Invalid(format!("mtp head returned no hidden rows for {what}"))
        })
    }
}

impl<H: MtpHead> Drafter for MtpDrafter<H> {
    fn name(&self) -> &'static str {
        "mtp"
    }

    fn begin(&mut self, _prompt: &[u32]) -> Result<()> {
        self.head.truncate(0)?;
        self.pending = None;
        self.draft_start = None;
        Ok(())
    }

    fn needs_hidden(&self) -> bool {
        true
    }

    fn draft(&mut self, history: &[u32], n_max: usize) -> Result<Draft> {
        self.drop_draft_entries()?;
        let (Some(pending), Some(&id_last)) = (self.pending.clone(), history.last()) else {
            return Ok(Draft::empty());
        };
        let vocab = self.head.vocab_size();
        self.draft_start = Some(self.head.len());
        let out = self.head.forward(&[id_last], &pending)?;
        if out.logits.len() != vocab {
            return Err(EngineError::Shape {
                tensor: "mtp logits".to_string(),
                expected: vec![1, vocab],
                got: vec![out.logits.len()],
            });
        }
        let mut h = Self::hidden_of(&out, "a draft step")?;
        let head = &mut self.head;
        let (draft, _fed) =
            draft_chain(out.logits, n_max, &self.params, &mut self.chooser, |tok| {
                let out = head.forward(&[tok], &h)?;
                h = Self::hidden_of(&out, "a draft step")?;
                Ok(out.logits)
            })?;
        Ok(draft)
    }

    fn accept(&mut self, _n_accepted: usize) -> Result<()> {
        // The verified tokens are re-mirrored with the target's hidden rows in `process`.
        self.drop_draft_entries()
    }

    fn process(&mut self, batch: &[u32], hidden: Option<&[f32]>) -> Result<()> {
        self.drop_draft_entries()?;
        let hidden = hidden.ok_or_else(|| {
            EngineError::Invalid("mtp drafting needs the target's hidden rows".to_string())
        })?;
        if batch.is_empty() {
            return Ok(());
        }
        if hidden.len() % batch.len() != 0 || hidden.is_empty() {
            return Err(EngineError::Shape {
                tensor: "target hidden rows".to_string(),
                expected: vec![batch.len(), self.hidden_dim.max(1)],
                got: vec![hidden.len()],
            });
        }
        let d = hidden.len() / batch.len();
        self.hidden_dim = d;
        // Pair x_{p+1} with h_p: the first token goes with `pending` (none at the prompt's start).
        let (tokens, pairs): (&[u32], Vec<f32>) = match self.pending.take() {
            Some(p) => {
                let mut rows = p;
                rows.extend_from_slice(&hidden[..(batch.len() - 1) * d]);
                (batch, rows)
            }
            None => (&batch[1..], hidden[..(batch.len() - 1) * d].to_vec()),
        };
        if !tokens.is_empty() {
            self.head.forward(tokens, &pairs)?;
        }
        self.pending = Some(hidden[(batch.len() - 1) * d..].to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::mock::{MockModel, MockMtp, plain_greedy};
    use crate::spec::run::Target;

    #[test]
    fn exact_head_drafts_the_targets_continuation_and_rolls_back() {
        let mut reference = MockModel::target(32, 11);
        let prompt = [3, 1, 4, 1, 5];
        let expected = plain_greedy(&mut reference, &prompt, 6);

        let mut target = MockModel::target(32, 11);
        let params = DraftParams {
            draft_min: 0,
            draft_max: 3,
            draft_p_min: 0.0,
        };
        let mut d = MtpDrafter::new(MockMtp::new(32, 11, 0.0), params, DraftChooser::greedy());
        d.begin(&prompt).unwrap();
        let out = target.forward(&prompt, true).unwrap();
        d.process(&prompt, out.hidden.as_deref()).unwrap();
        assert_eq!(
            d.head().len(),
            prompt.len() - 1,
            "x_{{p+1}} paired with h_p"
        );

        let mut history = prompt.to_vec();
        history.push(expected[0]);
        let draft = d.draft(&history, 8).unwrap();
        assert_eq!(draft.tokens, expected[1..4].to_vec());
        assert_eq!(
            d.head().len(),
            prompt.len() - 1 + 3,
            "three recurrent steps"
        );

        // Verify [id_last, d1, d2, d3], accept 2: the head keeps only true-hidden entries.
        let mut batch = vec![expected[0]];
        batch.extend(&draft.tokens);
        let out = target.forward(&batch, true).unwrap();
        target.truncate(prompt.len() + 3).unwrap();
        d.accept(2).unwrap();
        assert_eq!(d.head().len(), prompt.len() - 1);
        d.process(&batch[..3], Some(&out.hidden.unwrap()[..3 * 2]))
            .unwrap();
        assert_eq!(d.head().len(), prompt.len() + 2);
    }

    #[test]
    fn missing_hidden_rows_are_an_error() {
        let params = DraftParams {
            draft_min: 0,
            draft_max: 3,
            draft_p_min: 0.0,
        };
        let mut d = MtpDrafter::new(MockMtp::new(8, 1, 0.0), params, DraftChooser::greedy());
        d.begin(&[1, 2]).unwrap();
        let err = d.process(&[1, 2], None).unwrap_err().to_string();
        assert!(err.contains("hidden"), "{err}");
    }
}
