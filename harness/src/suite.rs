//! Prompt suites: JSONL files of prompts, each with a category, read into [`Suite`].
//!
//! Two line formats are accepted (per line, so a file may even mix them):
//! - ours (unknown keys are errors): `{"id", "category", "prompt" | "messages", "max_new_tokens"?}`
//!   where `messages` is a list of `{"role": "system"|"user"|"assistant", "content"}`;
//! - Spec-Bench's `question.jsonl` (Xia et al. 2024): `{"question_id", "category", "turns", ...}`,
//!   each turn a user message whose answer is generated before the next turn is asked.
//!
//! A conversation is generated at every *generation point*: after each user message that is not
//! followed by a fixed assistant message. Each generation point is one measured request; its
//! answer becomes the assistant message of the history for later points (as Spec-Bench does for
//! MT-Bench's second turns).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A suite that cannot be used: the file, the line (0 = the file itself), and why.
#[derive(Debug, Error)]
#[error("{}{}: {message}", file.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
pub struct SuiteError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// One prompt of a suite: a conversation with at least one generation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub category: String,
    pub messages: Vec<Message>,
    /// Overrides the cell's `max_new_tokens` for this prompt when smaller.
    pub max_new_tokens: Option<u32>,
}

impl Prompt {
    /// Number of generation points (measured requests) of this prompt.
    pub fn generation_points(&self) -> usize {
        generation_points(&self.messages).len()
    }
}

/// Indices `i` such that a generation happens after `messages[i]` (a user message not followed by
/// an assistant message).
pub fn generation_points(messages: &[Message]) -> Vec<usize> {
    (0..messages.len())
        .filter(|&i| {
            messages[i].role == Role::User
                && messages
                    .get(i + 1)
                    .is_none_or(|m| m.role != Role::Assistant)
        })
        .collect()
}

/// A loaded suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The name the sweep used (file stem for paths).
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub sha256: String,
    pub prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnLine {
    id: String,
    category: String,
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    max_new_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct SpecBenchLine {
    question_id: serde_json::Value,
    category: String,
    turns: Vec<String>,
}

impl Suite {
    /// Read and validate a suite file; `name` is how the sweep referred to it.
    pub fn load(name: &str, path: &Path) -> Result<Suite, SuiteError> {
        let err = |line: usize, message: String| SuiteError {
            file: path.to_path_buf(),
            line,
            message,
        };
        let bytes =
            std::fs::read(path).map_err(|e| err(0, format!("cannot read the suite: {e}")))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| err(0, "not UTF-8".into()))?;
        let mut prompts: Vec<Prompt> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(n, format!("invalid JSON: {e}")))?;
            let prompt = if value.get("question_id").is_some() {
                let line: SpecBenchLine = serde_json::from_value(value)
                    .map_err(|e| err(n, format!("Spec-Bench line: {e}")))?;
                let id = match &line.question_id {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let messages = line
                    .turns
                    .into_iter()
                    .map(|content| Message {
                        role: Role::User,
                        content,
                    })
                    .collect();
                Prompt {
                    id,
                    category: line.category,
                    messages,
                    max_new_tokens: None,
                }
            } else {
                let line: OwnLine =
                    serde_json::from_value(value).map_err(|e| err(n, e.to_string()))?;
                let messages = match (line.prompt, line.messages) {
                    (Some(prompt), None) => vec![Message {
                        role: Role::User,
                        content: prompt,
                    }],
                    (None, Some(messages)) => messages,
                    _ => return Err(err(n, "give exactly one of `prompt` and `messages`".into())),
                };
                Prompt {
                    id: line.id,
                    category: line.category,
                    messages,
                    max_new_tokens: line.max_new_tokens,
                }
            };
            if prompt.id.is_empty() || prompt.category.is_empty() {
                return Err(err(n, "`id` and `category` must not be empty".into()));
            }
            if prompt.max_new_tokens == Some(0) {
                return Err(err(n, "`max_new_tokens` must be at least 1".into()));
            }
            if prompt.messages.last().is_none_or(|m| m.role != Role::User) {
                return Err(err(
                    n,
                    "the conversation must end with a user message".into(),
                ));
            }
            if prompts.iter().any(|p| p.id == prompt.id) {
                return Err(err(n, format!("duplicate id `{}`", prompt.id)));
            }
            prompts.push(prompt);
        }
        if prompts.is_empty() {
            return Err(err(0, "the suite has no prompts".into()));
        }
        Ok(Suite {
            name: name.to_string(),
            path: path.to_path_buf(),
            sha256: crate::hashing::sha256_hex(&bytes),
            prompts,
        })
    }

    /// Keep only the first `n` prompts (the sweep's `max_prompts`).
    pub fn truncate(&mut self, n: usize) {
        self.prompts.truncate(n);
    }
}

