//! The simulated directory tree: inodes, current vs durable directory
//! entries, and path resolution.
//!
//! Invariants: inode [`ROOT`] always exists and is a directory; every inode
//! named by a directory entry (current or durable) exists until the next
//! crash, which drops the inodes no longer reachable.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path};

/// An inode number; never reused.
pub(super) type Ino = u64;

/// The root directory's inode. Always present and always durable.
pub(super) const ROOT: Ino = 0;

/// A regular file: its bytes and how many of them are durable.
#[derive(Debug, Default)]
pub(super) struct FileNode {
    /// Current contents, as a reader sees them.
    pub(super) data: Vec<u8>,
    /// `data[..synced_len]` survives a crash. Writes only append and
    /// truncation is durable, so the durable contents are always a prefix.
    pub(super) synced_len: usize,
}

/// A directory: the entries a reader sees now and the entries as of its last
/// `sync_dir` (what a crash reverts to).
#[derive(Debug, Default)]
pub(super) struct DirNode {
    pub(super) current: BTreeMap<String, Ino>,
    pub(super) durable: BTreeMap<String, Ino>,
}

/// An inode.
#[derive(Debug)]
pub(super) enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// All inodes.
#[derive(Debug)]
pub(super) struct Tree {
    pub(super) nodes: BTreeMap<Ino, Node>,
    next: Ino,
}

/// An error of `kind` naming `path`.
pub(super) fn error(kind: io::ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("{}: {what}", path.display()))
}

/// The normalised names along `path`: root, prefix and `.` are dropped, `..`
/// pops. Relative and absolute paths name the same entries.
fn names(path: &Path) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out
                .push(name.to_str().ok_or_else(|| {
                    error(io::ErrorKind::InvalidInput, path, "name is not UTF-8")
                })?),
        }
    }
    Ok(out)
}

