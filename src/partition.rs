//! Partition names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The longest partition name, in bytes (UTF-8).
pub const MAX_PARTITION_NAME_LEN: usize = 64;

/// Storage partition identifier.
///
/// Maps to a column family in RocksDB, a tree in sled, an id-numbered
/// directory in the LSM engine. A name is 1 to 64 bytes of alphanumeric
/// characters (Unicode letters and digits included, as [`char::is_alphanumeric`]
/// says) and underscores. Names compare by exact code points; nothing derives
/// a file name from them.
///
/// Serializes as `{"name": "..."}`; deserializing validates the name, so an
/// invalid partition cannot be built that way either.
///
/// # Examples
///
/// ```
/// use kalamdb_store::Partition;
///
/// let partition = Partition::new("user_messages")?;
/// assert_eq!(partition.name(), "user_messages");
/// let system = Partition::system("metadata")?;
/// assert_eq!(system.to_string(), "sys_metadata");
/// assert!(Partition::new("no-dashes").is_err());
/// # Ok::<(), kalamdb_store::Error>(())
/// ```
#[derive(Debug, Clone, Hash, Eq, PartialEq, Ord, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "PartitionRepr")]
pub struct Partition {
    name: String,
}

/// The serialized shape, deserialized first and then validated.
#[derive(Deserialize)]
struct PartitionRepr {
    name: String,
}

impl TryFrom<PartitionRepr> for Partition {
    type Error = Error;

    fn try_from(repr: PartitionRepr) -> Result<Self> {
        Partition::new(repr.name)
    }
}

impl Partition {
    /// Creates a partition.
    ///
    /// # Errors
    /// [`Error::InvalidPartitionName`] with `"empty"`, `"too long"` (over 64
    /// bytes) or `"invalid characters"` (anything but alphanumerics and `_`).
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        Self::validate(&name)?;
        Ok(Partition { name })
    }

    /// Creates a system partition: the name gets the `sys_` prefix.
    ///
    /// # Errors
    /// As [`Partition::new`], applied to the prefixed name.
    pub fn system(name: impl Into<String>) -> Result<Self> {
        Self::new(format!("sys_{}", name.into()))
    }

    /// The partition's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn validate(name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::InvalidPartitionName("empty".to_string()));
        }
        if name.len() > MAX_PARTITION_NAME_LEN {
            return Err(Error::InvalidPartitionName("too long".to_string()));
        }
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(Error::InvalidPartitionName(
                "invalid characters".to_string(),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> String {
        match Partition::new(name) {
            Err(Error::InvalidPartitionName(reason)) => reason,
            other => panic!("{name:?}: expected InvalidPartitionName, got {other:?}"),
        }
    }

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "user_messages",
            "_",
            "default",
            "sys_x",
            "Ünïcödé",
            "名前",
            "A1_b2",
        ] {
            assert_eq!(Partition::new(name).unwrap().name(), name);
        }
        let max = "x".repeat(64);
        assert_eq!(Partition::new(max.clone()).unwrap().name(), max);
    }

    #[test]
    fn invalid_names_say_why() {
        assert_eq!(reason(""), "empty");
        assert_eq!(reason(&"x".repeat(65)), "too long");
        // 64 is a byte limit: 22 three-byte characters are 66 bytes.
        assert_eq!(reason(&"名".repeat(22)), "too long");
        for bad in ["a-b", "a b", "a.b", "a/b", "..", "a:b", "\0", "é\u{301}"] {
            assert_eq!(reason(bad), "invalid characters", "{bad:?}");
        }
    }

    #[test]
    fn system_prefixes_and_validates() {
        assert_eq!(Partition::system("meta").unwrap().name(), "sys_meta");
        assert_eq!(Partition::system("").unwrap().name(), "sys_");
        assert!(Partition::system("a-b").is_err());
        assert!(Partition::system("x".repeat(61)).is_err());
    }

    #[test]
    fn serde_keeps_the_name_shape_and_validates() {
        let p = Partition::new("users").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"name":"users"}"#);
        let back: Partition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        for bad in [r#"{"name":""}"#, r#"{"name":"a-b"}"#, r#"{"nom":"a"}"#] {
            assert!(serde_json::from_str::<Partition>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_and_order_follow_the_name() {
        let mut names = [
            Partition::new("b").unwrap(),
            Partition::new("B").unwrap(),
            Partition::new("a_").unwrap(),
            Partition::new("a").unwrap(),
        ];
        names.sort();
        let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["B", "a", "a_", "b"]);
    }
}
