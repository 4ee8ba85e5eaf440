//! Identifiers: UUIDs behind newtypes so a script id can never be passed
//! where an invocation id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The text was not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid UUID")]
pub struct IdParseError(pub String);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $(#[$new_doc:meta])* new: $new:expr) => {
        $(#[$doc])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            $(#[$new_doc])*
            pub fn new() -> Self {
                Self($new)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdParseError(truncate(s)))
            }
        }
    };
}

uuid_id!(
    /// Identifies a script across all its versions.
    ScriptId,
    /// A fresh random (v4) id.
    new: Uuid::new_v4()
);
uuid_id!(
    /// Identifies one invocation; it travels with every frame and record.
    InvocationId,
    /// A fresh time-ordered (v7) id: records are keyed by it, so new ones
    /// land at the end of the primary-key index instead of on a random page
    /// of it (one page write per batch, not one per record).
    new: Uuid::now_v7()
);

/// Error messages echo user input; keep them short.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = ScriptId::new();
        assert_eq!(id.to_string().parse::<ScriptId>(), Ok(id));
    }

    #[test]
    fn rejects_garbage_and_truncates_the_echo() {
        let long = "x".repeat(1000);
        let err = long.parse::<InvocationId>().unwrap_err();
        assert_eq!(err.0.len(), 64);
    }

    #[test]
    fn invocation_ids_sort_in_creation_order() {
        let ids: Vec<InvocationId> = (0..1000).map(|_| InvocationId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.windows(2).all(|w| w[0].to_string() < w[1].to_string()));
        assert_eq!(ids[0].0.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(ScriptId::new().0.get_version(), Some(uuid::Version::Random));
    }
}
