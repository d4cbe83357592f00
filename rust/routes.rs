//! Task route table: task UUID (as `u128`) -> node, owner and last access time.
//!
//! Layout, chosen to stay under 64 bytes per route at a million routes:
//! * `entries`: a dense `Vec` of 48-byte records (key, route, and the links of two intrusive
//!   doubly-linked lists, one per node and one per owner), compacted with `swap_remove`;
//! * `index`: an open-addressing table of `u32` slots into `entries` (linear probing, load factor
//!   at most 1/2, backward-shift deletion so there are no tombstones), hashed with std's keyed
//!   SipHash so clients that choose task ids cannot force collisions;
//! * `heads`: the first entry of each node's and each owner's list, so `by_node`, `by_owner` and
//!   `remove_node` cost O(matches) instead of a scan of every route.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Marks an empty index bucket and the end of a list.
const NIL: u32 = u32::MAX;
/// Smallest index table allocated.
const MIN_BUCKETS: usize = 16;
/// The two intrusive lists each entry belongs to.
const BY_NODE: usize = 0;
const BY_OWNER: usize = 1;

/// Where a task lives and who owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Node id handed out by the node registry.
    pub node: u32,
    /// Owner (user token) id; 0 means no token.
    pub owner: u32,
    /// Last access time in milliseconds since the epoch.
    pub accessed_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u128,
    route: Route,
    prev: [u32; 2],
    next: [u32; 2],
}

// The memory budget depends on this; fail the build if a field change grows it.
const _: () = assert!(std::mem::size_of::<Entry>() == 48);

impl Entry {
    fn group(&self, chain: usize) -> u32 {
        if chain == BY_NODE {
            self.route.node
        } else {
            self.route.owner
        }
    }
}

/// Map from task UUID to [`Route`], with per-node and per-owner listing.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<Entry>,
    index: Vec<u32>,
    heads: [HashMap<u32, u32>; 2],
    hasher: RandomState,
}

