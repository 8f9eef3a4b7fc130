//! [`Timestamp`]: every time a record or a document keeps.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A moment in UTC, to the millisecond.
///
/// Written as RFC 3339 with exactly three fractional digits and `Z`
/// (`2026-12-02T20:24:14.123Z`) in JSON, in SQLite and in MongoDB, so the
/// text sorts as the times do and stores can compare it as they compare
/// strings. Reads any RFC 3339 time, truncated to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Now.
    pub fn now() -> Timestamp {
        Timestamp::from(Utc::now())
    }

    /// The moment `ms` milliseconds after the Unix epoch, if representable.
    pub fn from_millis(ms: i64) -> Option<Timestamp> {
        DateTime::from_timestamp_millis(ms).map(Timestamp)
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The moment as chrono's type, for arithmetic.
    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Timestamp {
        let ms = t.timestamp_millis();
        Timestamp(DateTime::from_timestamp_millis(ms).unwrap_or(t))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

/// A text that is not an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 time (e.g. 2026-12-02T20:24:14.123Z)")]
pub struct NotATime(String);

impl FromStr for Timestamp {
    type Err = NotATime;

    fn from_str(s: &str) -> Result<Timestamp, NotATime> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp::from(t.with_timezone(&Utc)))
            .map_err(|_| NotATime(s.chars().take(64).collect()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl rusqlite::types::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

impl rusqlite::types::FromSql for Timestamp {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

impl From<Timestamp> for mongodb::bson::Bson {
    fn from(t: Timestamp) -> Self {
        mongodb::bson::Bson::String(t.to_string())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples(["2026-12-02T20:24:14.123Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_three_fractional_digits_and_sorts_as_time() {
        let t: Timestamp = "2026-12-02T21:24:14+01:00".parse().expect("time");
        assert_eq!(t.to_string(), "2026-12-02T20:24:14.000Z");
        let later: Timestamp = "2026-12-02T20:24:14.1239Z".parse().expect("time");
        assert_eq!(later.to_string(), "2026-12-02T20:24:14.123Z");
        assert!(t < later && t.to_string() < later.to_string());
        assert_eq!(Timestamp::from_millis(later.millis()), Some(later));
        let json = serde_json::to_string(&later).expect("json");
        assert_eq!(json, "\"2026-12-02T20:24:14.123Z\"");
        assert_eq!(
            serde_json::from_str::<Timestamp>(&json).expect("back"),
            later
        );
        let bad = serde_json::from_str::<Timestamp>("\"yesterday\"");
        assert!(
            bad.expect_err("not a time")
                .to_string()
                .contains("yesterday")
        );
    }
}
