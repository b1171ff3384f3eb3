//! The signed-link checker on any `/a/{article}?u=…&e=…&s=…`: the input is the path segment and
//! the query as a browser sends them. Nothing panics; a link verifies only when its signature is
//! exactly the one mpgate computes for its fields (and is refused as expired only then), so no
//! unsigned link opens an article; and every link mpgate issues reads back through the same
//! parsing the page handler does, verifies, and fails once any field changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpgate::http::pages::LinkQuery;
use mpgate::paywall::{parse_expires, LinkError, LinkSigner};

const NOW: i64 = 1_767_225_600;
const BASE: &str = "https://mp.example.com";

/// Percent-decoding of a path segment (`+` is not a space there), as a router does.
fn decode_segment(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).expect("two hex digits"));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let signer = LinkSigner::new(*b"fuzz-secret-fuzz-secret-fuzz-32b");
    let (segment, query) = raw.split_once('?').unwrap_or((raw, ""));
    let article = decode_segment(segment);
    // The page handler reads the query with actix's `web::Query` (serde_urlencoded); a query it
    // cannot read is a 400 before the checker runs.
    let q = serde_urlencoded::from_str::<LinkQuery>(query).unwrap_or(LinkQuery {
        u: None,
        e: None,
        s: None,
    });

    // 1. The link as given.
    let mut expires = NOW + 60;
    if let (Some(u), Some(e), Some(s)) = (&q.u, &q.e, &q.s) {
        if let Ok(exp) = parse_expires(e) {
            expires = exp;
            let genuine = signer.sign(&article, u, exp) == *s;
            match signer.verify(&article, u, exp, s, NOW) {
                Ok(()) => assert!(genuine && NOW < exp, "an unsigned link verified: {raw:?}"),
                Err(LinkError::Expired) => {
                    assert!(
                        genuine && NOW >= exp,
                        "expired without being genuine: {raw:?}"
                    )
                }
                Err(LinkError::Tampered | LinkError::Malformed) => {
                    assert!(!genuine, "a genuine link was refused: {raw:?}")
                }
            }
        }
    }

    // 2. The link mpgate would issue for these fields, read back as the page handler reads it.
    let openid = q.u.as_deref().unwrap_or("oFuzz_reader");
    let url = signer.url(BASE, &article, openid, expires);
    let path_and_query = url
        .strip_prefix(BASE)
        .and_then(|p| p.strip_prefix("/a/"))
        .expect("the link is under /a/");
    let (seg, query) = path_and_query
        .split_once('?')
        .expect("the link has a query");
    assert_eq!(
        decode_segment(seg),
        article,
        "article does not round-trip: {url}"
    );
    let back: LinkQuery = serde_urlencoded::from_str(query).expect("an issued link's query parses");
    let (Some(u), Some(e), Some(s)) = (back.u, back.e, back.s) else {
        panic!("an issued link lacks u, e or s: {url}");
    };
    assert_eq!(u, openid, "openid does not round-trip: {url}");
    let exp = parse_expires(&e).expect("an issued link's expiry parses");
    assert_eq!(exp, expires);
    let want = if NOW < expires {
        Ok(())
    } else {
        Err(LinkError::Expired)
    };
    assert_eq!(signer.verify(&article, &u, exp, &s, NOW), want, "{url}");
    for (a, o, x) in [
        (format!("{article}x"), u.clone(), exp),
        (article.clone(), format!("{u}x"), exp),
        (article.clone(), u.clone(), exp ^ 1),
    ] {
        assert_eq!(
            signer.verify(&a, &o, x, &s, NOW),
            Err(LinkError::Tampered),
            "a changed field still verifies: {url}"
        );
    }
});
