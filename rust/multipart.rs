//! Streaming multipart/form-data scanner: finds part boundaries in chunks as they arrive.
//!
//! It never copies part bodies: a body byte is reported as a range of the chunk being fed, except
//! the few bytes held back at a chunk's end because they might start a delimiter (reported with the
//! next chunk, once that is settled). Header blocks are handed over raw; parsing them (per part, not
//! per byte) is the caller's business.

use memchr::memmem::Finder;

/// Longest boundary accepted: RFC 2046 allows 70 characters; some clients go a little further.
pub const MAX_BOUNDARY: usize = 200;
/// Longest header block of one part; more is a malformed (or hostile) body.
pub const MAX_HEADERS: usize = 16 << 10;
/// Spaces or tabs tolerated between a boundary and its line end (RFC 2046 transport padding).
const MAX_PADDING: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A part starts; its raw header block (no final blank line).
    Headers(Vec<u8>),
    /// Body bytes `start..end` of the chunk just fed.
    Data(usize, usize),
    /// Body bytes held back from an earlier chunk (a delimiter did not start there after all).
    Held(Vec<u8>),
    /// The current part's body ended.
    PartEnd,
    /// The closing delimiter: anything after it is ignored.
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub struct MultipartError(pub String);

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Preamble,
    BoundaryLine,
    Headers,
    Body,
    Epilogue,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Preamble => "preamble",
            State::BoundaryLine => "boundary",
            State::Headers => "headers",
            State::Body => "body",
            State::Epilogue => "done",
        }
    }
}

pub struct Scanner {
    /// `\r\n--boundary`: the line end before a boundary belongs to it (RFC 2046).
    delimiter: Vec<u8>,
    finder: Finder<'static>,
    state: State,
    /// Bytes at the end of the last chunk that may begin a delimiter.
    held: Vec<u8>,
    /// The boundary line's tail or a header block, while it is being collected.
    line: Vec<u8>,
}

