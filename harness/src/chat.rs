//! Chat rendering: a conversation → the prompt text the model continues.
//!
//! ChatML (`<|im_start|>role\n…<|im_end|>\n`, then `<|im_start|>assistant\n`) is used when the
//! tokenizer knows `<|im_start|>` — the template of Qwen2/2.5/3 and SmolLM2. Otherwise a plain,
//! documented template: each message as `Role: content` followed by a blank line, and the prompt
//! ends with `Assistant:` (the demo fixtures and base models without a chat template use it).

use crate::suite::{Message, Role};

/// Which template renders conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    ChatMl,
    Plain,
}

impl ChatTemplate {
    /// ChatML when the vocabulary has `<|im_start|>`, else plain.
    pub fn detect(has_im_start: bool) -> ChatTemplate {
        if has_im_start {
            ChatTemplate::ChatMl
        } else {
            ChatTemplate::Plain
        }
    }

    /// Render `messages` and open the assistant's turn.
    pub fn render(self, messages: &[Message]) -> String {
        let mut out = String::new();
        for m in messages {
            match self {
                ChatTemplate::ChatMl => {
                    out.push_str("<|im_start|>");
                    out.push_str(role_name(m.role));
                    out.push('\n');
                    out.push_str(&m.content);
                    out.push_str("<|im_end|>\n");
                }
                ChatTemplate::Plain => {
                    out.push_str(match m.role {
                        Role::System => "System: ",
                        Role::User => "User: ",
                        Role::Assistant => "Assistant: ",
                    });
                    out.push_str(&m.content);
                    out.push_str("\n\n");
                }
            }
        }
        match self {
            ChatTemplate::ChatMl => out.push_str("<|im_start|>assistant\n"),
            ChatTemplate::Plain => out.push_str("Assistant:"),
        }
        out
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<Message> {
        vec![
            Message {
                role: Role::System,
                content: "Be brief.".into(),
            },
            Message {
                role: Role::User,
                content: "Hi".into(),
            },
            Message {
                role: Role::Assistant,
                content: "Hello".into(),
            },
            Message {
                role: Role::User,
                content: "Bye".into(),
            },
        ]
    }

    #[test]
    fn chatml() {
        assert_eq!(
            ChatTemplate::detect(true).render(&conversation()),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn plain() {
        assert_eq!(
            ChatTemplate::detect(false).render(&conversation()),
            "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Bye\n\nAssistant:"
        );
    }
}
