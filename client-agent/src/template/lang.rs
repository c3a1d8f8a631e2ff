//! The parser of Go's text/template language (the subset consul-template job files use):
//! text, `{{ pipeline }}` actions with `{{-`/`-}}` trimming and `/* comments */`,
//! `if`/`else if`/`else`, `range` (with `$i, $v :=` and `else`), `with` (and `else`),
//! variables (`$x := ...`, `$x = ...`), pipelines joined by `|`, parenthesised
//! pipelines, fields (`.a.b`, `$x.a`, `(pipe).a`), strings (`"..."` and raw `` `...` ``),
//! numbers, `true`/`false`/`nil`, and function calls. The delimiters are configurable.
//!
//! `define`, `template` and `block` are refused with a sentence rather than misread.

use std::fmt;

/// A parse error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse error at line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If(Branches),
    Range(Branches),
    With(Branches),
}

/// The pipeline, the body, and what runs when the pipeline is empty (`else`).
#[derive(Debug, Clone, PartialEq)]
pub struct Branches {
    pub pipe: Pipe,
    pub body: Vec<Node>,
    pub otherwise: Vec<Node>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`), without `$`.
    pub vars: Vec<String>,
    pub declare: bool,
    pub cmds: Vec<Cmd>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.`, `.a.b`: fields of dot.
    Dot(Vec<String>),
    /// `$x.a.b` (`$` alone is the data the template started with).
    Var(String, Vec<String>),
    /// `(pipeline).a.b`
    Sub(Box<Pipe>, Vec<String>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// A function name.
    Func(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(String),
    Ident(String),
    /// `.name`; `.` alone is an empty name.
    Field(String),
    Var(String),
    LParen,
    RParen,
    Bar,
    Declare,
    Assign,
    Comma,
}

/// A token and whether whitespace came before it (`$x.a` is one operand, `$x .a` two).
#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    spaced: bool,
}

/// One piece of the template: text, or the tokens of one action.
#[derive(Debug)]
enum Piece {
    Text(String),
    Action(Vec<Token>, usize),
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        message: message.into(),
    })
}

/// Splits `src` into text and actions, applying the trim markers.
fn split(src: &str, left: &str, right: &str) -> Result<Vec<Piece>, ParseError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let (text, after) = match rest.find(left) {
            Some(i) => (&rest[..i], Some(&rest[i + left.len()..])),
            None => (rest, None),
        };
        let mut text = text;
        if trim_next {
            text = text.trim_start();
        }
        let Some(after) = after else {
            if !text.is_empty() {
                pieces.push(Piece::Text(text.to_string()));
            }
            break;
        };
        line += rest[..rest.len() - after.len()].matches('\n').count();
        let mut body = after;
        if body.starts_with("- ")
            || body.starts_with("-\t")
            || body.starts_with("-\n")
            || body.starts_with("-\r")
        {
            text = text.trim_end();
            body = &body[1..];
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let (tokens, consumed, trim) = lex_action(body, right, line)?;
        trim_next = trim;
        if let Some(t) = tokens {
            pieces.push(Piece::Action(t, line));
        }
        line += body[..consumed].matches('\n').count();
        rest = &body[consumed..];
    }
    Ok(pieces)
}

