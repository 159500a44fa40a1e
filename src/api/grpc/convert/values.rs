//! Payload values: `qdrant.Value` (google.protobuf.Value plus integers) ⇄ JSON.

use std::collections::HashMap;

use serde_json::{Map, Number};

use crate::api::grpc::proto::{value::Kind, ListValue, NullValue, Struct, Value};
use crate::collection::point::Payload;
use crate::error::Error;

/// A gRPC payload as the JSON object shoal stores.
pub fn payload_from_grpc(fields: HashMap<String, Value>) -> Result<Payload, Error> {
    fields
        .into_iter()
        .map(|(key, value)| Ok((key, to_json(value)?)))
        .collect()
}

/// A stored payload as a gRPC map.
pub fn payload_to_grpc(payload: Payload) -> HashMap<String, Value> {
    payload
        .into_iter()
        .map(|(key, value)| (key, from_json(value)))
        .collect()
}

fn to_json(value: Value) -> Result<serde_json::Value, Error> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::IntegerValue(i)) => serde_json::Value::Number(i.into()),
        Some(Kind::DoubleValue(d)) => Number::from_f64(d)
            .map(serde_json::Value::Number)
            .ok_or_else(|| Error::BadInput(format!("payload value {d} is not a finite number")))?,
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .into_iter()
                .map(to_json)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| Ok((k, to_json(v)?)))
                .collect::<Result<Map<_, _>, Error>>()?,
        ),
    })
}

fn from_json(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(NullValue::NullValue as i32),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(from_json).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_round_trip() {
        let payload: Payload = serde_json::from_value(json!({
            "i": 42, "f": 1.5, "s": "x", "b": true, "n": null,
            "list": [1, "a"], "obj": {"nested": [2.5]}
        }))
        .unwrap();
        let back = payload_from_grpc(payload_to_grpc(payload.clone())).unwrap();
        assert_eq!(back, payload);
    }
}
