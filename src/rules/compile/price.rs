//! An article's price as the operator writes it (yuan: `"19.90"`, `"¥9.9"`, `"￥29"`, `"29元"`,
//! `"29"`) → integer fen, and the display form every page and teaser shows (`"¥19.90"`).
//!
//! Money is never a float here: the digits are read as text, so `"19.99"` is exactly 1999 fen.
//! Owns [`parse_yuan`], [`display_fen`] and [`PriceError`] (whose `Display` is the message
//! `mpgate check` prints; [`PriceError::help`] is its fix hint). May depend on: std only.

use std::fmt;

/// The most an article may cost: 1,000,000 yuan. Far above any article, well below the
/// platform's own limits, and a guard against a slipped key (`"19900"` for `"199.00"` still
/// passes; `"1990000000"` does not).
pub(crate) const MAX_FEN: u64 = 1_000_000 * 100;

/// Why a price was refused. Carries the text as written so the message can quote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PriceError {
    Empty,
    NotANumber(String),
    Negative(String),
    Zero(String),
    TooManyDecimals(String),
    TooLarge(String),
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceError::Empty => f.write_str("price is empty"),
            PriceError::NotANumber(s) => write!(f, "price \"{s}\" is not a number"),
            PriceError::Negative(s) => write!(f, "price \"{s}\" is negative"),
            PriceError::Zero(s) => write!(f, "price \"{s}\" is zero"),
            PriceError::TooManyDecimals(s) => {
                write!(f, "price \"{s}\" has more than two decimals")
            }
            PriceError::TooLarge(s) => write!(f, "price \"{s}\" is more than 1,000,000 yuan"),
        }
    }
}

impl PriceError {
    /// How to fix it, for the `help:` line.
    pub(crate) fn help(&self) -> &'static str {
        match self {
            PriceError::Empty | PriceError::Zero(_) => {
                "write the price in yuan like \"19.90\"; an article that is not for sale has no `price` (grants only)"
            }
            PriceError::NotANumber(_) => {
                "write it in yuan like \"19.90\" (also accepted: \"¥19.9\", \"￥19.9\", \"19.9元\")"
            }
            PriceError::Negative(_) => "a price is more than zero; write it in yuan like \"19.90\"",
            PriceError::TooManyDecimals(_) => "write it in yuan like \"19.90\"",
            PriceError::TooLarge(_) => {
                "write it in yuan like \"19.90\" (yuan, not fen: 1990 fen is \"19.90\")"
            }
        }
    }
}

/// Reads a price in yuan. Accepts an optional leading `¥`/`￥`, an optional trailing `元`,
/// surrounding spaces, and at most two decimals; the result is more than zero and at most
/// [`MAX_FEN`].
pub(crate) fn parse_yuan(written: &str) -> Result<u64, PriceError> {
    let s = written.trim();
    let quoted = || s.to_string();
    let bare = s
        .strip_prefix('¥')
        .or_else(|| s.strip_prefix('￥'))
        .unwrap_or(s);
    let bare = bare.strip_suffix('元').unwrap_or(bare).trim();
    if bare.is_empty() {
        return Err(if s.is_empty() {
            PriceError::Empty
        } else {
            PriceError::NotANumber(quoted())
        });
    }
    if let Some(rest) = bare.strip_prefix('-') {
        return Err(if is_decimal(rest) {
            PriceError::Negative(quoted())
        } else {
            PriceError::NotANumber(quoted())
        });
    }
    if !is_decimal(bare) {
        return Err(PriceError::NotANumber(quoted()));
    }
    let (int, frac) = bare.split_once('.').unwrap_or((bare, ""));
    if frac.len() > 2 {
        return Err(PriceError::TooManyDecimals(quoted()));
    }
    // Leading zeros cannot overflow the check: strip them, then more than 7 integer digits is
    // over the limit whatever they are.
    let int = int.trim_start_matches('0');
    if int.len() > 7 {
        return Err(PriceError::TooLarge(quoted()));
    }
    let yuan: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| PriceError::NotANumber(quoted()))?
    };
    let cents: u64 = match frac.len() {
        0 => 0,
        1 => u64::from(frac.as_bytes()[0] - b'0') * 10,
        _ => u64::from(frac.as_bytes()[0] - b'0') * 10 + u64::from(frac.as_bytes()[1] - b'0'),
    };
    let fen = yuan * 100 + cents;
    if fen == 0 {
        return Err(PriceError::Zero(quoted()));
    }
    if fen > MAX_FEN {
        return Err(PriceError::TooLarge(quoted()));
    }
    Ok(fen)
}

/// `digits` or `digits.digits` (ASCII only: a full-width digit is a typo worth reporting).
fn is_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

/// `1990` → `"¥19.90"`.
pub(crate) fn display_fen(fen: u64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_operators_write_reads_as_fen() {
        for (written, fen) in [
            ("19.90", 1990),
            ("19.9", 1990),
            ("¥9.9", 990),
            ("￥29", 2900),
            ("29元", 2900),
            ("29", 2900),
            (" ¥ 0.01 ", 1),
            ("1000000", MAX_FEN),
            ("007.50", 750),
        ] {
            assert_eq!(parse_yuan(written), Ok(fen), "{written}");
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        assert_eq!(
            parse_yuan("19.999"),
            Err(PriceError::TooManyDecimals("19.999".into()))
        );
        assert_eq!(parse_yuan("0"), Err(PriceError::Zero("0".into())));
        assert_eq!(parse_yuan("0.00"), Err(PriceError::Zero("0.00".into())));
        assert_eq!(parse_yuan("-5"), Err(PriceError::Negative("-5".into())));
        assert_eq!(parse_yuan(""), Err(PriceError::Empty));
        for nan in [
            "abc", "¥", "19.", ".5", "1,000", "１９", "19.9.9", "1e3", "+5", "--5",
        ] {
            assert_eq!(
                parse_yuan(nan),
                Err(PriceError::NotANumber(nan.into())),
                "{nan}"
            );
        }
        assert_eq!(
            parse_yuan("1000000.01"),
            Err(PriceError::TooLarge("1000000.01".into()))
        );
        assert_eq!(
            parse_yuan("99999999999999999999999"),
            Err(PriceError::TooLarge("99999999999999999999999".into()))
        );
    }

    #[test]
    fn display_always_shows_two_decimals() {
        assert_eq!(display_fen(1990), "¥19.90");
        assert_eq!(display_fen(1), "¥0.01");
        assert_eq!(display_fen(2900), "¥29.00");
    }
}
