use std::path::Path;
#[test]
fn shipped_keywords_toml_passes_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("keywords.toml");
    let mut out = Vec::new();
    let code = mpgate::rules::cli::check(&path, &mut out);
    let text = String::from_utf8_lossy(&out);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("warning"), "{text}");
}
