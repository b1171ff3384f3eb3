//! Office hours and the clock, in the account's time zone.

use super::*;

#[test]
fn time_windows_in_account_zone_including_past_midnight() {
    let rs = rules(
        r#"
        [account]
        timezone = "Asia/Shanghai"
        [[rule]]
        name = "office"
        when = { exact = ["hi"], hours = { days = "mon-fri", from = "09:00", to = "18:00" } }
        reply = { text = "office" }
        [[rule]]
        name = "night-owl"
        when = { exact = ["hi"], hours = { days = "fri", from = "22:00", to = "02:00" } }
        reply = { text = "night" }
        [[rule]]
        name = "other"
        when = { exact = ["hi"] }
        reply = { text = "other" }
        "#,
    );
    let hi = text("hi");
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 20, 9, 0))),
        "office"
    );
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 20, 18, 0))),
        "other"
    );
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 21, 10, 0))),
        "other"
    ); // Saturday
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 20, 23, 30))),
        "night-owl"
    );
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 21, 1, 59))),
        "night-owl"
    ); // Sat, Friday night
    assert_eq!(winner(&route_at(&rs, &hi, sh(2026, 11, 22, 1, 0))), "other"); // Sun 01:00
                                                                              // 03:00 UTC on Friday is 11:00 in Shanghai: office hours, though 03:00 is not.
    let utc = Utc
        .with_ymd_and_hms(2026, 11, 20, 3, 0, 0)
        .single()
        .expect("t");
    assert_eq!(winner(&route_at(&rs, &hi, utc)), "office");
}

#[test]
fn now_variable_is_in_account_zone() {
    let rs = rules(
        r#"
        [account]
        timezone = "America/New_York"
        [[rule]]
        name = "clock"
        when = { exact = ["time"] }
        reply = { text = "{{ now }}" }
        "#,
    );
    let now = Utc
        .with_ymd_and_hms(2026, 11, 20, 2, 5, 0)
        .single()
        .expect("t");
    assert_eq!(
        reply_text(&route_at(&rs, &text("time"), now)),
        "2026-11-19 21:05"
    );
    assert_eq!(rs.timezone(), chrono_tz::America::New_York);
}
