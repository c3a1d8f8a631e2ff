//! Canonical layout of HCL files (`drover fmt`): job files, agent configuration and ACL
//! policies, in the shape `nomad fmt` gives them.
//!
//! hcl-edit decides whether the text is HCL at all (a file that does not parse is a
//! positioned error and is never rewritten) and checks the result parses again. The layout
//! itself is a pass over tokens rather than over hcl-edit's tree: indentation in the tree
//! is scattered over the decor of every nested element and the trailing decor of each
//! bracket, while one pass over lines can indent by bracket nesting uniformly. Quoted
//! strings (templates included), heredocs and comments are single tokens whose bytes are
//! copied as they are, so only the whitespace between tokens ever changes:
//!
//! - two spaces of indentation per level of bracket nesting;
//! - one space between tokens, none inside `()`/`[]`, around `.`, before `,` or after a
//!   unary operator, one inside a one-line `{ ... }`;
//! - the `=` of consecutive one-line attributes aligned, and so are their trailing
//!   comments;
//! - no trailing whitespace (outside heredocs, where it is content), one final newline.

use crate::diag::Diagnostic;

/// `src` (named `file` in errors) in canonical layout; a syntax error, positioned, if it is
/// not HCL. Formatting its own output changes nothing.
pub fn format(src: &str, file: &str) -> Result<String, Diagnostic> {
    check_syntax(src, file)?;
    let out = layout(src);
    // The layout only moves whitespace between tokens; should it ever break the file, the
    // original is kept rather than a broken file written.
    check_syntax(&out, file).map_err(|d| Diagnostic {
        message: format!(
            "internal error: the formatted text would not parse ({}); the file is left as it is",
            d.message
        ),
        ..d
    })?;
    Ok(out)
}

fn check_syntax(src: &str, file: &str) -> Result<(), Diagnostic> {
    hcl_edit::parser::parse_body(src)
        .map(|_| ())
        .map_err(|e| Diagnostic {
            file: file.to_string(),
            line: e.location().line(),
            column: e.location().column(),
            message: format!("syntax error: {}", e.message()),
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Newline,
    /// `# ...`, `// ...` (without the newline) or `/* ... */`.
    Comment,
    /// `<<EOF` through its closing marker.
    Heredoc,
    /// A quoted string or template, interpolations included.
    Str,
    Ident,
    Number,
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

impl Token<'_> {
    fn is(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }

    fn bracket(&self) -> i32 {
        if self.kind != Kind::Punct {
            return 0;
        }
        match self.text {
            "{" | "[" | "(" => 1,
            "}" | "]" | ")" => -1,
            _ => 0,
        }
    }
}

const PUNCTS: [&str; 9] = ["...", "==", "!=", "<=", ">=", "&&", "||", "=>", "::"];

/// Splits `src` into tokens; whitespace other than newlines is dropped. Never fails: text
/// it does not know becomes one-character punctuation (hcl-edit has already accepted it).
fn lex(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' if !(c == b'\r' && b.get(i + 1) == Some(&b'\n')) => {
                i += 1;
                continue;
            }
            b'\r' => {
                i += 2;
                out.push(Token {
                    kind: Kind::Newline,
                    text: "\n",
                });
                continue;
            }
            b'\n' => {
                i += 1;
                Kind::Newline
            }
            b'#' => {
                i = line_end(b, i);
                Kind::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = line_end(b, i);
                Kind::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = match src[i + 2..].find("*/") {
                    Some(p) => i + 2 + p + 2,
                    None => b.len(),
                };
                Kind::Comment
            }
            b'<' if heredoc_marker(src, i).is_some() => {
                i = heredoc_end(src, i);
                Kind::Heredoc
            }
            b'"' => {
                i = string_end(b, i);
                Kind::Str
            }
            b'0'..=b'9' => {
                i = number_end(b, i);
                Kind::Number
            }
            _ if is_ident_start(src, i) => {
                i = ident_end(src, i);
                Kind::Ident
            }
            _ => {
                let p = PUNCTS.iter().find(|p| src[i..].starts_with(**p));
                i += match p {
                    Some(p) => p.len(),
                    None => src[i..].chars().next().map_or(1, char::len_utf8),
                };
                Kind::Punct
            }
        };
        let mut text = &src[start..i];
        if kind == Kind::Comment && !text.starts_with("/*") {
            text = text.trim_end();
        }
        out.push(Token { kind, text });
    }
    out
}

