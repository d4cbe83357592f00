//! Node selection for new tasks (ClusterODM's `findBestAvailableNode`).
//!
//! Candidates are online, unlocked, not auto-spawned nodes whose image limit admits the task.
//! They are ordered by: smallest image limit (unlimited counts as 999,999,999, like the original),
//! most free slots, shortest queue, lowest turn, then registry order. That order is total, so the
//! result is deterministic. The pick is the first candidate with a free slot, else the first.

use std::cmp::Reverse;
use std::collections::HashMap;

/// Image limit used for nodes without one (`maxImages` missing or 0).
pub const UNLIMITED_IMAGES: u64 = 999_999_999;
/// Turns are reset to 0 once the highest turn exceeds this.
pub const TURN_RESET_ABOVE: u64 = 2_000_000_000;

/// What ranking needs to know about one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeState {
    pub id: u32,
    pub online: bool,
    pub locked: bool,
    pub auto_spawned: bool,
    /// `None` or `Some(0)` means unlimited.
    pub max_images: Option<u64>,
    pub max_parallel_tasks: u32,
    pub task_queue_count: u32,
    /// Tasks being forwarded to the node right now.
    pub in_transit: u32,
    /// Round-robin counter; lower goes first among equals.
    pub turn: u64,
}

impl NodeState {
    /// Image limit with "unlimited" mapped to [`UNLIMITED_IMAGES`].
    pub fn image_limit(&self) -> u64 {
        match self.max_images {
            None | Some(0) => UNLIMITED_IMAGES,
            Some(limit) => limit,
        }
    }

    /// `max(0, maxParallelTasks - taskQueueCount - inTransit)`.
    pub fn free_slots(&self) -> u64 {
        let free = i64::from(self.max_parallel_tasks)
            - i64::from(self.task_queue_count)
            - i64::from(self.in_transit);
        free.max(0) as u64
    }

    /// Whether the node may receive a task of `image_count` images.
    pub fn is_candidate(&self, image_count: u64) -> bool {
        let limit_ok = match self.max_images {
            None | Some(0) => true,
            Some(limit) => limit >= image_count,
        };
        self.online && !self.locked && !self.auto_spawned && limit_ok
    }
}

/// Sort key of the node at registry `position`; smaller ranks first. Unique per position.
type RankKey = (u64, Reverse<u64>, u32, u64, usize);

fn rank_key(node: &NodeState, position: usize) -> RankKey {
    (
        node.image_limit(),
        Reverse(node.free_slots()),
        node.task_queue_count,
        node.turn,
        position,
    )
}

/// Ids of all candidates, best first.
pub fn rank(nodes: &[NodeState], image_count: u64) -> Vec<u32> {
    let mut keyed: Vec<(RankKey, u32)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.is_candidate(image_count))
        .map(|(i, n)| (rank_key(n, i), n.id))
        .collect();
    keyed.sort_unstable_by_key(|a| a.0);
    keyed.into_iter().map(|(_, id)| id).collect()
}

/// Position of the node to pick, without sorting: one pass keeping the best with a free slot
/// and the best overall. Both are minima of the same total order, so this equals taking the
/// first match in [`rank`]'s output.
pub fn best_position(nodes: &[NodeState], image_count: u64) -> Option<usize> {
    let mut best_free: Option<(RankKey, usize)> = None;
    let mut best_any: Option<(RankKey, usize)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if !node.is_candidate(image_count) {
            continue;
        }
        let key = rank_key(node, i);
        if node.free_slots() > 0 && best_free.map_or(true, |(k, _)| key < k) {
            best_free = Some((key, i));
        }
        if best_any.map_or(true, |(k, _)| key < k) {
            best_any = Some((key, i));
        }
    }
    best_free.or(best_any).map(|(_, i)| i)
}

/// Picks a node and gives it the highest turn (`max(all turns) + 1`, after resetting every turn
/// to 0 when the maximum exceeds [`TURN_RESET_ABOVE`]). Returns the chosen position.
pub fn choose_position(nodes: &mut [NodeState], image_count: u64) -> Option<usize> {
    let chosen = best_position(nodes, image_count)?;
    let mut max_turn = nodes.iter().map(|n| n.turn).max().unwrap_or(0);
    if max_turn > TURN_RESET_ABOVE {
        nodes.iter_mut().for_each(|n| n.turn = 0);
        max_turn = 0;
    }
    nodes[chosen].turn = max_turn + 1;
    Some(chosen)
}

/// Error for operations on an id the board does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownNode(pub u32);

/// Ranking state of the registry's nodes, kept in registry order and updated in place by the
/// health poller, so a selection does not have to marshal every node's numbers.
#[derive(Debug, Default)]
pub struct Board {
    nodes: Vec<NodeState>,
    positions: HashMap<u32, usize>,
}

