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

use super::{IoError, RawRecord, RecordError};

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

/// Parses and validates one line of a file of `kind`.
pub fn decode_line(
    text: &str,
    line: u64,
    kind: LineKind,
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
            let msg: pb::TrainingExample = serde_json::from_str(text).map_err(syntax)?;
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

/// Cuts a file into non-empty lines without parsing them (see [`RawRecord`]).
pub struct JsonlFramer<R> {
    input: R,
    line: u64,
    kind: Option<LineKind>,
    /// Bytes of the last line read.
    last_len: usize,
}

impl<R: BufRead> JsonlFramer<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            kind: None,
            last_len: 0,
        }
    }
}

impl<R: BufRead> Iterator for JsonlFramer<R> {
    type Item = Result<RawRecord, IoError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Sized as the last line was: growing a 2 KB line from empty
            // copied it eight times.
            let mut bytes = Vec::with_capacity(self.last_len + 64);
            match self.input.read_until(b'\n', &mut bytes) {
                Ok(0) => return None,
                Ok(n) => self.last_len = n,
                Err(e) => return Some(Err(IoError::Io(e))),
            }
            self.line += 1;
            let Ok(mut text) = String::from_utf8(bytes) else {
                return Some(Ok(RawRecord::Bad(RecordError::Syntax {
                    line: self.line,
                    message: "line is not valid UTF-8".into(),
                })));
            };
            text.truncate(text.trim_end().len());
            if text.starts_with(char::is_whitespace) {
                text = text.trim_start().to_owned();
            }
            if text.is_empty() {
                continue;
            }
            let kind = match self.kind {
                Some(kind) => kind,
                None => match LineKind::detect(&text) {
                    Some(kind) => *self.kind.insert(kind),
                    // Undecided: this line fails to parse as either.
                    None => LineKind::Declaration,
                },
            };
            return Some(Ok(RawRecord::Json {
                line: self.line,
                text,
                kind,
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
