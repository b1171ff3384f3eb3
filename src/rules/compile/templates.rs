//! Templates the rules name: files under the templates dir (read here, once, at load) and
//! inline texts, compiled and sample-rendered so a typo is a load error, not a silent reply.
//!
//! Owns template names (relative, no `..`), the read-once cache and the diagnostics that point
//! into a template file or an inline string. May depend on: [`crate::render`],
//! [`crate::rules::diag`].

use std::ops::Range;
use std::path::{Component, Path};

use super::actions::Cx;
use super::Compiler;
use crate::render::RenderError;
use crate::rules::diag::{Diagnostic, Severity};
use crate::rules::raw::S;

/// Where a template lives, for pointing diagnostics at it.
#[derive(Clone)]
pub(super) enum TplLoc {
    File(String),
    Inline(Range<usize>),
}

impl Compiler<'_> {
    pub(super) fn file_label(&self, name: &str) -> String {
        self.tdir.join(name).display().to_string()
    }

    /// Reads and compiles a template file once; `None` (with a diagnostic) if it cannot be used.
    pub(super) fn file_template(&mut self, t: &S<String>) -> Option<String> {
        let name = t.get_ref().trim().to_string();
        let p = Path::new(&name);
        if name.is_empty()
            || p.is_absolute()
            || p.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            self.sink.error_help(
                t.span(),
                format!("bad template name `{name}`"),
                "name a file relative to the templates dir, e.g. \"welcome.txt\" or \"articles/x.html\"",
            );
            return None;
        }
        if let Some(ok) = self.files.get(&name) {
            return ok.then_some(name);
        }
        let full = self.tdir.join(&name);
        let ok = match std::fs::read_to_string(&full) {
            Ok(src) => match self.templates.add(&name, src) {
                Ok(()) => true,
                Err(e) => {
                    self.template_error(&TplLoc::File(full.display().to_string()), &e);
                    false
                }
            },
            Err(e) => {
                let help = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("create {} or fix the name", full.display())
                } else {
                    e.to_string()
                };
                self.sink.error_help(
                    t.span(),
                    format!(
                        "template file `{name}` not found in {}",
                        self.tdir.display()
                    ),
                    help,
                );
                false
            }
        };
        self.files.insert(name.clone(), ok);
        ok.then_some(name)
    }

    pub(super) fn check_template(&mut self, name: &str, loc: TplLoc, cx: Cx<'_>) {
        if let Err(e) = self.templates.check(name, cx.0, cx.1) {
            // An error inside an included file points at that file, not at the includer.
            let loc = if e.name() != name && !e.name().starts_with("inline:") {
                TplLoc::File(self.file_label(e.name()))
            } else {
                loc
            };
            self.template_error(&loc, &e);
        }
    }

    pub(super) fn template_error(&mut self, loc: &TplLoc, e: &RenderError) {
        let tline = e.line().unwrap_or(1).max(1);
        let help = Some(
            "templates use minijinja syntax; variables: openid, channel, tags, subscribed_since, keyword, captures, groups, now, text".to_string(),
        );
        match loc {
            TplLoc::File(file) => self.sink.diags.push(Diagnostic {
                severity: Severity::Error,
                file: file.clone(),
                line: tline,
                column: 1,
                message: format!("template error: {e}"),
                help,
            }),
            TplLoc::Inline(span) => {
                let (l, c) = self.sink.lines.line_col(span.start);
                let (line, column) = if tline == 1 {
                    (l, c)
                } else {
                    (l + tline - 1, 1)
                };
                self.sink.diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: self.sink.file.clone(),
                    line,
                    column,
                    message: format!("template error: {e}"),
                    help,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::compile::testing::{assert_one_has, errors, load};

    fn rule(reply: &str) -> String {
        format!("[[rule]]\nname = \"r\"\nwhen = {{ exact = [\"x\"] }}\nreply = {reply}\n")
    }

    #[test]
    fn a_template_name_must_stay_inside_the_templates_dir() {
        for bad in ["../secret.txt", "/etc/passwd", ""] {
            let e = errors(&rule(&format!("{{ template = \"{bad}\" }}")));
            assert_one_has(&e, &["bad template name", "relative to the templates dir"]);
        }
    }

    #[test]
    fn a_missing_template_file_says_where_it_was_looked_for() {
        let e = errors(&rule("{ template = \"welcome.txt\" }"));
        assert_one_has(
            &e,
            &[
                "template file `welcome.txt` not found in /nonexistent/templates",
                "create",
            ],
        );
    }

    #[test]
    fn an_inline_template_error_points_into_the_rules_file() {
        let src = rule("{ text = \"hi {{ keyword \" }");
        let diags = load(&src).expect_err("broken template");
        let d = diags
            .iter()
            .find(|d| d.message.starts_with("template error"))
            .expect("a template error");
        assert_eq!(d.file, "/nonexistent/keywords.toml");
        assert_eq!(d.line, 4);
        assert!(d.help.as_deref().unwrap_or("").contains("minijinja"), "{d}");
    }
}