impl Scanner {
    pub fn new(boundary: &[u8]) -> Result<Self, MultipartError> {
        if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
            return Err(MultipartError(format!(
                "boundary must be 1 to {MAX_BOUNDARY} bytes long"
            )));
        }
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary);
        let finder = Finder::new(&delimiter).into_owned();
        Ok(Self {
            delimiter,
            finder,
            state: State::Preamble,
            // A body may open with its first boundary, without a line end before it.
            held: b"\r\n".to_vec(),
            line: Vec::new(),
        })
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Scan one chunk, appending what it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), MultipartError> {
        let mut pos = 0;
        while pos < chunk.len() {
            pos = match self.state {
                State::Preamble => match self.find_delimiter(chunk, pos, false, out) {
                    Some(after) => {
                        self.state = State::BoundaryLine;
                        after
                    }
                    None => chunk.len(),
                },
                State::Body => match self.find_delimiter(chunk, pos, true, out) {
                    Some(after) => {
                        out.push(Event::PartEnd);
                        self.state = State::BoundaryLine;
                        after
                    }
                    None => chunk.len(),
                },
                State::BoundaryLine => self.boundary_line(chunk, pos, out)?,
                State::Headers => self.headers(chunk, pos, out)?,
                State::Epilogue => chunk.len(),
            };
        }
        Ok(())
    }

    /// Look for the delimiter from `pos` (continuing bytes held from the last chunk); report the
    /// body bytes before it when `emit`. Returns the chunk offset just past the delimiter, or None
    /// when the chunk was used up without one (its possible delimiter start is then held).
    fn find_delimiter(
        &mut self,
        chunk: &[u8],
        pos: usize,
        emit: bool,
        out: &mut Vec<Event>,
    ) -> Option<usize> {
        let span = self.delimiter.len();
        let rest = &chunk[pos..];
        if !self.held.is_empty() {
            // A delimiter starting in the held bytes ends within the next `span - 1` bytes.
            let held_len = self.held.len();
            let take = rest.len().min(span - 1);
            let mut window = std::mem::take(&mut self.held);
            window.extend_from_slice(&rest[..take]);
            if let Some(at) = self.finder.find(&window) {
                if emit && at > 0 {
                    out.push(Event::Held(window[..at].to_vec()));
                }
                return Some(pos + at + span - held_len);
            }
            if take == rest.len() {
                // The whole chunk fit in the window: settle what can no longer start a delimiter.
                let keep = self.partial_start(&window);
                if emit && keep > 0 {
                    out.push(Event::Held(window[..keep].to_vec()));
                }
                self.held = window[keep..].to_vec();
                return None;
            }
            if emit {
                window.truncate(held_len);
                out.push(Event::Held(window));
            }
        }
        if let Some(at) = self.finder.find(rest) {
            if emit && at > 0 {
                out.push(Event::Data(pos, pos + at));
            }
            return Some(pos + at + span);
        }
        let keep = pos + self.partial_start(rest);
        if emit && keep > pos {
            out.push(Event::Data(pos, keep));
        }
        self.held = chunk[keep..].to_vec();
        None
    }

    /// First index from which `buf`'s tail is a proper prefix of the delimiter (`buf.len()` if none).
    fn partial_start(&self, buf: &[u8]) -> usize {
        let start = buf.len().saturating_sub(self.delimiter.len() - 1);
        (start..buf.len())
            .find(|&i| buf[i] == b'\r' && self.delimiter.starts_with(&buf[i..]))
            .unwrap_or(buf.len())
    }

    /// After a boundary: `--` closes the body, otherwise optional padding and a line end.
    fn boundary_line(
        &mut self,
        chunk: &[u8],
        mut pos: usize,
        out: &mut Vec<Event>,
    ) -> Result<usize, MultipartError> {
        while pos < chunk.len() {
            self.line.push(chunk[pos]);
            pos += 1;
            let line = self.line.as_slice();
            if line.starts_with(b"-") {
                match line {
                    b"-" => continue,
                    b"--" => {
                        self.line.clear();
                        self.state = State::Epilogue;
                        out.push(Event::Done);
                        return Ok(pos);
                    }
                    _ => return Err(malformed_boundary()),
                }
            }
            let body = trim_padding(line);
            match body {
                b"" | b"\r" if line.len() <= MAX_PADDING => continue,
                b"\r\n" => {
                    // Seed the header block with this line end: an empty block is then just `\r\n\r\n`.
                    self.line.clear();
                    self.line.extend_from_slice(b"\r\n");
                    self.state = State::Headers;
                    return Ok(pos);
                }
                _ => return Err(malformed_boundary()),
            }
        }
        Ok(pos)
    }

    /// Collect a part's header block up to its blank line.
    fn headers(
        &mut self,
        chunk: &[u8],
        pos: usize,
        out: &mut Vec<Event>,
    ) -> Result<usize, MultipartError> {
        let before = self.line.len();
        let take = (chunk.len() - pos).min(MAX_HEADERS + 4 - before.min(MAX_HEADERS + 4));
        self.line.extend_from_slice(&chunk[pos..pos + take]);
        let from = before.saturating_sub(3);
        if let Some(at) = memchr::memmem::find(&self.line[from..], b"\r\n\r\n") {
            let end = from + at;
            // `end` is 0 for an empty block (only the seeded line end precedes the blank line).
            out.push(Event::Headers(self.line[end.min(2)..end].to_vec()));
            self.line.clear();
            self.state = State::Body;
            return Ok(pos + end + 4 - before);
        }
        if self.line.len() >= MAX_HEADERS + 4 {
            return Err(MultipartError(format!(
                "part headers longer than {MAX_HEADERS} bytes"
            )));
        }
        Ok(pos + take)
    }
}

fn trim_padding(line: &[u8]) -> &[u8] {
    let skip = line
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &line[skip..]
}