impl RouteTable {
    /// Creates an empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes reserved by the two main arrays (not counting the small per-node/owner maps).
    pub fn allocated_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.capacity() * std::mem::size_of::<u32>()
    }

    /// Makes room for `additional` more routes without rehashing on the way.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        self.grow_index_for(self.entries.len() + additional);
    }

    /// Inserts or replaces a route; returns the previous one.
    pub fn insert(&mut self, key: u128, route: Route) -> Option<Route> {
        if let Some(slot) = self.find(key) {
            let old = self.entries[slot as usize].route;
            if old.node != route.node {
                self.unlink(slot, BY_NODE);
                self.entries[slot as usize].route.node = route.node;
                self.link(slot, BY_NODE);
            }
            if old.owner != route.owner {
                self.unlink(slot, BY_OWNER);
                self.entries[slot as usize].route.owner = route.owner;
                self.link(slot, BY_OWNER);
            }
            self.entries[slot as usize].route.accessed_ms = route.accessed_ms;
            return Some(old);
        }
        assert!(
            self.entries.len() < NIL as usize - 1,
            "route table is limited to 2^32 - 2 entries"
        );
        self.grow_index_for(self.entries.len() + 1);
        let slot = self.entries.len() as u32;
        self.entries.push(Entry {
            key,
            route,
            prev: [NIL; 2],
            next: [NIL; 2],
        });
        let bucket = self.empty_bucket_for(key);
        self.index[bucket] = slot;
        self.link(slot, BY_NODE);
        self.link(slot, BY_OWNER);
        None
    }

    /// Returns the route and sets its access time to `now_ms`.
    pub fn get(&mut self, key: u128, now_ms: u64) -> Option<Route> {
        let slot = self.find(key)?;
        let entry = &mut self.entries[slot as usize];
        entry.route.accessed_ms = now_ms;
        Some(entry.route)
    }

    /// Returns the route without touching its access time.
    pub fn peek(&self, key: u128) -> Option<Route> {
        self.find(key).map(|slot| self.entries[slot as usize].route)
    }

    /// True when the key has a route.
    pub fn contains(&self, key: u128) -> bool {
        self.find(key).is_some()
    }

    /// Removes a route; returns it if it existed.
    pub fn remove(&mut self, key: u128) -> Option<Route> {
        let slot = self.find(key)?;
        Some(self.remove_slot(slot))
    }

    /// Keys of the routes pointing at `node` (unspecified order).
    pub fn by_node(&self, node: u32) -> Vec<u128> {
        self.chain(BY_NODE, node)
            .map(|s| self.entries[s as usize].key)
            .collect()
    }

    /// Keys of the routes owned by `owner` (unspecified order).
    pub fn by_owner(&self, owner: u32) -> Vec<u128> {
        self.chain(BY_OWNER, owner)
            .map(|s| self.entries[s as usize].key)
            .collect()
    }

    /// Removes every route of `node`; returns the removed keys.
    pub fn remove_node(&mut self, node: u32) -> Vec<u128> {
        let slots: Vec<u32> = self.chain(BY_NODE, node).collect();
        self.remove_slots(slots)
    }

    /// Removes every route accessed strictly before `cutoff_ms`; returns the removed keys.
    pub fn expire(&mut self, cutoff_ms: u64) -> Vec<u128> {
        let slots: Vec<u32> = (0..self.entries.len() as u32)
            .filter(|&s| self.entries[s as usize].route.accessed_ms < cutoff_ms)
            .collect();
        self.remove_slots(slots)
    }

    /// All routes, in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, Route)> + '_ {
        self.entries.iter().map(|e| (e.key, e.route))
    }

    /// Inserts many routes (later duplicates replace earlier ones).
    pub fn extend<I: IntoIterator<Item = (u128, Route)>>(&mut self, items: I) {
        let items = items.into_iter();
        self.reserve(items.size_hint().0);
        for (key, route) in items {
            self.insert(key, route);
        }
    }

    // --- index -------------------------------------------------------------------------------

    fn bucket_of(&self, key: u128) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.index.len() - 1)
    }

    /// Slot of `key` in `entries`.
    fn find(&self, key: u128) -> Option<u32> {
        self.find_bucket(key).map(|b| self.index[b])
    }

    /// Index bucket that holds `key`.
    fn find_bucket(&self, key: u128) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut bucket = self.bucket_of(key);
        loop {
            let slot = self.index[bucket];
            if slot == NIL {
                return None;
            }
            if self.entries[slot as usize].key == key {
                return Some(bucket);
            }
            bucket = (bucket + 1) & mask;
        }
    }

    /// First free bucket on `key`'s probe path (the key must not be present).
    fn empty_bucket_for(&self, key: u128) -> usize {
        let mask = self.index.len() - 1;
        let mut bucket = self.bucket_of(key);
        while self.index[bucket] != NIL {
            bucket = (bucket + 1) & mask;
        }
        bucket
    }

    /// Doubles the index until `wanted` entries fit at load factor 1/2, then rehashes.
    fn grow_index_for(&mut self, wanted: usize) {
        let mut buckets = self.index.len().max(MIN_BUCKETS);
        while wanted * 2 > buckets {
            buckets *= 2;
        }
        if buckets == self.index.len() {
            return;
        }
        self.index = vec![NIL; buckets];
        for slot in 0..self.entries.len() {
            let bucket = self.empty_bucket_for(self.entries[slot].key);
            self.index[bucket] = slot as u32;
        }
    }

    /// Empties `bucket`, shifting later members of the probe run back so lookups stay correct.
    fn clear_bucket(&mut self, bucket: usize) {
        let mask = self.index.len() - 1;
        let mut hole = bucket;
        let mut probe = (bucket + 1) & mask;
        loop {
            let slot = self.index[probe];
            if slot == NIL {
                break;
            }
            let home = self.bucket_of(self.entries[slot as usize].key);
            // Movable when its home is not inside (hole, probe], i.e. it sits past the hole.
            if (probe.wrapping_sub(home) & mask) >= (probe.wrapping_sub(hole) & mask) {
                self.index[hole] = slot;
                hole = probe;
            }
            probe = (probe + 1) & mask;
        }
        self.index[hole] = NIL;
    }

    // --- removal -----------------------------------------------------------------------------

    fn remove_slots(&mut self, mut slots: Vec<u32>) -> Vec<u128> {
        // Highest first: swap_remove only ever moves an entry that is not scheduled for removal.
        slots.sort_unstable_by(|a, b| b.cmp(a));
        slots
            .into_iter()
            .map(|s| {
                let key = self.entries[s as usize].key;
                self.remove_slot(s);
                key
            })
            .collect()
    }

    fn remove_slot(&mut self, slot: u32) -> Route {
        let key = self.entries[slot as usize].key;
        let bucket = self.find_bucket(key).expect("stored entry is indexed");
        self.clear_bucket(bucket);
        self.unlink(slot, BY_NODE);
        self.unlink(slot, BY_OWNER);
        let last = (self.entries.len() - 1) as u32;
        if slot != last {
            // The last entry is about to move into `slot`; repoint its bucket while it is still there.
            let moved_key = self.entries[last as usize].key;
            let moved_bucket = self
                .find_bucket(moved_key)
                .expect("stored entry is indexed");
            self.index[moved_bucket] = slot;
        }
        let removed = self.entries.swap_remove(slot as usize);
        if slot != last {
            self.relink_moved(slot);
        }
        removed.route
    }

    /// Repoints list neighbours and heads at an entry that `swap_remove` moved into `to`.
    fn relink_moved(&mut self, to: u32) {
        let moved = self.entries[to as usize];
        for chain in [BY_NODE, BY_OWNER] {
            let (prev, next) = (moved.prev[chain], moved.next[chain]);
            if prev == NIL {
                self.heads[chain].insert(moved.group(chain), to);
            } else {
                self.entries[prev as usize].next[chain] = to;
            }
            if next != NIL {
                self.entries[next as usize].prev[chain] = to;
            }
        }
    }

    // --- per-node / per-owner lists ----------------------------------------------------------

    fn chain(&self, chain: usize, group: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.heads[chain].get(&group).copied().unwrap_or(NIL);
        std::iter::successors(Some(first).filter(|&s| s != NIL), move |&s| {
            Some(self.entries[s as usize].next[chain]).filter(|&n| n != NIL)
        })
    }

    /// Pushes `slot` at the front of its group's list.
    fn link(&mut self, slot: u32, chain: usize) {
        let group = self.entries[slot as usize].group(chain);
        let old_head = self.heads[chain].insert(group, slot).unwrap_or(NIL);
        let entry = &mut self.entries[slot as usize];
        entry.prev[chain] = NIL;
        entry.next[chain] = old_head;
        if old_head != NIL {
            self.entries[old_head as usize].prev[chain] = slot;
        }
    }

    /// Takes `slot` out of its group's list (the entry keeps stale links until relinked).
    fn unlink(&mut self, slot: u32, chain: usize) {
        let entry = self.entries[slot as usize];
        let (prev, next) = (entry.prev[chain], entry.next[chain]);
        if prev == NIL {
            if next == NIL {
                self.heads[chain].remove(&entry.group(chain));
            } else {
                self.heads[chain].insert(entry.group(chain), next);
            }
        } else {
            self.entries[prev as usize].next[chain] = next;
        }
        if next != NIL {
            self.entries[next as usize].prev[chain] = prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn route(node: u32, owner: u32, accessed_ms: u64) -> Route {
        Route {
            node,
            owner,
            accessed_ms,
        }
    }

    fn sorted(mut keys: Vec<u128>) -> Vec<u128> {
        keys.sort_unstable();
        keys
    }

    #[test]
    fn insert_get_peek_remove() {
        let mut t = RouteTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert(7, route(1, 2, 100)), None);
        assert_eq!(t.peek(7), Some(route(1, 2, 100)));
        assert_eq!(t.get(7, 500), Some(route(1, 2, 500)));
        assert_eq!(t.peek(7), Some(route(1, 2, 500)));
        assert_eq!(t.get(8, 500), None);
        assert!(t.contains(7));
        assert_eq!(t.remove(7), Some(route(1, 2, 500)));
        assert_eq!(t.remove(7), None);
        assert!(t.is_empty());
        assert_eq!(t.by_node(1), Vec::<u128>::new());
    }

    #[test]
    fn replace_moves_between_lists() {
        let mut t = RouteTable::new();
        t.insert(1, route(1, 10, 0));
        t.insert(2, route(1, 10, 0));
        assert_eq!(t.insert(1, route(2, 20, 5)), Some(route(1, 10, 0)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.by_node(1), vec![2]);
        assert_eq!(t.by_node(2), vec![1]);
        assert_eq!(t.by_owner(10), vec![2]);
        assert_eq!(t.by_owner(20), vec![1]);
    }

    #[test]
    fn remove_node_and_expire() {
        let mut t = RouteTable::new();
        for k in 0..100u128 {
            t.insert(k, route((k % 3) as u32, (k % 5) as u32, k as u64));
        }
        let removed = sorted(t.remove_node(1));
        let expected: Vec<u128> = (0..100).filter(|k| k % 3 == 1).collect();
        assert_eq!(removed, expected);
        assert!(t.by_node(1).is_empty());
        let expired = sorted(t.expire(50));
        let expected: Vec<u128> = (0..50).filter(|k| k % 3 != 1).collect();
        assert_eq!(expired, expected);
        assert_eq!(t.len(), 100 - 33 - expected.len());
        for k in 0..100u128 {
            let alive = k % 3 != 1 && k >= 50;
            assert_eq!(t.contains(k), alive, "key {k}");
        }
        let owners: Vec<u128> = sorted(t.by_owner(0));
        let expected: Vec<u128> = (50..100).filter(|k| k % 3 != 1 && k % 5 == 0).collect();
        assert_eq!(owners, expected);
    }

    #[test]
    fn entry_is_48_bytes_and_index_half_full() {
        let mut t = RouteTable::new();
        t.reserve(1000);
        for k in 0..1000u128 {
            t.insert(k, route(0, 0, 0));
        }
        // 1000 entries -> 2048 buckets of 4 bytes + 1000 records of 48 bytes.
        assert_eq!(t.allocated_bytes(), 1000 * 48 + 2048 * 4);
    }

    /// Tiny deterministic generator so the model test needs no crates.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn agrees_with_btreemap_model() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut t = RouteTable::new();
        let mut model: BTreeMap<u128, Route> = BTreeMap::new();
        for step in 0..20_000u64 {
            // A small key space forces collisions, replacements and long probe runs.
            let key = u128::from(rng.below(300)) * 0x1_0000_0001;
            let node = rng.below(4) as u32;
            let owner = rng.below(3) as u32;
            match rng.below(8) {
                0..=2 => {
                    assert_eq!(
                        t.insert(key, route(node, owner, step)),
                        model.insert(key, route(node, owner, step))
                    );
                }
                3 => {
                    let expected = model.get_mut(&key).map(|r| {
                        r.accessed_ms = step;
                        *r
                    });
                    assert_eq!(t.get(key, step), expected);
                }
                4 => assert_eq!(t.remove(key), model.remove(&key)),
                5 => {
                    let expected: Vec<u128> = model
                        .iter()
                        .filter(|(_, r)| r.node == node)
                        .map(|(k, _)| *k)
                        .collect();
                    if rng.below(4) == 0 {
                        assert_eq!(sorted(t.remove_node(node)), expected);
                        model.retain(|_, r| r.node != node);
                    } else {
                        assert_eq!(sorted(t.by_node(node)), expected);
                    }
                }
                6 => {
                    let expected: Vec<u128> = model
                        .iter()
                        .filter(|(_, r)| r.owner == owner)
                        .map(|(k, _)| *k)
                        .collect();
                    assert_eq!(sorted(t.by_owner(owner)), expected);
                }
                _ => {
                    let cutoff = step.saturating_sub(rng.below(3000));
                    let expected: Vec<u128> = model
                        .iter()
                        .filter(|(_, r)| r.accessed_ms < cutoff)
                        .map(|(k, _)| *k)
                        .collect();
                    assert_eq!(sorted(t.expire(cutoff)), expected);
                    model.retain(|_, r| r.accessed_ms >= cutoff);
                }
            }
            assert_eq!(t.len(), model.len());
        }
        let all: BTreeMap<u128, Route> = t.iter().collect();
        assert_eq!(all, model);
    }
}
