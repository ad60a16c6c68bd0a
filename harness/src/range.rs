//! Integer range syntax for sweep axes, in the manner of llama-bench's `parse_int_range`.
//!
//! `"A..B"` is every integer from A to B inclusive, `"A..B+S"` steps by adding S, and `"A..B*M"`
//! steps by multiplying by M (`"512..8192*2"` = 512, 1024, 2048, 4096, 8192). The last value never
//! exceeds B; a step that cannot make progress (`+0`, `*1`, `0..8*2`) is an error, never a hang.

use thiserror::Error;

/// Why a range string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RangeError {
    #[error("`{0}` is not a range (expected A..B, A..B+S or A..B*M)")]
    Syntax(String),
    #[error("range `{0}` is empty (start is above end)")]
    Empty(String),
    #[error("range `{0}` never advances (step must grow the value)")]
    NoProgress(String),
    #[error("range `{0}` has more than {MAX_RANGE_VALUES} values")]
    TooLong(String),
}

/// Upper bound on the values one range may produce (a typo such as `1..100000000` is caught).
pub const MAX_RANGE_VALUES: usize = 10_000;

/// Parse `"A..B"`, `"A..B+S"` or `"A..B*M"` into its values, in increasing order.
pub fn parse_int_range(text: &str) -> Result<Vec<i64>, RangeError> {
    let syntax = || RangeError::Syntax(text.to_string());
    let (start, rest) = text.split_once("..").ok_or_else(syntax)?;
    let start: i64 = start.trim().parse().map_err(|_| syntax())?;
    enum Step {
        Add(i64),
        Mul(i64),
    }
    let (end, step) = if let Some((end, s)) = rest.split_once('+') {
        (end, Step::Add(s.trim().parse().map_err(|_| syntax())?))
    } else if let Some((end, m)) = rest.split_once('*') {
        (end, Step::Mul(m.trim().parse().map_err(|_| syntax())?))
    } else {
        (rest, Step::Add(1))
    };
    let end: i64 = end.trim().parse().map_err(|_| syntax())?;
    if start > end {
        return Err(RangeError::Empty(text.to_string()));
    }
    let mut values = Vec::new();
    let mut value = start;
    loop {
        values.push(value);
        if values.len() > MAX_RANGE_VALUES {
            return Err(RangeError::TooLong(text.to_string()));
        }
        let next = match step {
            Step::Add(s) => value.checked_add(s),
            Step::Mul(m) => value.checked_mul(m),
        };
        match next {
            Some(next) if next > value => {
                if next > end {
                    break;
                }
                value = next;
            }
            Some(_) if value == end => break,
            _ => return Err(RangeError::NoProgress(text.to_string())),
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[i64]) {
        assert_eq!(parse_int_range(text).unwrap(), expected, "{text}");
    }

    #[test]
    fn ranges_expand_inclusively() {
        check("512..8192*2", &[512, 1024, 2048, 4096, 8192]);
        check("1..8+1", &[1, 2, 3, 4, 5, 6, 7, 8]);
        check("1..8", &[1, 2, 3, 4, 5, 6, 7, 8]);
        check("0..10+4", &[0, 4, 8]);
        check("3..3", &[3]);
        check("3..3*2", &[3]);
        check("100..1000*3", &[100, 300, 900]);
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(matches!(parse_int_range("1-8"), Err(RangeError::Syntax(_))));
        assert!(matches!(
            parse_int_range("a..8"),
            Err(RangeError::Syntax(_))
        ));
        assert!(matches!(
            parse_int_range("1..8+x"),
            Err(RangeError::Syntax(_))
        ));
        assert!(matches!(parse_int_range("8..1"), Err(RangeError::Empty(_))));
        assert!(matches!(
            parse_int_range("0..8*2"),
            Err(RangeError::NoProgress(_))
        ));
        assert!(matches!(
            parse_int_range("1..8+0"),
            Err(RangeError::NoProgress(_))
        ));
        assert!(matches!(
            parse_int_range("1..8*1"),
            Err(RangeError::NoProgress(_))
        ));
        assert!(matches!(
            parse_int_range("0..100000"),
            Err(RangeError::TooLong(_))
        ));
    }
}
