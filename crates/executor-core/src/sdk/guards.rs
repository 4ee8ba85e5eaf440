//! Builtins replaced with size-checked versions, and builtins removed.
//!
//! Rhai checks a value's size only after a native function returns it, so a
//! builtin that builds a large result allocates all of it first: `replace`
//! with a long substitute grows a 1 MB string to 1 GB, and `split("")` on
//! 1 MB builds a million strings (55 MiB) before the array limit fires
//! (feasibility note E6). These versions count the result first and refuse
//! it when it would pass the string or array limit; otherwise they return
//! exactly what Rhai's would.
//!
//! Removed (a script error naming the alternative): `sleep` (blocks the worker
//! with no operations counted) and Rhai's `parse_json` (evaluates its input
//! as Rhai code; `json_parse` is the safe one).

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, INT, ImmutableString,
    NativeCallContext,
};

use super::{check_array_len, check_string_len, script_error};

type Res<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine) {
    register_removed(engine);
    register_replace(engine);
    register_split(engine);
}

fn register_removed(engine: &mut Engine) {
    let sleep = || -> Res<()> {
        Err(script_error(
            "sleep is not available to PiCloud scripts (it would hold a worker without doing work)",
        ))
    };
    engine.register_fn("sleep", move |_: INT| sleep());
    engine.register_fn("sleep", move |_: rhai::FLOAT| sleep());
    engine.register_fn("parse_json", |_: &str| -> Res<Dynamic> {
        Err(script_error("parse_json is not available; use json_parse"))
    });
}

/// Length of `text` with every `find` replaced by `with`, without building it.
fn replaced_len(text: &str, find: &str, with: &str) -> usize {
    let count = text.matches(find).count();
    let removed = count.saturating_mul(find.len());
    let added = count.saturating_mul(with.len());
    (text.len() - removed).saturating_add(added)
}

fn replace_checked(
    ctx: &NativeCallContext,
    text: &mut ImmutableString,
    find: &str,
    with: &str,
) -> Res<()> {
    // Rhai leaves an empty string alone (even for an empty `find`).
    if text.is_empty() {
        return Ok(());
    }
    check_string_len(ctx, replaced_len(text, find, with))?;
    *text = text.replace(find, with).into();
    Ok(())
}

fn register_replace(engine: &mut Engine) {
    // Not pure: `replace` changes its string in place, so Rhai must refuse
    // it on constants, as it does for the builtin.
    let replace = || FuncRegistration::new("replace").with_purity(false);
    replace().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: &str, with: &str| {
            replace_checked(&ctx, text, find, with)
        },
    );
    replace().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: &str, with: char| {
            replace_checked(&ctx, text, find, with.encode_utf8(&mut [0; 4]))
        },
    );
    replace().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: char, with: &str| {
            replace_checked(&ctx, text, find.encode_utf8(&mut [0; 4]), with)
        },
    );
    replace().register_into_engine(
        engine,
        |ctx: NativeCallContext, text: &mut ImmutableString, find: char, with: char| {
            replace_checked(
                &ctx,
                text,
                find.encode_utf8(&mut [0; 4]),
                with.encode_utf8(&mut [0; 4]),
            )
        },
    );
}

/// Pieces `split(delimiter)` yields, without building them.
fn piece_count(text: &str, delimiter: &str) -> usize {
    text.matches(delimiter).count() + 1
}

/// A split's segment limit: values below 1 mean one piece, as in Rhai.
fn segments(n: INT) -> usize {
    usize::try_from(n.max(1)).unwrap_or(usize::MAX)
}

fn to_array<'a>(pieces: impl Iterator<Item = &'a str>) -> Array {
    pieces.map(Into::into).collect()
}

fn split_str(
    ctx: &NativeCallContext,
    text: &str,
    delimiter: &str,
    limit: usize,
    rev: bool,
) -> Res<Array> {
    // Rhai returns the whole string for an empty input or a missing delimiter.
    if text.is_empty() || (!delimiter.is_empty() && !text.contains(delimiter)) || limit <= 1 {
        return Ok(vec![Dynamic::from(text.to_owned())]);
    }
    check_array_len(ctx, piece_count(text, delimiter).min(limit))?;
    Ok(match (rev, limit) {
        (false, usize::MAX) => to_array(text.split(delimiter)),
        (false, n) => to_array(text.splitn(n, delimiter)),
        (true, usize::MAX) => to_array(text.rsplit(delimiter)),
        (true, n) => to_array(text.rsplitn(n, delimiter)),
    })
}

fn register_split(engine: &mut Engine) {
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: &str| {
            split_str(&ctx, text, delimiter, usize::MAX, false)
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: &str, n: INT| {
            split_str(&ctx, text, delimiter, segments(n), false)
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: char| {
            split_str(
                &ctx,
                text,
                delimiter.encode_utf8(&mut [0; 4]),
                usize::MAX,
                false,
            )
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: char, n: INT| {
            split_str(
                &ctx,
                text,
                delimiter.encode_utf8(&mut [0; 4]),
                segments(n),
                false,
            )
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: &str| {
            split_str(&ctx, text, delimiter, usize::MAX, true)
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: &str, n: INT| {
            split_str(&ctx, text, delimiter, segments(n), true)
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: char| {
            split_str(
                &ctx,
                text,
                delimiter.encode_utf8(&mut [0; 4]),
                usize::MAX,
                true,
            )
        },
    );
    engine.register_fn(
        "split_rev",
        |ctx: NativeCallContext, text: &mut ImmutableString, delimiter: char, n: INT| {
            split_str(
                &ctx,
                text,
                delimiter.encode_utf8(&mut [0; 4]),
                segments(n),
                true,
            )
        },
    );
    engine.register_fn(
        "split",
        |ctx: NativeCallContext, text: &mut ImmutableString| -> Res<Array> {
            if text.is_empty() {
                return Ok(vec![Dynamic::from(text.clone())]);
            }
            check_array_len(&ctx, text.split_whitespace().count())?;
            Ok(to_array(text.split_whitespace()))
        },
    );
    engine.register_fn(
        "to_chars",
        |ctx: NativeCallContext, text: &str| -> Res<Array> {
            check_array_len(&ctx, text.chars().count())?;
            Ok(text.chars().map(Dynamic::from_char).collect())
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_len_matches_the_real_result() {
        for (text, find, with) in [
            ("hello, hello", "hello", "hey"),
            ("aaa", "a", "bb"),
            ("abc", "", "-"),
            ("abc", "x", "yyy"),
            ("é漢é", "é", ""),
        ] {
            assert_eq!(
                replaced_len(text, find, with),
                text.replace(find, with).len()
            );
        }
    }

    #[test]
    fn piece_count_matches_the_real_split() {
        for (text, delimiter) in [("a,b,,c", ","), ("abc", ""), ("é漢", ""), ("x", "x")] {
            assert_eq!(piece_count(text, delimiter), text.split(delimiter).count());
        }
    }
}
