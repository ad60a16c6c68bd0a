//! Context depth: the deterministic filler text placed before the prompt so that decoding starts
//! after `depth` tokens of context (llama-bench's `-d`, but with text rather than a KV snapshot so
//! that the drafters see it too).
//!
//! The filler is a word stream drawn from a fixed list by splitmix64 with a fixed seed: the same on
//! every machine and run, not repetitive (so n-gram drafters cannot copy it trivially), and plain
//! English-looking text for any tokenizer. The worker tokenizes [`filler_text`] and keeps exactly the
//! first `depth` token ids, which precede the rendered prompt's ids.

const WORDS: &[&str] = &[
    "river", "stone", "morning", "quiet", "engine", "paper", "garden", "window", "signal",
    "copper", "harbor", "winter", "ladder", "orange", "planet", "silver", "market", "bridge",
    "forest", "candle", "number", "thread", "circle", "shadow", "valley", "rocket", "mirror",
    "button", "island", "castle", "pencil", "meadow", "anchor", "basket", "cotton", "dragon",
    "feather", "glacier", "hammer", "jacket", "kettle", "lantern", "marble", "needle", "oyster",
    "pepper", "quartz", "ribbon", "saddle", "tunnel", "umbrella", "velvet", "walnut", "yellow",
    "zipper", "across", "beneath", "slowly", "brightly", "after", "before", "while", "because",
    "and", "the", "a", "of", "under", "over", "near",
];

/// Fixed seed of the filler stream (changing it changes every depth > 0 measurement).
pub const FILLER_SEED: u64 = 0x5eed_f111_e4de_9074;

/// `n_words` words of filler text, separated by spaces, with a period every 12 words.
pub fn filler_text(n_words: usize) -> String {
    let mut state = FILLER_SEED;
    let mut out = String::with_capacity(n_words * 7);
    for i in 0..n_words {
        let r = splitmix64(&mut state);
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[(r % WORDS.len() as u64) as usize]);
        if i % 12 == 11 {
            out.push('.');
        }
    }
    out
}

/// splitmix64 (Steele, Lea & Flood 2014): a tiny, well-distributed, version-proof generator.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_is_deterministic_and_prefix_stable() {
        let long = filler_text(100);
        assert_eq!(long, filler_text(100));
        assert!(long.starts_with(&filler_text(10)));
        assert_eq!(long.split(' ').count(), 100);
    }

    #[test]
    fn splitmix_reference_value() {
        // First output for seed 0 (the published splitmix64 test vector).
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xe220_a839_7b1d_cdaf);
    }
}
