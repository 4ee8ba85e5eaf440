//! The worker's compiled-script cache: an LRU keyed by (script id, version),
//! bounded by entry count and by the total source bytes behind the entries
//! (a compiled AST is roughly proportional to its source).
//!
//! A lookup says whether the cached form is still valid for its limits (the
//! runtime knows which limits the parser applied); if not, it is a miss and
//! the entry goes, so a changed depth limit always recompiles.

use std::num::NonZeroUsize;

use crate::protocol::ScriptKey;
use lru::LruCache;

pub(super) struct AstCache<T> {
    entries: LruCache<ScriptKey, Entry<T>>,
    source_bytes: usize,
    max_source_bytes: usize,
}

struct Entry<T> {
    compiled: T,
    source_bytes: usize,
}

impl<T> AstCache<T> {
    pub(super) fn new(max_entries: NonZeroUsize, max_source_bytes: usize) -> Self {
        Self {
            entries: LruCache::new(max_entries),
            source_bytes: 0,
            max_source_bytes,
        }
    }

    /// The compiled script, if cached and still `valid` (and marks it recently used).
    pub(super) fn get(&mut self, key: &ScriptKey, valid: impl Fn(&T) -> bool) -> Option<&T> {
        if self.entries.peek(key).is_some_and(|e| !valid(&e.compiled)) {
            self.remove(key);
            return None;
        }
        self.entries.get(key).map(|e| &e.compiled)
    }

    /// Caches a compiled script, evicting least-recently-used entries to stay
    /// within both bounds. A script larger than the byte bound is not kept.
    pub(super) fn insert(&mut self, key: ScriptKey, compiled: T, source_bytes: usize) {
        self.remove(&key);
        if source_bytes > self.max_source_bytes {
            return;
        }
        while self.source_bytes + source_bytes > self.max_source_bytes {
            match self.entries.pop_lru() {
                Some((_, old)) => self.source_bytes -= old.source_bytes,
                None => break,
            }
        }
        if let Some((_, old)) = self.entries.push(
            key,
            Entry {
                compiled,
                source_bytes,
            },
        ) {
            // `push` returned the entry it evicted for the count bound.
            self.source_bytes -= old.source_bytes;
        }
        self.source_bytes += source_bytes;
    }

    fn remove(&mut self, key: &ScriptKey) {
        if let Some(old) = self.entries.pop(key) {
            self.source_bytes -= old.source_bytes;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ScriptId;

    fn any(_: &&str) -> bool {
        true
    }

    fn key(version: u32) -> ScriptKey {
        ScriptKey {
            id: ScriptId(uuid::Uuid::from_u128(1)),
            version,
        }
    }

    #[test]
    fn evicts_by_count_and_by_bytes_least_recent_first() {
        let mut cache = AstCache::new(NonZeroUsize::new(3).unwrap(), 100);
        cache.insert(key(1), "a", 10);
        cache.insert(key(2), "b", 10);
        cache.insert(key(3), "c", 10);
        assert_eq!(cache.get(&key(1), any), Some(&"a")); // 1 is now most recent
        cache.insert(key(4), "d", 10); // count bound evicts 2
        assert_eq!(cache.get(&key(2), any), None);
        assert_eq!(cache.len(), 3);
        cache.insert(key(5), "e", 85); // byte bound evicts 3, then 1... until it fits
        assert!(cache.source_bytes <= 100);
        assert_eq!(cache.get(&key(5), any), Some(&"e"));
        assert_eq!(cache.get(&key(3), any), None);
        cache.insert(key(6), "huge", 101);
        assert_eq!(
            cache.get(&key(6), any),
            None,
            "larger than the bound: not kept"
        );
        assert!(cache.source_bytes <= 100);
    }

    #[test]
    fn an_invalid_entry_is_a_miss_and_reinsert_replaces() {
        let mut cache = AstCache::new(NonZeroUsize::new(4).unwrap(), 1000);
        cache.insert(key(1), 1u32, 50);
        assert_eq!(cache.get(&key(1), |v| *v == 2), None);
        assert_eq!(cache.source_bytes, 0, "the stale entry is gone");
        cache.insert(key(1), 2, 50);
        cache.insert(key(1), 3, 60);
        assert_eq!(cache.get(&key(1), |_| true), Some(&3));
        assert_eq!(cache.source_bytes, 60);
    }
}
