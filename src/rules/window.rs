//! Time windows (`hours = { days = "mon-fri", from = "09:00", to = "18:00" }`) in the account's
//! time zone, and the text normalisation every keyword and message goes through.
//!
//! May depend on: chrono, chrono-tz, unicode-normalization.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use unicode_normalization::UnicodeNormalization;

/// NFKC (full-width ＡＢＣ１ → ABC1), lower-case, trimmed: the one form both keywords and
/// messages are compared in.
pub(crate) fn normalize(s: &str) -> String {
    // Fast path for what subscribers actually type (ASCII, CJK ideographs and punctuation,
    // full-width forms, emoji): each of those characters normalises on its own, so one pass
    // gives exactly lower(NFKC(s)). Anything else takes the full Unicode path.
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match fast_char(c) {
            Some(n) => out.push(n),
            None => return normalize_slow(s),
        }
    }
    match out.trim() {
        t if t.len() == out.len() => out,
        t => t.to_string(),
    }
}

/// `lower(NFKC(c))` for characters that neither compose with neighbours nor have a
/// multi-character mapping; `None` for everything else.
fn fast_char(c: char) -> Option<char> {
    match c {
        '\0'..='\x7f' => Some(c.to_ascii_lowercase()),
        // Full-width ASCII: NFKC maps U+FF01..U+FF5E to U+0021..U+007E.
        '\u{FF01}'..='\u{FF5E}' => {
            char::from_u32(u32::from(c) - 0xFEE0).map(|a| a.to_ascii_lowercase())
        }
        '\u{3000}' => Some(' '),
        // CJK punctuation except the four with compatibility mappings (U+3036, U+3038..U+303A)
        // and the ideographic tone marks U+302A..U+302F, which are combining marks that NFKC
        // reorders among themselves.
        '\u{3001}'..='\u{3029}'
        | '\u{3030}'..='\u{3035}'
        | '\u{3037}'
        | '\u{303B}'..='\u{303F}' => Some(c),
        '\u{4E00}'..='\u{9FFF}' => Some(c),
        '\u{2018}' | '\u{2019}' | '\u{201C}' | '\u{201D}' | '\u{2014}' | '\u{00B7}' => Some(c),
        '\u{1F300}'..='\u{1FAFF}' => Some(c),
        _ => None,
    }
}

fn normalize_slow(s: &str) -> String {
    let n: String = s.nfkc().collect();
    n.to_lowercase().trim().to_string()
}

/// Which days and which minutes of the day a rule is live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Monday = 0.
    days: [bool; 7],
    /// Minutes since local midnight; `from == 0 && to == 1440` is the whole day.
    from: u32,
    to: u32,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    /// Parses the three operator strings; each error names the field at fault.
    pub(crate) fn parse(
        days: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Window, (WindowField, String)> {
        let days = match days {
            None => [true; 7],
            Some(d) => parse_days(d).map_err(|e| (WindowField::Days, e))?,
        };
        let (from, to) = match (from, to) {
            (None, None) => (0, 24 * 60),
            (Some(f), Some(t)) => {
                let f = parse_hhmm(f).map_err(|e| (WindowField::From, e))?;
                let t = parse_hhmm(t).map_err(|e| (WindowField::To, e))?;
                if f == t {
                    return Err((
                        WindowField::To,
                        "`from` and `to` are equal: the window would be empty".into(),
                    ));
                }
                if f == 24 * 60 {
                    return Err((WindowField::From, "`from` cannot be 24:00".into()));
                }
                (f, t)
            }
            (Some(_), None) => return Err((WindowField::To, "`from` needs a `to`".into())),
            (None, Some(_)) => return Err((WindowField::From, "`to` needs a `from`".into())),
        };
        Ok(Window { days, from, to })
    }

    /// Whether `now` falls in the window. A window that wraps past midnight (22:00–02:00)
    /// belongs to the day it starts on: Friday 22:00–02:00 still holds at Saturday 01:00.
    pub(crate) fn contains(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        let local = now.with_timezone(&tz);
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday().num_days_from_monday() as usize;
        let yesterday = (today + 6) % 7;
        if self.from < self.to {
            self.days[today] && minute >= self.from && minute < self.to
        } else {
            (self.days[today] && minute >= self.from) || (self.days[yesterday] && minute < self.to)
        }
    }
}

/// Which part of an `hours` table an error is about, so it can point there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowField {
    Days,
    From,
    To,
}

fn day_index(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| s == *d || (s.len() > 3 && full_day_name(d) == s))
}

