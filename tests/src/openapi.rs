//! Whether a real answer fits the schema the OpenAPI document gives it: the
//! parts of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that our document
//! uses — `$ref`, `type` (one or several), `properties` with `required`,
//! `items`, `enum`, `oneOf`, `allOf` — and no keys beyond the documented
//! properties, so an undocumented field is caught as well as a missing one.

use serde_json::Value;

use crate::Reply;

/// The schema of `method path`'s `status` answer (`application/json`).
fn response_schema<'a>(document: &'a Value, path: &str, method: &str, status: u16) -> Result<&'a Value, String> {
    let schema =
        &document["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Err(format!("{method} {path} documents no JSON body for {status}"));
    }
    Ok(schema)
}

/// `Ok` when `value` fits `method path`'s documented `status` answer, else
/// where and why it does not.
pub fn conforms(document: &Value, path: &str, method: &str, status: u16, value: &Value) -> Result<(), String> {
    let schema = response_schema(document, path, method, status)?;
    let described = resolve(document, schema)?;
    if ["type", "oneOf", "allOf", "properties"].iter().all(|k| described.get(k).is_none()) {
        return Err(format!("{method} {path} {status}: documented as any JSON: {schema}"));
    }
    fits(document, schema, value, "$").map_err(|e| format!("{method} {path} {status}: {e}"))
}

/// `Ok` when `reply` to `method /api/v1{path}` is what the document says.
pub fn documented(document: &Value, method: &str, path: &str, reply: &Reply) -> anyhow::Result<()> {
    conforms(document, &format!("/api/v1{path}"), method, reply.status, &reply.body).map_err(anyhow::Error::msg)
}

/// Follows a local `$ref` (`#/components/schemas/Name`).
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> Result<&'a Value, String> {
    match schema["$ref"].as_str() {
        None => Ok(schema),
        Some(reference) => {
            let pointer = reference.strip_prefix('#').ok_or_else(|| format!("not a local $ref: {reference}"))?;
            let target = document.pointer(pointer).ok_or_else(|| format!("dangling $ref: {reference}"))?;
            resolve(document, target)
        }
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fits(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(document, schema)?;
    if let Some(choices) = schema["oneOf"].as_array() {
        let matching = choices.iter().filter(|c| fits(document, c, value, at).is_ok()).count();
        if matching != 1 {
            return Err(format!("{at}: fits {matching} of oneOf's {} choices: {value}", choices.len()));
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        fits(document, part, value, at)?;
    }
    let actual = type_of(value);
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_fits =
        allowed.is_empty() || allowed.iter().any(|t| *t == actual || (*t == "number" && actual == "integer"));
    if !type_fits {
        return Err(format!("{at}: a {actual} where the schema says {allowed:?}: {value}"));
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is none of {options:?}"));
    }
    if let Value::Object(fields) = value {
        let properties = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !fields.contains_key(required) {
                return Err(format!("{at}: required field {required:?} missing from {value}"));
            }
        }
        if let Some(properties) = properties {
            for (name, field) in fields {
                let field_schema =
                    properties.get(name).ok_or_else(|| format!("{at}: field {name:?} is not documented"))?;
                fits(document, field_schema, field, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Value::Array(elements), Some(items)) = (value, schema.get("items")) {
        for (i, element) in elements.iter().enumerate() {
            fits(document, items, element, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::conforms;

    fn document() -> serde_json::Value {
        json!({
            "paths": { "/x": { "post": { "responses": { "200": { "content": { "application/json": {
                "schema": { "oneOf": [ { "$ref": "#/components/schemas/A" }, { "$ref": "#/components/schemas/B" } ] }
            } } } } } } },
            "components": { "schemas": {
                "A": { "type": "object", "required": ["a"], "properties": {
                    "a": { "type": "integer" }, "note": { "type": ["string", "null"] } } },
                "B": { "type": "object", "required": ["b"], "properties": {
                    "b": { "type": "string", "enum": ["on", "off"] }, "list": { "type": "array", "items": { "type": "string" } } } }
            } }
        })
    }

    #[test]
    fn answers_are_held_to_their_schema() {
        let doc = document();
        let check = |v: serde_json::Value| conforms(&doc, "/x", "post", 200, &v);
        assert!(check(json!({ "a": 1 })).is_ok());
        assert!(check(json!({ "a": 1, "note": null })).is_ok());
        assert!(check(json!({ "b": "on", "list": ["x"] })).is_ok());
        assert!(check(json!({ "a": "1" })).is_err(), "wrong type");
        assert!(check(json!({ "a": 1, "extra": true })).is_err(), "an undocumented field");
        assert!(check(json!({ "b": "maybe" })).is_err(), "not in the enum");
        assert!(check(json!({ "b": "on", "list": [1] })).is_err(), "an item of the wrong type");
        assert!(check(json!({})).is_err(), "fits neither choice");
        assert!(check(json!({ "a": 1, "b": "on" })).is_err(), "an undocumented field for each choice");
        assert!(conforms(&doc, "/x", "post", 201, &json!({})).is_err(), "an undocumented status");
        let mut free = doc.clone();
        free["paths"]["/x"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] = json!({});
        assert!(conforms(&free, "/x", "post", 200, &json!({ "a": 1 })).is_err(), "a body documented as any JSON");
    }
}
