//! Python face of [`crate::multipart::Scanner`]: events as small tuples, a malformed body as a last
//! ERROR event (so what came before it is still acted on).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::multipart::{Event, Scanner};

const HEADERS: u8 = 0;
const DATA: u8 = 1;
const HELD: u8 = 2;
const PART_END: u8 = 3;
const DONE: u8 = 4;
const ERROR: u8 = 5;

#[pyclass(name = "MultipartScanner", module = "clusterodm._native")]
pub struct PyMultipartScanner {
    /// Boxed: the SIMD searcher inside needs 32-byte alignment, which Python's object memory
    /// (16-byte aligned) does not give a pyclass's fields.
    scanner: Box<Scanner>,
    events: Vec<Event>,
    /// Set once the body proved malformed: it cannot be scanned any further.
    failed: Option<String>,
}

#[pymethods]
impl PyMultipartScanner {
    #[classattr]
    const HEADERS: u8 = HEADERS;
    #[classattr]
    const DATA: u8 = DATA;
    #[classattr]
    const HELD: u8 = HELD;
    #[classattr]
    const PART_END: u8 = PART_END;
    #[classattr]
    const DONE: u8 = DONE;
    #[classattr]
    const ERROR: u8 = ERROR;

    #[new]
    fn new(boundary: &[u8]) -> PyResult<Self> {
        let scanner = Box::new(Scanner::new(boundary).map_err(|e| PyValueError::new_err(e.0))?);
        Ok(Self {
            scanner,
            events: Vec::new(),
            failed: None,
        })
    }

    /// Scan one chunk; returns `(kind, a, b)` tuples (see the stub for their meaning). A malformed
    /// body ends the list with an ERROR event, after the events of everything before the fault.
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyList>> {
        if let Some(message) = &self.failed {
            return Err(PyValueError::new_err(format!(
                "the body was malformed: {message}"
            )));
        }
        self.events.clear();
        let outcome = self.scanner.feed(chunk, &mut self.events);
        let list = PyList::empty(py);
        for event in self.events.drain(..) {
            let item = match event {
                Event::Headers(raw) => {
                    (HEADERS, PyBytes::new(py, &raw).into_any(), 0usize).into_pyobject(py)?
                }
                Event::Data(start, end) => (DATA, start, end).into_pyobject(py)?,
                Event::Held(raw) => {
                    (HELD, PyBytes::new(py, &raw).into_any(), 0usize).into_pyobject(py)?
                }
                Event::PartEnd => (PART_END, 0usize, 0usize).into_pyobject(py)?,
                Event::Done => (DONE, 0usize, 0usize).into_pyobject(py)?,
            };
            let tuple: Bound<'py, PyTuple> = item;
            list.append(tuple)?;
        }
        if let Err(error) = outcome {
            list.append((ERROR, error.0.as_str(), 0usize))?;
            self.failed = Some(error.0);
        }
        Ok(list)
    }

    /// Where the body stopped: "preamble", "boundary", "headers", "body" or "done".
    #[getter]
    fn state(&self) -> &'static str {
        self.scanner.state().name()
    }
}