fn malformed_boundary() -> MultipartError {
    MultipartError(
        "malformed boundary line (expected a line end or `--` after the boundary)".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part's raw header block and its body.
    type Part = (Vec<u8>, Vec<u8>);

    /// Feed `body` in pieces of `size` bytes; return (headers, body) per part and whether it closed.
    fn parse(body: &[u8], boundary: &[u8], size: usize) -> (Vec<Part>, bool) {
        let mut scanner = Scanner::new(boundary).unwrap();
        let mut parts: Vec<Part> = Vec::new();
        let mut done = false;
        for chunk in body.chunks(size.max(1)) {
            let mut events = Vec::new();
            scanner.feed(chunk, &mut events).unwrap();
            for event in events {
                match event {
                    Event::Headers(h) => parts.push((h, Vec::new())),
                    Event::Data(a, b) => {
                        parts.last_mut().unwrap().1.extend_from_slice(&chunk[a..b])
                    }
                    Event::Held(bytes) => parts.last_mut().unwrap().1.extend_from_slice(&bytes),
                    Event::PartEnd => {}
                    Event::Done => done = true,
                }
            }
        }
        (parts, done)
    }

    fn form(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = b"preamble text\r\n".to_vec();
        for (name, data) in parts {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\nepilogue").as_bytes());
        body
    }

    #[test]
    fn every_chunk_size_gives_the_same_parts() {
        let tricky: &[u8] = b"\r\n--bound\r\n--boun\r\r\n-\r\n--boundar";
        let body = form(
            "boundary",
            &[("a", b"hello"), ("b", tricky), ("c", b""), ("d", b"\r\n")],
        );
        for size in 1..body.len() + 1 {
            let (parts, done) = parse(&body, b"boundary", size);
            assert!(done, "size {size}");
            let bodies: Vec<&[u8]> = parts.iter().map(|(_, b)| b.as_slice()).collect();
            assert_eq!(
                bodies,
                vec![&b"hello"[..], tricky, b"", b"\r\n"],
                "size {size}"
            );
            assert_eq!(parts[0].0, b"Content-Disposition: form-data; name=\"a\"");
        }
    }

    #[test]
    fn a_body_may_open_with_its_boundary_and_parts_may_have_no_headers() {
        let body = b"--xy\r\n\r\nraw\r\n--xy--";
        for size in 1..body.len() + 1 {
            assert_eq!(
                parse(body, b"xy", size),
                (vec![(Vec::new(), b"raw".to_vec())], true)
            );
        }
    }

    #[test]
    fn big_chunks_report_ranges_not_copies() {
        let data = vec![7u8; 100_000];
        let body = form("b", &[("f", &data)]);
        let mut scanner = Scanner::new(b"b").unwrap();
        let mut events = Vec::new();
        scanner.feed(&body, &mut events).unwrap();
        assert!(events.iter().all(|e| !matches!(e, Event::Held(_))));
        let tail = b"\r\n--b--\r\nepilogue".len();
        let end = body.len() - tail;
        assert!(events.contains(&Event::Data(end - 100_000, end)));
    }

    #[test]
    fn padding_after_a_boundary_is_allowed() {
        let body = b"--b \t\r\nX: 1\r\n\r\nv\r\n--b--";
        assert_eq!(
            parse(body, b"b", 3),
            (vec![(b"X: 1".to_vec(), b"v".to_vec())], true)
        );
    }

    #[test]
    fn garbage_after_a_boundary_is_an_error() {
        for body in [&b"--bX\r\n"[..], b"--b-x", b"--b \r\r"] {
            let mut scanner = Scanner::new(b"b").unwrap();
            assert!(scanner.feed(body, &mut Vec::new()).is_err(), "{body:?}");
        }
    }

    #[test]
    fn oversized_headers_are_an_error() {
        let mut body = b"--b\r\n".to_vec();
        body.extend(std::iter::repeat(b'h').take(MAX_HEADERS + 10));
        let mut scanner = Scanner::new(b"b").unwrap();
        let result = body
            .chunks(1000)
            .try_for_each(|chunk| scanner.feed(chunk, &mut Vec::new()));
        assert!(result.is_err());
    }

    #[test]
    fn state_tells_where_a_truncated_body_stopped() {
        let mut scanner = Scanner::new(b"b").unwrap();
        scanner
            .feed(b"--b\r\nX: 1\r\n\r\npartial", &mut Vec::new())
            .unwrap();
        assert_eq!(scanner.state(), State::Body);
        assert_eq!(Scanner::new(b"b").unwrap().state().name(), "preamble");
    }

    #[test]
    fn bad_boundaries_are_refused() {
        assert!(Scanner::new(b"").is_err());
        assert!(Scanner::new(&[b'a'; MAX_BOUNDARY + 1]).is_err());
    }
}
