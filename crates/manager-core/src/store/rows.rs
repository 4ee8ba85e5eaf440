//! Rows as both backends return them, and the values both backends write.
//!
//! Invariants: every value read from the database passes through a checked
//! conversion here, and one that does not fit (a bad UUID, a version out of
//! range, limits JSON that does not parse, a timestamp out of range, a missing
//! current version) becomes [`StoreError::Corrupt`], never a panic or a
//! silently different script. Timestamps are whole milliseconds, so what a
//! write returns equals what a later read returns.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use shared::route::Route;
use shared::{LimitOverrides, Script, ScriptId};

use super::error::StoreError;
use super::model::{NewScript, ScriptChange, VersionInfo};

/// A script joined with the source of one of its versions.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ScriptRow {
    pub id: String,
    pub name: String,
    pub version: i64,
    /// `None` when the version row the script points at is missing.
    pub source: Option<String>,
    pub limits: String,
    pub route_method: Option<String>,
    pub route_path: Option<String>,
    pub cors_origins: String,
    pub concurrency: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ScriptRow {
    pub fn into_script(self) -> Result<Script, StoreError> {
        let id = self
            .id
            .parse::<ScriptId>()
            .map_err(|err| StoreError::Corrupt(format!("script id: {err}")))?;
        let version = version_number(self.version)?;
        let source = self.source.ok_or_else(|| {
            StoreError::Corrupt(format!("script {id} has no row for its version {version}"))
        })?;
        Ok(Script {
            id,
            name: self.name,
            version,
            source,
            limits: parse_limits(&self.limits)?,
            route: self.route_path.map(|path| Route {
                method: self.route_method,
                path,
            }),
            cors_origins: serde_json::from_str(&self.cors_origins)
                .map_err(|err| StoreError::Corrupt(format!("script {id} CORS origins: {err}")))?,
            concurrency: self
                .concurrency
                .map(u32::try_from)
                .transpose()
                .map_err(|_| {
                    StoreError::Corrupt(format!("script {id} concurrency out of range"))
                })?,
            created_at: timestamp(self.created_at)?,
            updated_at: timestamp(self.updated_at)?,
        })
    }
}

/// One entry of a script's history.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct VersionRow {
    pub version: i64,
    pub content_hash: String,
    pub created_at: i64,
    pub restored_from: Option<i64>,
}

impl VersionRow {
    pub fn into_info(self) -> Result<VersionInfo, StoreError> {
        Ok(VersionInfo {
            version: version_number(self.version)?,
            content_hash: self.content_hash,
            created_at: timestamp(self.created_at)?,
            restored_from: self.restored_from.map(version_number).transpose()?,
        })
    }
}

/// A version about to be written: the script as it will read back, plus the
/// derived columns.
#[derive(Debug)]
pub(super) struct PendingVersion {
    pub script: Script,
    pub content_hash: String,
    pub limits_json: String,
    pub cors_json: String,
    pub restored_from: Option<u32>,
}

impl PendingVersion {
    /// Version 1 of a new script, stamped now.
    pub fn first(new: NewScript) -> Self {
        let now = now_millis();
        Self::build(
            Script {
                id: ScriptId::new(),
                name: new.name,
                version: 1,
                source: new.source,
                limits: new.limits,
                route: new.route,
                cors_origins: new.cors_origins,
                concurrency: new.concurrency,
                created_at: timestamp_now(now),
                updated_at: timestamp_now(now),
            },
            None,
        )
    }

    /// The version after `current`, keeping whatever `change` leaves unset.
    /// `updated_at` never goes backwards, even if the clock does.
    pub fn next(current: Script, change: ScriptChange) -> Result<Self, StoreError> {
        let version = current.version.checked_add(1).ok_or_else(|| {
            StoreError::Other(format!("script {} has no version numbers left", current.id))
        })?;
        let updated_at = timestamp_now(now_millis()).max(current.updated_at);
        Ok(Self::build(
            Script {
                version,
                source: change.source.unwrap_or(current.source),
                limits: change.limits.unwrap_or(current.limits),
                route: change.route.unwrap_or(current.route),
                cors_origins: change.cors_origins.unwrap_or(current.cors_origins),
                concurrency: change.concurrency.unwrap_or(current.concurrency),
                updated_at,
                ..current
            },
            change.restored_from,
        ))
    }

    fn build(script: Script, restored_from: Option<u32>) -> Self {
        Self {
            content_hash: content_hash(&script.source),
            limits_json: limits_json(&script.limits),
            cors_json: serde_json::to_string(&script.cors_origins)
                .expect("a list of strings always serializes"),
            restored_from,
            script,
        }
    }

