//! Qdrant's filter language: parsing (serde, with messages that say what is wrong) and
//! evaluation against one point's id and payload.
//!
//! Owns the JSON shape `{"must": [...], "should": [...], "must_not": [...],
//! "min_should": {"conditions": [...], "min_count": n}}` and the conditions
//! `{"key", "match" | "range" | "values_count"}`, `is_empty`, `is_null`, `has_id`, `nested`
//! and nested filters. Invariants, all as in Qdrant:
//! - a clause may be one condition or a list; an empty `should` constrains nothing;
//! - an array payload value matches a `match`/`range` if any element does;
//! - a field condition on a missing key is false, except `match.except` (true) and
//!   `values_count` (the count is 0);
//! - `nested` matches if one element of the array at `key` satisfies the whole inner filter.
//!
//! Serialisation writes the same JSON back, so a filter travels in the WAL and to peers.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::collection::point::Payload;
use crate::shard::json_path::JsonPath;
use crate::types::PointId;

/// A boolean combination of conditions. All clauses are optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub should: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_should: Option<MinShould>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub must: Vec<Condition>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub must_not: Vec<Condition>,
}

/// At least `min_count` of `conditions` must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinShould {
    pub conditions: Vec<Condition>,
    pub min_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Condition {
    Field(FieldCondition),
    IsEmpty(IsEmptyCondition),
    IsNull(IsNullCondition),
    HasId(HasIdCondition),
    Nested(NestedCondition),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    pub key: JsonPath,
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_count: Option<ValuesCount>,
}

