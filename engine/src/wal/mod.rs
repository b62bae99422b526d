//! The write-ahead log: record framing, reader, writer. One WAL is shared by
//! every partition; records are write batches (see [`crate::batch`]).
//! The byte format is specified in `docs/format/wal.md`.

pub mod format;
pub mod reader;
pub mod writer;