/// Lexes one action up to and including its right delimiter: its tokens (`None` for a
/// comment), the bytes consumed and whether it ended with ` -` (trim what follows).
fn lex_action(
    s: &str,
    right: &str,
    line: usize,
) -> Result<(Option<Vec<Token>>, usize, bool), ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let skip_ws = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
        *i > start
    };
    let ends_here = |i: usize, spaced: bool| -> Option<(usize, bool)> {
        if s[i..].starts_with(right) {
            return Some((i + right.len(), false));
        }
        // A trim marker needs a space before it: `{{ x -}}`.
        if spaced && s[i..].starts_with('-') && s[i + 1..].starts_with(right) {
            return Some((i + 1 + right.len(), true));
        }
        None
    };
    let mut spaced = true;
    skip_ws(&mut i);
    if s[i..].starts_with("/*") {
        let Some(end) = s[i + 2..].find("*/") else {
            return err(line, "unclosed comment");
        };
        i += 2 + end + 2;
        skip_ws(&mut i);
        return match ends_here(i, true) {
            Some((n, trim)) => Ok((None, n, trim)),
            None => err(line, "comment ends before the closing delimiter"),
        };
    }
    loop {
        if i >= b.len() {
            return err(line, format!("unclosed action: missing {right:?}"));
        }
        if let Some((n, trim)) = ends_here(i, spaced) {
            return Ok((Some(toks), n, trim));
        }
        let c = b[i];
        let start = i;
        let tok = match c {
            b'"' => {
                i += 1;
                let mut out = String::new();
                loop {
                    let Some(ch) = s[i..].chars().next() else {
                        return err(line, "unterminated quoted string");
                    };
                    i += ch.len_utf8();
                    match ch {
                        '"' => break,
                        '\n' => return err(line, "unterminated quoted string"),
                        '\\' => {
                            let Some(e) = s[i..].chars().next() else {
                                return err(line, "unterminated quoted string");
                            };
                            i += e.len_utf8();
                            out.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                '0' => '\0',
                                other => {
                                    return err(line, format!("unknown escape sequence \\{other}"))
                                }
                            });
                        }
                        ch => out.push(ch),
                    }
                }
                Tok::Str(out)
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return err(line, "unterminated raw quoted string");
                };
                let v = s[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(v)
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'|' => {
                i += 1;
                Tok::Bar
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                let n = ident_len(&b[i..]);
                i += n;
                Tok::Field(s[start + 1..i].to_string())
            }
            b'$' => {
                i += 1;
                let n = ident_len(&b[i..]);
                i += n;
                Tok::Var(s[start + 1..i].to_string())
            }
            c if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b'_')) {
                    i += 1;
                }
                Tok::Num(s[start..i].to_string())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let n = ident_len(&b[i..]);
                i += n;
                Tok::Ident(s[start..i].to_string())
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return err(line, format!("unexpected {ch:?} in action"));
            }
        };
        toks.push(Token { tok, spaced });
        spaced = skip_ws(&mut i);
    }
}

fn ident_len(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count()
}

/// Parses `src` with the given delimiters.
pub fn parse(src: &str, left: &str, right: &str) -> Result<Vec<Node>, ParseError> {
    if left.is_empty() || right.is_empty() {
        return err(1, "template delimiters must not be empty");
    }
    let pieces = split(src, left, right)?;
    let mut p = Parser {
        pieces: pieces.into_iter().peekable(),
        depth: 0,
    };
    let (nodes, end) = p.list()?;
    match end {
        Closer::Eof => Ok(nodes),
        Closer::End(line) => err(line, "unexpected {{end}}"),
        Closer::Else(line, _) => err(line, "unexpected {{else}}"),
    }
}

enum Closer {
    Eof,
    End(usize),
    /// `else`, with the tokens after it (`else if x`).
    Else(usize, Vec<Token>),
}

struct Parser {
    pieces: std::iter::Peekable<std::vec::IntoIter<Piece>>,
    /// How many `if`/`range`/`with` (and `else if`) enclose the current piece.
    depth: usize,
}

