//! JSON Lines in the canonical proto3 JSON mapping: what protobuf's JSON
//! printers produce in any language (lowerCamelCase names, int64 as strings,
//! enums by name, RFC 3339 timestamps). Original field names are accepted too.
//!
//! A line holds either a `TrainingExample` or a bare `Declaration`; the first
//! record decides which, and the rest of the file must follow it.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::Arc;

use crate::domain::TrainingExample;
use crate::domain::validation::ReferenceData;
use crate::pb;
use crate::wire::declaration::declaration_from_raw;
use crate::wire::inspection::training_example_from_parts;
use crate::wire::raw::{JsonText, Obj, RawDeclaration, RawExample, direct};
use crate::wire::{declaration_from_pb, training_example_from_pb};

use super::{IoError, Projection, RawRecord, RecordError};

/// What the lines of a file hold, decided by its first record that tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Example,
    Declaration,
}

impl LineKind {
    /// Decides from a record, when it can tell. A typo must not silently
    /// switch the whole file to the other kind, so a line that names a
    /// `declaration` key is an example even when it does not parse; a line
    /// that names neither that nor a declaration id (garbage) decides
    /// nothing, and the next line is asked.
    fn detect(text: &str) -> Option<LineKind> {
        if text.contains("\"declaration\"")
            || serde_json::from_str::<pb::TrainingExample>(text).is_ok()
        {
            Some(LineKind::Example)
        } else if text.contains("\"declarationId\"") || text.contains("\"declaration_id\"") {
            Some(LineKind::Declaration)
        } else {
            None
        }
    }
}

/// Parses and validates one line of a file of `kind`. The line is read
/// into the raw shape first, its text borrowed where it has no escapes (no
/// string per field): by [`direct`] when it is in the common form, else by
/// serde. A line that shape refuses (enums as numbers, `null`s, unknown
/// fields, bad JSON) is read again as the wire message, which accepts what
/// the proto3 JSON mapping allows and words the errors.
/// With [`Projection::Declarations`] an example's result and truth are
/// parsed (the line must still be a `TrainingExample`) but not checked.
pub fn decode_line(
    text: &str,
    line: u64,
    kind: LineKind,
    projection: Projection,
    reference: &ReferenceData<'static>,
) -> Result<TrainingExample, RecordError> {
    // The id is kept for a rejected line's report: a borrowed one costs a
    // copy of its address, not of its text.
    let invalid = |declaration_id: Option<JsonText<'_>>, source| RecordError::Invalid {
        line,
        declaration_id: declaration_id
            .map(|id| id.0.into_owned())
            .unwrap_or_default(),
        source,
    };
    match kind {
        LineKind::Example => {
            let Some(RawExample {
                declaration,
                mut result,
                mut truth,
            }) = direct::example(text).or_else(|| {
                serde_json::from_str::<Obj<RawExample<'_>>>(text)
                    .ok()
                    .map(|Obj(raw)| raw)
            })
            else {
                return decode_wire_line(text, line, kind, projection, reference);
            };
            if projection == Projection::Declarations {
                (result, truth) = (None, None);
            }
            let id = declaration.as_ref().map(|d| d.declaration_id.clone());
            training_example_from_parts(declaration, result, truth, reference)
                .map_err(|e| invalid(id, e))
        }
        LineKind::Declaration => {
            let Some(raw) = direct::declaration(text).or_else(|| {
                serde_json::from_str::<Obj<RawDeclaration<JsonText<'_>>>>(text)
                    .ok()
                    .map(|Obj(raw)| raw)
            }) else {
                return decode_wire_line(text, line, kind, projection, reference);
            };
            let id = raw.declaration_id.clone();
            let declaration =
                declaration_from_raw(raw, reference).map_err(|e| invalid(Some(id), e))?;
            Ok(TrainingExample {
                declaration,
                result: None,
                truth: None,
            })
        }
    }
}

