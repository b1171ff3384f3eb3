//! The callback query string (`POST /wechat?signature=…&timestamp=…&nonce=…`): the hand-written
//! parser never panics and reads every string exactly as serde_urlencoded (what actix's
//! `web::Query` used before) does, including repeated keys and broken percent escapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpgate::http::callback::parse_query;
use mpgate::pipeline::CallbackQuery;

fuzz_target!(|data: &[u8]| {
    // actix hands the handler the query as a `&str`.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let ours = parse_query(raw);
    let reference = serde_urlencoded::from_str::<CallbackQuery>(raw).unwrap_or_default();
    assert_eq!(
        format!("{ours:?}"),
        format!("{reference:?}"),
        "parse_query differs from serde_urlencoded on {raw:?}"
    );
});
