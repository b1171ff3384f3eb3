//! The push reader on any body: the zero-copy scanner and the strict reader agree (the scanner
//! builds exactly the strict reader's tree, or declines and lets it decide), nothing panics, and
//! every push that parses survives `to_xml` and back unchanged (the documented round trip the
//! simulator and benchmarks rely on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpgate::wechat::{message, xml};

fuzz_target!(|data: &[u8]| {
    // Bodies are UTF-8 or refused before they reach the reader (`CallbackError::InvalidUtf8`).
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Err(why)) = mpgate::fuzzing::xml_scan_agrees(body) {
        panic!("the scanner and the strict reader disagree on {body:?}: {why}");
    }
    let _ = xml::parse(body);
    let _ = message::parse_envelope(body);
    if let Ok(m) = message::parse(body) {
        let again = message::parse(&m.to_xml());
        assert_eq!(
            again.as_ref(),
            Ok(&m),
            "to_xml does not round-trip {body:?}"
        );
        let _ = (
            m.dedupe_key(),
            m.type_label(),
            m.msg_id(),
            m.text_for_matching(),
        );
    }
});
