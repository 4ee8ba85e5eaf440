//! Scripts as the services exchange them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::ScriptId;
use crate::limits::{LimitOverrides, Limits};
use crate::route::Route;

/// One version of a script, as stored by the manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    pub id: ScriptId,
    /// Unique, `[a-z0-9][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Starts at 1; every save adds one.
    pub version: u32,
    pub source: String,
    /// The script's own limits; unset ones follow the operator defaults.
    pub limits: LimitOverrides,
    /// The custom route under `/exec/*`, if the script has one.
    #[serde(default)]
    pub route: Option<Route>,
    /// Origins allowed to call the script from a browser (CORS); empty: none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Invocations of this script that may run at once; `None`: the pool's default.
    #[serde(default)]
    pub concurrency: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A script ready to run: its stored form plus the limits resolved against
/// the operator's configuration, computed once when the catalog changes
/// rather than on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRef {
    pub script: Script,
    pub limits: Limits,
}