impl Tree {
    /// An empty tree holding only the root directory.
    pub(super) fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Self {
            nodes,
            next: ROOT + 1,
        }
    }

    fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn dir(&self, ino: Ino) -> Option<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Option<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn is_dir(&self, ino: Ino) -> bool {
        self.dir(ino).is_some()
    }

    /// The file inode `ino`.
    pub(super) fn file(&self, ino: Ino) -> io::Result<&FileNode> {
        match self.nodes.get(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(io::Error::other(format!("inode {ino} is not a file"))),
        }
    }

    /// The file inode `ino`, mutably.
    pub(super) fn file_mut(&mut self, ino: Ino) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(io::Error::other(format!("inode {ino} is not a file"))),
        }
    }

    /// Resolves `names` from the root through current (or durable) entries.
    fn walk(&self, names: &[&str], durable: bool) -> Option<Ino> {
        let mut ino = ROOT;
        for name in names {
            let dir = self.dir(ino)?;
            let entries = if durable { &dir.durable } else { &dir.current };
            ino = *entries.get(*name)?;
        }
        Some(ino)
    }

    /// The inode `path` names now, if any.
    pub(super) fn lookup(&self, path: &Path) -> io::Result<Option<Ino>> {
        Ok(self.walk(&names(path)?, false))
    }

    /// Whether a crash now would leave `path` naming what it names now
    /// (the same inode, or nothing).
    pub(super) fn is_durable(&self, path: &Path) -> io::Result<bool> {
        let names = names(path)?;
        Ok(self.walk(&names, false) == self.walk(&names, true))
    }

    /// The existing directory holding `path`, and `path`'s last name.
    fn parent<'p>(&self, path: &'p Path) -> io::Result<(Ino, &'p str)> {
        let mut names = names(path)?;
        let name = names
            .pop()
            .ok_or_else(|| error(io::ErrorKind::InvalidInput, path, "is the root"))?;
        match self.walk(&names, false) {
            Some(dir) if self.is_dir(dir) => Ok((dir, name)),
            Some(_) => Err(error(
                io::ErrorKind::NotADirectory,
                path,
                "parent is a file",
            )),
            None => Err(error(io::ErrorKind::NotFound, path, "parent not found")),
        }
    }

    fn entry(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.dir(dir).and_then(|d| d.current.get(name).copied())
    }

    fn link(&mut self, dir: Ino, name: &str, ino: Ino) {
        if let Some(d) = self.dir_mut(dir) {
            d.current.insert(name.to_owned(), ino);
        }
    }

    fn unlink(&mut self, dir: Ino, name: &str) {
        if let Some(d) = self.dir_mut(dir) {
            d.current.remove(name);
        }
    }

    /// Creates every missing directory along `path`.
    pub(super) fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut dir = ROOT;
        for name in names(path)? {
            dir = match self.entry(dir, name) {
                Some(ino) if self.is_dir(ino) => ino,
                Some(_) => {
                    return Err(error(
                        io::ErrorKind::NotADirectory,
                        path,
                        "a file is in the way",
                    ))
                }
                None => {
                    let ino = self.alloc(Node::Dir(DirNode::default()));
                    self.link(dir, name, ino);
                    ino
                }
            };
        }
        Ok(())
    }

    /// The file at `path`, created empty if missing; emptied if `truncate`.
    pub(super) fn create_file(&mut self, path: &Path, truncate: bool) -> io::Result<Ino> {
        let (dir, name) = self.parent(path)?;
        match self.entry(dir, name) {
            Some(ino) => {
                let file = self
                    .file_mut(ino)
                    .map_err(|_| error(io::ErrorKind::IsADirectory, path, "is a directory"))?;
                if truncate {
                    // Modelled as durable at once: the engine never relies on
                    // truncating through `create` (it writes new names).
                    file.data.clear();
                    file.synced_len = 0;
                }
                Ok(ino)
            }
            None => {
                let ino = self.alloc(Node::File(FileNode::default()));
                self.link(dir, name, ino);
                Ok(ino)
            }
        }
    }

    /// The existing file at `path`.
    pub(super) fn open_file(&self, path: &Path) -> io::Result<Ino> {
        match self.lookup(path)? {
            Some(ino) if self.is_dir(ino) => {
                Err(error(io::ErrorKind::IsADirectory, path, "is a directory"))
            }
            Some(ino) => Ok(ino),
            None => Err(error(io::ErrorKind::NotFound, path, "no such file")),
        }
    }

    /// The existing directory at `path`.
    fn open_dir(&self, path: &Path) -> io::Result<Ino> {
        match self.lookup(path)? {
            Some(ino) if self.is_dir(ino) => Ok(ino),
            Some(_) => Err(error(io::ErrorKind::NotADirectory, path, "is a file")),
            None => Err(error(io::ErrorKind::NotFound, path, "no such directory")),
        }
    }

    /// Sorted names in the directory `path`.
    pub(super) fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let dir = self.open_dir(path)?;
        Ok(self
            .dir(dir)
            .map(|d| d.current.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Moves the entry `from` to `to`, replacing a file at `to`.
    pub(super) fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let ino = self
            .entry(from_dir, from_name)
            .ok_or_else(|| error(io::ErrorKind::NotFound, from, "no such file"))?;
        let (to_dir, to_name) = self.parent(to)?;
        if from_dir == to_dir && from_name == to_name {
            return Ok(());
        }
        if let Some(existing) = self.entry(to_dir, to_name) {
            if self.is_dir(existing) {
                return Err(error(
                    io::ErrorKind::IsADirectory,
                    to,
                    "target is a directory",
                ));
            }
            if self.is_dir(ino) {
                return Err(error(io::ErrorKind::NotADirectory, to, "target is a file"));
            }
        }
        if self.is_dir(ino) && names(to)?.starts_with(&names(from)?) {
            return Err(error(
                io::ErrorKind::InvalidInput,
                to,
                "inside the renamed directory",
            ));
        }
        self.unlink(from_dir, from_name);
        self.link(to_dir, to_name, ino);
        Ok(())
    }

    /// Unlinks the file `path`.
    pub(super) fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        match self.entry(dir, name) {
            Some(ino) if self.is_dir(ino) => {
                Err(error(io::ErrorKind::IsADirectory, path, "is a directory"))
            }
            Some(_) => {
                self.unlink(dir, name);
                Ok(())
            }
            None => Err(error(io::ErrorKind::NotFound, path, "no such file")),
        }
    }

    /// Unlinks the directory `path` and, recursively, the entries under it.
    pub(super) fn remove_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let ino = match self.entry(dir, name) {
            Some(ino) if self.is_dir(ino) => ino,
            Some(_) => return Err(error(io::ErrorKind::NotADirectory, path, "is a file")),
            None => return Err(error(io::ErrorKind::NotFound, path, "no such directory")),
        };
        self.unlink(dir, name);
        let mut stack = vec![ino];
        while let Some(ino) = stack.pop() {
            if let Some(d) = self.dir_mut(ino) {
                let children = std::mem::take(&mut d.current);
                stack.extend(children.into_values());
            }
        }
        Ok(())
    }

    /// Makes the current entries of the directory `path` durable.
    pub(super) fn sync_dir(&mut self, path: &Path) -> io::Result<()> {
        let ino = self.open_dir(path)?;
        if let Some(d) = self.dir_mut(ino) {
            d.durable = d.current.clone();
        }
        Ok(())
    }

    /// Drops every inode not reachable from the root.
    pub(super) fn collect_garbage(&mut self) {
        let mut reachable = std::collections::BTreeSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(d) = self.dir(ino) {
                for &child in d.current.values() {
                    if reachable.insert(child) {
                        stack.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
    }
}
