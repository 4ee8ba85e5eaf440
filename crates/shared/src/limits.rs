//! The one limits table.
//!
//! Every budget an invocation runs under is declared exactly once, in the
//! [`limits_table!`] invocation below: its default, the operator maximum, the
//! environment variable that sets the default, and what it bounds. The
//! resolved [`Limits`], the per-script [`LimitOverrides`], the documentation
//! table (`docs/limits.md`, checked by a test) and the validation all come
//! from that one list, so they cannot drift apart.
//!
//! Resolution: `operator default` (from `PICLOUD_LIMIT_<NAME>`, else the
//! built-in default) overridden by the script's own value, which must be
//! greater than zero and at most the operator maximum
//! (`PICLOUD_LIMIT_<NAME>_MAX`, else the built-in maximum).

use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// One row of the limits table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    /// Field name in JSON bodies and in [`Limits`].
    pub name: &'static str,
    /// Environment variable that sets the operator default; `<env>_MAX` sets the maximum.
    pub env: &'static str,
    /// Unit of the value.
    pub unit: &'static str,
    /// Built-in default.
    pub default: u64,
    /// Built-in operator maximum.
    pub max: u64,
    /// What the limit bounds.
    pub doc: &'static str,
}

/// Why a limit value or override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("limit `{name}` must be greater than zero")]
    Zero { name: &'static str },
    #[error("limit `{name}` is {value}, above the operator maximum of {max}")]
    AboveMaximum {
        name: &'static str,
        value: u64,
        max: u64,
    },
    #[error("environment variable {var} must be a positive whole number, got `{value}`")]
    BadEnv { var: String, value: String },
    #[error("the default of `{name}` ({default}) is above its maximum ({max})")]
    DefaultAboveMaximum {
        name: &'static str,
        default: u64,
        max: u64,
    },
}