fn full_day_name(d: &str) -> &'static str {
    match d {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "daily" | "every day" | "all" => return Ok([true; 7]),
        "weekdays" => return Ok([true, true, true, true, true, false, false]),
        "weekends" => return Ok([false, false, false, false, false, true, true]),
        _ => {}
    }
    let mut days = [false; 7];
    for part in t.split(',') {
        let bad = || {
            format!(
                "bad day list `{s}`: use e.g. \"mon-fri\", \"sat,sun\", \"daily\" (days: mon tue wed thu fri sat sun)"
            )
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let a = day_index(a).ok_or_else(bad)?;
                let b = day_index(b).ok_or_else(bad)?;
                // A range may wrap the week: "fri-mon".
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day_index(part).ok_or_else(bad)?] = true,
        }
    }
    Ok(days)
}

fn parse_hhmm(s: &str) -> Result<u32, String> {
    let bad = || format!("bad time `{s}`: use 24-hour \"HH:MM\", e.g. \"09:00\" or \"21:30\"");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        // Times in tests are written in Asia/Shanghai (UTC+8) local time.
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid local time")
            .with_timezone(&Utc)
    }

    const SH: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn ideographic_tone_marks_are_reordered_as_nfkc_does() {
        // Found by `fast_normalisation_equals_full_nfkc`: U+302B (ccc 228) before U+302D
        // (ccc 222) is reordered by canonical ordering; the fast path kept them as typed.
        assert_eq!(normalize("\u{302b}\u{302d}"), "\u{302d}\u{302b}");
        assert_eq!(
            normalize("\u{302b}\u{302d}"),
            normalize_slow("\u{302b}\u{302d}")
        );
    }

    #[test]
    fn normalises_full_width_case_and_space() {
        assert_eq!(normalize("  ＡＢＣ１ "), "abc1");
        assert_eq!(normalize("Price"), "price");
        assert_eq!(normalize(" 价格\n"), "价格");
    }

    proptest::proptest! {
        /// The fast path is an optimisation only: it must agree with full NFKC + lower-case.
        #[test]
        fn fast_normalisation_equals_full_nfkc(s in "[ -~\u{3000}-\u{303F}\u{4E00}-\u{4E2F}\u{FF00}-\u{FF6F}\u{2010}-\u{2030}\u{00B7}\u{1F44B}\u{00C0}-\u{00FF}\u{0300}\u{0301}]{0,24}") {
            proptest::prop_assert_eq!(normalize(&s), normalize_slow(&s));
        }
    }

    #[test]
    fn weekday_office_hours() {
        let w = Window::parse(Some("mon-fri"), Some("09:00"), Some("18:00")).expect("valid");
        // 2026-11-20 is a Friday.
        assert!(w.contains(at(2026, 11, 20, 9, 0), SH));
        assert!(w.contains(at(2026, 11, 20, 17, 59), SH));
        assert!(!w.contains(at(2026, 11, 20, 18, 0), SH));
        assert!(!w.contains(at(2026, 11, 21, 10, 0), SH)); // Saturday
    }

    #[test]
    fn evaluated_in_account_zone_not_utc() {
        let w = Window::parse(Some("daily"), Some("09:00"), Some("10:00")).expect("valid");
        // 09:30 in Shanghai is 01:30 UTC: inside; 09:30 UTC is 17:30 Shanghai: outside.
        let utc_0930 = Utc
            .with_ymd_and_hms(2026, 11, 20, 9, 30, 0)
            .single()
            .expect("t");
        assert!(w.contains(at(2026, 11, 20, 9, 30), SH));
        assert!(!w.contains(utc_0930, SH));
    }

    #[test]
    fn window_wraps_past_midnight_and_belongs_to_start_day() {
        let w = Window::parse(Some("fri"), Some("22:00"), Some("02:00")).expect("valid");
        assert!(w.contains(at(2026, 11, 20, 23, 0), SH)); // Fri 23:00
        assert!(w.contains(at(2026, 11, 21, 1, 30), SH)); // Sat 01:30, Friday's night
        assert!(!w.contains(at(2026, 11, 21, 2, 0), SH));
        assert!(!w.contains(at(2026, 11, 20, 1, 0), SH)); // Fri 01:00 belongs to Thursday
        assert!(!w.contains(at(2026, 11, 21, 23, 0), SH)); // Sat 23:00
    }

    #[test]
    fn day_lists() {
        assert_eq!(
            parse_days("sat,sun"),
            Ok([false, false, false, false, false, true, true])
        );
        assert_eq!(
            parse_days("fri-mon"),
            Ok([true, false, false, false, true, true, true])
        );
        assert!(parse_days("mon-fry").is_err());
        assert!(parse_hhmm("25:00").is_err());
        assert!(parse_hhmm("9").is_err());
        assert_eq!(parse_hhmm("24:00"), Ok(1440));
    }

    #[test]
    fn bad_windows_name_their_field() {
        assert_eq!(
            Window::parse(None, Some("09:00"), None).map_err(|e| e.0),
            Err(WindowField::To)
        );
        assert_eq!(
            Window::parse(None, Some("09:00"), Some("09:00")).map_err(|e| e.0),
            Err(WindowField::To)
        );
    }
}
