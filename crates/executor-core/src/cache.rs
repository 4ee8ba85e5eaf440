//! A bounded cache of compiled scripts, keyed by (script id, version).
//!
//! Invariants: at most `capacity` entries, least recently used evicted
//! first; an entry is only returned for limits whose parse-time values match
//! the ones it was compiled under (otherwise it counts as a miss and is
//! replaced), so an operator changing a depth limit takes effect without a
//! new script version.

use std::num::NonZeroUsize;
use std::rc::Rc;

use lru::LruCache;
use shared::{CompileError, Limits, ScriptId, ScriptRef};

use crate::runtime::{CompiledScript, ScriptRuntime};

/// Compiled scripts of one runtime (one thread or worker).
#[derive(Debug)]
pub struct ScriptCache {
    entries: LruCache<(ScriptId, u32), Rc<CompiledScript>>,
}

impl ScriptCache {
    /// A cache holding at most `capacity` compiled scripts.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: LruCache::new(capacity),
        }
    }

    /// The compiled form of (`id`, `version`) if it is cached for `limits`.
    pub fn get(
        &mut self,
        id: ScriptId,
        version: u32,
        limits: &Limits,
    ) -> Option<Rc<CompiledScript>> {
        self.entries
            .get(&(id, version))
            .filter(|compiled| compiled.compiled_for(limits))
            .cloned()
    }

    /// Caches a compiled script, evicting the least recently used one when full.
    pub fn insert(&mut self, id: ScriptId, version: u32, compiled: Rc<CompiledScript>) {
        self.entries.put((id, version), compiled);
    }

    /// The cached compiled script, or compiles and caches it. The flag is
    /// `true` on a cache hit.
    pub fn get_or_compile(
        &mut self,
        runtime: &mut ScriptRuntime,
        script: &ScriptRef,
    ) -> Result<(Rc<CompiledScript>, bool), CompileError> {
        let (id, version) = (script.script.id, script.script.version);
        if let Some(compiled) = self.get(id, version, &script.limits) {
            return Ok((compiled, true));
        }
        let compiled = Rc::new(runtime.compile(&script.script.source, &script.limits)?);
        self.insert(id, version, Rc::clone(&compiled));
        Ok((compiled, false))
    }

    /// Drops every version of a script.
    pub fn remove_script(&mut self, id: ScriptId) {
        let stale: Vec<_> = self
            .entries
            .iter()
            .filter(|((cached, _), _)| *cached == id)
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.entries.pop(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Script;

    fn script_ref(id: ScriptId, version: u32, source: &str, limits: Limits) -> ScriptRef {
        ScriptRef {
            script: Script {
                id,
                name: "t".into(),
                version,
                source: source.into(),
                ..Script::default()
            },
            limits,
        }
    }

    #[test]
    fn hits_misses_and_evicts() {
        let mut runtime = ScriptRuntime::new();
        let mut cache = ScriptCache::new(NonZeroUsize::new(2).unwrap());
        let (a, b, c) = (ScriptId::new(), ScriptId::new(), ScriptId::new());
        let limits = Limits::DEFAULTS;
        for id in [a, b] {
            let (_, hit) = cache
                .get_or_compile(&mut runtime, &script_ref(id, 1, "1", limits))
                .unwrap();
            assert!(!hit);
        }
        let (_, hit) = cache
            .get_or_compile(&mut runtime, &script_ref(a, 1, "1", limits))
            .unwrap();
        assert!(hit);
        // `b` is now the least recently used.
        cache
            .get_or_compile(&mut runtime, &script_ref(c, 1, "1", limits))
            .unwrap();
        assert!(cache.get(b, 1, &limits).is_none());
        assert!(cache.get(a, 1, &limits).is_some());
        // A new version is a miss.
        assert!(cache.get(a, 2, &limits).is_none());
        // Different parse-time limits are a miss.
        let deeper = Limits {
            expr_depth: 10,
            ..limits
        };
        assert!(cache.get(a, 1, &deeper).is_none());
        cache.remove_script(a);
        assert_eq!(cache.len(), 1);
    }
}
