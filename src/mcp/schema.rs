//! Tool input schemas every model API accepts. Clients pass our schemas on to their model
//! (Codex: OpenAI Responses, Gemini CLI: Gemini, opencode: any provider), and some of those
//! refuse `$ref`/`$defs`, `anyOf` and `"type": [T, "null"]`. So each schema is rewritten
//! once, when the server is built: references inlined, an optional field typed by its one
//! non-null type (it is optional by not being `required`).

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::JsonObject;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Rewrite every tool's input schema in place.
pub fn make_portable<S>(router: &mut ToolRouter<S>) {
    for route in router.map.values_mut() {
        let portable = portable(&route.attr.input_schema);
        route.attr.input_schema = Arc::new(portable);
    }
}

/// One schema, portable.
pub fn portable(schema: &JsonObject) -> JsonObject {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = match simplify(&Value::Object(schema.clone()), &defs, 0) {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    out.remove("$defs");
    out.remove("$schema");
    out
}

fn simplify(v: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Value::Object(o) = v else {
        return match v {
            Value::Array(a) => Value::Array(a.iter().map(|x| simplify(x, defs, depth)).collect()),
            x => x.clone(),
        };
    };
    if depth > 32 {
        return Value::Object(Map::new()); // a recursive type: give up on the detail
    }
    // An inlined reference keeps the referring node's own keys (e.g. its description).
    let mut o = o.clone();
    if let Some(target) = o.remove("$ref").and_then(|r| {
        r.as_str()
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|n| defs.get(n))
            .cloned()
    }) {
        if let Value::Object(t) = simplify(&target, defs, depth + 1) {
            for (k, v) in t {
                o.entry(k).or_insert(v);
            }
        }
    }
    // [T, "null"] → T
    if let Some(Value::Array(types)) = o.get("type") {
        let non_null: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        if non_null.len() == 1 {
            o.insert("type".into(), non_null[0].clone());
        }
    }
    // anyOf/oneOf [X, {type: null}] → X
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = o.get(key) {
            let non_null: Vec<Value> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .cloned()
                .collect();
            if non_null.len() == 1 {
                o.remove(key);
                if let Value::Object(x) = simplify(&non_null[0], defs, depth + 1) {
                    for (k, v) in x {
                        o.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    if o.get("default") == Some(&Value::Null) {
        o.remove("default");
    }
    o.remove("nullable");
    Value::Object(
        o.into_iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == "properties" {
                        simplify_props(&v, defs, depth)
                    } else {
                        simplify(&v, defs, depth + 1)
                    },
                )
            })
            .collect(),
    )
}

fn simplify_props(v: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match v {
        Value::Object(props) => Value::Object(
            props
                .iter()
                .map(|(k, p)| (k.clone(), simplify(p, defs, depth + 1)))
                .collect(),
        ),
        x => x.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn has_key(v: &Value, key: &str) -> bool {
        match v {
            Value::Object(o) => o.contains_key(key) || o.values().any(|x| has_key(x, key)),
            Value::Array(a) => a.iter().any(|x| has_key(x, key)),
            _ => false,
        }
    }

    #[test]
    fn refs_nullable_types_and_null_alternatives_are_inlined() {
        let s = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "mesh": {"type": ["string", "null"], "description": "Mesh name"},
                "to": {"$ref": "#/$defs/Targets", "description": "who"},
                "when": {"anyOf": [{"$ref": "#/$defs/Prio"}, {"type": "null"}], "default": null}
            },
            "required": ["to"],
            "$defs": {"Targets": {"type": "string"}, "Prio": {"type": "string", "enum": ["now", "next"]}}
        });
        let out = Value::Object(portable(s.as_object().unwrap()));
        for k in ["$ref", "$defs", "$schema", "anyOf"] {
            assert!(!has_key(&out, k), "{k} left in {out}");
        }
        assert_eq!(
            out["properties"]["mesh"],
            json!({"type": "string", "description": "Mesh name"})
        );
        assert_eq!(
            out["properties"]["to"],
            json!({"type": "string", "description": "who"})
        );
        assert_eq!(
            out["properties"]["when"],
            json!({"type": "string", "enum": ["now", "next"]})
        );
        assert_eq!(out["required"], json!(["to"]));
    }

    #[test]
    fn a_property_named_like_a_keyword_is_kept() {
        let s = json!({"type": "object", "properties": {"default": {"type": "string"}, "type": {"type": "boolean"}}});
        let out = Value::Object(portable(s.as_object().unwrap()));
        assert_eq!(out["properties"]["default"], json!({"type": "string"}));
        assert_eq!(out["properties"]["type"], json!({"type": "boolean"}));
    }
}
