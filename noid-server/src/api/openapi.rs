//! The OpenAPI 3 document of the REST gateway, served at `/openapi.json`.

use serde_json::{json, Value};

fn op(summary: &str, ok: &str) -> Value {
    json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            ok: {"description": "success", "content": {"application/json": {}}},
            "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
    })
}

fn with_body(mut o: Value, schema: Value) -> Value {
    o["requestBody"] =
        json!({"required": true, "content": {"application/json": {"schema": schema}}});
    o
}

fn name_param() -> Value {
    json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}])
}

pub fn document() -> Value {
    let named = |v: Value| {
        let mut v = v;
        v["parameters"] = name_param();
        v
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "noid REST gateway", "version": noid::VERSION},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "code"], "properties": {
                    "error": {"type": "string"}, "code": {"type": "string"}}},
                "NetworkPolicy": {"type": "object", "additionalProperties": false, "properties": {
                    "egress": {"type": "string", "enum": ["allow", "deny"], "description": "absent: the server's default"},
                    "allow": {"type": "array", "items": {"type": "string"}, "description": "CIDR[:PORT[-PORT]]"},
                    "deny": {"type": "array", "items": {"type": "string"}, "description": "CIDR[:PORT[-PORT]]"},
                    "isolated": {"type": "boolean", "description": "no traffic with the owner's other VMs"}}}
            }
        },
        "paths": {
            "/vms": {
                "get": op("List your VMs", "200"),
                "post": with_body(op("Create a VM and wait until it is ready", "201"), json!({
                    "type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "cpus": {"type": "integer"}, "memory_mib": {"type": "integer"},
                        "network_policy": {"$ref": "#/components/schemas/NetworkPolicy"}}}))
            },
            "/vms/{name}": named(json!({
                "get": op("Show a VM", "200"),
                "delete": op("Destroy a VM", "204")
            })),
            "/vms/{name}/resume": named(json!({
                "post": op("Let a paused VM run again", "200")
            })),
            "/vms/{name}/exec": named(json!({
                "post": with_body(op("Run a command; stdout and stderr are capped (truncated flag)", "200"), json!({
                    "type": "object", "required": ["command"], "properties": {
                        "command": {"type": "array", "items": {"type": "string"}},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "cwd": {"type": "string"}, "stdin": {"type": "string"},
                        "timeout_secs": {"type": "number"}}}))
            })),
            "/vms/{name}/files": named(json!({
                "get": op("Download the file at ?path= (absolute guest path) as application/octet-stream", "200"),
                "put": op("Upload the request body to ?path= [&mode=644]; the file changes only once the whole body arrived", "201")
            })),
            "/vms/{name}/checkpoints": named(json!({
                "get": op("List the VM's checkpoints, newest first", "200"),
                "post": op("Checkpoint the VM (optional body: {\"label\": ...})", "201")
            })),
            "/vms/{name}/restore": named(json!({
                "post": with_body(op("Restore a checkpoint of the VM in place, or as new_name", "200"), json!({
                    "type": "object", "required": ["checkpoint_id"], "properties": {
                        "checkpoint_id": {"type": "string"}, "new_name": {"type": "string"},
                        "network_policy": {"$ref": "#/components/schemas/NetworkPolicy"}}}))
            })),
            "/vms/{name}/network_policy": named(json!({
                "put": with_body(op("Replace the VM's network policy (applies at once)", "200"),
                    json!({"$ref": "#/components/schemas/NetworkPolicy"}))
            })),
            "/console/{name}": named(json!({
                "get": op("WebSocket: the VM's serial console (binary frames both ways); ?token= accepted", "101")
            })),
            "/logs/{name}": named(json!({
                "get": op("WebSocket: console output since boot, then live with ?follow=true; ?tail=N; ?token= accepted", "101")
            })),
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}}
        }
    })
}
