//! Finding the line and column of a node in a YAML text after the fact.
//!
//! serde_norway keeps positions only for the errors it raises itself, and
//! many rule mistakes (a duplicate id, an unknown `$list`, a bad glob) can
//! only be judged once the whole file or several files are read. Rather than
//! deserializing into position-carrying wrappers on the hot and common path,
//! the loader remembers the node path of each value (`rules[3].paths[1]`)
//! and, only when it has something to report, walks the text again with a
//! probe that stops with an error at that node: serde_norway stamps that
//! error with the node's position, which is exactly what the user needs.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// The value under this key of a mapping.
    Key(String),
    /// The key itself (to point at a name rather than its value).
    KeyName(String),
    /// The element at this index of a sequence.
    Index(usize),
}

/// A path from the document root to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodePath(pub Vec<Seg>);

impl NodePath {
    pub fn key(&self, key: &str) -> NodePath {
        self.push(Seg::Key(key.to_string()))
    }

    pub fn key_name(&self, key: &str) -> NodePath {
        self.push(Seg::KeyName(key.to_string()))
    }

    pub fn index(&self, index: usize) -> NodePath {
        self.push(Seg::Index(index))
    }

    fn push(&self, seg: Seg) -> NodePath {
        let mut segs = self.0.clone();
        segs.push(seg);
        NodePath(segs)
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) | Seg::KeyName(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) | Seg::KeyName(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based (line, column) of the node at `path` in `text`, if it exists.
pub(crate) fn locate(text: &str, path: &NodePath) -> Option<(usize, usize)> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    match (Probe { path: &path.0 }).deserialize(deserializer) {
        Ok(()) => None,
        Err(err) if err.to_string().contains(HERE) => {
            err.location().map(|loc| (loc.line(), loc.column()))
        }
        Err(_) => None,
    }
}

/// The message of the error the probe raises on arrival.
const HERE: &str = "dockwatch-locate-here";

struct Probe<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.first() {
            None => deserializer.deserialize_any(Arrived),
            Some(Seg::Index(_)) => deserializer.deserialize_seq(self),
            Some(Seg::Key(_) | Seg::KeyName(_)) => deserializer.deserialize_map(self),
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Seg::Index(want)) = self.path.first() else {
            return drain_seq(seq);
        };
        let mut i = 0;
        loop {
            if i == *want {
                seq.next_element_seed(Probe {
                    path: &self.path[1..],
                })?;
                return drain_seq(seq);
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (want, point_at_key) = match self.path.first() {
            Some(Seg::Key(k)) => (k, false),
            Some(Seg::KeyName(k)) => (k, true),
            _ => return drain_map(map),
        };
        while let Some(key) = map.next_key_seed(KeyProbe {
            want,
            stop: point_at_key,
        })? {
            if key {
                map.next_value_seed(Probe {
                    path: &self.path[1..],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    // A scalar where the path wanted a mapping or sequence: not there.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads a mapping key: `true` when it is the wanted one. With `stop`, the
/// wanted key itself is the destination and the probe arrives there.
struct KeyProbe<'p> {
    want: &'p str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key == self.want && self.stop {
            return Err(E::custom(HERE));
        }
        Ok(key == self.want)
    }

    fn visit_i64<E: de::Error>(self, key: i64) -> Result<bool, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_u64<E: de::Error>(self, key: u64) -> Result<bool, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_bool<E: de::Error>(self, key: bool) -> Result<bool, E> {
        self.visit_str(&key.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Raises the positioned error at whatever node it is asked to read.
struct Arrived;

impl<'de> Visitor<'de> for Arrived {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
lists:
  engine: [/usr/bin/dockerd, /usr/bin/containerd]
rules:
  - id: first
    paths: [/etc/docker]
  - id: second
    paths:
      - /a
      - /b
";

    fn at(path: NodePath) -> Option<(usize, usize)> {
        locate(DOC, &path)
    }

    #[test]
    fn finds_scalars_in_sequences_and_mappings() {
        let root = NodePath::default();
        assert_eq!(at(root.key("rules").index(1).key("id")), Some((6, 9)));
        assert_eq!(
            at(root.key("rules").index(1).key("paths").index(1)),
            Some((9, 9))
        );
        assert_eq!(at(root.key("lists").key("engine").index(1)), Some((2, 30)));
        assert_eq!(
            at(root.key("rules").index(0).key_name("paths")),
            Some((5, 5))
        );
    }

    #[test]
    fn missing_nodes_are_none() {
        let root = NodePath::default();
        assert_eq!(at(root.key("rules").index(7)), None);
        assert_eq!(at(root.key("nope")), None);
        assert_eq!(at(root.key("rules").index(0).key("id").index(0)), None);
    }
}