/// Parses and validates one line as the wire message. With
/// [`Projection::Declarations`] an example's result and truth are parsed
/// but not checked, as [`decode_line`] does.
pub fn decode_wire_line(
    text: &str,
    line: u64,
    kind: LineKind,
    projection: Projection,
    reference: &ReferenceData<'static>,
) -> Result<TrainingExample, RecordError> {
    let syntax = |e: serde_json::Error| RecordError::Syntax {
        line,
        message: e.to_string(),
    };
    let invalid = |declaration_id, source| RecordError::Invalid {
        line,
        declaration_id,
        source,
    };
    match kind {
        LineKind::Example => {
            let mut msg: pb::TrainingExample = serde_json::from_str(text).map_err(syntax)?;
            if projection == Projection::Declarations {
                (msg.result, msg.truth) = (None, None);
            }
            // Kept for the error only (a short string; the message moves on).
            let id = msg
                .declaration
                .as_ref()
                .map(|d| d.declaration_id.clone())
                .unwrap_or_default();
            training_example_from_pb(msg, reference).map_err(|e| invalid(id, e))
        }
        LineKind::Declaration => {
            let msg: pb::Declaration = serde_json::from_str(text).map_err(syntax)?;
            let id = msg.declaration_id.clone();
            let declaration = declaration_from_pb(msg, reference).map_err(|e| invalid(id, e))?;
            Ok(TrainingExample {
                declaration,
                result: None,
                truth: None,
            })
        }
    }
}

/// A line's text, held in the block of the file it was read with: cutting
/// a file into lines copies nothing, and the lines go to other threads to
/// be parsed.
#[derive(Debug, Clone)]
pub struct LineText {
    block: Arc<String>,
    start: usize,
    end: usize,
}

impl LineText {
    pub fn as_str(&self) -> &str {
        &self.block[self.start..self.end]
    }
}

/// How much of the file is read at once (then up to the end of a line).
const BLOCK: usize = 1 << 20;

/// Blocks kept for reuse while their lines are decoded: a batch of
/// declarations spans a few dozen.
const MAX_EARLIER_BLOCKS: usize = 64;

/// Cuts a file into non-empty lines without parsing them (see [`RawRecord`]).
/// It reads blocks of about a megabyte and checks each is UTF-8 once: a
/// string of its own for every line (allocated, copied, regrown when the
/// line was longer than the last) cost about 8 % of decoding's CPU.
pub struct JsonlFramer<R> {
    input: R,
    projection: Projection,
    line: u64,
    kind: Option<LineKind>,
    /// The block being cut, and where its next line starts.
    block: Arc<String>,
    at: usize,
    /// Blocks cut before, oldest first, whose lines may still be decoding:
    /// one whose lines are all dropped is read into again. A fresh
    /// megabyte each time was mapped and zeroed by the kernel (a few per
    /// cent of decoding's CPU in `perf`).
    earlier: VecDeque<Arc<String>>,
    /// The lines of a block that is not all UTF-8, checked one by one.
    checked: VecDeque<Result<LineText, RecordError>>,
    /// [`BLOCK`]; tests cut with small blocks to cross their edges.
    block_size: usize,
}

impl<R: BufRead> JsonlFramer<R> {
    pub fn new(input: R, projection: Projection) -> Self {
        Self {
            input,
            projection,
            line: 0,
            kind: None,
            block: Arc::new(String::new()),
            at: 0,
            earlier: VecDeque::new(),
            checked: VecDeque::new(),
            block_size: BLOCK,
        }
    }

    /// An empty buffer for the next block: the oldest block's, when none of
    /// its lines is held any more, or a new one.
    fn free_buffer(&mut self) -> Vec<u8> {
        let capacity = self.block_size + (self.block_size >> 4);
        let done = std::mem::replace(&mut self.block, Arc::new(String::new()));
        if done.capacity() > 0 {
            self.earlier.push_back(done);
        }
        if let Some(oldest) = self.earlier.front_mut()
            && let Some(text) = Arc::get_mut(oldest)
        {
            let mut bytes = std::mem::take(text).into_bytes();
            self.earlier.pop_front();
            bytes.clear();
            bytes.reserve(capacity);
            return bytes;
        }
        // Lines held long after their block (a slow consumer) are not
        // waited for: the block is let go and freed with its last line.
        if self.earlier.len() > MAX_EARLIER_BLOCKS {
            self.earlier.pop_front();
        }
        Vec::with_capacity(capacity)
    }

