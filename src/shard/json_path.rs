//! Payload key paths as Qdrant writes them: `a.b.c`, `a[].b` (every element of array
//! `a`), `a[2].b` (one element) and `"quoted.key".x` for keys that contain dots.
//!
//! Owns parsing a path and the three things done with one: reading the values it
//! reaches (for filters), merging an object under it (`set_payload` with `key`) and
//! removing what it names (`delete_payload`). A key segment never descends into an array
//! implicitly: `a.b` on `{"a": [{"b": 1}]}` reaches nothing, `a[].b` reaches `1`, as in
//! Qdrant. Values that are arrays are returned whole; callers that want Qdrant's "any
//! element matches" semantics flatten them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    Each,
}

/// A parsed payload path; keeps its source text for messages and serialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    raw: String,
    segs: Vec<Seg>,
}

impl JsonPath {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Every value the path reaches in `payload` (arrays are not flattened).
    pub fn values<'a>(&self, payload: &'a Map<String, Value>) -> Vec<&'a Value> {
        let mut out = Vec::new();
        if let Some((Seg::Key(k), rest)) = self.segs.split_first() {
            collect(rest, payload.get(k), &mut out);
        }
        out
    }

    /// The array elements under this path, for `nested` conditions: the path is read as
    /// if it ended with `[]`.
    pub fn elements<'a>(&self, payload: &'a Map<String, Value>) -> Vec<&'a Value> {
        let mut out = Vec::new();
        for v in self.values(payload) {
            match v {
                Value::Array(items) => out.extend(items.iter()),
                other => out.push(other),
            }
        }
        out
    }

    /// Merges `value`'s keys into the object(s) at this path, creating objects on the way
    /// and replacing non-objects that stand where an object must be.
    pub fn set(&self, payload: &mut Map<String, Value>, value: &Map<String, Value>) {
        if let Some((Seg::Key(k), rest)) = self.segs.split_first() {
            let slot = payload.entry(k.clone()).or_insert(Value::Null);
            set_in(rest, slot, value);
        }
    }

    /// Removes whatever the path names from `payload`.
    pub fn remove(&self, payload: &mut Map<String, Value>) {
        match self.segs.split_first() {
            Some((Seg::Key(k), [])) => {
                payload.remove(k);
            }
            Some((Seg::Key(k), rest)) => {
                if let Some(v) = payload.get_mut(k) {
                    remove_in(rest, v);
                }
            }
            _ => {}
        }
    }
}

fn collect<'a>(segs: &[Seg], value: Option<&'a Value>, out: &mut Vec<&'a Value>) {
    let Some(value) = value else { return };
    let Some((head, rest)) = segs.split_first() else {
        out.push(value);
        return;
    };
    match (head, value) {
        (Seg::Key(k), Value::Object(map)) => collect(rest, map.get(k), out),
        (Seg::Index(i), Value::Array(items)) => collect(rest, items.get(*i), out),
        (Seg::Each, Value::Array(items)) => items.iter().for_each(|v| collect(rest, Some(v), out)),
        _ => {}
    }
}

fn set_in(segs: &[Seg], slot: &mut Value, value: &Map<String, Value>) {
    match segs.split_first() {
        None => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                map.extend(value.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Some((Seg::Key(k), rest)) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                set_in(rest, map.entry(k.clone()).or_insert(Value::Null), value);
            }
        }
        Some((Seg::Index(i), rest)) => {
            if let Some(item) = slot.as_array_mut().and_then(|a| a.get_mut(*i)) {
                set_in(rest, item, value);
            }
        }
        Some((Seg::Each, rest)) => {
            if let Some(items) = slot.as_array_mut() {
                items.iter_mut().for_each(|item| set_in(rest, item, value));
            }
        }
    }
}

fn remove_in(segs: &[Seg], value: &mut Value) {
    let Some((head, rest)) = segs.split_first() else {
        return;
    };
    match (head, value) {
        (Seg::Key(k), Value::Object(map)) if rest.is_empty() => {
            map.remove(k);
        }
        (Seg::Key(k), Value::Object(map)) => {
            if let Some(v) = map.get_mut(k) {
                remove_in(rest, v);
            }
        }
        (Seg::Index(i), Value::Array(items)) if rest.is_empty() && *i < items.len() => {
            items.remove(*i);
        }
        (Seg::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get_mut(*i) {
                remove_in(rest, v);
            }
        }
        (Seg::Each, Value::Array(items)) if rest.is_empty() => items.clear(),
        (Seg::Each, Value::Array(items)) => items.iter_mut().for_each(|v| remove_in(rest, v)),
        _ => {}
    }
}

