//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`) as a BPE tokenizer.
//!
//! llama.cpp's SPM tokenizer (`llm_tokenizer_spm` in `llama-vocab.cpp`) prefixes the text with a
//! space (`add_space_prefix`), writes spaces as `▁`, starts from single characters and repeatedly
//! merges the adjacent pair whose concatenation is the vocabulary piece with the highest score
//! (leftmost first on ties); characters that never become a piece fall back to `<0xXX>` byte
//! tokens. A BPE model whose merges are every (left, right) split of every piece, ranked by the
//! merged piece's score, makes the same choices (the construction of transformers'
//! `SentencePieceExtractor`); with byte fallback, a `Prepend("▁")` + `Replace(" ", "▁")`
//! normalizer and the matching decoder it reproduces llama.cpp's ids.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::reader::MetaValue;
use super::tokenizer::{BpeModel, added_token};

/// llama.cpp's token types that are not plain pieces.
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;
const TOKEN_BYTE: i64 = 6;

/// Build the model, the `normalizer` and `decoder` (tokenizer.json fragments) and the added
/// tokens for an SPM vocabulary. `tokens`, `types` and `scores` are the `tokenizer.ggml.*` arrays.
pub(super) fn spm_parts(
    map: &BTreeMap<String, MetaValue>,
    tokens: &[&str],
    types: &[i64],
) -> Result<(BpeModel, Value, Value, Vec<tokenizers::AddedToken>), String> {
    let scores: Vec<f64> = match map
        .get("tokenizer.ggml.scores")
        .and_then(MetaValue::as_array)
    {
        Some(a) if a.len() == tokens.len() => a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
        Some(a) => {
            return Err(format!(
                "metadata `tokenizer.ggml.scores`: {} scores for {} tokens",
                a.len(),
                tokens.len()
            ));
        }
        None => return Err("metadata `tokenizer.ggml.scores` is missing".into()),
    };
    let ty = |id: usize| types.get(id).copied().unwrap_or(1);

    // Pieces that take part in merges: normal and user-defined ones (llama.cpp looks every
    // candidate up in the whole vocabulary, but control/byte/unknown pieces never match text).
    let mut piece_id: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (id, &t) in tokens.iter().enumerate() {
        if !matches!(ty(id), TOKEN_CONTROL | TOKEN_BYTE | TOKEN_UNKNOWN) {
            piece_id.insert(t, id);
        }
    }
    let mut merges: Vec<(f64, usize, usize, &str, &str)> = Vec::new();
    for (&piece, &id) in &piece_id {
        for (split, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(split);
            if piece_id.contains_key(l) && piece_id.contains_key(r) {
                merges.push((scores[id], id, l.len(), l, r));
            }
        }
    }
    // Highest score first; for one merged piece, the split with the shorter left part first.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| (m.3.to_string(), m.4.to_string()))
        .collect();

    let added = (0..tokens.len())
        .filter(|&id| matches!(ty(id), TOKEN_CONTROL | TOKEN_USER_DEFINED | TOKEN_UNKNOWN))
        .map(|id| added_token(tokens[id], ty(id) != TOKEN_USER_DEFINED))
        .collect();
    let unk = map
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(MetaValue::as_u64)
        .and_then(|id| tokens.get(id as usize))
        .map(|t| t.to_string());
    let model = BpeModel {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        merges,
        unk,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
    };

    let prefix = map
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(MetaValue::as_bool)
        .unwrap_or(true);
    let mut norm = Vec::new();
    if prefix {
        norm.push(json!({"type": "Prepend", "prepend": "▁"}));
    }
    norm.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
    let normalizer = json!({"type": "Sequence", "normalizers": norm});

    let mut dec = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let decoder = json!({"type": "Sequence", "decoders": dec});
    Ok((model, normalizer, decoder, added))
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::build;
    use super::*;

    /// A toy SPM vocabulary: the highest-scoring piece wins, unknown characters fall back to bytes.
    fn meta() -> BTreeMap<String, MetaValue> {
        let s = |v: &str| MetaValue::String(v.into());
        let mut tokens = vec!["<unk>", "<s>", "</s>", "▁", "a", "b", "ab", "▁a", "▁ab"];
        let mut types = vec![2, 3, 3, 1, 1, 1, 1, 1, 1];
        let mut scores = vec![0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -3.0, -0.5, -0.1];
        let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
        for b in &bytes {
            tokens.push(b);
            types.push(6);
            scores.push(0.0);
        }
        let mut m = BTreeMap::new();
        m.insert("tokenizer.ggml.model".into(), s("llama"));
        m.insert(
            "tokenizer.ggml.tokens".into(),
            MetaValue::Array(tokens.iter().map(|t| s(t)).collect()),
        );
        m.insert(
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
        );
        m.insert(
            "tokenizer.ggml.scores".into(),
            MetaValue::Array(scores.into_iter().map(MetaValue::F32).collect()),
        );
        m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(1));
        m.insert("tokenizer.ggml.unknown_token_id".into(), MetaValue::U32(0));
        m
    }

    #[test]
    fn merges_by_score_with_byte_fallback_and_bos() {
        let t = build(&meta()).unwrap();
        let ids = |text: &str, special: bool| t.encode(text, special).unwrap().get_ids().to_vec();
        // "▁ab": "▁a" (-0.5) merges before "ab" (-3.0), then "▁ab" (-0.1).
        assert_eq!(ids("ab", false), vec![8]);
        assert_eq!(ids("ab", true), vec![1, 8]);
        // "b▁a": no "b▁" piece; "▁a" merges.
        assert_eq!(ids("ab b a", false), vec![8, 3, 5, 7]);
        // "é" is not a piece: its two UTF-8 bytes.
        assert_eq!(ids("é", false), vec![3, 9 + 0xC3, 9 + 0xA9]);
        assert_eq!(t.decode(&[1, 8, 3, 5, 7], true).unwrap(), "ab b a");
    }

    #[test]
    fn scores_must_match_the_tokens() {
        let mut m = meta();
        m.insert(
            "tokenizer.ggml.scores".into(),
            MetaValue::Array(vec![MetaValue::F32(0.0)]),
        );
        let e = build(&m).unwrap_err();
        assert!(e.contains("tokenizer.ggml.scores"), "{e}");
    }
}