/// Where a suite named in a sweep lives: a path (contains `/` or ends in `.jsonl`, relative to the
/// sweep file's directory) or a name looked up as `suites/NAME.jsonl` then
/// `suites/generated/NAME.jsonl` next to the sweep's parent directory, then in this repository.
pub fn resolve_suite(name: &str, sweep_dir: &Path) -> Result<PathBuf, String> {
    if name.contains('/') || name.ends_with(".jsonl") {
        let path = sweep_dir.join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("suite file {} does not exist", path.display()))
        };
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let roots = [sweep_dir.join(".."), sweep_dir.to_path_buf(), repo];
    for root in &roots {
        for sub in ["suites", "suites/generated"] {
            let path = root.join(sub).join(format!("{name}.jsonl"));
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    let hint = if ["code-completion", "chat"].contains(&name) {
        " (it is built at setup time: run scripts/build-suites.sh)"
    } else {
        ""
    };
    Err(format!(
        "unknown suite `{name}`: no suites/{name}.jsonl or suites/generated/{name}.jsonl{hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Suite, SuiteError> {
        let dir = std::env::temp_dir().join(format!(
            "specsweep-suite-{}-{}",
            std::process::id(),
            crate::hashing::sha256_hex(text.as_bytes())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        std::fs::write(&path, text).unwrap();
        let result = Suite::load("s", &path);
        std::fs::remove_dir_all(&dir).ok();
        result
    }

    #[test]
    fn own_and_spec_bench_lines() {
        let suite = load_text(concat!(
            "{\"id\":\"a\",\"category\":\"code\",\"prompt\":\"hi\",\"max_new_tokens\":8}\n",
            "{\"id\":\"b\",\"category\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"},{\"role\":\"user\",\"content\":\"z\"}]}\n",
            "{\"question_id\":81,\"category\":\"writing\",\"turns\":[\"one\",\"two\"],\"reference\":[]}\n",
        ))
        .unwrap();
        assert_eq!(suite.prompts.len(), 3);
        assert_eq!(suite.prompts[0].max_new_tokens, Some(8));
        assert_eq!(suite.prompts[1].generation_points(), 1);
        assert_eq!(suite.prompts[2].id, "81");
        assert_eq!(suite.prompts[2].generation_points(), 2);
        assert_eq!(suite.sha256.len(), 64);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = load_text("{\"id\":\"a\",\"category\":\"c\",\"prompt\":\"p\",\"colour\":1}\n")
            .unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("colour"), "{e}");
        let e = load_text("{\"id\":\"a\",\"category\":\"c\",\"prompt\":\"p\"}\n{\"id\":\"a\",\"category\":\"c\",\"prompt\":\"q\"}\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = load_text("{\"id\":\"a\",\"category\":\"c\"}\n").unwrap_err();
        assert!(e.message.contains("exactly one"));
        let e = load_text("{\"id\":\"a\",\"category\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}\n").unwrap_err();
        assert!(e.message.contains("end with a user"));
    }

    #[test]
    fn reads_the_shared_spec_bench_file_when_present() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/spec-bench/question.jsonl");
        if let Ok(suite) = Suite::load("spec-bench", &path) {
            assert_eq!(suite.prompts.len(), 480);
            assert!(suite.prompts.iter().any(|p| p.category == "rag"));
        }
    }
}