/// The value forms `match` compares against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MatchValue {
    Bool(bool),
    Integer(i64),
    Keyword(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Match {
    Value { value: MatchValue },
    Any { any: Vec<MatchValue> },
    Except { except: Vec<MatchValue> },
    Text { text: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuesCount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadField {
    pub key: JsonPath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsEmptyCondition {
    pub is_empty: PayloadField,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsNullCondition {
    pub is_null: PayloadField,
}

/// Ids are kept sorted and unique so a check is a binary search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HasIdCondition {
    pub has_id: Vec<PointId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nested {
    pub key: JsonPath,
    pub filter: Filter,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NestedCondition {
    pub nested: Nested,
}

// ---------------------------------------------------------------- parsing

const FILTER_KEYS: [&str; 4] = ["must", "should", "must_not", "min_should"];

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Condition>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Condition::from_value(v).map_err(|e| D::Error::custom(format!("[{i}]: {e}")))
            })
            .collect(),
        single => Condition::from_value(single)
            .map(|c| vec![c])
            .map_err(D::Error::custom),
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Condition::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl Condition {
    /// Recognises a condition by its distinguishing key and parses it.
    fn from_value(v: Value) -> Result<Condition, String> {
        let Value::Object(map) = &v else {
            return Err(format!("a condition must be a JSON object, got `{v}`"));
        };
        if map.contains_key("key") {
            let field: FieldCondition = from_value(v, "field")?;
            field.validate()?;
            return Ok(Condition::Field(field));
        }
        if map.contains_key("is_empty") {
            return from_value(v, "is_empty").map(Condition::IsEmpty);
        }
        if map.contains_key("is_null") {
            return from_value(v, "is_null").map(Condition::IsNull);
        }
        if map.contains_key("has_id") {
            let mut c: HasIdCondition = from_value(v, "has_id")?;
            c.has_id.sort_unstable();
            c.has_id.dedup();
            return Ok(Condition::HasId(c));
        }
        if map.contains_key("nested") {
            return from_value(v, "nested").map(Condition::Nested);
        }
        if map.keys().all(|k| FILTER_KEYS.contains(&k.as_str())) {
            return serde_json::from_value(v)
                .map(Condition::Filter)
                .map_err(|e| format!("invalid nested filter: {e}"));
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        Err(format!(
            "unknown condition with keys {keys:?}: expected a field condition (`key` with `match`, `range` or \
             `values_count`), `is_empty`, `is_null`, `has_id`, `nested`, or a nested filter (`must`, `should`, \
             `must_not`, `min_should`)"
        ))
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("invalid `{what}` condition: {e}"))
}

impl FieldCondition {
    fn validate(&self) -> Result<(), String> {
        if self.matcher.is_none() && self.range.is_none() && self.values_count.is_none() {
            return Err(format!(
                "field condition on `{}` needs one of `match`, `range` or `values_count`",
                self.key
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Match {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Match::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl Match {
    fn from_value(v: Value) -> Result<Match, String> {
        let Value::Object(mut map) = v else {
            return Err(format!(
                "`match` must be an object with `value`, `any`, `except` or `text`, got `{v}`"
            ));
        };
        if map.len() != 1 {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(format!(
                "`match` must have exactly one of `value`, `any`, `except`, `text`; got {keys:?}"
            ));
        }
        if let Some(v) = map.remove("value") {
            return Ok(Match::Value {
                value: MatchValue::from_value(v, "match.value")?,
            });
        }
        if let Some(v) = map.remove("any") {
            return Ok(Match::Any {
                any: MatchValue::list(v, "match.any")?,
            });
        }
        if let Some(v) = map.remove("except") {
            return Ok(Match::Except {
                except: MatchValue::list(v, "match.except")?,
            });
        }
        if let Some(v) = map.remove("text") {
            return match v {
                Value::String(text) => Ok(Match::Text { text }),
                other => Err(format!("`match.text` must be a string, got `{other}`")),
            };
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        Err(format!(
            "`match` must have one of `value`, `any`, `except`, `text`; got {keys:?}"
        ))
    }
}

impl MatchValue {
    fn from_value(v: Value, what: &str) -> Result<MatchValue, String> {
        match v {
            Value::Bool(b) => Ok(MatchValue::Bool(b)),
            Value::String(s) => Ok(MatchValue::Keyword(s)),
            Value::Number(n) if n.as_i64().is_some() => {
                Ok(MatchValue::Integer(n.as_i64().unwrap_or_default()))
            }
            other => Err(format!(
                "`{what}` must be a string, an integer or a bool, got `{other}`"
            )),
        }
    }

    fn list(v: Value, what: &str) -> Result<Vec<MatchValue>, String> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| MatchValue::from_value(i, what))
                .collect(),
            other => Err(format!("`{what}` must be a list, got `{other}`")),
        }
    }

    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (MatchValue::Bool(a), Value::Bool(b)) => a == b,
            (MatchValue::Keyword(a), Value::String(b)) => a == b,
            (MatchValue::Integer(a), Value::Number(n)) => n.as_i64() == Some(*a),
            _ => false,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

// ---------------------------------------------------------------- evaluation

impl Filter {
    /// Whether the point with this id and payload passes the filter.
    pub fn matches(&self, id: PointId, payload: &Payload) -> bool {
        let check = |c: &Condition| c.matches(id, payload);
        self.must.iter().all(check)
            && !self.must_not.iter().any(check)
            && (self.should.is_empty() || self.should.iter().any(check))
            && self.min_should.as_ref().is_none_or(|m| {
                m.conditions
                    .iter()
                    .filter(|c| check(c))
                    .take(m.min_count)
                    .count()
                    >= m.min_count
            })
    }
}

impl Condition {
    fn matches(&self, id: PointId, payload: &Payload) -> bool {
        match self {
            Condition::Field(c) => c.matches(payload),
            Condition::IsEmpty(c) => c
                .is_empty
                .key
                .values(payload)
                .iter()
                .all(|v| is_empty_value(v)),
            Condition::IsNull(c) => c
                .is_null
                .key
                .values(payload)
                .iter()
                .any(|v| is_null_value(v)),
            Condition::HasId(c) => c.has_id.binary_search(&id).is_ok(),
            Condition::Nested(c) => c
                .nested
                .key
                .elements(payload)
                .into_iter()
                .filter_map(Value::as_object)
                .any(|element| c.nested.filter.matches(id, element)),
            Condition::Filter(f) => f.matches(id, payload),
        }
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn is_null_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().any(Value::is_null),
        _ => false,
    }
}

impl FieldCondition {
    fn matches(&self, payload: &Payload) -> bool {
        let values = self.key.values(payload);
        if values.is_empty() {
            return self.matches_missing();
        }
        let any_element = |pred: &dyn Fn(&Value) -> bool| {
            values.iter().any(|v| match v {
                Value::Array(items) => items.iter().any(pred),
                other => pred(other),
            })
        };
        self.matcher
            .as_ref()
            .is_none_or(|m| any_element(&|v| m.matches(v)))
            && self
                .range
                .as_ref()
                .is_none_or(|r| any_element(&|v| r.matches(v)))
            && self
                .values_count
                .as_ref()
                .is_none_or(|c| c.matches(count_values(&values)))
    }

    fn matches_missing(&self) -> bool {
        let except_ok = match &self.matcher {
            None | Some(Match::Except { .. }) => true,
            Some(_) => false,
        };
        except_ok && self.range.is_none() && self.values_count.as_ref().is_none_or(|c| c.matches(0))
    }
}

fn count_values(values: &[&Value]) -> usize {
    values
        .iter()
        .map(|v| match v {
            Value::Array(items) => items.len(),
            Value::Null => 0,
            _ => 1,
        })
        .sum()
}

impl Match {
    fn matches(&self, v: &Value) -> bool {
        match self {
            Match::Value { value } => value.equals(v),
            Match::Any { any } => any.iter().any(|m| m.equals(v)),
            Match::Except { except } => !except.iter().any(|m| m.equals(v)),
            Match::Text { text } => v.as_str().is_some_and(|s| s.contains(text.as_str())),
        }
    }
}

impl Range {
    fn matches(&self, v: &Value) -> bool {
        let Some(x) = v.as_f64() else { return false };
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

impl ValuesCount {
    fn matches(&self, n: usize) -> bool {
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
    }
}

/// Parses a filter from JSON, for callers that hold a `serde_json::Value`.
pub fn parse_filter(v: Value) -> Result<Filter, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(v: Value) -> Filter {
        parse_filter(v).unwrap()
    }

    fn err(v: Value) -> String {
        parse_filter(v).unwrap_err()
    }

    fn p(v: Value) -> Payload {
        match v {
            Value::Object(m) => m,
            _ => panic!("payload must be an object"),
        }
    }

    fn hit(filter: Value, payload: Value) -> bool {
        f(filter).matches(PointId::Num(1), &p(payload))
    }

    #[test]
    fn match_value_any_except_text() {
        let doc = json!({"city": "Berlin", "tags": ["a", "b"], "n": 3, "ok": true});
        assert!(hit(
            json!({"must": [{"key": "city", "match": {"value": "Berlin"}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"key": "city", "match": {"value": "Paris"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": {"key": "n", "match": {"value": 3}}}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "ok", "match": {"value": true}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "tags", "match": {"value": "b"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "city", "match": {"any": ["X", "Berlin"]}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"key": "city", "match": {"except": ["Berlin"]}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "tags", "match": {"except": ["a"]}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "missing", "match": {"except": ["a"]}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "city", "match": {"text": "erl"}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"key": "missing", "match": {"value": "x"}}]}),
            doc
        ));
    }

    #[test]
    fn range_and_values_count() {
        let doc = json!({"price": 11.5, "sizes": [35, 40], "s": "12"});
        assert!(hit(
            json!({"must": [{"key": "price", "range": {"gte": 11.5, "lt": 12}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"key": "price", "range": {"gt": 11.5}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "sizes", "range": {"gt": 39}}]}),
            doc.clone()
        ));
        assert!(
            !hit(
                json!({"must": [{"key": "s", "range": {"gt": 1}}]}),
                doc.clone()
            ),
            "strings are not numbers"
        );
        assert!(hit(
            json!({"must": [{"key": "sizes", "values_count": {"gte": 2, "lt": 3}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "nope", "values_count": {"lt": 1}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"key": "nope", "range": {"lt": 1}}]}),
            doc
        ));
    }

    #[test]
    fn empty_null_and_has_id() {
        let doc = json!({"a": null, "b": [], "c": [null, 1], "d": 0});
        assert!(hit(
            json!({"must": [{"is_empty": {"key": "a"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"is_empty": {"key": "b"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"is_empty": {"key": "zzz"}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"is_empty": {"key": "d"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"is_null": {"key": "a"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"is_null": {"key": "c"}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"is_null": {"key": "zzz"}}]}),
            doc.clone()
        ));
        assert!(hit(json!({"must": [{"has_id": [5, 1, 3]}]}), doc.clone()));
        assert!(!hit(json!({"must_not": [{"has_id": [1]}]}), doc));
    }

    #[test]
    fn boolean_clauses_and_min_should() {
        let doc = json!({"a": 1, "b": 2});
        let a1 = json!({"key": "a", "match": {"value": 1}});
        let b3 = json!({"key": "b", "match": {"value": 3}});
        assert!(hit(json!({"should": [a1, b3]}), doc.clone()));
        assert!(!hit(json!({"should": [b3]}), doc.clone()));
        assert!(hit(json!({}), doc.clone()));
        assert!(
            hit(json!({"must": [{"must_not": [b3]}]}), doc.clone()),
            "nested filter as a condition"
        );
        assert!(!hit(
            json!({"min_should": {"conditions": [a1, b3], "min_count": 2}}),
            doc.clone()
        ));
        assert!(hit(
            json!({"min_should": {"conditions": [a1, b3], "min_count": 1}}),
            doc
        ));
    }

    #[test]
    fn nested_keys_arrays_and_nested_filter() {
        let doc = json!({
            "country": {"name": "DE", "cities": [{"name": "Berlin", "pop": 3.6}, {"name": "Bonn", "pop": 0.3}]}
        });
        assert!(hit(
            json!({"must": [{"key": "country.name", "match": {"value": "DE"}}]}),
            doc.clone()
        ));
        assert!(hit(
            json!({"must": [{"key": "country.cities[].name", "match": {"value": "Bonn"}}]}),
            doc.clone()
        ));
        assert!(!hit(
            json!({"must": [{"key": "country.cities.name", "match": {"value": "Bonn"}}]}),
            doc.clone()
        ));
        // Flattened keys match across elements; `nested` requires one element to satisfy both.
        let both = |name: &str| {
            json!([
                {"key": "name", "match": {"value": name}},
                {"key": "pop", "range": {"gt": 1.0}}
            ])
        };
        let flat = json!({"must": [
            {"key": "country.cities[].name", "match": {"value": "Bonn"}},
            {"key": "country.cities[].pop", "range": {"gt": 1.0}}
        ]});
        assert!(hit(flat, doc.clone()));
        let nested = |name: &str| json!({"must": [{"nested": {"key": "country.cities", "filter": {"must": both(name)}}}]});
        assert!(!hit(nested("Bonn"), doc.clone()));
        assert!(hit(nested("Berlin"), doc));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        assert!(
            err(json!({"must": [{"foo": 1}]})).contains("unknown condition with keys [\"foo\"]")
        );
        assert!(err(json!({"must": [{"key": "a", "match": {}}]}))
            .contains("`match` must have exactly one of"));
        assert!(err(json!({"must": [{"key": "a", "match": {"val": 1}}]}))
            .contains("`match` must have one of"));
        assert!(err(json!({"must": [{"key": "a"}]}))
            .contains("needs one of `match`, `range` or `values_count`"));
        assert!(
            err(json!({"must": [{"key": "a", "match": {"value": 1.5}}]}))
                .contains("`match.value` must be a string, an integer or a bool")
        );
        assert!(err(json!({"musts": []})).contains("unknown field `musts`"));
        assert!(err(json!({"must": [{"key": "a[", "match": {"value": 1}}]}))
            .contains("invalid payload key `a[`"));
        assert!(err(json!({"must": [{"key": "a", "range": {"gt": "x"}}]})).contains("invalid type"));
        assert!(err(json!({"must": [3]})).contains("a condition must be a JSON object"));
        assert!(err(json!({"must": [{"has_id": ["nope"]}]})).contains("has_id"));
    }

    #[test]
    fn filters_round_trip_through_json() {
        let original = json!({
            "must": [{"key": "a.b", "match": {"any": ["x", 2, true]}}, {"has_id": [1]}],
            "should": [{"nested": {"key": "c", "filter": {"must_not": [{"is_null": {"key": "d"}}]}}}],
            "min_should": {"conditions": [{"is_empty": {"key": "e"}}], "min_count": 1},
            "must_not": [{"key": "r", "range": {"gte": 1.0}, "values_count": {"lt": 3}}, {"must": [{"key": "t", "match": {"text": "q"}}]}]
        });
        let parsed = f(original.clone());
        let back = serde_json::to_value(&parsed).unwrap();
        assert_eq!(f(back), parsed);
    }
}
