//! A `tokenizers::Tokenizer` rebuilt from GGUF metadata, producing llama.cpp's ids.
//!
//! llama.cpp's byte-level BPE (`tokenizer.ggml.model = "gpt2"`, `llm_tokenizer_bpe` in
//! `llama-vocab.cpp`) splits text with a list of regexes chosen by the pre-tokenizer name
//! (`tokenizer.ggml.pre`), each regex splitting the pieces of the previous one while keeping the
//! unmatched text; maps bytes to GPT-2's printable characters; then merges by rank
//! (`tokenizer.ggml.merges`). With the Llama-3 pre-tokenizer a piece that is itself in the vocabulary
//! is taken whole (`ignore_merges`). Control (type 3) and user-defined (type 4) tokens are matched
//! before splitting. This module builds the equivalent `tokenizers` pipeline (Split × N with
//! `Isolated` behaviour, ByteLevel without its own regex, a BPE model, a BOS/EOS template when
//! `add_bos_token`/`add_eos_token` say so). The BPE model is built from the vocabulary and merges
//! directly: going through a `tokenizer.json` document tripled the peak heap (the crate buffers a
//! whole model document before reading it): peak heap 53 MB for a 49k vocabulary, 17 MB now. The
//! small parts (normalizer, pre-tokenizer, decoder, template) are still written as tokenizer.json
//! fragments and read with the crate's own deserializers.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
};

use super::reader::MetaValue;

/// GPT-2's pre-tokenizer regex.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's (case-insensitive contractions spelled out, as llama.cpp does).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5's: Qwen2's with combining marks kept inside words.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regex list and `ignore_merges` flag llama.cpp uses for a `tokenizer.ggml.pre` name.
pub fn pre_tokenizer_regexes(pre: &str) -> Option<(Vec<&'static str>, bool)> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => (vec![LLAMA3], true),
        "dbrx" | "smaug-bpe" | "chatglm-bpe" => (vec![LLAMA3], false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" => {
            (vec![QWEN2], false)
        }
        "qwen35" => (vec![QWEN35], false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (vec![r"\p{N}", GPT2], false)
        }
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => {
            (vec![GPT2], false)
        }
        "falcon" => (
            vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
            false,
        ),
        "deepseek-coder" => (
            vec![
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[一-龥ࠀ-一가-퟿]+",
                r"\p{N}",
            ],
            false,
        ),
        "default" => (
            vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
            false,
        ),
        _ => return None,
    })
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

fn get<'a>(map: &'a BTreeMap<String, MetaValue>, key: &str) -> Option<&'a MetaValue> {
    map.get(key)
}

fn strings<'a>(map: &'a BTreeMap<String, MetaValue>, key: &str) -> Result<Vec<&'a str>, String> {
    let arr = get(map, key)
        .ok_or_else(|| format!("metadata `{key}` is missing"))?
        .as_array()
        .ok_or_else(|| format!("metadata `{key}`: expected an array"))?;
    arr.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .ok_or_else(|| format!("metadata `{key}`[{i}]: expected a string"))
        })
        .collect()
}

/// The BPE model both vocabulary types become (SPM vocabularies through score-ranked merges).
pub(super) struct BpeModel {
    /// Pieces in id order.
    pub tokens: Vec<String>,
    /// Merges in rank order.
    pub merges: Vec<(String, String)>,
    pub unk: Option<String>,
    pub fuse_unk: bool,
    pub byte_fallback: bool,
    pub ignore_merges: bool,
}

impl BpeModel {
    fn build(self) -> Result<BPE, String> {
        let vocab: Vocab = self
            .tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| (t, id as u32))
            .collect();
        let mut b = BPE::builder()
            .vocab_and_merges(vocab, self.merges)
            .fuse_unk(self.fuse_unk)
            .byte_fallback(self.byte_fallback)
            .ignore_merges(self.ignore_merges);
        if let Some(unk) = self.unk {
            b = b.unk_token(unk);
        }
        b.build()
            .map_err(|e| format!("building the tokenizer's BPE model from metadata: {e}"))
    }
}

