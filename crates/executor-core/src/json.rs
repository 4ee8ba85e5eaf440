//! JSON in and out of Rhai values, bounded.
//!
//! Rhai's own `parse_json` evaluates its input as a Rhai expression and its
//! `to_json` recurses without a depth bound, so neither is exposed; scripts,
//! request bodies and responses all go through this module instead.
//!
//! Invariants:
//! - Parsing uses `serde_json` (recursion limit 128) and builds the Rhai
//!   value directly, recursing at most that deep and building at most the
//!   number of values it is allowed.
//! - Writing recurses at most [`MAX_JSON_DEPTH`] levels, so a value that
//!   refers to itself ends in [`ToJsonError::TooDeep`], never a stack
//!   overflow; and it stops as soon as the output passes its byte cap, so
//!   the work is bounded by the cap, not by the size of the value.
//! - Map keys come out in Rhai's (sorted) order; non-finite floats become
//!   `null`; a BLOB becomes an array of byte values.

use std::cell::Cell;
use std::io::{self, Write};

use rhai::{Array, Dynamic, Map};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

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

/// How many values a parse may build under the given per-value limits: a
/// document with more could not be held by a script anyway (Rhai counts the
/// items of nested arrays, and the entries of nested maps, together).
pub fn value_allowance(array_len: usize, map_len: usize) -> usize {
    array_len.saturating_add(map_len)
}

/// Why JSON text could not become a Rhai value.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Invalid(serde_json::Error),
    #[error("the document has more than {0} values")]
    TooManyValues(usize),
}

/// Parses JSON text into a Rhai value: objects become maps, arrays arrays,
/// integers that fit `i64` integers, other numbers floats, `null` `()`.
///
/// At most `max_values` values (scalars, arrays and objects each count one)
/// are built: a small JSON value becomes a much larger Rhai value (two bytes
/// of `0,` become a 16-byte `Dynamic` in an array), so the count bounds the
/// memory a parse can take before the script's limits could see it. The
/// tree is built directly, without an intermediate `serde_json::Value`.
pub fn parse(text: &str, max_values: usize) -> Result<Dynamic, ParseError> {
    let remaining = Cell::new(max_values);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = Counted {
        remaining: &remaining,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|err| {
        if remaining.get() == 0 && err.is_data() {
            ParseError::TooManyValues(max_values)
        } else {
            ParseError::Invalid(err)
        }
    })
}

/// Builds one JSON value as a `Dynamic`, spending from a shared allowance.
/// `serde_json` bounds the recursion at 128 levels.
#[derive(Clone, Copy)]
struct Counted<'a> {
    remaining: &'a Cell<usize>,
}

impl Counted<'_> {
    fn spend<E: de::Error>(self) -> Result<(), E> {
        match self.remaining.get() {
            0 => Err(E::custom("too many values")),
            n => {
                self.remaining.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = Dynamic;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Dynamic, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = Dynamic;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Dynamic, E> {
        self.spend()?;
        Ok(Dynamic::UNIT)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Dynamic, E> {
        self.spend()?;
        Ok(Dynamic::from_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dynamic, E> {
        self.spend()?;
        Ok(Dynamic::from_int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dynamic, E> {
        self.spend()?;
        #[allow(
            clippy::cast_precision_loss,
            reason = "JSON numbers beyond i64 are floats"
        )]
        Ok(i64::try_from(v).map_or_else(|_| Dynamic::from_float(v as f64), Dynamic::from_int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dynamic, E> {
        self.spend()?;
        Ok(Dynamic::from_float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dynamic, E> {
        self.spend()?;
        Ok(Dynamic::from(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Dynamic, E> {
        self.spend()?;
        Ok(Dynamic::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        self.spend()?;
        let mut items = Array::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Dynamic::from_array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Dynamic, A::Error> {
        self.spend()?;
        let mut map = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let value = entries.next_value_seed(self)?;
            // A repeated key keeps its last value, as `serde_json` does.
            map.insert(key.into(), value);
        }
        Ok(Dynamic::from_map(map))
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

    fn parse_any(text: &str) -> Result<Dynamic, ParseError> {
        parse(text, usize::MAX)
    }

    #[test]
    fn round_trips_a_document() {
        let text = r#"{"a":[1,2.5,"x\n\"y",true,null,{"b":-9223372036854775808}],"c":{}}"#;
        assert_eq!(json(&parse_any(text).unwrap()), text);
    }

    #[test]
    fn big_unsigned_numbers_become_floats() {
        let v = parse_any("18446744073709551615").unwrap();
        assert!(v.is_float());
        assert_eq!(parse_any("-5").unwrap().as_int(), Ok(-5));
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
        assert!(matches!(
            parse_any("#{a: 1 + 1}"),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(parse_any("[1] x"), Err(ParseError::Invalid(_))));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(parse_any(&deep), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn parse_counts_values() {
        // The array itself and its three items.
        assert!(parse("[1, 2, 3]", 4).is_ok());
        assert!(matches!(
            parse("[1, 2, 3]", 3),
            Err(ParseError::TooManyValues(3))
        ));
        assert!(matches!(
            parse(r#"{"a": {"b": 1}}"#, 2),
            Err(ParseError::TooManyValues(2))
        ));
        // A syntax error before the allowance runs out is still a syntax error.
        assert!(matches!(parse("[1, 2, ", 100), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let v = parse_any(r#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!(v.as_map_ref().unwrap()["a"].as_int(), Ok(2));
    }
}