macro_rules! limits_table {
    ($( $field:ident : $env:literal, $unit:literal, default $default:expr, max $max:expr, $doc:literal; )*) => {
        /// The budgets one invocation runs under, fully resolved.
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct Limits {
            $( #[doc = $doc] pub $field: u64, )*
        }

        /// A script's own limits; `None` means "the operator default".
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct LimitOverrides {
            $(
                #[doc = $doc]
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<u64>,
            )*
        }

        /// The table itself, in declaration order.
        pub const SPECS: &[LimitSpec] = &[
            $( LimitSpec {
                name: stringify!($field),
                env: concat!("PICLOUD_LIMIT_", $env),
                unit: $unit,
                default: $default,
                max: $max,
                doc: $doc,
            }, )*
        ];

        impl Limits {
            /// The built-in defaults.
            pub const DEFAULTS: Limits = Limits { $( $field: $default, )* };
            /// The built-in operator maxima.
            pub const MAXIMA: Limits = Limits { $( $field: $max, )* };

            /// `(name, value)` pairs, in table order.
            pub fn entries(&self) -> [(&'static str, u64); SPECS.len()] {
                [ $( (stringify!($field), self.$field), )* ]
            }

            fn get_mut(&mut self, name: &str) -> Option<&mut u64> {
                match name {
                    $( stringify!($field) => Some(&mut self.$field), )*
                    _ => None,
                }
            }
        }

        impl LimitOverrides {
            /// `(name, value)` pairs of the values that are set.
            pub fn entries(&self) -> Vec<(&'static str, u64)> {
                let mut out = Vec::new();
                $( if let Some(v) = self.$field { out.push((stringify!($field), v)); } )*
                out
            }

            fn apply_to(&self, limits: &mut Limits) {
                $( if let Some(v) = self.$field { limits.$field = v; } )*
            }
        }
    };
}

limits_table! {
    operations:         "OPERATIONS",         "operations", default 10_000_000, max 1_000_000_000, "Rhai operations per invocation, counted by the worker itself (callbacks included).";
    wall_time_ms:       "WALL_TIME_MS",       "ms",         default 5_000,      max 60_000,        "Wall-clock time per invocation; past it plus a short grace the worker is killed.";
    memory_bytes:       "MEMORY_BYTES",       "bytes",      default 64 * MIB,   max 512 * MIB,     "Live heap bytes a script may hold (the worker's counting allocator).";
    call_depth:         "CALL_DEPTH",         "calls",      default 64,         max 128,           "Nested function calls.";
    expr_depth:         "EXPR_DEPTH",         "levels",     default 64,         max 128,           "Expression nesting at the top level of a script.";
    fn_expr_depth:      "FN_EXPR_DEPTH",      "levels",     default 32,         max 64,            "Expression nesting inside functions.";
    string_bytes:       "STRING_BYTES",       "bytes",      default MIB,        max 16 * MIB,      "Length of one string.";
    array_len:          "ARRAY_LEN",          "items",      default 100_000,    max 1_000_000,     "Items in one array or BLOB.";
    map_len:            "MAP_LEN",            "entries",    default 10_000,     max 100_000,       "Entries in one object map.";
    variables:          "VARIABLES",          "variables",  default 1_000,      max 10_000,        "Variables in scope at once.";
    functions:          "FUNCTIONS",          "functions",  default 256,        max 4_096,         "Functions a script may define.";
    log_bytes:          "LOG_BYTES",          "bytes",      default 64 * KIB,   max MIB,           "Log output per invocation; past it the log is truncated with a marker.";
    response_bytes:     "RESPONSE_BYTES",     "bytes",      default 6 * MIB,    max 16 * MIB,      "Response body per invocation; past it the invocation fails with `output_limit`.";
    request_body_bytes: "REQUEST_BODY_BYTES", "bytes",      default MIB,        max 16 * MIB,      "Request body accepted for an invocation (413 past it).";
    source_bytes:       "SOURCE_BYTES",       "bytes",      default 256 * KIB,  max MIB,           "Script source size at upload (413 past it).";
    compile_time_ms:    "COMPILE_TIME_MS",    "ms",         default 2_000,      max 10_000,        "Time to compile a script at upload (422 past it).";
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULTS
    }
}

/// The operator's defaults and maxima, read once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// What a script gets when it sets nothing.
    pub defaults: Limits,
    /// The most a script may ask for.
    pub maxima: Limits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            defaults: Limits::DEFAULTS,
            maxima: Limits::MAXIMA,
        }
    }
}

impl LimitsConfig {
    /// Reads `PICLOUD_LIMIT_<NAME>` and `PICLOUD_LIMIT_<NAME>_MAX` through `lookup`
    /// (pass `|k| std::env::var(k).ok()` in a binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LimitError> {
        let mut config = Self::default();
        for spec in SPECS {
            let max_var = format!("{}_MAX", spec.env);
            if let Some(v) = lookup(&max_var) {
                *config.maxima.get_mut(spec.name).expect("name from SPECS") =
                    parse_env(&max_var, &v)?;
            }
            if let Some(v) = lookup(spec.env) {
                *config.defaults.get_mut(spec.name).expect("name from SPECS") =
                    parse_env(spec.env, &v)?;
            }
        }
        for ((name, default), (_, max)) in config
            .defaults
            .entries()
            .into_iter()
            .zip(config.maxima.entries())
        {
            if default > max {
                return Err(LimitError::DefaultAboveMaximum { name, default, max });
            }
        }
        Ok(config)
    }

    /// Checks a script's overrides: each set value is positive and within the maximum.
    pub fn validate(&self, overrides: &LimitOverrides) -> Result<(), LimitError> {
        let maxima = self.maxima.entries();
        for (name, value) in overrides.entries() {
            if value == 0 {
                return Err(LimitError::Zero { name });
            }
            let max = maxima
                .iter()
                .find_map(|(n, m)| (*n == name).then_some(*m))
                .unwrap_or(u64::MAX);
            if value > max {
                return Err(LimitError::AboveMaximum { name, value, max });
            }
        }
        Ok(())
    }

    /// The limits a script runs under. Values above the maximum are clamped,
    /// so a stored override survives an operator lowering the maximum.
    pub fn resolve(&self, overrides: &LimitOverrides) -> Limits {
        let mut limits = self.defaults;
        overrides.apply_to(&mut limits);
        let maxima = self.maxima.entries();
        for (name, max) in maxima {
            let value = limits.get_mut(name).expect("name from SPECS");
            *value = (*value).clamp(1, max);
        }
        limits
    }
}

