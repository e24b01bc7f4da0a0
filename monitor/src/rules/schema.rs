//! The YAML shape of a rule file, exactly as a user writes it.
//!
//! These types only describe syntax: serde rejects unknown fields and wrong
//! types here, with the position serde_norway knows. Everything that needs
//! more than one node to judge (list references, duplicate ids, globs, paths
//! that can never match) is checked in [`super::load`], which finds the
//! position again through [`super::locate`].

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// One rule file. Every section is optional, so a file may hold only lists,
/// only rules, or only changes to rules of earlier files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    /// Named lists, referenced from any list of values as `$name`.
    #[serde(default)]
    pub lists: NamedLists,
    /// Items added to lists defined in this or an earlier file.
    #[serde(default)]
    pub extend_lists: NamedLists,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Changes to rules defined in this or an earlier file, by id.
    #[serde(default)]
    pub modify: Vec<ModifySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSpec {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub severity: String,
    #[serde(default)]
    pub tags: Vec<Text>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Required for path actions; absent for engine actions, which are
    /// about containers, images and plugins.
    pub paths: Option<Vec<Text>>,
    pub actions: Vec<Text>,
    /// Conditions the acting process must meet (all of them).
    #[serde(default)]
    pub process: ProcessSpec,
    /// Each block that matches entirely silences the rule for that event.
    #[serde(default)]
    pub except: Vec<ExceptSpec>,
}

fn enabled_by_default() -> bool {
    true
}

/// Conditions on the acting process. Each field present must hold; within a
/// field, any one value is enough.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProcessSpec {
    pub exe: Option<Vec<Text>>,
    pub comm: Option<Vec<Text>>,
    pub parent_exe: Option<Vec<Text>>,
    pub uid: Option<Vec<Text>>,
    pub auid: Option<Vec<Text>>,
    /// `true`: only processes in a container; `false`: only on the host.
    pub container: Option<bool>,
}

/// An exception: the process vocabulary plus paths and actions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExceptSpec {
    pub paths: Option<Vec<Text>>,
    pub actions: Option<Vec<Text>>,
    pub exe: Option<Vec<Text>>,
    pub comm: Option<Vec<Text>>,
    pub parent_exe: Option<Vec<Text>>,
    pub uid: Option<Vec<Text>>,
    pub auid: Option<Vec<Text>>,
    pub container: Option<bool>,
}

impl ExceptSpec {
    /// The process part, for code shared with [`ProcessSpec`].
    pub fn process(&self) -> ProcessSpecRef<'_> {
        ProcessSpecRef {
            exe: self.exe.as_deref(),
            comm: self.comm.as_deref(),
            parent_exe: self.parent_exe.as_deref(),
            uid: self.uid.as_deref(),
            auid: self.auid.as_deref(),
            container: self.container,
        }
    }
}

impl ProcessSpec {
    pub fn as_ref(&self) -> ProcessSpecRef<'_> {
        ProcessSpecRef {
            exe: self.exe.as_deref(),
            comm: self.comm.as_deref(),
            parent_exe: self.parent_exe.as_deref(),
            uid: self.uid.as_deref(),
            auid: self.auid.as_deref(),
            container: self.container,
        }
    }
}

/// Borrowed process conditions, whichever block they came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcessSpecRef<'a> {
    pub exe: Option<&'a [Text]>,
    pub comm: Option<&'a [Text]>,
    pub parent_exe: Option<&'a [Text]>,
    pub uid: Option<&'a [Text]>,
    pub auid: Option<&'a [Text]>,
    pub container: Option<bool>,
}

/// `modify:` entry: changes a rule of this or an earlier file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModifySpec {
    pub id: String,
    pub enabled: Option<bool>,
    pub severity: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub append: AppendSpec,
}

/// What `modify:` adds to a rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppendSpec {
    #[serde(default)]
    pub tags: Vec<Text>,
    #[serde(default)]
    pub paths: Vec<Text>,
    #[serde(default)]
    pub actions: Vec<Text>,
    #[serde(default)]
    pub except: Vec<ExceptSpec>,
}

/// A scalar item of a list, kept as text: `0` and `"0"` are both the uid 0,
/// and `$name` references a named list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

/// `name: [items]` pairs in file order. A name given twice is an error at
/// the second one: a map would silently keep only the last.
#[derive(Debug, Default)]
pub(super) struct NamedLists(pub Vec<(String, Vec<Text>)>);

impl<'de> Deserialize<'de> for NamedLists {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NamedLists, D::Error> {
        struct ListsVisitor;

        impl<'de> Visitor<'de> for ListsVisitor {
            type Value = NamedLists;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of list names to lists")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NamedLists, A::Error> {
                let mut seen = HashSet::new();
                let mut lists = Vec::new();
                while let Some(name) = map.next_key_seed(UniqueName { seen: &mut seen })? {
                    lists.push((name, map.next_value()?));
                }
                Ok(NamedLists(lists))
            }
        }

        deserializer.deserialize_map(ListsVisitor)
    }
}

/// A list name, rejected (at its own position) when already seen.
struct UniqueName<'a> {
    seen: &'a mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for UniqueName<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        // Checked inside the visitor, so the error carries the position of
        // this key rather than of the whole mapping.
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for UniqueName<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<String, E> {
        if !self.seen.insert(name.to_string()) {
            return Err(E::custom(format!(
                "list `{name}` is given twice in this section; merge the two"
            )));
        }
        Ok(name.to_string())
    }
}
