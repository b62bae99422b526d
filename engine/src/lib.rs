//! kalamdb-lsm: the pure-Rust LSM-tree storage engine behind `kalamdb-store`.
//!
//! This crate is being built in stages (see the project's issues and
//! `docs/DESIGN.md`). It currently holds no public API: the Foundation stage
//! only lays out the workspace. The write path (Fs seam, WAL with group commit,
//! memtables, recovery) lands next.
