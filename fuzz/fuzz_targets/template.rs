//! Operator templates on any text, through mpgate's render module: compiling never panics, the
//! load-time check (render against both sample contexts) never panics, and whenever the
//! concatenation fast path renders a template it prints exactly what the engine prints.
//! The first byte picks the template's name, which decides auto-escaping: an inline template
//! from keywords.toml, a `.txt` file or an `.html` page.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mpgate::render::{PlainVars, Templates, Vars};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(source) = std::str::from_utf8(rest) else {
        return;
    };
    let name = ["inline:r:fuzz", "fuzz.txt", "fuzz.html"][usize::from(pick % 3)];
    // No templates dir: `{% include %}` finds only the pages built into the binary.
    let mut templates = Templates::new(Path::new("/nonexistent/mpgate-fuzz/templates"));
    if let Err(e) = templates.add(name, source.to_string()) {
        let _ = (e.to_string(), e.line());
        return;
    }
    let groups = ["g".to_string()];
    let _ = templates.check(name, 2, &groups);
    for vars in Vars::samples(2, &groups) {
        let plain = PlainVars {
            openid: &vars.openid,
            keyword: &vars.keyword,
            text: &vars.text,
            channel: vars.channel.as_deref(),
        };
        let Some(fast) = templates.render_plain(name, &plain) else {
            continue;
        };
        match templates.render_vars(name, vars.clone()) {
            Ok(slow) => assert_eq!(
                fast, slow,
                "fast path differs from the engine on {source:?}"
            ),
            Err(e) => panic!("fast path rendered {source:?}, the engine refused: {e}"),
        }
    }
});