/// The deepest nesting of blocks or parentheses accepted: parsing and execution recurse,
/// and a job file must not be able to overflow the agent's stack.
const MAX_DEPTH: usize = 200;

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Closer), ParseError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (toks, line) = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Piece::Action(toks, line) => (toks, line),
            };
            let Some(first) = toks.first() else {
                return err(line, "missing value for command");
            };
            let keyword = match &first.tok {
                Tok::Ident(k) => k.as_str(),
                _ => "",
            };
            match keyword {
                "end" => {
                    if toks.len() > 1 {
                        return err(line, "unexpected tokens after end");
                    }
                    return Ok((nodes, Closer::End(line)));
                }
                "else" => return Ok((nodes, Closer::Else(line, toks[1..].to_vec()))),
                "if" | "range" | "with" => {
                    let node = self.control(keyword, &toks[1..], line)?;
                    nodes.push(node);
                }
                "define" | "template" | "block" => {
                    return err(
                        line,
                        format!("{keyword:?} is not supported in Drover's templates"),
                    )
                }
                _ => nodes.push(Node::Action(pipeline(&toks, line, false)?)),
            }
        }
        Ok((nodes, Closer::Eof))
    }

    /// An `if`, `range` or `with` whose keyword came before `toks`, up to its `end`.
    fn control(&mut self, kw: &str, toks: &[Token], line: usize) -> Result<Node, ParseError> {
        if self.depth >= MAX_DEPTH {
            return err(
                line,
                format!("blocks are nested more than {MAX_DEPTH} deep"),
            );
        }
        self.depth += 1;
        let node = self.control_body(kw, toks, line);
        self.depth -= 1;
        node
    }

    fn control_body(&mut self, kw: &str, toks: &[Token], line: usize) -> Result<Node, ParseError> {
        let pipe = pipeline(toks, line, kw == "range")?;
        if pipe.cmds.is_empty() {
            return err(line, format!("missing value for {kw}"));
        }
        let (body, end) = self.list()?;
        let otherwise = match end {
            Closer::Eof => return err(line, format!("unexpected end of input: {kw} has no end")),
            Closer::End(_) => Vec::new(),
            Closer::Else(eline, rest) if rest.is_empty() => {
                let (otherwise, end) = self.list()?;
                match end {
                    Closer::End(_) => otherwise,
                    Closer::Else(l, _) => return err(l, "expected end; found else"),
                    Closer::Eof => {
                        return err(eline, format!("unexpected end of input: {kw} has no end"))
                    }
                }
            }
            // `else if x` / `else with x`: a nested control that shares our `end`.
            Closer::Else(eline, rest) => match &rest[0].tok {
                Tok::Ident(k) if (k == "if" || k == "with") && k == kw => {
                    vec![self.control(kw, &rest[1..], eline)?]
                }
                _ => return err(eline, "unexpected tokens after else"),
            },
        };
        let b = Branches {
            pipe,
            body,
            otherwise,
            line,
        };
        Ok(match kw {
            "if" => Node::If(b),
            "range" => Node::Range(b),
            _ => Node::With(b),
        })
    }
}

/// Parses a whole pipeline (with its declaration, if any) from `toks`.
fn pipeline(toks: &[Token], line: usize, range: bool) -> Result<Pipe, ParseError> {
    let mut parens = 0usize;
    for t in toks {
        match t.tok {
            Tok::LParen => parens += 1,
            Tok::RParen => parens = parens.saturating_sub(1),
            _ => {}
        }
        if parens > MAX_DEPTH {
            return err(
                line,
                format!("parentheses are nested more than {MAX_DEPTH} deep"),
            );
        }
    }
    let mut vars = Vec::new();
    let mut declare = false;
    let mut pos = 0;
    // `$x :=`, `$x =`, and for range `$i, $v :=`.
    let mut j = 0;
    let mut names = Vec::new();
    while let Some(Token {
        tok: Tok::Var(v), ..
    }) = toks.get(j)
    {
        names.push(v.clone());
        match toks.get(j + 1).map(|t| &t.tok) {
            Some(Tok::Comma) if range && names.len() == 1 => j += 2,
            Some(Tok::Declare) | Some(Tok::Assign) => {
                declare = toks[j + 1].tok == Tok::Declare;
                vars = names;
                pos = j + 2;
                break;
            }
            _ => break,
        }
    }
    let (cmds, used) = commands(&toks[pos..], line)?;
    if pos + used != toks.len() {
        return err(line, "unexpected \")\" in operand");
    }
    if !vars.is_empty() && cmds.is_empty() {
        return err(line, "missing value for variable declaration");
    }
    Ok(Pipe {
        vars,
        declare,
        cmds,
        line,
    })
}

