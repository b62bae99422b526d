//! Helpers shared by the scale and space tests (each test binary uses
//! some of them).
#![allow(dead_code)]

use std::path::Path;

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Entries in `/proc/self/fd` (0 where there is no procfs).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident set size in KiB (0 where there is no procfs).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Peak resident set size in KiB (0 where there is no procfs).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// A KiB figure of `/proc/self/status` (`field` with its colon), or 0.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Calls `f` with the path and metadata of every entry under `dir`
/// (recursively; directories too).
pub fn walk(dir: &Path, mut f: impl FnMut(&Path, &std::fs::Metadata)) -> std::io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let meta = e.metadata()?;
            f(&e.path(), &meta);
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// Bytes of the files under `dir` (recursively) that `keep` accepts.
pub fn file_bytes(dir: &Path, keep: impl Fn(&Path) -> bool) -> u64 {
    let mut total = 0;
    walk(dir, |path, meta| {
        if !meta.is_dir() && keep(path) {
            total += meta.len();
        }
    })
    .expect("walk");
    total
}

/// Bytes of disk the files and directories under `dir` take (allocated
/// blocks, like `du`).
pub fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    walk(dir, |_, meta| total += meta.blocks() * 512)?;
    Ok(total)
}
