//! JSON in and out of Rhai values, bounded.
//!
//! Rhai's own `parse_json` evaluates its input as a Rhai expression and its
//! `to_json` recurses without a depth bound, so neither is exposed; scripts,
//! request bodies and responses all go through this module instead.
//!
//! Invariants:
//! - Parsing uses `serde_json` (recursion limit 128) and converts the tree
//!   with code that recurses at most that deep.
//! - Writing recurses at most [`MAX_JSON_DEPTH`] levels, so a value that
//!   refers to itself ends in [`ToJsonError::TooDeep`], never a stack
//!   overflow; and it stops as soon as the output passes its byte cap, so
//!   the work is bounded by the cap, not by the size of the value.
//! - Map keys come out in Rhai's (sorted) order; non-finite floats become
//!   `null`; a BLOB becomes an array of byte values.

use std::io::{self, Write};

use rhai::{Array, Dynamic, Map};

/// The deepest nesting written, and accepted (`serde_json`'s parse limit).
pub const MAX_JSON_DEPTH: usize = 128;

/// Why a value could not be written as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToJsonError {
    #[error("value nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    #[error("JSON text longer than {0} bytes")]
    TooLarge(usize),
    #[error("a value of type `{0}` cannot be converted to JSON")]
    Unsupported(&'static str),
}

/// Writes `value` as compact JSON of at most `max_bytes` bytes.
pub fn to_json_bytes(value: &Dynamic, max_bytes: usize) -> Result<Vec<u8>, ToJsonError> {
    let mut out = CappedBuf {
        buf: Vec::new(),
        cap: max_bytes,
    };
    write_value(&mut out, value, 0)?;
    Ok(out.buf)
}

/// Like [`to_json_bytes`], as a string.
pub fn to_json_string(value: &Dynamic, max_bytes: usize) -> Result<String, ToJsonError> {
    let bytes = to_json_bytes(value, max_bytes)?;
    // Only valid UTF-8 (from `&str`s and ASCII punctuation) is ever written.
    Ok(String::from_utf8(bytes).expect("JSON writer emits UTF-8 only"))
}

/// Writes an object map as compact JSON of at most `max_bytes` bytes.
pub fn map_to_json_string(map: &Map, max_bytes: usize) -> Result<String, ToJsonError> {
    let mut out = CappedBuf {
        buf: Vec::new(),
        cap: max_bytes,
    };
    write_map(&mut out, map, 0)?;
    Ok(String::from_utf8(out.buf).expect("JSON writer emits UTF-8 only"))
}

/// Parses JSON text into a Rhai value: objects become maps, arrays arrays,
/// integers that fit `i64` integers, other numbers floats, `null` `()`.
pub fn parse(text: &str) -> Result<Dynamic, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    Ok(from_value(value))
}

/// Converts a parsed JSON tree (at most 128 deep, as `serde_json` parses it).
pub fn from_value(value: serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s),
        Value::Array(items) => Dynamic::from_array(items.into_iter().map(from_value).collect()),
        Value::Object(fields) => Dynamic::from_map(
            fields
                .into_iter()
                .map(|(k, v)| (k.into(), from_value(v)))
                .collect(),
        ),
    }
}

/// A `Vec` that refuses to grow past `cap`.
struct CappedBuf {
    buf: Vec<u8>,
    cap: usize,
}

