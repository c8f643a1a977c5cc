//! JSON Lines in the canonical proto3 JSON mapping: what protobuf's JSON
//! printers produce in any language (lowerCamelCase names, int64 as strings,
//! enums by name, RFC 3339 timestamps). Original field names are accepted too.
//!
//! A line holds either a `TrainingExample` or a bare `Declaration`; the first
//! record decides which, and the rest of the file must follow it.

use std::io::{BufRead, Write};

use crate::domain::TrainingExample;
use crate::domain::validation::ReferenceData;
use crate::pb;
use crate::wire::{declaration_from_pb, training_example_from_pb};

use super::{IoError, ReadItem, RecordError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Example,
    Declaration,
}

/// Streaming reader; see the module docs.
pub struct JsonlReader<R> {
    input: R,
    reference: ReferenceData<'static>,
    line: u64,
    buf: String,
    kind: Option<LineKind>,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R, reference: ReferenceData<'static>) -> Self {
        Self {
            input,
            reference,
            line: 0,
            buf: String::new(),
            kind: None,
        }
    }

    fn parse(&mut self, text: &str) -> Result<TrainingExample, RecordError> {
        let line = self.line;
        let syntax = |e: serde_json::Error| RecordError::Syntax {
            line,
            message: e.to_string(),
        };
        let invalid = |source| RecordError::Invalid { line, source };
        let kind = match self.kind {
            Some(kind) => kind,
            None => {
                // Decide from the first record; a typo in it must not silently
                // switch the whole file to the other kind, so report the error of
                // the kind whose top-level keys the line uses.
                let kind = if serde_json::from_str::<pb::TrainingExample>(text).is_ok()
                    || text.contains("\"declaration\"")
                {
                    LineKind::Example
                } else {
                    LineKind::Declaration
                };
                self.kind = Some(kind);
                kind
            }
        };
        match kind {
            LineKind::Example => {
                let msg: pb::TrainingExample = serde_json::from_str(text).map_err(syntax)?;
                training_example_from_pb(msg, &self.reference).map_err(invalid)
            }
            LineKind::Declaration => {
                let msg: pb::Declaration = serde_json::from_str(text).map_err(syntax)?;
                let declaration = declaration_from_pb(msg, &self.reference).map_err(invalid)?;
                Ok(TrainingExample {
                    declaration,
                    result: None,
                    truth: None,
                })
            }
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        loop {
            self.buf.clear();
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(IoError::Io(e))),
            }
            self.line += 1;
            let text = std::mem::take(&mut self.buf);
            let trimmed = text.trim();
            if trimmed.is_empty() {
                self.buf = text;
                continue;
            }
            let line = self.line;
            let parsed = self.parse(trimmed).map(|example| (line, example));
            self.buf = text;
            return Some(Ok(parsed));
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
