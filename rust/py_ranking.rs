//! Python face of [`crate::ranking`]: the stateful `NodeBoard` and stateless `rank_nodes`.

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;

use crate::ranking::{self, Board, NodeState, PollUpdate, UnknownNode};

/// `(id, online, locked, auto_spawned, max_images, max_parallel_tasks, task_queue_count,
/// in_transit, turn)`, in registry order.
type NodeRow = (u32, bool, bool, bool, Option<u64>, u32, u32, u32, u64);

fn key_error(err: UnknownNode) -> PyErr {
    PyKeyError::new_err(err.0)
}

fn from_row(row: NodeRow) -> NodeState {
    let (
        id,
        online,
        locked,
        auto_spawned,
        max_images,
        max_parallel_tasks,
        task_queue_count,
        in_transit,
        turn,
    ) = row;
    NodeState {
        id,
        online,
        locked,
        auto_spawned,
        max_images,
        max_parallel_tasks,
        task_queue_count,
        in_transit,
        turn,
    }
}

fn to_row(n: &NodeState) -> NodeRow {
    (
        n.id,
        n.online,
        n.locked,
        n.auto_spawned,
        n.max_images,
        n.max_parallel_tasks,
        n.task_queue_count,
        n.in_transit,
        n.turn,
    )
}

/// Ranks nodes given as rows; returns the eligible ids best first.
#[pyfunction]
pub fn rank_nodes(rows: Vec<NodeRow>, image_count: u64) -> Vec<u32> {
    let nodes: Vec<NodeState> = rows.into_iter().map(from_row).collect();
    ranking::rank(&nodes, image_count)
}

#[pyclass(name = "NodeBoard", module = "clusterodm._native")]
pub struct PyNodeBoard {
    board: Board,
}

#[pymethods]
impl PyNodeBoard {
    #[new]
    fn new() -> Self {
        Self {
            board: Board::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn upsert(
        &mut self,
        node_id: u32,
        online: bool,
        locked: bool,
        auto_spawned: bool,
        max_images: Option<u64>,
        max_parallel_tasks: u32,
        task_queue_count: u32,
    ) {
        self.board.upsert(
            node_id,
            PollUpdate {
                online,
                locked,
                auto_spawned,
                max_images,
                max_parallel_tasks,
                task_queue_count,
            },
        );
    }

    fn remove(&mut self, node_id: u32) -> bool {
        self.board.remove(node_id)
    }

    fn set_online(&mut self, node_id: u32, online: bool) -> PyResult<()> {
        self.board.set_online(node_id, online).map_err(key_error)
    }

    fn set_locked(&mut self, node_id: u32, locked: bool) -> PyResult<()> {
        self.board.set_locked(node_id, locked).map_err(key_error)
    }

    fn set_turn(&mut self, node_id: u32, turn: u64) -> PyResult<()> {
        self.board.set_turn(node_id, turn).map_err(key_error)
    }

    fn add_in_transit(&mut self, node_id: u32, delta: i64) -> PyResult<u32> {
        self.board.add_in_transit(node_id, delta).map_err(key_error)
    }

    fn best(&self, image_count: u64) -> Option<u32> {
        self.board.best(image_count)
    }

    fn choose(&mut self, image_count: u64) -> Option<u32> {
        self.board.choose(image_count)
    }

    fn rank(&self, image_count: u64) -> Vec<u32> {
        self.board.rank(image_count)
    }

    fn turn(&self, node_id: u32) -> PyResult<u64> {
        self.board.get(node_id).map(|n| n.turn).map_err(key_error)
    }

    fn free_slots(&self, node_id: u32) -> PyResult<u64> {
        self.board
            .get(node_id)
            .map(|n| n.free_slots())
            .map_err(key_error)
    }

    fn in_transit(&self, node_id: u32) -> PyResult<u32> {
        self.board
            .get(node_id)
            .map(|n| n.in_transit)
            .map_err(key_error)
    }

    fn rows(&self) -> Vec<NodeRow> {
        self.board.nodes().iter().map(to_row).collect()
    }

    fn __len__(&self) -> usize {
        self.board.len()
    }

    fn __contains__(&self, node_id: &Bound<'_, PyAny>) -> bool {
        node_id
            .extract::<u32>()
            .is_ok_and(|id| self.board.get(id).is_ok())
    }

    fn __repr__(&self) -> String {
        format!("<NodeBoard len={}>", self.board.len())
    }
}
