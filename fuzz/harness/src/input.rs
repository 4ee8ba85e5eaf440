//! Turning fuzzer bytes into structured inputs.
//!
//! Multi-part inputs are fields separated by NUL bytes, so text seeds stay
//! readable and libFuzzer's mutations (and dictionaries) work on them
//! directly. Scripts come either as raw source or, behind a marker byte, as a
//! sequence of tokens from a Rhai grammar (see [`script_source`]).

use shared::Limits;

/// The NUL-separated fields of `data`; missing fields read as empty.
pub struct Fields<'a> {
    parts: std::slice::Split<'a, u8, fn(&u8) -> bool>,
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let sep: fn(&u8) -> bool = |b| *b == 0;
        Self {
            parts: data.split(sep),
        }
    }

    /// The next field (empty when there are no more).
    pub fn bytes(&mut self) -> &'a [u8] {
        self.parts.next().unwrap_or(&[])
    }

    /// The next field as text (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    /// Every remaining field.
    pub fn rest(self) -> impl Iterator<Item = &'a [u8]> {
        self.parts
    }
}

/// The marker byte that switches a script input to token mode.
pub const TOKEN_MODE: u8 = 0xFF;

/// The limits scripts are fuzzed under: the production defaults, with a
/// smaller operation budget and wall deadline so looping inputs do not
/// dominate the campaign's time. Every other limit (heap, depths, sizes,
/// source, compile time, response, logs) is the production default.
pub const FUZZ_LIMITS: Limits = Limits {
    operations: 200_000,
    wall_time_ms: 2_000,
    ..Limits::DEFAULTS
};

/// Rhai tokens for structure-aware scripts: keywords, operators,
/// punctuation, literals at the edges, PiCloud's SDK and Rhai builtins.
pub const TOKENS: &[&str] = &[
    // keywords
    "let",
    "const",
    "if",
    "else",
    "while",
    "loop",
    "for",
    "in",
    "do",
    "until",
    "break",
    "continue",
    "return",
    "throw",
    "try",
    "catch",
    "fn",
    "switch",
    "true",
    "false",
    "this",
    "private",
    "global",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "type_of",
    "is_def_var",
    "is_def_fn",
    "print",
    "debug",
    "import",
    "export",
    "as",
    "eval",
    // operators and punctuation
    "+",
    "-",
    "*",
    "/",
    "%",
    "**",
    "<<",
    ">>",
    "&",
    "|",
    "^",
    "==",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "&&",
    "||",
    "!",
    "=",
    "+=",
    "-=",
    "*=",
    "/=",
    "%=",
    "**=",
    "<<=",
    ">>=",
    "&=",
    "|=",
    "^=",
    "??",
    "?.",
    "?[",
    "..",
    "..=",
    "=>",
    "::",
    ",",
    ";",
    ":",
    ".",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "#{",
    "`",
    "${",
    "|x|",
    "|a, b|",
    "||",
    "\n",
    // literals
    "0",
    "1",
    "-1",
    "2",
    "7",
    "64",
    "1000",
    "100000",
    "9223372036854775807",
    "-9223372036854775808",
    "0x7fffffffffffffff",
    "0b1",
    "0o7",
    "1.5",
    "1e308",
    "-0.0",
    "'a'",
    "'\\u{10FFFF}'",
    "\"\"",
    "\"x\"",
    "\"é😀\"",
    "\"\\u{0}\"",
    "`t${1}`",
    "()",
    // names and the request
    "x",
    "y",
    "s",
    "a",
    "m",
    "f",
    "n",
    "request",
    "request.body",
    "request.query",
    "request.headers",
    "request.params",
    "request.method",
    "request.path",
    // PiCloud SDK
    "response",
    "log",
    "json_parse",
    "parse_json",
    "json_stringify",
    "to_json",
    "url_encode",
    "url_decode",
    "form_decode",
    "base64_encode",
    "base64_decode",
    "base64_decode_blob",
    "base64url_encode",
    "base64url_decode",
    "hex_encode",
    "hex_decode",
    "hex_decode_blob",
    "sha256",
    "hmac_sha256",
    "now",
    "uuid",
    "sleep",
    // Rhai builtins with size or callback behaviour
    "len",
    "push",
    "pad",
    "append",
    "insert",
    "remove",
    "pop",
    "shift",
    "extract",
    "splice",
    "split",
    "split_rev",
    "replace",
    "contains",
    "index_of",
    "sub_string",
    "to_upper",
    "to_lower",
    "trim",
    "to_chars",
    "chars",
    "bytes",
    "blob",
    "keys",
    "values",
    "map",
    "filter",
    "reduce",
    "reduce_rev",
    "sort",
    "sort_by",
    "reverse",
    "dedup",
    "retain",
    "drain",
    "some",
    "all",
    "find",
    "zip",
    "range",
    "fill_with",
    "mixin",
    "parse_int",
    "parse_float",
    "to_string",
    "to_int",
    "to_float",
    "to_blob",
    "as_string",
    "abs",
    "sign",
    "min",
    "max",
    "get",
    "set",
    "clear",
    "truncate",
    "chop",
    "is_empty",
    "starts_with",
    "ends_with",
    "tag",
    "timestamp",
    "elapsed",
    "int",
    "float",
];

/// The source of a script input: raw (lossy UTF-8) unless it starts with
/// [`TOKEN_MODE`], in which case each following byte picks a token.
pub fn script_source(data: &[u8]) -> String {
    match data.split_first() {
        Some((&TOKEN_MODE, rest)) => {
            let mut out = String::with_capacity(rest.len() * 4);
            for &b in rest {
                out.push_str(TOKENS[usize::from(b) % TOKENS.len()]);
                out.push(' ');
            }
            out
        }
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}
