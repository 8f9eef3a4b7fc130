//! The ids of records, one type each, so one kind of id is never passed
//! where another is expected. Each is text: a prefix, `_` and a ULID for
//! those Strata makes (`btch_01jc…`), or what the caller chose (an object's
//! id, a worker's name). All are written as plain strings in JSON, SQLite
//! and MongoDB.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A new id: `prefix` + `_` + a ULID (time-ordered, lower case).
pub fn new_id(prefix: &str) -> String {
    // Monotonic within this process: ids made in the same millisecond
    // still sort in the order they were made.
    static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let id = IDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{}", id.to_string().to_lowercase())
}

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident $(= $prefix:literal)?;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            $(
                /// A new id of this kind.
                pub fn generate() -> $name {
                    $name(new_id($prefix))
                }
            )?

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_owned())
            }
        }

        impl From<&$name> for $name {
            fn from(id: &$name) -> $name {
                id.clone()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.0.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map($name)
            }
        }

        impl From<$name> for mongodb::bson::Bson {
            fn from(id: $name) -> Self {
                mongodb::bson::Bson::String(id.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <String as utoipa::PartialSchema>::schema()
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

ids! {
    /// A namespace: `ns_…`.
    NamespaceId = "ns";
    /// An API key: `key_…`.
    KeyId = "key";
    /// A bucket: `bkt_…`.
    BucketId = "bkt";
    /// An object in a bucket: `obj_…`, or the id its uploader chose.
    ObjectId = "obj";
    /// A collection: `col_…`.
    CollectionId = "col";
    /// A batch: `btch_…`.
    BatchId = "btch";
    /// A batch's task: `task_…`.
    TaskId = "task";
    /// A document: its collection's id and its object's.
    DocumentId;
    /// A webhook: `wh_…`.
    WebhookId = "wh";
    /// A webhook delivery: `dlv_…`.
    DeliveryId = "dlv";
    /// An event: `evt_…`.
    EventId = "evt";
    /// A worker process, as it names itself (host, process id and a
    /// random part).
    WorkerId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_text_with_their_prefix() {
        let id = BatchId::generate();
        assert!(id.starts_with("btch_") && id.len() == 31, "{id}");
        assert!(BatchId::generate() > id, "ids made later sort later");
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<BatchId>(&json).expect("back"), id);
        assert_eq!(ObjectId::from("a.txt"), "a.txt");
    }
}