    /// Reads the next block: about [`BLOCK`] bytes, then to the end of the
    /// line they stop in. `false` at the end of the input.
    fn read_block(&mut self) -> std::io::Result<bool> {
        let mut bytes = self.free_buffer();
        while bytes.len() < self.block_size {
            let available = self.input.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let take = available.len().min(self.block_size - bytes.len());
            bytes.extend_from_slice(&available[..take]);
            self.input.consume(take);
        }
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            self.input.read_until(b'\n', &mut bytes)?;
        }
        if bytes.is_empty() {
            return Ok(false);
        }
        match String::from_utf8(bytes) {
            Ok(text) => {
                self.block = Arc::new(text);
                self.at = 0;
            }
            // Rare: the good lines are kept one by one, the bad ones reported.
            Err(e) => {
                self.block = Arc::new(String::new());
                self.at = 0;
                let bytes = e.into_bytes();
                for (line, raw) in (self.line + 1..).zip(bytes.split_inclusive(|b| *b == b'\n')) {
                    self.checked.push_back(match std::str::from_utf8(raw) {
                        Ok(text) => Ok(LineText {
                            end: text.len(),
                            block: Arc::new(text.to_owned()),
                            start: 0,
                        }),
                        Err(_) => Err(RecordError::Syntax {
                            line,
                            message: "line is not valid UTF-8".into(),
                        }),
                    });
                }
            }
        }
        Ok(true)
    }

    /// The next line as read, numbered, before trimming (or a line that is
    /// not UTF-8).
    fn next_line(&mut self) -> Option<Result<Result<LineText, RecordError>, IoError>> {
        loop {
            if let Some(checked) = self.checked.pop_front() {
                self.line += 1;
                return Some(Ok(checked));
            }
            if self.at < self.block.len() {
                let rest = &self.block[self.at..];
                let len = memchr::memchr(b'\n', rest.as_bytes()).map_or(rest.len(), |n| n + 1);
                let text = LineText {
                    block: Arc::clone(&self.block),
                    start: self.at,
                    end: self.at + len,
                };
                self.at += len;
                self.line += 1;
                return Some(Ok(Ok(text)));
            }
            match self.read_block() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => return Some(Err(IoError::Io(e))),
            }
        }
    }
}

impl<R: BufRead> Iterator for JsonlFramer<R> {
    type Item = Result<RawRecord, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut text = match self.next_line()? {
                Ok(Ok(text)) => text,
                Ok(Err(bad)) => return Some(Ok(RawRecord::Bad(bad))),
                Err(e) => return Some(Err(e)),
            };
            let line = text.as_str();
            let (leading, len) = (line.len() - line.trim_start().len(), line.trim().len());
            if len == 0 {
                continue;
            }
            text.start += leading;
            text.end = text.start + len;
            let kind = match self.kind {
                Some(kind) => kind,
                None => match LineKind::detect(text.as_str()) {
                    Some(kind) => *self.kind.insert(kind),
                    // Undecided: this line fails to parse as either.
                    None => LineKind::Declaration,
                },
            };
            return Some(Ok(RawRecord::Json {
                line: self.line,
                text,
                kind,
                projection: self.projection,
            }));
        }
    }
}

/// Writes one example per line.
pub struct JsonlWriter<W> {
    output: W,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(output: W) -> Self {
        Self { output }
    }

    pub fn write(&mut self, example: &TrainingExample) -> Result<(), IoError> {
        self.write_pb(&pb::TrainingExample::from(example))
    }

    pub fn write_pb(&mut self, example: &pb::TrainingExample) -> Result<(), IoError> {
        serde_json::to_writer(&mut self.output, example)?;
        self.output.write_all(b"\n")?;
        Ok(())
    }