impl Write for CappedBuf {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > self.cap {
            return Err(io::Error::other("capped"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CappedBuf {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ToJsonError> {
        self.write_all(bytes)
            .map_err(|_| ToJsonError::TooLarge(self.cap))
    }

    /// A JSON string literal, escaped by `serde_json`.
    fn put_str(&mut self, s: &str) -> Result<(), ToJsonError> {
        let cap = self.cap;
        serde_json::to_writer(&mut *self, s).map_err(|_| ToJsonError::TooLarge(cap))
    }
}

fn write_value(out: &mut CappedBuf, value: &Dynamic, depth: usize) -> Result<(), ToJsonError> {
    if value.is_unit() {
        return out.put(b"null");
    }
    if let Ok(b) = value.as_bool() {
        return out.put(if b { b"true" } else { b"false" });
    }
    if let Ok(i) = value.as_int() {
        return out.put(i.to_string().as_bytes());
    }
    if let Ok(f) = value.as_float() {
        let cap = out.cap;
        // serde_json writes non-finite floats as `null`.
        return serde_json::to_writer(&mut *out, &f).map_err(|_| ToJsonError::TooLarge(cap));
    }
    if let Ok(c) = value.as_char() {
        return out.put_str(c.encode_utf8(&mut [0; 4]));
    }
    if let Ok(s) = value.as_immutable_string_ref() {
        return out.put_str(&s);
    }
    if depth >= MAX_JSON_DEPTH {
        return Err(ToJsonError::TooDeep);
    }
    if let Ok(items) = value.as_array_ref() {
        return write_array(out, &items, depth);
    }
    if let Ok(map) = value.as_map_ref() {
        return write_map(out, &map, depth);
    }
    if let Ok(blob) = value.as_blob_ref() {
        out.put(b"[")?;
        for (i, byte) in blob.iter().enumerate() {
            if i > 0 {
                out.put(b",")?;
            }
            out.put(byte.to_string().as_bytes())?;
        }
        return out.put(b"]");
    }
    Err(ToJsonError::Unsupported(value.type_name()))
}

fn write_array(out: &mut CappedBuf, items: &Array, depth: usize) -> Result<(), ToJsonError> {
    out.put(b"[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put(b",")?;
        }
        write_value(out, item, depth + 1)?;
    }
    out.put(b"]")
}

fn write_map(out: &mut CappedBuf, map: &Map, depth: usize) -> Result<(), ToJsonError> {
    out.put(b"{")?;
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.put(b",")?;
        }
        out.put_str(key)?;
        out.put(b":")?;
        write_value(out, item, depth + 1)?;
    }
    out.put(b"}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &Dynamic) -> String {
        to_json_string(value, 1 << 20).unwrap()
    }

    #[test]
    fn round_trips_a_document() {
        let text = r#"{"a":[1,2.5,"x\n\"y",true,null,{"b":-9223372036854775808}],"c":{}}"#;
        assert_eq!(json(&parse(text).unwrap()), text);
    }

    #[test]
    fn big_unsigned_numbers_become_floats() {
        let v = parse("18446744073709551615").unwrap();
        assert!(v.is_float());
    }

    #[test]
    fn scalars_and_blobs() {
        assert_eq!(json(&Dynamic::from_float(f64::NAN)), "null");
        assert_eq!(json(&Dynamic::from_char('é')), "\"é\"");
        assert_eq!(json(&Dynamic::from_blob(vec![0, 255])), "[0,255]");
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = Dynamic::from_int(1);
        for _ in 0..MAX_JSON_DEPTH {
            v = Dynamic::from_array(vec![v]);
        }
        assert!(to_json_bytes(&v, 1 << 20).is_ok());
        let v = Dynamic::from_array(vec![v]);
        assert_eq!(to_json_bytes(&v, 1 << 20), Err(ToJsonError::TooDeep));
    }

    #[test]
    fn output_is_capped() {
        let v = Dynamic::from("x".repeat(100));
        assert_eq!(to_json_bytes(&v, 50), Err(ToJsonError::TooLarge(50)));
        assert_eq!(to_json_bytes(&v, 102).unwrap().len(), 102);
    }

    #[test]
    fn unsupported_types_are_named() {
        let v = Dynamic::from(std::time::Instant::now());
        assert!(matches!(
            to_json_bytes(&v, 100),
            Err(ToJsonError::Unsupported(_))
        ));
    }

    #[test]
    fn parse_rejects_what_serde_json_rejects() {
        assert!(parse("#{a: 1 + 1}").is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).is_err());
    }
}