/// An added (control or user-defined) token, matched whole before splitting.
pub(super) fn added_token(content: &str, special: bool) -> AddedToken {
    AddedToken::from(content.to_string(), special)
        .single_word(false)
        .lstrip(false)
        .rstrip(false)
        .normalized(false)
}

/// The parts of a tokenizer that depend on the vocabulary type.
struct Parts {
    model: BpeModel,
    normalizer: Value,
    pre_tokenizer: Value,
    decoder: Value,
    added: Vec<AddedToken>,
    /// Whether llama.cpp adds BOS when the metadata does not say.
    default_add_bos: bool,
}

/// Byte-level BPE (`gpt2`): pre-tokenizer regexes by `tokenizer.ggml.pre`, merges from metadata.
fn bpe_parts(
    map: &BTreeMap<String, MetaValue>,
    tokens: &[&str],
    types: &[i64],
) -> Result<Parts, String> {
    let merges = strings(map, "tokenizer.ggml.merges")?;
    let pre = get(map, "tokenizer.ggml.pre")
        .and_then(MetaValue::as_str)
        .unwrap_or("default");
    let (regexes, ignore_merges) = pre_tokenizer_regexes(pre).ok_or_else(|| {
        format!("metadata `tokenizer.ggml.pre`: unsupported pre-tokenizer `{pre}`")
    })?;

    let mut added = Vec::new();
    for (id, &tok) in tokens.iter().enumerate() {
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED {
            added.push(added_token(tok, ty == TOKEN_CONTROL));
        }
    }
    let merges: Vec<(String, String)> = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("metadata `tokenizer.ggml.merges`[{i}]: `{m}` is not `a b`"))
        })
        .collect::<Result<_, _>>()?;

    let mut pretok: Vec<Value> = regexes
        .iter()
        .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
        .collect();
    pretok.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}));
    Ok(Parts {
        model: BpeModel {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            merges,
            unk: None,
            fuse_unk: false,
            byte_fallback: false,
            ignore_merges,
        },
        normalizer: Value::Null,
        pre_tokenizer: json!({"type": "Sequence", "pretokenizers": pretok}),
        decoder: json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}),
        added,
        // llama.cpp adds BOS by default only for the Llama-3 pre-tokenizers.
        default_add_bos: ignore_merges,
    })
}