impl FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let segs = parse(s).map_err(|why| format!("invalid payload key `{s}`: {why}"))?;
        Ok(JsonPath {
            raw: s.to_string(),
            segs,
        })
    }
}

fn parse(s: &str) -> Result<Vec<Seg>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut segs = Vec::new();
    let mut i = 0;
    loop {
        let (key, next) = parse_key(&chars, i)?;
        segs.push(Seg::Key(key));
        i = next;
        while chars.get(i) == Some(&'[') {
            let (seg, next) = parse_bracket(&chars, i)?;
            segs.push(seg);
            i = next;
        }
        match chars.get(i) {
            None => return Ok(segs),
            Some('.') => i += 1,
            Some(c) => return Err(format!("unexpected `{c}` at position {i}")),
        }
    }
}

fn parse_key(chars: &[char], start: usize) -> Result<(String, usize), String> {
    if chars.get(start) == Some(&'"') {
        let end = chars[start + 1..]
            .iter()
            .position(|&c| c == '"')
            .ok_or("unclosed quote")?;
        let key: String = chars[start + 1..start + 1 + end].iter().collect();
        return Ok((key, start + end + 2));
    }
    let len = chars[start..]
        .iter()
        .position(|&c| c == '.' || c == '[' || c == ']' || c == '"')
        .unwrap_or(chars.len() - start);
    if len == 0 {
        return Err(format!("empty key at position {start}"));
    }
    Ok((chars[start..start + len].iter().collect(), start + len))
}

fn parse_bracket(chars: &[char], start: usize) -> Result<(Seg, usize), String> {
    let close = chars[start..]
        .iter()
        .position(|&c| c == ']')
        .ok_or("unclosed `[`")?;
    let inner: String = chars[start + 1..start + close].iter().collect();
    let seg = if inner.is_empty() {
        Seg::Each
    } else {
        Seg::Index(
            inner
                .parse()
                .map_err(|_| format!("array index `{inner}` is not a non-negative integer"))?,
        )
    };
    Ok((seg, start + close + 1))
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for JsonPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn path(s: &str) -> JsonPath {
        s.parse().unwrap()
    }

    #[test]
    fn reads_nested_keys_and_arrays() {
        let p =
            obj(json!({"a": {"b": [1, 2]}, "c": [{"d": 1}, {"d": [2, 3]}, {"e": 0}], "x.y": 5}));
        assert_eq!(path("a.b").values(&p), vec![&json!([1, 2])]);
        assert_eq!(path("a.b[1]").values(&p), vec![&json!(2)]);
        assert_eq!(path("c[].d").values(&p), vec![&json!(1), &json!([2, 3])]);
        assert!(
            path("c.d").values(&p).is_empty(),
            "keys do not descend into arrays implicitly"
        );
        assert_eq!(path("\"x.y\"").values(&p), vec![&json!(5)]);
        assert_eq!(path("c").elements(&p).len(), 3);
    }

    #[test]
    fn bad_paths_say_why() {
        assert!(JsonPath::from_str("").unwrap_err().contains("empty key"));
        assert!(JsonPath::from_str("a..b")
            .unwrap_err()
            .contains("empty key"));
        assert!(JsonPath::from_str("a[").unwrap_err().contains("unclosed"));
        assert!(JsonPath::from_str("a[x]")
            .unwrap_err()
            .contains("array index `x`"));
    }

    #[test]
    fn set_merges_and_creates() {
        let mut p = obj(json!({"a": {"keep": 1}, "arr": [{}, {}], "n": 3}));
        path("a").set(&mut p, &obj(json!({"new": 2})));
        path("n.deep").set(&mut p, &obj(json!({"z": true})));
        path("arr[].x").set(&mut p, &obj(json!({"y": 1})));
        assert_eq!(
            Value::Object(p),
            json!({"a": {"keep": 1, "new": 2}, "arr": [{"x": {"y": 1}}, {"x": {"y": 1}}], "n": {"deep": {"z": true}}})
        );
    }

    #[test]
    fn remove_nested() {
        let mut p = obj(json!({"a": {"b": 1, "c": 2}, "arr": [{"x": 1, "y": 2}], "top": 0}));
        path("a.b").remove(&mut p);
        path("arr[].x").remove(&mut p);
        path("top").remove(&mut p);
        path("missing.key").remove(&mut p);
        assert_eq!(Value::Object(p), json!({"a": {"c": 2}, "arr": [{"y": 2}]}));
    }
}