fn parse_env(var: &str, value: &str) -> Result<u64, LimitError> {
    match value.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(LimitError::BadEnv {
            var: var.to_owned(),
            value: value.chars().take(64).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_defaults_hold() {
        let d = Limits::DEFAULTS;
        assert_eq!(d.operations, 10_000_000);
        assert_eq!(d.wall_time_ms, 5_000);
        assert_eq!(Limits::MAXIMA.wall_time_ms, 60_000);
        assert_eq!(d.memory_bytes, 64 * MIB);
        assert_eq!(Limits::MAXIMA.memory_bytes, 512 * MIB);
        assert_eq!(d.response_bytes, 6 * MIB);
        assert_eq!(Limits::MAXIMA.request_body_bytes, 16 * MIB);
        for spec in SPECS {
            assert!(spec.default <= spec.max, "{}", spec.name);
            assert!(spec.default > 0, "{}", spec.name);
        }
    }

    #[test]
    fn overrides_are_validated() {
        let config = LimitsConfig::default();
        let ok = LimitOverrides {
            wall_time_ms: Some(100),
            ..LimitOverrides::default()
        };
        assert_eq!(config.validate(&ok), Ok(()));
        assert_eq!(config.resolve(&ok).wall_time_ms, 100);
        let zero = LimitOverrides {
            operations: Some(0),
            ..LimitOverrides::default()
        };
        assert_eq!(
            config.validate(&zero),
            Err(LimitError::Zero { name: "operations" })
        );
        let big = LimitOverrides {
            wall_time_ms: Some(60_001),
            ..LimitOverrides::default()
        };
        assert!(matches!(
            config.validate(&big),
            Err(LimitError::AboveMaximum { .. })
        ));
    }

    #[test]
    fn unknown_and_negative_fields_are_refused() {
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"bogus": 1}"#).is_err());
        assert!(serde_json::from_str::<LimitOverrides>(r#"{"operations": -1}"#).is_err());
    }

    #[test]
    fn environment_sets_defaults_and_maxima() {
        let env = |k: &str| match k {
            "PICLOUD_LIMIT_WALL_TIME_MS" => Some("1000".to_owned()),
            "PICLOUD_LIMIT_WALL_TIME_MS_MAX" => Some("2000".to_owned()),
            _ => None,
        };
        let config = LimitsConfig::from_lookup(env).unwrap();
        assert_eq!(config.defaults.wall_time_ms, 1000);
        assert_eq!(config.maxima.wall_time_ms, 2000);
        let bad = |k: &str| (k == "PICLOUD_LIMIT_OPERATIONS").then(|| "lots".to_owned());
        assert!(matches!(
            LimitsConfig::from_lookup(bad),
            Err(LimitError::BadEnv { .. })
        ));
        let inverted = |k: &str| (k == "PICLOUD_LIMIT_CALL_DEPTH").then(|| "1000".to_owned());
        assert!(matches!(
            LimitsConfig::from_lookup(inverted),
            Err(LimitError::DefaultAboveMaximum { .. })
        ));
    }

    #[test]
    fn resolve_clamps_stale_overrides() {
        let mut config = LimitsConfig::default();
        config.maxima.wall_time_ms = 1_000;
        let stale = LimitOverrides {
            wall_time_ms: Some(30_000),
            ..LimitOverrides::default()
        };
        assert_eq!(config.resolve(&stale).wall_time_ms, 1_000);
    }
}
