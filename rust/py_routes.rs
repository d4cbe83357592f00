//! Python face of [`crate::routes::RouteTable`]: UUID text in and out, wall-clock refresh.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::routes::{Route, RouteTable};
use crate::uuid128;

/// `(uuid, node_id, owner_id, accessed_ms)`, the persistence row.
type ExportRow = (String, u32, u32, u64);

/// Parses a task id or raises `ValueError` naming the bad input (shortened if huge).
pub(crate) fn parse_uuid(text: &str) -> PyResult<u128> {
    uuid128::parse(text).map_err(|err| {
        let shown: String = text.chars().take(64).collect();
        PyValueError::new_err(format!("invalid task uuid {shown:?}: {err}"))
    })
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn route_tuple(route: Route) -> (u32, u32, u64) {
    (route.node, route.owner, route.accessed_ms)
}

fn format_all(keys: Vec<u128>) -> Vec<String> {
    keys.into_iter().map(uuid128::format).collect()
}

#[pyclass(name = "RouteTable", module = "clusterodm._native")]
pub struct PyRouteTable {
    table: RouteTable,
}

#[pymethods]
impl PyRouteTable {
    #[new]
    fn new() -> Self {
        Self {
            table: RouteTable::new(),
        }
    }

    fn insert(
        &mut self,
        uuid: &str,
        node_id: u32,
        owner_id: u32,
        accessed_ms: u64,
    ) -> PyResult<()> {
        let key = parse_uuid(uuid)?;
        self.table.insert(
            key,
            Route {
                node: node_id,
                owner: owner_id,
                accessed_ms,
            },
        );
        Ok(())
    }

    #[pyo3(signature = (uuid, now_ms=None))]
    fn get(&mut self, uuid: &str, now_ms: Option<u64>) -> PyResult<Option<(u32, u32, u64)>> {
        let key = parse_uuid(uuid)?;
        let now = now_ms.unwrap_or_else(wall_clock_ms);
        Ok(self.table.get(key, now).map(route_tuple))
    }

    fn peek(&self, uuid: &str) -> PyResult<Option<(u32, u32, u64)>> {
        Ok(self.table.peek(parse_uuid(uuid)?).map(route_tuple))
    }

    fn remove(&mut self, uuid: &str) -> PyResult<bool> {
        Ok(self.table.remove(parse_uuid(uuid)?).is_some())
    }

    fn remove_node(&mut self, node_id: u32) -> Vec<String> {
        format_all(self.table.remove_node(node_id))
    }

    fn by_node(&self, node_id: u32) -> Vec<String> {
        format_all(self.table.by_node(node_id))
    }

    fn by_owner(&self, owner_id: u32) -> Vec<String> {
        format_all(self.table.by_owner(owner_id))
    }

    fn expire(&mut self, cutoff_ms: u64) -> Vec<String> {
        format_all(self.table.expire(cutoff_ms))
    }

    fn export(&self) -> Vec<ExportRow> {
        self.table
            .iter()
            .map(|(key, r)| (uuid128::format(key), r.node, r.owner, r.accessed_ms))
            .collect()
    }

    /// All-or-nothing: every row is converted and every uuid parsed before the first insert.
    fn load(&mut self, entries: Vec<ExportRow>) -> PyResult<()> {
        let parsed = entries
            .iter()
            .map(|(uuid, node, owner, accessed_ms)| {
                Ok((
                    parse_uuid(uuid)?,
                    Route {
                        node: *node,
                        owner: *owner,
                        accessed_ms: *accessed_ms,
                    },
                ))
            })
            .collect::<PyResult<Vec<(u128, Route)>>>()?;
        self.table.extend(parsed);
        Ok(())
    }

    fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }

    fn __len__(&self) -> usize {
        self.table.len()
    }

    fn __contains__(&self, uuid: &Bound<'_, PyAny>) -> bool {
        uuid.extract::<&str>()
            .ok()
            .and_then(|text| uuid128::parse(text).ok())
            .is_some_and(|key| self.table.contains(key))
    }

    fn __repr__(&self) -> String {
        format!("<RouteTable len={}>", self.table.len())
    }
}
