//! JSON, form, URL, base64 and hex functions.
//!
//! Decoders that return a string require the decoded bytes to be UTF-8 and
//! fail otherwise; each has a `_blob` twin that returns the raw bytes.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{Config as _, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rhai::{Blob, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

use super::{
    bytes_of, check_array_len, check_string_len, max_array, max_string, script_error, too_large,
};
use crate::json::{self, ParseError, ToJsonError};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes with padding; decodes with or without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet, encodes without padding; decodes with or without it.
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub fn register(engine: &mut Engine) {
    engine.register_fn("json_parse", |ctx: NativeCallContext, text: &str| {
        json_parse(&ctx, text)
    });
    engine.register_fn(
        "json_stringify",
        |ctx: NativeCallContext, value: Dynamic| json_stringify(&ctx, &value),
    );
    // Rhai's own `to_json` recurses without a bound; replace it.
    engine.register_fn("to_json", |ctx: NativeCallContext, map: &mut Map| {
        stringify_result(json::map_to_json_string(map, max_string(&ctx)))
    });
    engine.register_fn("form_decode", |ctx: NativeCallContext, text: &str| {
        form_decode(&ctx, text)
    });
    engine.register_fn("url_encode", |ctx: NativeCallContext, text: &str| {
        url_encode(&ctx, text)
    });
    engine.register_fn("url_decode", url_decode);
    engine.register_fn("base64_encode", |ctx: NativeCallContext, v: Dynamic| {
        encode_base64(&ctx, "base64_encode", &BASE64, &v)
    });
    engine.register_fn("base64url_encode", |ctx: NativeCallContext, v: Dynamic| {
        encode_base64(&ctx, "base64url_encode", &BASE64_URL, &v)
    });
    engine.register_fn("base64_decode", |s: &str| {
        utf8("base64_decode", decode_base64("base64_decode", &BASE64, s)?)
    });
    engine.register_fn("base64url_decode", |s: &str| {
        utf8(
            "base64url_decode",
            decode_base64("base64url_decode", &BASE64_URL, s)?,
        )
    });
    engine.register_fn("base64_decode_blob", |ctx: NativeCallContext, s: &str| {
        blob(&ctx, decode_base64("base64_decode_blob", &BASE64, s)?)
    });
    engine.register_fn(
        "base64url_decode_blob",
        |ctx: NativeCallContext, s: &str| {
            blob(
                &ctx,
                decode_base64("base64url_decode_blob", &BASE64_URL, s)?,
            )
        },
    );
    engine.register_fn("hex_encode", |ctx: NativeCallContext, value: Dynamic| {
        hex_encode(&ctx, &value)
    });
    engine.register_fn("hex_decode", |s: &str| {
        utf8("hex_decode", decode_hex("hex_decode", s)?)
    });
    engine.register_fn("hex_decode_blob", |ctx: NativeCallContext, s: &str| {
        blob(&ctx, decode_hex("hex_decode_blob", s)?)
    });
}

fn json_parse(ctx: &NativeCallContext, text: &str) -> Res<Dynamic> {
    let map_len = match ctx.engine().max_map_size() {
        0 => usize::MAX,
        n => n,
    };
    match json::parse(text, json::value_allowance(max_array(ctx), map_len)) {
        Ok(value) => Ok(value),
        Err(ParseError::TooManyValues(n)) => {
            Err(too_large(&format!("JSON document of more than {n} values")))
        }
        Err(err) => Err(script_error(format!("json_parse: {err}"))),
    }
}

fn json_stringify(ctx: &NativeCallContext, value: &Dynamic) -> Res<String> {
    stringify_result(json::to_json_string(value, max_string(ctx)))
}

fn stringify_result(result: Result<String, ToJsonError>) -> Res<String> {
    match result {
        Ok(text) => Ok(text),
        Err(ToJsonError::TooLarge(_)) => Err(too_large("Length of string")),
        Err(err) => Err(script_error(format!("json_stringify: {err}"))),
    }
}

/// `a=1&b=x+y` → `#{a: "1", b: "x y"}`; the last of duplicate keys wins.
/// Pairs are counted first: a 1 MB `a&a&a…` would otherwise build half a
/// million entries before the map limit could see them.
fn form_decode(ctx: &NativeCallContext, text: &str) -> Res<Map> {
    let pairs = text.split('&').filter(|pair| !pair.is_empty()).count();
    let max_entries = match ctx.engine().max_map_size() {
        0 => usize::MAX,
        n => n,
    };
    if pairs > max_entries {
        return Err(too_large("Number of items in object map"));
    }
    Ok(form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.as_ref().into(), Dynamic::from(v.into_owned())))
        .collect())
}

fn url_encode(ctx: &NativeCallContext, text: &str) -> Res<String> {
    let len: usize = utf8_percent_encode(text, URL_COMPONENT).map(str::len).sum();
    check_string_len(ctx, len)?;
    Ok(utf8_percent_encode(text, URL_COMPONENT).to_string())
}

/// Percent-decoding only: `+` stays `+` (use `form_decode` for forms).
fn url_decode(text: &str) -> Res<String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| script_error("url_decode: the decoded bytes are not valid UTF-8"))
}

fn encode_base64(
    ctx: &NativeCallContext,
    function: &str,
    engine: &GeneralPurpose,
    value: &Dynamic,
) -> Res<String> {
    let bytes = bytes_of(function, value)?;
    let len = base64::encoded_len(bytes.len(), engine.config().encode_padding())
        .ok_or_else(|| too_large("Length of string"))?;
    check_string_len(ctx, len)?;
    Ok(engine.encode(bytes))
}

fn decode_base64(function: &str, engine: &GeneralPurpose, text: &str) -> Res<Vec<u8>> {
    engine
        .decode(text.trim_end())
        .map_err(|err| script_error(format!("{function}: invalid base64: {err}")))
}

fn hex_encode(ctx: &NativeCallContext, value: &Dynamic) -> Res<String> {
    let bytes = bytes_of("hex_encode", value)?;
    check_string_len(ctx, bytes.len().saturating_mul(2))?;
    Ok(hex::encode(bytes))
}

fn decode_hex(function: &str, text: &str) -> Res<Vec<u8>> {
    hex::decode(text).map_err(|err| script_error(format!("{function}: invalid hex: {err}")))
}

fn utf8(function: &str, bytes: Vec<u8>) -> Res<String> {
    String::from_utf8(bytes).map_err(|_| {
        script_error(format!(
            "{function}: the decoded bytes are not valid UTF-8 (use {function}_blob for binary data)"
        ))
    })
}

fn blob(ctx: &NativeCallContext, bytes: Vec<u8>) -> Res<Blob> {
    check_array_len(ctx, bytes.len())?;
    Ok(bytes)
}
