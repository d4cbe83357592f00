//! PyO3 glue for `clusterodm._native`. The logic lives in plain Rust modules.

pub mod multipart;
pub mod ranking;
pub mod routes;
pub mod uuid128;

mod py_multipart;
mod py_ranking;
mod py_routes;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<py_routes::PyRouteTable>()?;
    m.add_class::<py_ranking::PyNodeBoard>()?;
    m.add_class::<py_multipart::PyMultipartScanner>()?;
    m.add_function(wrap_pyfunction!(py_ranking::rank_nodes, m)?)?;
    Ok(())
}