fn line_end(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    // A CRLF file's `\r` belongs to the newline, not to the comment.
    if i > from && b[i - 1] == b'\r' {
        i -= 1;
    }
    i
}

fn is_ident_start(src: &str, i: usize) -> bool {
    src[i..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn ident_end(src: &str, from: usize) -> usize {
    let rest = &src[from..];
    rest.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
        .map_or(src.len(), |(p, _)| from + p)
}

fn number_end(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// The end of the quoted string starting at `from` (just past its closing quote).
fn string_end(b: &[u8], from: usize) -> usize {
    let mut i = from + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            c @ (b'$' | b'%') if b.get(i + 1) == Some(&c) => {
                // `$${` and `%%{` are escapes for a literal `${` / `%{`.
                i += if b.get(i + 2) == Some(&b'{') { 3 } else { 1 };
            }
            b'$' | b'%' if b.get(i + 1) == Some(&b'{') => i = interpolation_end(b, i + 2),
            b'\n' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// The end of a template interpolation whose body starts at `from` (just past its `}`).
fn interpolation_end(b: &[u8], from: usize) -> usize {
    let mut depth = 1;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b'"' => {
                i = string_end(b, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The marker of a heredoc opening at `from` (`<<EOF` or `<<-EOF` then a newline).
fn heredoc_marker(src: &str, from: usize) -> Option<&str> {
    let rest = src[from..].strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let end = rest
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
        .map_or(rest.len(), |(p, _)| p);
    let marker = &rest[..end];
    let after = &rest[end..];
    (!marker.is_empty() && (after.starts_with('\n') || after.starts_with("\r\n"))).then_some(marker)
}

/// The end of the heredoc opening at `from`: just past its closing marker's line text.
fn heredoc_end(src: &str, from: usize) -> usize {
    let Some(marker) = heredoc_marker(src, from) else {
        return from + 2;
    };
    let mut pos = match src[from..].find('\n') {
        Some(p) => from + p + 1,
        None => return src.len(),
    };
    while pos < src.len() {
        let end = src[pos..].find('\n').map_or(src.len(), |p| pos + p);
        let line = src[pos..end].trim_end_matches('\r');
        if line.trim_start() == marker {
            return pos + line.len();
        }
        pos = end + 1;
    }
    src.len()
}

/// One source line: its tokens (a heredoc or block comment may span several lines).
struct Line<'a> {
    tokens: Vec<Token<'a>>,
    indent: usize,
}

fn layout(src: &str) -> String {
    let mut lines: Vec<Line<'_>> = vec![Line {
        tokens: Vec::new(),
        indent: 0,
    }];
    for t in lex(src) {
        if t.kind == Kind::Newline {
            lines.push(Line {
                tokens: Vec::new(),
                indent: 0,
            });
        } else if let Some(l) = lines.last_mut() {
            l.tokens.push(t);
        }
    }
    indent(&mut lines);
    let mut rendered: Vec<Rendered> = lines.iter().map(render).collect();
    align_equals(&mut rendered);
    align_comments(&mut rendered);
    let mut out = String::with_capacity(src.len());
    for r in &rendered {
        if !r.code.is_empty() || r.comment.is_some() {
            out.push_str(&" ".repeat(r.indent));
        }
        out.push_str(&r.code);
        if let Some(c) = &r.comment {
            if !r.code.is_empty() {
                out.push_str(&" ".repeat(r.comment_pad + 1));
            }
            out.push_str(c);
        }
        out.push('\n');
    }
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
    out.push('\n');
    if out == "\n" {
        out.clear();
    }
    out
}

/// Each line's indentation: two spaces per level, where a line that opens brackets (however
/// many) starts a level and the line that closes them ends it. Closing brackets at the
/// start of a line are taken before the line is indented, so `}` sits under its opener.
fn indent(lines: &mut [Line<'_>]) {
    // Each level remembers how many brackets its line opened.
    let mut levels: Vec<i32> = Vec::new();
    for line in lines.iter_mut() {
        let leading = line.tokens.iter().take_while(|t| t.bracket() < 0).count() as i32;
        let rest: i32 = line.tokens.iter().map(|t| t.bracket()).sum::<i32>() + leading;
        // `}, {` closes part of a level and opens again: it sits where the level
        // started and its openers rejoin that level.
        let reopened = close(&mut levels, leading) && rest > 0;
        line.indent = 2 * (levels.len() - usize::from(reopened));
        match rest {
            n if n > 0 && reopened => {
                if let Some(top) = levels.last_mut() {
                    *top += n;
                }
            }
            n if n > 0 => levels.push(n),
            n if n < 0 => {
                close(&mut levels, -n);
            }
            _ => {}
        }
    }
}

/// Closes `n` brackets; whether the last level touched stays open (was closed in part).
fn close(levels: &mut Vec<i32>, mut n: i32) -> bool {
    let mut partial = false;
    while n > 0 {
        let Some(top) = levels.last_mut() else { break };
        if *top > n {
            *top -= n;
            n = 0;
            partial = true;
        } else {
            n -= *top;
            levels.pop();
        }
    }
    partial
}

/// A line as text: its code (tokens joined by the spacing rules), its trailing comment,
/// and what the alignment passes need.
struct Rendered {
    indent: usize,
    code: String,
    comment: Option<String>,
    /// Spaces added before the trailing comment to align it.
    comment_pad: usize,
    /// Byte length of the key before an aligned `=` (a one-line attribute), if it is one.
    key_len: Option<usize>,
}

fn render(line: &Line<'_>) -> Rendered {
    let mut toks: &[Token<'_>] = &line.tokens;
    let mut comment = None;
    if let Some((last, rest)) = toks.split_last() {
        if last.kind == Kind::Comment && !last.text.contains('\n') {
            comment = Some(last.text.to_string());
            toks = rest;
        }
    }
    let mut code = String::new();
    let mut key_len = None;
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &toks[p]);
        if let Some(p) = prev {
            if space_between(toks, i - 1, p, t) {
                code.push(' ');
            }
        }
        if t.is("=") && depth == 0 && key_len.is_none() && i > 0 {
            key_len = Some(code.trim_end().len());
        }
        depth += t.bracket();
        code.push_str(t.text);
    }
    // Only attributes whose value ends on their line align (a heredoc counts: it ends
    // with its marker); an open bracket ends the run, as in `nomad fmt`.
    let one_line = toks.iter().map(Token::bracket).sum::<i32>() == 0
        && !toks
            .iter()
            .any(|t| t.kind != Kind::Heredoc && t.text.contains('\n'))
        && toks
            .first()
            .is_some_and(|t| matches!(t.kind, Kind::Ident | Kind::Str));
    Rendered {
        indent: line.indent,
        code,
        comment,
        comment_pad: 0,
        key_len: key_len.filter(|_| one_line),
    }
}

/// Is `-` or `!` at `toks[i]` a unary operator (nothing before it that could be its left
/// operand)?
fn is_unary(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    if !(t.is("-") || t.is("!")) {
        return false;
    }
    match i.checked_sub(1).map(|p| &toks[p]) {
        None => true,
        Some(p) => p.kind == Kind::Punct && !matches!(p.text, ")" | "]" | "}"),
    }
}

/// Is `*` at `toks[i]` a splat (`foo.*.bar`, `foo[*]`)?
fn is_splat(toks: &[Token<'_>], i: usize) -> bool {
    toks[i].is("*") && i > 0 && (toks[i - 1].is(".") || toks[i - 1].is("["))
}

/// Whether one space goes between `prev` (at `toks[pi]`) and the token after it.
fn space_between(toks: &[Token<'_>], pi: usize, prev: &Token<'_>, next: &Token<'_>) -> bool {
    let p = |s: &str| prev.is(s);
    let n = |s: &str| next.is(s);
    if next.kind == Kind::Comment {
        return true;
    }
    if n(",") || n(")") || n("]") || n(".") || n("...") || n("::") || p("::") {
        return false;
    }
    if p("(") || p("[") || p(".") || is_unary(toks, pi) || is_splat(toks, pi + 1) {
        return false;
    }
    if p("{") {
        return !n("}");
    }
    if n("(") || n("[") {
        // A call or an index: `f(x)`, `a[0]`; `in [..]` and `if (..)` are not.
        let operand = match prev.kind {
            Kind::Ident => !matches!(prev.text, "in" | "if" | "for"),
            Kind::Str => n("["),
            Kind::Punct => matches!(prev.text, ")" | "]") || (prev.text == "}" && n("[")),
            _ => false,
        };
        return !operand;
    }
    true
}

/// Pads the keys of consecutive one-line attributes at the same indentation so their `=`
/// line up.
fn align_equals(lines: &mut [Rendered]) {
    let mut i = 0;
    while i < lines.len() {
        if lines[i].key_len.is_none() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < lines.len() && lines[j].key_len.is_some() && lines[j].indent == lines[i].indent {
            j += 1;
        }
        let width = lines[i..j]
            .iter()
            .filter_map(|l| l.key_len.map(|k| key_width(&l.code, k)))
            .max()
            .unwrap_or(0);
        for l in &mut lines[i..j] {
            let Some(k) = l.key_len else { continue };
            let have = key_width(&l.code, k);
            let pad = " ".repeat(width - have);
            l.code.insert_str(k, &pad);
            l.key_len = Some(k + pad.len());
        }
        i = j;
    }
}

/// The width of a key in characters (keys may be quoted strings with any text).
fn key_width(code: &str, key_len: usize) -> usize {
    code[..key_len].chars().count()
}

/// Lines up the trailing comments of consecutive lines that have code and one each.
fn align_comments(lines: &mut [Rendered]) {
    let has = |l: &Rendered| l.comment.is_some() && !l.code.is_empty() && !l.code.contains('\n');
    let mut i = 0;
    while i < lines.len() {
        if !has(&lines[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < lines.len() && has(&lines[j]) {
            j += 1;
        }
        let end = |l: &Rendered| l.indent + l.code.chars().count();
        let width = lines[i..j].iter().map(end).max().unwrap_or(0);
        for l in &mut lines[i..j] {
            l.comment_pad = width - end(l);
        }
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        format(src, "test.hcl").unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn nesting_sets_indentation_and_runs_of_attributes_align() {
        let src = "  job    \"job1\"   {\n  type          = \"service\"\n datacenters = [   \"dc1\"  ]\n  group \"g\"   {\n      count = 1\n        }\n}";
        assert_eq!(
            fmt(src),
            "job \"job1\" {\n  type        = \"service\"\n  datacenters = [\"dc1\"]\n  group \"g\" {\n    count = 1\n  }\n}\n"
        );
    }

    #[test]
    fn nomads_own_fmt_fixture_comes_out_as_nomad_writes_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/jobspecs");
        let (Ok(input), Ok(want)) = (
            std::fs::read_to_string(dir.join("command__testdata__fmt__job.in.hcl")),
            std::fs::read_to_string(dir.join("command__testdata__fmt__job.out.hcl")),
        ) else {
            eprintln!("../shared/jobspecs not present; skipped");
            return;
        };
        assert_eq!(fmt(&input), want);
    }

    #[test]
    fn comments_and_heredocs_are_kept_byte_for_byte() {
        let src = "job \"x\" {\n# leading   comment\n    /* block\n   stays */\n  meta {\n  a = 1 # one\n   bbb = 2   // two  \n  }\n  template {\n      data = <<-EOT\n   keep   \n\t  this   \n     EOT\n  destination = \"local/x\"\n   }\n}\n";
        let out = fmt(src);
        assert_eq!(
            out,
            "job \"x\" {\n  # leading   comment\n  /* block\n   stays */\n  meta {\n    a   = 1 # one\n    bbb = 2 // two\n  }\n  template {\n    data        = <<-EOT\n   keep   \n\t  this   \n     EOT\n    destination = \"local/x\"\n  }\n}\n"
        );
    }

    #[test]
    fn operators_calls_indexes_and_splats_are_spaced_as_nomad_does() {
        let src = "a = [ 1,2 ,3 ]\nb = foo( x , -1 )[ 0 ]\nc = x.*.id\nd = x[*].id\ne = a+b*2 == c ? !d : -e\nf = { k = 1 }\ng = [for s in   var.l : upper(s) if s != \"\"]\nh = {}\n";
        assert_eq!(
            fmt(src),
            "a = [1, 2, 3]\nb = foo(x, -1)[0]\nc = x.*.id\nd = x[*].id\ne = a + b * 2 == c ? !d : -e\nf = { k = 1 }\ng = [for s in var.l : upper(s) if s != \"\"]\nh = {}\n"
        );
    }

    #[test]
    fn multi_line_values_end_an_alignment_run_and_are_indented_by_nesting() {
        let src = "a = 1\nlonger = 2\nargs = [\n\"-c\",\n  \"x\",\n]\nz = 3\n";
        assert_eq!(
            fmt(src),
            "a      = 1\nlonger = 2\nargs = [\n  \"-c\",\n  \"x\",\n]\nz = 3\n"
        );
    }

    #[test]
    fn a_line_that_closes_and_reopens_sits_where_its_level_started() {
        let src = "x = [{\na = 1\n}, {\nb = 2\n}]\n";
        assert_eq!(fmt(src), "x = [{\n  a = 1\n}, {\n  b = 2\n}]\n");
    }

    #[test]
    fn strings_and_templates_are_never_touched() {
        let src = "a = \"${ foo( 1 ) }  x\"\nb = \"say \\\"hi\\\"  \"\nc = \"$${ literal }\"\n";
        assert_eq!(fmt(src), src);
    }

    #[test]
    fn blank_lines_stay_trailing_whitespace_goes_and_one_newline_ends_the_file() {
        let src = "a = 1   \n\n\n   b = 2\t\n\n\n";
        assert_eq!(fmt(src), "a = 1\n\n\nb = 2\n");
    }

    #[test]
    fn a_file_that_does_not_parse_is_a_positioned_error() {
        let err = format("job \"x\" {\n  a = \n}\n", "bad.hcl").unwrap_err();
        assert_eq!(err.file, "bad.hcl");
        assert!(err.line >= 2, "{err}");
        assert!(err.message.starts_with("syntax error"), "{err}");
    }

    /// Every job file of `../shared/jobspecs`: formatting twice changes nothing more, and the
    /// formatted file parses to the same job as the original.
    #[test]
    fn shared_job_files_format_idempotently_to_the_same_job() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/jobspecs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("../shared/jobspecs not present; skipped");
            return;
        };
        let mut seen = 0;
        for e in entries.flatten() {
            let path = e.path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !(name.ends_with(".hcl") || name.ends_with(".nomad")) {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let Ok(once) = format(&src, &name) else {
                assert!(
                    hcl_edit::parser::parse_body(&src).is_err(),
                    "{name}: parses but does not format"
                );
                continue;
            };
            seen += 1;
            assert_eq!(
                format(&once, &name).unwrap(),
                once,
                "{name}: not idempotent"
            );
            let job = |text: &str| {
                crate::parse_str(text, &name)
                    .map(|j| serde_json::to_value(j).unwrap())
                    .map_err(|_| ())
            };
            match (job(&src), job(&once)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}: formatting changed the job"),
                (Err(()), Err(())) => {}
                (a, b) => panic!(
                    "{name}: parses {:?} before and {:?} after",
                    a.is_ok(),
                    b.is_ok()
                ),
            }
        }
        assert!(seen > 50, "only {seen} job files formatted");
    }
}
