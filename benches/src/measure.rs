//! What a cell measures besides time: a latency histogram, CPU time, bytes
//! sent to storage, peak anonymous memory and bytes on disk. Linux only
//! (`/proc/self`); elsewhere the probes report nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Sub-buckets per power of two: 32, so a percentile is within ~3%.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Covers up to 2^40 ns (about 18 minutes).
const BUCKETS: usize = ((40 - SUB_BITS + 1) as usize) * SUB as usize;

/// A log-linear histogram of nanoseconds, fixed size (about 9 KiB), so that
/// recording five million latencies does not show up in the memory figures.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    fn index(ns: u64) -> usize {
        if ns < SUB {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros();
        let shift = exp - SUB_BITS;
        let idx = (shift as u64 + 1) * SUB + ((ns >> shift) & (SUB - 1));
        (idx as usize).min(BUCKETS - 1)
    }

    /// The largest value that lands in bucket `idx`.
    fn upper(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < SUB {
            return idx;
        }
        let shift = idx / SUB - 1;
        let sub = idx % SUB;
        ((SUB + sub + 1) << shift) - 1
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1) in microseconds; `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper(i) as f64 / 1000.0);
            }
        }
        None
    }
}

/// CPU seconds (user + system, all threads) used by this process so far.
pub fn cpu_secs() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks (USER_HZ, 100 on
    // Linux). The name in field 2 may contain spaces: count after its ')'.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Bytes this process has caused to be sent to the storage layer
/// (`write_bytes` of /proc/self/io, all threads).
pub fn io_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` line of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Anonymous resident memory now (heap, stacks; not file pages or mmaps of
/// files).
pub fn rss_anon() -> Option<u64> {
    status_bytes("RssAnon:")
}

/// Peak resident memory, file-backed pages included (`VmHWM`).
pub fn vm_hwm() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// Samples [`rss_anon`] every 20 ms on a thread of its own and keeps the peak:
/// the kernel keeps a peak only for the total (`VmHWM`), which counts pages of
/// memory-mapped files too.
pub struct PeakAnon {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakAnon {
    /// Starts sampling.
    pub fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss_anon().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(now) = rss_anon() {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        PeakAnon {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(now) = rss_anon() {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Calls `f` with the path and metadata of every file under `path`
/// (recursively), skipping what cannot be read (files come and go while a
/// backend works).
fn for_each_file(path: &Path, mut f: impl FnMut(PathBuf, &std::fs::Metadata)) {
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                f(entry.path(), &meta);
            }
        }
    }
}

/// Bytes allocated on disk under `path` (blocks, not apparent lengths:
/// preallocated and sparse files count what they occupy).
pub fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for_each_file(path, |_, meta| total += meta.blocks() * 512);
    total
}

/// A fingerprint of the files under `path` (names, lengths, modification
/// times): it stops changing once background flushes and compactions stop.
pub fn dir_fingerprint(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    for_each_file(path, |p, meta| {
        files.push((p, meta.len(), meta.mtime_nsec(), meta.mtime()));
    });
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut h);
    h.finish()
}

/// Copies the directory tree `from` to `to` (which must not exist).
///
/// # Errors
/// I/O errors.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    link_or_copy_dir(from, to, &|_| false).map(|_| ())
}

/// What [`link_or_copy_dir`] did, in bytes (apparent lengths).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Files hard-linked (and read once, so their pages are cached as a
    /// fresh copy's would be).
    pub linked: u64,
    /// Files copied.
    pub copied: u64,
}

/// Makes `to` (which must not exist) a copy of the tree `from`, hard-linking
/// the files `immutable` accepts instead of copying them (a copy where a link
/// cannot be made, e.g. across file systems). Only files no program ever
/// changes in place may be linked: the copy and the original share them. The
/// linked files are read once, so that their pages are in the page cache as
/// a copy's would be, but without a copy's writeback running during the
/// cell.
///
/// # Errors
/// I/O errors.
pub fn link_or_copy_dir(
    from: &Path,
    to: &Path,
    immutable: &dyn Fn(&Path) -> bool,
) -> std::io::Result<Placed> {
    let mut placed = Placed::default();
    place(from, to, immutable, &mut placed)?;
    Ok(placed)
}

fn place(
    from: &Path,
    to: &Path,
    immutable: &dyn Fn(&Path) -> bool,
    placed: &mut Placed,
) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            place(&source, &target, immutable, placed)?;
        } else if immutable(&source) && std::fs::hard_link(&source, &target).is_ok() {
            placed.linked += warm(&target)?;
        } else {
            placed.copied += std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// Reads the file at `path` to the end (into the page cache); its length.
/// The buffer is small (64 KiB, from the heap), so the cell's peak anonymous
/// memory does not notice it.
fn warm(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5).unwrap_or(0.0);
        let p99 = h.quantile_us(0.99).unwrap_or(0.0);
        assert!((490.0..=520.0).contains(&p50), "p50 {p50}");
        assert!((980.0..=1030.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn link_or_copy_links_only_what_it_is_told_and_copies_the_rest() -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let root = std::env::temp_dir().join(format!("kb-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (from, to) = (root.join("base"), root.join("cell"));
        std::fs::create_dir_all(from.join("sub"))?;
        std::fs::write(from.join("000001.sst"), vec![7u8; 3000])?;
        std::fs::write(from.join("sub/000002.sst"), b"table")?;
        std::fs::write(from.join("000003.wal"), b"log")?;
        let before = dir_fingerprint(&from);
        let placed = link_or_copy_dir(&from, &to, &|p| p.extension().is_some_and(|e| e == "sst"))?;
        assert_eq!(
            placed,
            Placed {
                linked: 3005,
                copied: 3
            }
        );
        let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino());
        assert_eq!(ino(&from.join("000001.sst"))?, ino(&to.join("000001.sst"))?);
        assert_eq!(
            ino(&from.join("sub/000002.sst"))?,
            ino(&to.join("sub/000002.sst"))?
        );
        assert_ne!(ino(&from.join("000003.wal"))?, ino(&to.join("000003.wal"))?);
        // Writing the copied file, or removing a link, leaves the base alone.
        std::fs::write(to.join("000003.wal"), b"log and more")?;
        std::fs::remove_file(to.join("000001.sst"))?;
        assert_eq!(std::fs::read(from.join("000003.wal"))?, b"log");
        assert_eq!(dir_fingerprint(&from), before);
        // Changing a linked file in place shows in the base's fingerprint.
        std::fs::write(to.join("sub/000002.sst"), b"changed!")?;
        assert_ne!(dir_fingerprint(&from), before);
        // copy_dir links nothing.
        let copy = root.join("copy");
        copy_dir(&from, &copy)?;
        assert_ne!(
            ino(&from.join("000001.sst"))?,
            ino(&copy.join("000001.sst"))?
        );
        std::fs::remove_dir_all(&root)
    }

    #[test]
    fn bucket_bounds_cover_their_values() {
        for ns in [0u64, 1, 31, 32, 33, 63, 64, 1000, 123_456, 1 << 39] {
            let i = Histogram::index(ns);
            assert!(Histogram::upper(i) >= ns, "{ns}");
            if i > 0 {
                assert!(Histogram::upper(i - 1) < ns, "{ns}");
            }
        }
    }
}