    /// Writes a bare declaration line.
    pub fn write_declaration(&mut self, declaration: &pb::Declaration) -> Result<(), IoError> {
        serde_json::to_writer(&mut self.output, declaration)?;
        self.output.write_all(b"\n")?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), IoError> {
        self.output.flush()?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the framer yields, as (line, text) or (line, the error).
    fn cut(bytes: &[u8], block_size: usize) -> Vec<(u64, Result<String, String>)> {
        let mut framer = JsonlFramer::new(bytes, Projection::Examples);
        framer.block_size = block_size;
        lines_of(framer)
    }

    fn lines_of<R: BufRead>(framer: JsonlFramer<R>) -> Vec<(u64, Result<String, String>)> {
        framer
            .map(|raw| match raw.unwrap() {
                RawRecord::Json { line, text, .. } => (line, Ok(text.as_str().to_owned())),
                RawRecord::Bad(e) => (e.line(), Err(e.to_string())),
                RawRecord::Rows { .. } | RawRecord::ArrowRows { .. } => {
                    unreachable!("a JSON framer cuts JSON lines")
                }
            })
            .collect()
    }

    /// What the framer yields from a stream that hands out at most seven
    /// bytes a read, as a pipe may.
    fn cut_trickled(bytes: &[u8], block_size: usize) -> Vec<(u64, Result<String, String>)> {
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = std::io::BufReader::with_capacity(16, Trickle(bytes));
        let mut framer = JsonlFramer::new(input, Projection::Examples);
        framer.block_size = block_size;
        lines_of(framer)
    }

    /// The definition: each line on its own, numbered from 1, trimmed,
    /// empty ones skipped, those that are not UTF-8 reported.
    fn by_line(bytes: &[u8]) -> Vec<(u64, Result<String, String>)> {
        bytes
            .split_inclusive(|b| *b == b'\n')
            .zip(1u64..)
            .filter_map(|(raw, line)| match std::str::from_utf8(raw) {
                Ok(text) if text.trim().is_empty() => None,
                Ok(text) => Some((line, Ok(text.trim().to_owned()))),
                Err(_) => Some((
                    line,
                    Err(RecordError::Syntax {
                        line,
                        message: "line is not valid UTF-8".into(),
                    }
                    .to_string()),
                )),
            })
            .collect()
    }

    #[test]
    fn blocks_cut_the_lines_one_at_a_time_would() {
        let mut bytes = Vec::new();
        for i in 0..200u32 {
            match i % 7 {
                0 => bytes.extend_from_slice(b"\n"),
                1 => bytes.extend_from_slice(b"  {\"declarationId\": \"a\"}  \r\n"),
                2 => bytes.extend_from_slice(b"{\"declarationId\":\"\xe2\x82\xac \xff\"}\n"),
                3 => {
                    bytes.extend_from_slice("{\"declarationId\":\"\u{20ac}\u{4e2d}\"}\n".as_bytes())
                }
                4 => bytes.extend_from_slice(b" \t \n"),
                _ => bytes.extend_from_slice(format!("{{\"declarationId\":\"{i}\"}}\n").as_bytes()),
            }
        }
        // The last line without its newline.
        bytes.extend_from_slice(b"{\"declarationId\":\"last\"}");
        let expected = by_line(&bytes);
        assert!(expected.iter().any(|(_, r)| r.is_err()));
        for block_size in [1, 5, 64, 333, BLOCK] {
            assert_eq!(cut(&bytes, block_size), expected, "block of {block_size}");
            assert_eq!(
                cut_trickled(&bytes, block_size),
                expected,
                "short reads, block of {block_size}"
            );
            // A file that is UTF-8 throughout takes the block path only.
            let good: Vec<u8> = bytes
                .split_inclusive(|b| *b == b'\n')
                .filter(|l| std::str::from_utf8(l).is_ok())
                .flatten()
                .copied()
                .collect();
            assert_eq!(
                cut(&good, block_size),
                by_line(&good),
                "block of {block_size}"
            );
        }
    }
}
