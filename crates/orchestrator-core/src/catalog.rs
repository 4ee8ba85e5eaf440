//! The orchestrator's script table and route table: every script, in memory.
//!
//! Loaded whole at start and updated by the manager on every change
//! ([`CatalogUpdates`]). Readers take a snapshot with one atomic load; writers
//! (rare: admin changes) copy the map, rebuild the routes from it and swap
//! both in together, so a lookup never sees a route without its script and an
//! invocation in flight keeps the [`ScriptRef`] it started with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use shared::route::RouteLookup;
use shared::{CatalogUpdates, LimitsConfig, Script, ScriptId, ScriptRef, ScriptResolver};

use crate::routing::RouteTable;

type Table = HashMap<ScriptId, Arc<ScriptRef>>;

/// Scripts and the routes derived from them, swapped as one.
#[derive(Default)]
struct Snapshot {
    scripts: Table,
    routes: RouteTable,
}

impl Snapshot {
    fn new(scripts: Table) -> Self {
        let routes = RouteTable::build(scripts.values());
        Self { scripts, routes }
    }
}

/// In-memory script table; implements both sides of the manager/orchestrator seam.
pub struct ScriptCatalog {
    limits: LimitsConfig,
    table: ArcSwap<Snapshot>,
    /// Serialises writers so two updates cannot lose each other's change.
    write: Mutex<()>,
}

impl ScriptCatalog {
    pub fn new(limits: LimitsConfig) -> Self {
        Self {
            limits,
            table: ArcSwap::from_pointee(Snapshot::default()),
            write: Mutex::new(()),
        }
    }

    /// Number of scripts known.
    pub fn len(&self) -> usize {
        self.table.load().scripts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn prepare(&self, script: Script) -> Arc<ScriptRef> {
        let limits = self.limits.resolve(&script.limits);
        Arc::new(ScriptRef { script, limits })
    }

    fn modify(&self, change: impl FnOnce(&mut Table)) {
        // A poisoned lock only means another writer panicked mid-copy; the
        // table itself is swapped atomically, so it is still consistent.
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Table::clone(&self.table.load().scripts);
        change(&mut next);
        self.table.store(Arc::new(Snapshot::new(next)));
    }
}

impl ScriptResolver for ScriptCatalog {
    fn by_id(&self, id: ScriptId) -> Option<Arc<ScriptRef>> {
        self.table.load().scripts.get(&id).cloned()
    }

    fn by_route(&self, method: &str, segments: &[String]) -> RouteLookup<Arc<ScriptRef>> {
        let snapshot = self.table.load();
        match snapshot.routes.lookup(method, segments) {
            RouteLookup::Found {
                target,
                params,
                pattern,
            } => match snapshot.scripts.get(&target) {
                Some(script) => RouteLookup::Found {
                    target: Arc::clone(script),
                    params,
                    pattern,
                },
                None => RouteLookup::NotFound,
            },
            RouteLookup::MethodNotAllowed { allowed } => RouteLookup::MethodNotAllowed { allowed },
            RouteLookup::NotFound => RouteLookup::NotFound,
        }
    }
}

impl CatalogUpdates for ScriptCatalog {
    fn load_all(&self, scripts: Vec<Script>) {
        let table: Table = scripts
            .into_iter()
            .map(|s| (s.id, self.prepare(s)))
            .collect();
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.table.store(Arc::new(Snapshot::new(table)));
    }

    fn upsert(&self, script: Script) {
        let prepared = self.prepare(script);
        self.modify(|t| {
            // Never let a late, older version replace a newer one.
            let stale = t
                .get(&prepared.script.id)
                .is_some_and(|cur| cur.script.version > prepared.script.version);
            if !stale {
                t.insert(prepared.script.id, prepared);
            }
        });
    }

    fn remove(&self, id: ScriptId) {
        self.modify(|t| {
            t.remove(&id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::LimitOverrides;

    fn script(version: u32, wall: Option<u64>) -> Script {
        Script {
            id: ScriptId(uuid::Uuid::nil()),
            name: "s".into(),
            version,
            source: format!("{version}"),
            limits: LimitOverrides {
                wall_time_ms: wall,
                ..LimitOverrides::default()
            },
            route: None,
            cors_origins: Vec::new(),
            concurrency: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn resolves_limits_once_and_keeps_newest_version() {
        let catalog = ScriptCatalog::new(LimitsConfig::default());
        catalog.upsert(script(2, Some(100)));
        let held = catalog.by_id(ScriptId(uuid::Uuid::nil())).unwrap();
        assert_eq!(held.limits.wall_time_ms, 100);
        catalog.upsert(script(1, None));
        assert_eq!(catalog.by_id(held.script.id).unwrap().script.version, 2);
        catalog.upsert(script(3, None));
        // A snapshot taken before the change is unaffected by it.
        assert_eq!(held.script.version, 2);
        assert_eq!(
            catalog.by_id(held.script.id).unwrap().limits.wall_time_ms,
            5_000
        );
        catalog.remove(held.script.id);
        assert!(catalog.by_id(held.script.id).is_none());
    }
}