/// Build the tokenizer for the GGUF metadata `map`.
pub fn build(map: &BTreeMap<String, MetaValue>) -> Result<tokenizers::Tokenizer, String> {
    let model = get(map, "tokenizer.ggml.model")
        .and_then(MetaValue::as_str)
        .ok_or("metadata `tokenizer.ggml.model` is missing")?;
    let tokens = strings(map, "tokenizer.ggml.tokens")?;
    let types: Vec<i64> = match get(map, "tokenizer.ggml.token_type").and_then(MetaValue::as_array)
    {
        Some(a) => a
            .iter()
            .map(|v| v.as_f64().map(|f| f as i64).unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    let parts = match model {
        "gpt2" => bpe_parts(map, &tokens, &types)?,
        "llama" => {
            let (model, normalizer, decoder, added) = super::spm::spm_parts(map, &tokens, &types)?;
            Parts {
                model,
                normalizer,
                pre_tokenizer: Value::Null,
                decoder,
                added,
                default_add_bos: true,
            }
        }
        other => {
            return Err(format!(
                "metadata `tokenizer.ggml.model`: tokenizer model `{other}` is not supported (supported: gpt2, llama)"
            ));
        }
    };

    let flag = |k: &str| get(map, k).and_then(MetaValue::as_bool);
    let token_of = |k: &str| -> Result<Option<(u64, &str)>, String> {
        match get(map, k).and_then(MetaValue::as_u64) {
            None => Ok(None),
            Some(id) => tokens
                .get(id as usize)
                .map(|t| Some((id, *t)))
                .ok_or_else(|| format!("metadata `{k}`: token id {id} is outside the vocabulary")),
        }
    };
    // The metadata flags win over llama.cpp's per-vocabulary defaults.
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(parts.default_add_bos);
    let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(false);
    let bos = if add_bos {
        token_of("tokenizer.ggml.bos_token_id")?
    } else {
        None
    };
    let eos = if add_eos {
        token_of("tokenizer.ggml.eos_token_id")?
    } else {
        None
    };
    let post = if bos.is_none() && eos.is_none() {
        Value::Null
    } else {
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = serde_json::Map::new();
        let mut special = |t: (u64, &str)| {
            specials.insert(
                t.1.to_string(),
                json!({"id": t.1, "ids": [t.0], "tokens": [t.1]}),
            );
            json!({"SpecialToken": {"id": t.1, "type_id": 0}})
        };
        let bos_item = bos.map(&mut special);
        let eos_item = eos.map(&mut special);
        for (seq, out) in [("A", &mut single), ("B", &mut pair)] {
            out.extend(bos_item.clone());
            out.push(json!({"Sequence": {"id": seq, "type_id": 0}}));
            out.extend(eos_item.clone());
        }
        let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
    };

    let mut t = tokenizers::Tokenizer::new(parts.model.build()?);
    t.with_normalizer(fragment::<NormalizerWrapper>(
        "normalizer",
        parts.normalizer,
    )?)
    .map_err(|e| format!("building the tokenizer's normalizer: {e}"))?;
    t.with_pre_tokenizer(fragment::<PreTokenizerWrapper>(
        "pre-tokenizer",
        parts.pre_tokenizer,
    )?);
    t.with_post_processor(fragment::<PostProcessorWrapper>("post-processor", post)?);
    t.with_decoder(fragment::<DecoderWrapper>("decoder", parts.decoder)?);
    t.add_tokens(parts.added)
        .map_err(|e| format!("adding the control tokens from metadata: {e}"))?;
    Ok(t)
}

/// A tokenizer.json fragment read with the crate's deserializer (`null`: none).
fn fragment<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<Option<T>, String> {
    if v.is_null() {
        return Ok(None);
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| format!("building the tokenizer's {what} from metadata: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pre: &str) -> BTreeMap<String, MetaValue> {
        let s = |v: &str| MetaValue::String(v.into());
        let arr = |v: &[&str]| MetaValue::Array(v.iter().map(|x| s(x)).collect());
        let mut m = BTreeMap::new();
        m.insert("tokenizer.ggml.model".into(), s("gpt2"));
        m.insert("tokenizer.ggml.pre".into(), s(pre));
        // ids: 0 <|eot|>, 1 a, 2 b, 3 ab, 4 Ġ, 5 Ġab, 6 1, 7 2, 8 12
        let toks = ["<|eot|>", "a", "b", "ab", "Ġ", "Ġab", "1", "2", "12"];
        m.insert("tokenizer.ggml.tokens".into(), arr(&toks));
        m.insert("tokenizer.ggml.merges".into(), arr(&["a b", "Ġ ab", "1 2"]));
        let types = [3, 1, 1, 1, 1, 1, 1, 1, 1].map(MetaValue::I32).to_vec();
        m.insert("tokenizer.ggml.token_type".into(), MetaValue::Array(types));
        m.insert("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(0));
        m
    }

    fn ids(t: &tokenizers::Tokenizer, text: &str, special: bool) -> Vec<u32> {
        t.encode(text, special).unwrap().get_ids().to_vec()
    }

    #[test]
    fn merges_and_digit_splitting_follow_the_pre_tokenizer() {
        let qwen = build(&meta("qwen2")).unwrap();
        assert_eq!(ids(&qwen, "ab ab", false), vec![3, 5]);
        // qwen2 splits digits one by one: "12" stays two tokens.
        assert_eq!(ids(&qwen, "12", false), vec![6, 7]);
        let gpt2 = build(&meta("gpt-2")).unwrap();
        assert_eq!(ids(&gpt2, "12", false), vec![8]);
        // Control tokens are matched whole and decode back.
        assert_eq!(ids(&qwen, "ab<|eot|>", false), vec![3, 0]);
        assert_eq!(qwen.decode(&[3, 5], false).unwrap(), "ab ab");
    }

    #[test]
    fn bos_follows_the_add_bos_flag() {
        let mut m = meta("qwen2");
        m.insert("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(true));
        let t = build(&m).unwrap();
        assert_eq!(ids(&t, "ab", true), vec![0, 3]);
        assert_eq!(ids(&t, "ab", false), vec![3]);
    }

    #[test]
    fn unsupported_inputs_name_the_key() {
        let e = build(&meta("no-such-pre")).unwrap_err();
        assert!(
            e.contains("tokenizer.ggml.pre") && e.contains("no-such-pre"),
            "{e}"
        );
        let mut m = meta("qwen2");
        m.insert(
            "tokenizer.ggml.model".into(),
            MetaValue::String("t5".into()),
        );
        assert!(build(&m).unwrap_err().contains("`t5`"));
    }

    /// llama.cpp's own tokenizer vectors (`models/ggml-vocab-*.gguf` with `.inp`/`.out`, shipped in
    /// the llama-cpp-python sdist). They are not committed: `scripts/llamacpp-vocab-vectors.sh`
    /// fetches them with pip and prints the directory to pass as `SPECSWEEP_VOCAB_DIR`. Without
    /// it this test says it is skipped. Tokenization is llama.cpp's test setting: no BOS/EOS
    /// added, special tokens not parsed.
    #[test]
    fn llama_cpp_vocab_vectors() {
        let Some(dir) = std::env::var_os("SPECSWEEP_VOCAB_DIR") else {
            eprintln!("skipped: set SPECSWEEP_VOCAB_DIR (see scripts/llamacpp-vocab-vectors.sh)");
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let mut total_failed = 0;
        for vocab in VECTOR_VOCABS {
            let gguf = dir.join(format!("ggml-vocab-{vocab}.gguf"));
            let (pass, fail) = run_vectors(&gguf);
            eprintln!("vocab {vocab}: {pass} passed, {fail} failed");
            total_failed += fail;
        }
        assert_eq!(total_failed, 0, "some llama.cpp tokenizer vectors differ");
    }

    /// The byte-level BPE vocabularies with llama.cpp test vectors whose pre-tokenizer we build.
    const VECTOR_VOCABS: &[&str] = &[
        "qwen2",
        "llama-bpe",
        "gpt-2",
        "starcoder",
        "refact",
        "command-r",
        "deepseek-coder",
        "falcon",
        "mpt",
        "qwen35",
        "llama-spm",
        "phi-3",
    ];

    /// (passed, failed) over one vocabulary's vectors; prints the first few mismatches.
    fn run_vectors(gguf: &std::path::Path) -> (usize, usize) {
        let bytes = std::fs::read(gguf).unwrap_or_else(|e| panic!("{}: {e}", gguf.display()));
        let header = crate::gguf::reader::parse_header(&bytes).unwrap();
        let mut tok = build(&header.metadata).unwrap_or_else(|e| panic!("{}: {e}", gguf.display()));
        tok.set_encode_special_tokens(true);
        let inp = std::fs::read_to_string(gguf.with_extension("gguf.inp")).unwrap();
        let out = std::fs::read_to_string(gguf.with_extension("gguf.out")).unwrap();
        let mut inputs: Vec<&str> = Vec::new();
        let mut rest = inp.as_str();
        let sep = "\n__ggml_vocab_test__\n";
        while !rest.is_empty() {
            match rest.find(sep) {
                Some(i) => {
                    inputs.push(&rest[..i]);
                    rest = &rest[i + sep.len()..];
                }
                None => {
                    inputs.push(rest);
                    rest = "";
                }
            }
        }
        let expected: Vec<Vec<u32>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
            .collect();
        assert_eq!(inputs.len(), expected.len(), "{}", gguf.display());
        let (mut pass, mut fail) = (0, 0);
        for (text, want) in inputs.iter().zip(&expected) {
            let got = ids(&tok, text, false);
            if &got == want {
                pass += 1;
            } else {
                fail += 1;
                if fail <= 3 {
                    eprintln!("  {:?}: got {got:?}, llama.cpp {want:?}", text);
                }
            }
        }
        (pass, fail)
    }
}
