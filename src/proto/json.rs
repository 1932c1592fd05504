//! [`Json`]: a JSON value carried as itself in the JSON codec and as its text in postcard
//! (postcard cannot carry a self-describing value). Always valid JSON: decoding checks it.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A JSON document (any value: object, array, string, number, bool, null), kept as compact
/// text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Json(String);

impl Json {
    /// Parse text as JSON (kept compact).
    pub fn parse(s: &str) -> Result<Json, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(s)?;
        Ok(Json::from_value(&v))
    }

    pub fn from_value(v: &serde_json::Value) -> Json {
        Json(v.to_string())
    }

    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The compact text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes of the compact text (what size limits count).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.value().serialize(s)
        } else {
            s.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let v = serde_json::Value::deserialize(d)?;
            Ok(Json::from_value(&v))
        } else {
            let s = String::deserialize(d)?;
            Json::parse(&s).map_err(|e| de::Error::custom(format!("not JSON: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_a_value_in_json_and_checked_text_in_postcard() {
        let j = Json::parse(r#"{ "a": [1, 2] }"#).unwrap();
        assert_eq!(j.as_str(), r#"{"a":[1,2]}"#);
        assert_eq!(serde_json::to_string(&j).unwrap(), r#"{"a":[1,2]}"#);
        let b = postcard::to_allocvec(&j).unwrap();
        assert_eq!(postcard::from_bytes::<Json>(&b).unwrap(), j);
        let bad = postcard::to_allocvec("{nope").unwrap();
        assert!(postcard::from_bytes::<Json>(&bad).is_err());
    }
}
