//! Checks HTTP requests against Firecracker's OpenAPI (Swagger 2.0) spec: the path matches a
//! template, the method is defined there, a required body is present, and the body fits its
//! schema — required fields present, no field the schema does not define, types, enums and
//! bounds. Used by the stand-in Firecracker and by the contract test itself.

use serde_json::{Map, Value};

pub struct Spec {
    doc: Value,
}

/// What a request matched: the operation and its path parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    pub operation: String,
    pub params: Vec<(String, String)>,
}

impl Spec {
    pub fn parse(yaml: &str) -> Spec {
        let doc: Value = serde_yaml::from_str(yaml).expect("the Firecracker spec parses");
        Spec { doc }
    }

    /// The bundled v1.16.1 spec.
    pub fn v1_16_1() -> Spec {
        Spec::parse(include_str!("firecracker-v1.16.1.yaml"))
    }

    pub fn version(&self) -> &str {
        self.doc["info"]["version"].as_str().unwrap_or("")
    }

    /// Checks one request; `body` is the raw request body (empty for none).
    pub fn check(&self, method: &str, path: &str, body: &[u8]) -> Result<Matched, String> {
        let path = path.split('?').next().unwrap_or(path);
        let paths = self.doc["paths"].as_object().expect("spec has paths");
        let (template, item, params) = paths
            .iter()
            .find_map(|(t, item)| match_path(t, path).map(|p| (t, item, p)))
            .ok_or_else(|| format!("{path}: no such path in the spec"))?;
        let op = item.get(method.to_ascii_lowercase()).ok_or_else(|| {
            format!("{method} {path}: the spec defines no {method} on {template}")
        })?;
        let body_param = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["in"] == "body");
        match body_param {
            None if !body.is_empty() => {
                return Err(format!("{method} {path}: takes no body"));
            }
            None => {}
            Some(p) => {
                if body.is_empty() {
                    if p["required"].as_bool().unwrap_or(false) {
                        return Err(format!("{method} {path}: the body is required"));
                    }
                } else {
                    let value: Value = serde_json::from_slice(body)
                        .map_err(|e| format!("{method} {path}: body is not JSON: {e}"))?;
                    self.check_value(&p["schema"], &value, "body")
                        .map_err(|e| format!("{method} {path}: {e}"))?;
                }
            }
        }
        Ok(Matched {
            operation: op["operationId"].as_str().unwrap_or("").to_string(),
            params,
        })
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/definitions/");
                &self.doc["definitions"][name]
            }
            None => schema,
        }
    }

    /// Checks `value` against `schema`; `at` names the place for the error.
    pub fn check_value(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or(
            if schema.get("properties").is_some() {
                "object"
            } else {
                ""
            },
        );
        match ty {
            "object" => self.check_object(schema, value, at)?,
            "array" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| format!("{at}: expected an array"))?;
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&schema["items"], item, &format!("{at}[{i}]"))?;
                }
            }
            "string" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| format!("{at}: expected a string"))?;
                if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                    if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                        return Err(format!("{at}: {s:?} is not one of {allowed:?}"));
                    }
                }
            }
            "integer" => {
                let n = value
                    .as_i64()
                    .ok_or_else(|| format!("{at}: expected an integer"))?;
                if let Some(min) = schema.get("minimum").and_then(Value::as_i64) {
                    if n < min {
                        return Err(format!("{at}: {n} is below the minimum {min}"));
                    }
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_i64) {
                    if n > max {
                        return Err(format!("{at}: {n} is above the maximum {max}"));
                    }
                }
            }
            "boolean" => {
                value
                    .as_bool()
                    .ok_or_else(|| format!("{at}: expected a boolean"))?;
            }
            "" => {}
            other => return Err(format!("{at}: the checker does not know type {other}")),
        }
        Ok(())
    }

    fn check_object(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let empty = Map::new();
        let obj = value
            .as_object()
            .ok_or_else(|| format!("{at}: expected an object"))?;
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = req.as_str().unwrap_or("");
            if !obj.contains_key(name) {
                return Err(format!("{at}: the required field {name:?} is missing"));
            }
        }
        for (k, v) in obj {
            let prop = props
                .get(k)
                .ok_or_else(|| format!("{at}: unknown field {k:?}"))?;
            self.check_value(prop, v, &format!("{at}.{k}"))?;
        }
        Ok(())
    }
}

/// Matches `/drives/{drive_id}` against `/drives/root`, returning the parameters.
fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (ts, ps) in t.iter().zip(&p) {
        if ts.starts_with('{') && ts.ends_with('}') {
            if ps.is_empty() {
                return None;
            }
            params.push((ts[1..ts.len() - 1].to_string(), ps.to_string()));
        } else if ts != ps {
            return None;
        }
    }
    Some(params)
}