/// The fields the health poller refreshes; turn and in-transit count are the board's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollUpdate {
    pub online: bool,
    pub locked: bool,
    pub auto_spawned: bool,
    pub max_images: Option<u64>,
    pub max_parallel_tasks: u32,
    pub task_queue_count: u32,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Nodes in registry order.
    pub fn nodes(&self) -> &[NodeState] {
        &self.nodes
    }

    pub fn get(&self, id: u32) -> Result<&NodeState, UnknownNode> {
        self.positions
            .get(&id)
            .map(|&i| &self.nodes[i])
            .ok_or(UnknownNode(id))
    }

    fn get_mut(&mut self, id: u32) -> Result<&mut NodeState, UnknownNode> {
        match self.positions.get(&id) {
            Some(&i) => Ok(&mut self.nodes[i]),
            None => Err(UnknownNode(id)),
        }
    }

    /// Adds a node at the end of registry order, or refreshes an existing one in place.
    pub fn upsert(&mut self, id: u32, update: PollUpdate) {
        let node = match self.positions.get(&id) {
            Some(&i) => &mut self.nodes[i],
            None => {
                self.positions.insert(id, self.nodes.len());
                self.nodes.push(NodeState {
                    id,
                    ..NodeState::default()
                });
                self.nodes.last_mut().expect("just pushed")
            }
        };
        node.online = update.online;
        node.locked = update.locked;
        node.auto_spawned = update.auto_spawned;
        node.max_images = update.max_images;
        node.max_parallel_tasks = update.max_parallel_tasks;
        node.task_queue_count = update.task_queue_count;
    }

    /// Removes a node, keeping the order of the others; false if unknown.
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(index) = self.positions.remove(&id) else {
            return false;
        };
        self.nodes.remove(index);
        for (i, node) in self.nodes.iter().enumerate().skip(index) {
            self.positions.insert(node.id, i);
        }
        true
    }

    pub fn set_online(&mut self, id: u32, online: bool) -> Result<(), UnknownNode> {
        self.get_mut(id)?.online = online;
        Ok(())
    }

    pub fn set_locked(&mut self, id: u32, locked: bool) -> Result<(), UnknownNode> {
        self.get_mut(id)?.locked = locked;
        Ok(())
    }

    /// Overrides a node's turn (tests and state restore; turns are normally owned by `choose`).
    pub fn set_turn(&mut self, id: u32, turn: u64) -> Result<(), UnknownNode> {
        self.get_mut(id)?.turn = turn;
        Ok(())
    }

    /// Adjusts the in-transit count by `delta` (floored at 0, capped at `u32::MAX`).
    pub fn add_in_transit(&mut self, id: u32, delta: i64) -> Result<u32, UnknownNode> {
        let node = self.get_mut(id)?;
        let count =
            (i64::from(node.in_transit).saturating_add(delta)).clamp(0, i64::from(u32::MAX));
        node.in_transit = count as u32;
        Ok(node.in_transit)
    }

    /// Id of the node that [`Board::choose`] would pick; changes nothing.
    pub fn best(&self, image_count: u64) -> Option<u32> {
        best_position(&self.nodes, image_count).map(|i| self.nodes[i].id)
    }

    /// Picks a node and bumps its turn.
    pub fn choose(&mut self, image_count: u64) -> Option<u32> {
        choose_position(&mut self.nodes, image_count).map(|i| self.nodes[i].id)
    }

    /// Ids of all candidates, best first.
    pub fn rank(&self, image_count: u64) -> Vec<u32> {
        rank(&self.nodes, image_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, max_images: Option<u64>, mpt: u32, queue: u32, turn: u64) -> NodeState {
        NodeState {
            id,
            online: true,
            max_images,
            max_parallel_tasks: mpt,
            task_queue_count: queue,
            turn,
            ..NodeState::default()
        }
    }

    #[test]
    fn skips_ineligible_nodes() {
        let mut nodes = vec![node(1, None, 2, 0, 0); 5];
        for (i, n) in nodes.iter_mut().enumerate() {
            n.id = i as u32;
        }
        nodes[0].online = false;
        nodes[1].locked = true;
        nodes[2].auto_spawned = true;
        nodes[3].max_images = Some(9);
        assert_eq!(rank(&nodes, 10), vec![4]);
        assert_eq!(rank(&nodes, 9), vec![3, 4]);
        nodes[4].max_images = Some(0); // 0 = unlimited
        assert_eq!(rank(&nodes, 1_000_000), vec![4]);
    }

    #[test]
    fn ordering_rules() {
        let nodes = vec![
            node(1, None, 4, 0, 0),      // unlimited, 4 free
            node(2, Some(500), 1, 0, 0), // smaller limit wins first
            node(3, None, 4, 1, 0),      // 3 free
            node(4, None, 5, 1, 0),      // 4 free, queue 1 -> after node 1
            node(5, None, 4, 0, 0),      // full tie with node 1 -> registry order
            node(6, None, 4, 0, 0),
        ];
        let mut nodes = nodes;
        nodes[5].turn = 0;
        nodes[0].turn = 3;
        assert_eq!(rank(&nodes, 10), vec![2, 5, 6, 1, 4, 3]);
    }

    #[test]
    fn unlimited_ties_with_the_sentinel() {
        let nodes = vec![
            node(1, None, 1, 0, 0),
            node(2, Some(UNLIMITED_IMAGES), 2, 0, 0),
        ];
        assert_eq!(rank(&nodes, 1), vec![2, 1]);
    }

    #[test]
    fn prefers_free_slot_else_first() {
        let mut nodes = vec![node(1, Some(10), 1, 1, 0), node(2, None, 1, 0, 0)];
        assert_eq!(best_position(&nodes, 5), Some(1));
        nodes[1].in_transit = 1;
        assert_eq!(nodes[1].free_slots(), 0);
        assert_eq!(best_position(&nodes, 5), Some(0));
        nodes[0].task_queue_count = 9; // more than max parallel: free slots floored at 0
        assert_eq!(nodes[0].free_slots(), 0);
        assert_eq!(best_position(&nodes, 5), Some(0));
        assert_eq!(best_position(&[], 5), None);
    }

    #[test]
    fn choose_bumps_turn_and_rotates() {
        let mut nodes = vec![
            node(1, None, 2, 0, 0),
            node(2, None, 2, 0, 0),
            node(3, None, 2, 0, 7),
        ];
        nodes[2].online = false; // its turn still counts for the maximum
        assert_eq!(choose_position(&mut nodes, 1), Some(0));
        assert_eq!(nodes[0].turn, 8);
        assert_eq!(choose_position(&mut nodes, 1), Some(1));
        assert_eq!(nodes[1].turn, 9);
        assert_eq!(choose_position(&mut nodes, 1), Some(0));
        assert_eq!(nodes[0].turn, 10);
    }

    #[test]
    fn turns_reset_above_two_billion() {
        let mut nodes = vec![
            node(1, None, 2, 0, TURN_RESET_ABOVE + 1),
            node(2, None, 2, 0, 5),
        ];
        assert_eq!(choose_position(&mut nodes, 1), Some(1));
        assert_eq!((nodes[0].turn, nodes[1].turn), (0, 1));
        let mut at_limit = vec![node(1, None, 2, 0, TURN_RESET_ABOVE)];
        choose_position(&mut at_limit, 1);
        assert_eq!(at_limit[0].turn, TURN_RESET_ABOVE + 1);
    }

    #[test]
    fn best_matches_first_ranked_pick() {
        let mut seed = 12345u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..2000 {
            let count = next(8) as usize;
            let nodes: Vec<NodeState> = (0..count)
                .map(|i| NodeState {
                    id: i as u32,
                    online: next(5) != 0,
                    locked: next(6) == 0,
                    auto_spawned: next(6) == 0,
                    max_images: [None, Some(0), Some(5), Some(50)][next(4) as usize],
                    max_parallel_tasks: next(3) as u32,
                    task_queue_count: next(3) as u32,
                    in_transit: next(2) as u32,
                    turn: next(3),
                })
                .collect();
            let images = next(60);
            let ranked = rank(&nodes, images);
            let expected = ranked
                .iter()
                .find(|&&id| nodes[id as usize].free_slots() > 0)
                .or(ranked.first())
                .copied();
            let got = best_position(&nodes, images).map(|i| nodes[i].id);
            assert_eq!(got, expected);
        }
    }

    fn update(online: bool, mpt: u32, queue: u32) -> PollUpdate {
        PollUpdate {
            online,
            locked: false,
            auto_spawned: false,
            max_images: None,
            max_parallel_tasks: mpt,
            task_queue_count: queue,
        }
    }

    #[test]
    fn board_keeps_turn_and_transit_across_polls() {
        let mut board = Board::new();
        board.upsert(10, update(true, 2, 0));
        board.upsert(20, update(true, 2, 0));
        assert_eq!(board.len(), 2);
        assert_eq!(board.add_in_transit(10, 1), Ok(1));
        assert_eq!(board.best(1), Some(20));
        assert_eq!(board.choose(1), Some(20));
        assert_eq!(board.get(20).unwrap().turn, 1);
        board.upsert(20, update(true, 2, 1));
        assert_eq!(board.get(20).unwrap().turn, 1);
        assert_eq!(board.get(10).unwrap().in_transit, 1);
        assert_eq!(board.add_in_transit(10, -5), Ok(0));
        assert_eq!(board.rank(1), vec![10, 20]);
        assert_eq!(board.set_locked(10, true), Ok(()));
        assert_eq!(board.rank(1), vec![20]);
        assert_eq!(board.set_online(99, true), Err(UnknownNode(99)));
        assert!(board.remove(10));
        assert!(!board.remove(10));
        board.upsert(30, update(true, 9, 0));
        assert_eq!(
            board.nodes().iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![20, 30]
        );
        assert_eq!(board.get(30).unwrap().free_slots(), 9);
    }
}