/// Commands separated by `|`, up to the end or an unmatched `)`; returns them and the
/// number of tokens used.
fn commands(toks: &[Token], line: usize) -> Result<(Vec<Cmd>, usize), ParseError> {
    let mut cmds = Vec::new();
    let mut args = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].tok {
            Tok::RParen => break,
            Tok::Bar => {
                if args.is_empty() {
                    return err(line, "missing command before \"|\"");
                }
                cmds.push(Cmd {
                    args: std::mem::take(&mut args),
                });
                i += 1;
            }
            _ => {
                let (arg, used) = operand(&toks[i..], line)?;
                args.push(arg);
                i += used;
            }
        }
    }
    if !args.is_empty() {
        cmds.push(Cmd { args });
    } else if !cmds.is_empty() {
        return err(line, "missing command after \"|\"");
    }
    Ok((cmds, i))
}

/// One operand and the fields chained onto it without spaces.
fn operand(toks: &[Token], line: usize) -> Result<(Arg, usize), ParseError> {
    let mut used = 1;
    let arg = match &toks[0].tok {
        Tok::Field(f) => {
            let mut fields = Vec::new();
            if !f.is_empty() {
                fields.push(f.clone());
            }
            Arg::Dot(fields)
        }
        Tok::Var(v) => Arg::Var(v.clone(), Vec::new()),
        Tok::LParen => {
            let (cmds, n) = commands(&toks[1..], line)?;
            if toks.get(1 + n).map(|t| &t.tok) != Some(&Tok::RParen) {
                return err(line, "unclosed left paren");
            }
            if cmds.is_empty() {
                return err(line, "missing value in parentheses");
            }
            used = n + 2;
            Arg::Sub(
                Box::new(Pipe {
                    vars: vec![],
                    declare: false,
                    cmds,
                    line,
                }),
                Vec::new(),
            )
        }
        Tok::Str(s) => Arg::Str(s.clone()),
        Tok::Num(n) => number(n, line)?,
        Tok::Ident(id) => match id.as_str() {
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" => {
                return err(line, format!("unexpected keyword {id:?} in command"))
            }
            _ => Arg::Func(id.clone()),
        },
        other => return err(line, format!("unexpected {} in operand", show(other))),
    };
    // Fields chained without a space: `$x.a.b`, `(pipe).a`.
    let mut arg = arg;
    while let Some(Token {
        tok: Tok::Field(f),
        spaced: false,
    }) = toks.get(used)
    {
        if f.is_empty() {
            return err(line, "unexpected \".\" after term");
        }
        match &mut arg {
            Arg::Dot(fs) | Arg::Var(_, fs) | Arg::Sub(_, fs) => fs.push(f.clone()),
            _ => return err(line, format!("unexpected .{f} after a literal")),
        }
        used += 1;
    }
    Ok((arg, used))
}

fn number(n: &str, line: usize) -> Result<Arg, ParseError> {
    let clean = n.replace('_', "");
    if let Ok(i) = clean.parse::<i64>() {
        return Ok(Arg::Int(i));
    }
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ]
    .iter()
    .find_map(|(p, r)| digits.strip_prefix(p).map(|d| (d, *r)));
    if let Some((d, r)) = radix {
        if let Ok(i) = i64::from_str_radix(d, r) {
            return Ok(Arg::Int(if neg { -i } else { i }));
        }
    }
    match clean.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Arg::Float(f)),
        _ => err(line, format!("bad number syntax: {n:?}")),
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Str(s) => format!("{s:?}"),
        Tok::Num(n) | Tok::Ident(n) => n.clone(),
        Tok::Field(f) => format!(".{f}"),
        Tok::Var(v) => format!("${v}"),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Bar => "\"|\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
    }
}
