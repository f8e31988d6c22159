//! The OpenAPI 3 document of the REST gateway, served at `/openapi.json`, made from the same
//! route table as the router (`rest::routes`) and, for bodies and answers, from the proto's
//! own descriptors (the JSON the gateway takes and prints is the proto's JSON mapping), so it
//! cannot describe a route or a field that is not there.

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet, MethodDescriptorProto};
use serde_json::{json, Map, Value};

use super::rest::table::{routes, Body, Route, RouteKind};

const PACKAGE: &str = "noid.v1";

struct Descriptors {
    messages: Vec<DescriptorProto>,
    enums: Vec<prost_types::EnumDescriptorProto>,
    methods: Vec<MethodDescriptorProto>,
}

fn descriptors() -> Descriptors {
    let set = FileDescriptorSet::decode(noid::FILE_DESCRIPTOR_SET).expect("built-in descriptors");
    let files: Vec<_> = set
        .file
        .into_iter()
        .filter(|f| f.package() == PACKAGE)
        .collect();
    Descriptors {
        messages: files.iter().flat_map(|f| f.message_type.clone()).collect(),
        enums: files.iter().flat_map(|f| f.enum_type.clone()).collect(),
        methods: files
            .iter()
            .flat_map(|f| &f.service)
            .flat_map(|s| s.method.clone())
            .collect(),
    }
}

/// `.noid.v1.Vm` -> `Vm`.
fn short(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

fn schema_ref(type_name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", short(type_name)) })
}

/// The JSON schema of one field in the proto3 JSON mapping.
fn field_schema(f: &prost_types::FieldDescriptorProto, d: &Descriptors) -> Value {
    let one = match f.r#type() {
        Type::String => json!({"type": "string"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
        // 64-bit integers are strings in the proto3 JSON mapping.
        Type::Int64 | Type::Sint64 | Type::Sfixed64 | Type::Uint64 | Type::Fixed64 => {
            json!({"type": "string", "format": "int64"})
        }
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum => schema_ref(f.type_name()),
        // Times are RFC 3339 strings in the proto3 JSON mapping.
        Type::Message if f.type_name() == ".google.protobuf.Timestamp" => {
            json!({"type": "string", "format": "date-time"})
        }
        Type::Message => {
            // A map field's entry type is nested in the message that has the map.
            let entry = d.messages.iter().flat_map(|m| &m.nested_type).find(|n| {
                n.options.as_ref().is_some_and(|o| o.map_entry())
                    && n.name() == short(f.type_name())
            });
            if let Some(entry) = entry {
                let value = field_schema(&entry.field[1], d);
                return json!({"type": "object", "additionalProperties": value});
            }
            schema_ref(f.type_name())
        }
        Type::Group => json!({}),
    };
    if f.label() == Label::Repeated {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

fn schemas(d: &Descriptors) -> Map<String, Value> {
    let mut out = Map::new();
    for m in &d.messages {
        let properties: Map<String, Value> = m
            .field
            .iter()
            .map(|f| (f.name().to_string(), field_schema(f, d)))
            .collect();
        out.insert(
            m.name().to_string(),
            json!({"type": "object", "additionalProperties": false, "properties": properties}),
        );
    }
    for e in &d.enums {
        let names: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
        out.insert(
            e.name().to_string(),
            json!({"type": "string", "enum": names}),
        );
    }
    out.insert(
        "Error".into(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "the gRPC code's name, e.g. NOT_FOUND"},
            "message": {"type": "string"}}}),
    );
    out
}

/// `/vms/:name` -> `/vms/{name}`, and the names of its parameters.
fn openapi_path(path: &str) -> (String, Vec<&str>) {
    let mut params = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(|s| match s.strip_prefix(':') {
            Some(p) => {
                params.push(p);
                format!("{{{p}}}")
            }
            None => s.to_string(),
        })
        .collect();
    (segments.join("/"), params)
}

fn operation(route: &Route, d: &Descriptors) -> Value {
    let (_, params) = openapi_path(route.path);
    let mut op = json!({
        "summary": route.summary,
        "parameters": params.iter().map(|p| json!({
            "name": p, "in": "path", "required": true, "schema": {"type": "string"}
        })).collect::<Vec<_>>(),
        "responses": {
            "default": {"description": "error", "content": {"application/json": {"schema": schema_ref("Error")}}}
        }
    });
    if !["/health", "/metrics", "/openapi.json"].contains(&route.path) {
        op["security"] = json!([{"bearer": []}]);
    }
    let method = d.methods.iter().find(|m| m.name() == route.rpc);
    let ok = route.ok.to_string();
    op["responses"][&ok] = match (route.kind, method) {
        (RouteKind::Unary | RouteKind::Restore, _) if route.ok == 204 => {
            json!({"description": "done"})
        }
        (RouteKind::Unary, Some(m)) => json!({"description": "success",
            "content": {"application/json": {"schema": schema_ref(m.output_type())}}}),
        (RouteKind::Restore, _) => json!({"description": "success",
            "content": {"application/json": {"schema": schema_ref("Vm")}}}),
        _ => json!({"description": "success"}),
    };
    if let RouteKind::Unary = route.kind {
        op["operationId"] = json!(route.rpc);
    }
    let body = match (route.kind, route.body, method) {
        (RouteKind::Unary, Body::Message, Some(m)) => Some(schema_ref(m.input_type())),
        (RouteKind::Unary, Body::Field(field), Some(m)) => d
            .messages
            .iter()
            .find(|msg| msg.name() == short(m.input_type()))
            .and_then(|msg| msg.field.iter().find(|f| f.name() == field))
            .map(|f| field_schema(f, d)),
        (RouteKind::Restore, ..) => Some(schema_ref("RestoreRequest")),
        (RouteKind::Exec, ..) => Some(json!({
            "type": "object", "required": ["command"], "additionalProperties": false, "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "cwd": {"type": "string"}, "stdin": {"type": "string"},
                "timeout_secs": {"type": "number"}}})),
        _ => None,
    };
    if let Some(schema) = body {
        op["requestBody"] = json!({"content": {"application/json": {"schema": schema}}});
    }
    op
}

pub fn document() -> Value {
    let d = descriptors();
    let mut paths = Map::new();
    for route in routes() {
        let (path, _) = openapi_path(route.path);
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[route.verb.name()] = operation(route, &d);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "noid REST gateway", "version": noid::VERSION},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(&d),
        },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route is in the document under its method, and every schema a route names is
    /// defined.
    #[test]
    fn the_document_has_every_route_and_every_schema_it_names() {
        let doc = document();
        for route in routes() {
            let (path, _) = openapi_path(route.path);
            assert!(
                doc["paths"][&path][route.verb.name()].is_object(),
                "{} {path} missing",
                route.verb.name()
            );
        }
        let text = doc.to_string();
        for reference in text.split("#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "schema {name} is named but not defined"
            );
        }
        let vm = &doc["components"]["schemas"]["Vm"]["properties"];
        assert_eq!(vm["state"], json!({"$ref": "#/components/schemas/VmState"}));
        assert_eq!(
            vm["created_at"],
            json!({"type": "string", "format": "date-time"}),
            "a Timestamp is an RFC 3339 string in JSON"
        );
        assert_eq!(
            vm["idle_timeout_secs"]["type"], "string",
            "uint64 is a string in JSON"
        );
        assert!(vm["mac"].is_object() && vm["vmm_pid"].is_object());
    }
}