    pub fn route_method(&self) -> Option<&str> {
        self.script.route.as_ref().and_then(|r| r.method.as_deref())
    }

    pub fn route_path(&self) -> Option<&str> {
        self.script.route.as_ref().map(|r| r.path.as_str())
    }

    pub fn concurrency(&self) -> Option<i64> {
        self.script.concurrency.map(i64::from)
    }

    pub fn restored_from(&self) -> Option<i64> {
        self.restored_from.map(i64::from)
    }

    pub fn version(&self) -> i64 {
        i64::from(self.script.version)
    }

    pub fn created_at_ms(&self) -> i64 {
        self.script.created_at.timestamp_millis()
    }

    pub fn updated_at_ms(&self) -> i64 {
        self.script.updated_at.timestamp_millis()
    }
}

/// SHA-256 of a script's source, lower-case hex.
pub fn content_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

fn limits_json(limits: &LimitOverrides) -> String {
    serde_json::to_string(limits).expect("a struct of optional integers always serializes")
}

fn parse_limits(json: &str) -> Result<LimitOverrides, StoreError> {
    serde_json::from_str(json).map_err(|err| StoreError::Corrupt(format!("script limits: {err}")))
}

fn version_number(stored: i64) -> Result<u32, StoreError> {
    u32::try_from(stored)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| StoreError::Corrupt(format!("version number {stored} out of range")))
}

fn timestamp(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {millis} out of range")))
}

fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

fn timestamp_now(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("the current time is a representable timestamp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ScriptRow {
        ScriptRow {
            id: ScriptId::new().to_string(),
            name: "hello".to_owned(),
            version: 3,
            source: Some("40 + 2".to_owned()),
            limits: r#"{"wall_time_ms":100}"#.to_owned(),
            route_method: None,
            route_path: None,
            cors_origins: "[]".to_owned(),
            concurrency: None,
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_good_row_decodes() {
        let script = row().into_script().unwrap();
        assert_eq!(script.version, 3);
        assert_eq!(script.limits.wall_time_ms, Some(100));
        assert_eq!(script.updated_at.timestamp_millis(), 1_700_000_000_123);
    }

    #[test]
    fn bad_rows_are_corrupt_not_panics() {
        let cases = [
            ScriptRow {
                id: "not-a-uuid".into(),
                ..row()
            },
            ScriptRow {
                version: 0,
                ..row()
            },
            ScriptRow {
                version: i64::from(u32::MAX) + 1,
                ..row()
            },
            ScriptRow {
                source: None,
                ..row()
            },
            ScriptRow {
                limits: "{".into(),
                ..row()
            },
            ScriptRow {
                limits: r#"{"operations":-1}"#.into(),
                ..row()
            },
            ScriptRow {
                limits: r#"{"bogus":1}"#.into(),
                ..row()
            },
            ScriptRow {
                created_at: i64::MAX,
                ..row()
            },
        ];
        for case in cases {
            let shown = format!("{case:?}");
            assert!(
                matches!(case.into_script(), Err(StoreError::Corrupt(_))),
                "{shown}"
            );
        }
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn next_version_keeps_unset_fields_and_never_goes_back_in_time() {
        let mut current = row().into_script().unwrap();
        current.updated_at =
            DateTime::from_timestamp_millis(i64::from(i32::MAX) * 1_000_000).unwrap();
        let next = PendingVersion::next(
            current.clone(),
            ScriptChange {
                source: Some("1".into()),
                ..ScriptChange::default()
            },
        )
        .unwrap();
        assert_eq!(next.script.version, 4);
        assert_eq!(next.script.source, "1");
        assert_eq!(next.script.limits, current.limits);
        assert_eq!(next.script.created_at, current.created_at);
        assert_eq!(
            next.script.updated_at, current.updated_at,
            "clock behind the stored time"
        );
        assert_eq!(next.content_hash, content_hash("1"));

        current.version = u32::MAX;
        assert!(PendingVersion::next(current, ScriptChange::default()).is_err());
    }

    #[test]
    fn first_version_is_stamped_in_whole_milliseconds() {
        let pending = PendingVersion::first(NewScript {
            name: "a".into(),
            source: "1".into(),
            ..NewScript::default()
        });
        assert_eq!(pending.script.version, 1);
        assert_eq!(pending.script.created_at, pending.script.updated_at);
        assert_eq!(
            pending.script.created_at.timestamp_subsec_nanos() % 1_000_000,
            0
        );
        assert_eq!(pending.limits_json, "{}");
    }
}
