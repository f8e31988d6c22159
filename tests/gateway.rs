//! The REST/WebSocket gateway with real HTTP and WebSocket clients against a real server and
//! VM: every route, status codes and bodies in the proto's JSON mapping, auth failures, the
//! OpenAPI document, and the Prometheus metrics moving after a create, an exec and a
//! checkpoint.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A JSON document from a public route, asked without a token.
    async fn public_json(&self, path: &str) -> Value {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await;
        resp.unwrap().json().await.unwrap()
    }

    async fn metrics_text(&self) -> String {
        let resp = self.http.get(format!("{}/metrics", self.base)).send().await;
        resp.unwrap().text().await.unwrap()
    }

    /// The sum of the series of `name`, whatever their labels.
    async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A WebSocket of the gateway.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the gateway's WebSocket at `path` (with its query, if any) as the holder of `token`.
async fn ws_open(base: &str, path: &str, token: &str) -> Ws {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{base}{path}{sep}token={token}");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Types `line` into a console WebSocket and waits until `echo` comes back.
async fn console_type(console: &mut Ws, line: &str, echo: &str) {
    console
        .send(Message::Binary(format!("{line}\n").into_bytes()))
        .await
        .unwrap();
    ws_read_until(console, echo).await;
}

/// Reads a WebSocket exec to its end: stdout, stderr and the final JSON frame.
async fn ws_exec_output(ws: &mut Ws) -> (Vec<u8>, Vec<u8>, Value) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => match b.split_first() {
                Some((1, d)) => out.extend_from_slice(d),
                Some((2, d)) => err.extend_from_slice(d),
                other => panic!("a frame on no output channel: {other:?}"),
            },
            Ok(Some(Ok(Message::Text(t)))) => {
                return (out, err, serde_json::from_str(&t).unwrap());
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the exec socket ended without a status: {other:?}"),
        }
    }
}

async fn ws_read_until(ws: &mut Ws, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.extend(b),
            Ok(Some(Ok(Message::Text(t)))) => seen.extend(t.into_bytes()),
            Ok(Some(Ok(_))) => {}
            other => panic!(
                "{needle:?} never came ({other:?}); got {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_websocket_gateway() {
    use reqwest::Method;
    let server = common::Server::start(&["alice", "bob"], "");
    let api = Api {
        base: server.http_url.clone(),
        token: server.tokens["alice"].clone(),
        http: reqwest::Client::new(),
    };

    // Auth failures.
    let resp = api
        .http
        .get(format!("{}/vms", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
    let bad = Api {
        token: "noid_nope".into(),
        ..Api {
            base: api.base.clone(),
            token: String::new(),
            http: api.http.clone(),
        }
    };
    let (status, body) = bad.call(Method::GET, "/vms", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("invalid token"))
    );
    // A token in the query string counts on WebSocket routes only.
    let resp = api
        .http
        .get(format!("{}/vms?token={}", api.base, api.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Public: health; everything else names the caller.
    let health = api.public_json("/health").await;
    assert_eq!(health["serving"], true);
    let (status, me) = api.call(Method::GET, "/whoami", None).await;
    assert_eq!((status, me["user"].as_str()), (200, Some("alice")));
    let (status, info) = api.call(Method::GET, "/info", None).await;
    assert_eq!(status, 200);
    assert!(info["max_cpus"].as_u64().unwrap() >= 1, "{info}");
    // Unknown routes and fields are refused in the same JSON form as every error.
    let (status, body) = api.call(Method::GET, "/nope", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, body) = api
        .call(Method::POST, "/vms", Some(json!({"name": "x", "cpu": 2})))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("cpu"), "{body}");

    // Bad input and unknown VMs.
    let (status, body) = api
        .call(Method::POST, "/vms", Some(json!({"name": "Bad Name"})))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert!(
        body["message"].as_str().unwrap().contains("lowercase"),
        "{body}"
    );
    let (status, body) = api.call(Method::GET, "/vms/ghost", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(body["reason"], "VM_NOT_FOUND", "{body}");

    // Create, list, show.
    let creates = api.metric("noid_vm_create_duration_seconds_count").await;
    let (status, vm) = api
        .call(Method::POST, "/vms", Some(json!({"name": "web"})))
        .await;
    assert_eq!(status, 201, "{vm}");
    // The proto's JSON mapping: every field, enums by name, 64-bit integers as strings.
    assert_eq!(vm["name"], "web");
    assert_eq!(vm["state"], "VM_STATE_RUNNING");
    assert!(vm["vmm_pid"].as_u64().unwrap() > 0, "{vm}");
    assert!(
        vm["mac"].is_string() && vm["created_at"].is_string(),
        "{vm}"
    );
    assert_eq!(
        api.metric("noid_vm_create_duration_seconds_count").await,
        creates + 1.0
    );
    assert_eq!(api.metric("noid_vms_running").await, 1.0);
    let (status, body) = api
        .call(Method::POST, "/vms", Some(json!({"name": "web"})))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ALREADY_EXISTS"))
    );
    let (status, list) = api.call(Method::GET, "/vms", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["vms"].as_array().unwrap().len(), 1);
    let (status, one) = api.call(Method::GET, "/vms/web", None).await;
    assert_eq!((status, one["id"].clone()), (200, vm["id"].clone()));
    let bob = Api {
        token: server.tokens["bob"].clone(),
        base: api.base.clone(),
        http: api.http.clone(),
    };
    assert_eq!(bob.call(Method::GET, "/vms/web", None).await.0, 404);

    // Exec: streams apart, exit code, env, cwd, stdin; output cut with a flag.
    let execs = api.metric("noid_exec_total").await;
    let (status, r) = api
        .call(
            Method::POST,
            "/vms/web/exec",
            Some(
                json!({"command": ["sh", "-c", "echo out; echo \"$X\" >&2; pwd; cat; exit 3"],
                        "env": {"X": "from-env"}, "cwd": "/tmp", "stdin": "piped"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["stdout"], "out\n/tmp\npiped");
    assert_eq!(r["stderr"], "from-env\n");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["truncated"], false);
    let (_, r) = api
        .call(
            Method::POST,
            "/vms/web/exec",
            Some(json!({"command": ["sh", "-c", "head -c 1500000 /dev/zero | tr '\\0' a"]})),
        )
        .await;
    assert_eq!(r["truncated"], true);
    assert_eq!(r["stdout"].as_str().unwrap().len(), 1 << 20);
    assert!(api.metric("noid_exec_total").await >= execs + 2.0);
    let (status, r) = api
        .call(Method::POST, "/vms/web/exec", Some(json!({"command": []})))
        .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );

    // Files: upload with a mode, download the same bytes; a missing file is a 404.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let url = |q: &str| format!("{}/vms/web/files?{q}", api.base);
    let resp = api
        .http
        .put(url("path=/root/blob&mode=700"))
        .bearer_auth(&api.token)
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let (_, r) = api
        .call(
            Method::POST,
            "/vms/web/exec",
            Some(json!({"command": ["stat", "-c", "%a %s", "/root/blob"]})),
        )
        .await;
    assert_eq!(r["stdout"], "700 200000\n");
    let resp = api
        .http
        .get(url("path=/root/blob"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().await.unwrap() == payload);
    let (status, r) = api
        .call(Method::GET, "/vms/web/files?path=/nope", None)
        .await;
    assert_eq!((status, r["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, r) = api
        .call(Method::PUT, "/vms/web/files?path=/root/x&mode=9z", None)
        .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );

    // Checkpoints and restore.
    let ckpts = api.metric("noid_checkpoint_duration_seconds_count").await;
    let (status, ck) = api
        .call(
            Method::POST,
            "/vms/web/checkpoints",
            Some(json!({"label": "rest"})),
        )
        .await;
    assert_eq!(status, 201, "{ck}");
    assert_eq!(ck["label"], "rest");
    assert_eq!(
        api.metric("noid_checkpoint_duration_seconds_count").await,
        ckpts + 1.0
    );
    assert!(api.metric("noid_checkpoint_size_bytes_sum").await > 1e6);
    let (status, list) = api.call(Method::GET, "/vms/web/checkpoints", None).await;
    assert_eq!(
        (status, list["checkpoints"][0]["id"].clone()),
        (200, ck["id"].clone())
    );
    let (status, all) = api.call(Method::GET, "/checkpoints", None).await;
    assert_eq!(
        (status, all["checkpoints"][0]["id"].clone()),
        (200, ck["id"].clone())
    );
    // Paging: a second checkpoint, then pages of one, newest first, through the query.
    let (status, ck2) = api
        .call(Method::POST, "/vms/web/checkpoints", Some(json!({})))
        .await;
    assert_eq!(status, 201, "{ck2}");
    let (status, first) = api
        .call(Method::GET, "/vms/web/checkpoints?page_size=1", None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["checkpoints"][0]["id"], ck2["id"], "newest first");
    let token = first["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty(), "{first}");
    let (_, second) = api
        .call(
            Method::GET,
            &format!("/vms/web/checkpoints?page_size=1&page_token={token}"),
            None,
        )
        .await;
    assert_eq!(second["checkpoints"][0]["id"], ck["id"], "{second}");
    assert_eq!(second["next_page_token"], "", "the last page");
    let (status, body) = api.call(Method::GET, "/vms?page_size=x", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, body) = api.call(Method::GET, "/vms?page_token=zz", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert!(body["message"].as_str().unwrap().contains("page_token"));
    let ck2_path = format!("/checkpoints/{}", ck2["id"].as_str().unwrap());
    assert_eq!(api.call(Method::DELETE, &ck2_path, None).await.0, 204);
    // The router's own refusals are JSON errors like the rest.
    let resp = api
        .http
        .patch(format!("{}/vms", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.headers().contains_key("allow"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "UNIMPLEMENTED", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("PATCH"),
        "{body}"
    );

    let ck_path = format!("/checkpoints/{}", ck["id"].as_str().unwrap());
    let (status, one) = api.call(Method::GET, &ck_path, None).await;
    assert_eq!((status, one["label"].as_str()), (200, Some("rest")));
    assert_eq!(bob.call(Method::GET, &ck_path, None).await.0, 404);
    let (status, fork) = api
        .call(
            Method::POST,
            "/vms/web/restore",
            Some(json!({"checkpoint_id": ck["id"], "new_name": "web2"})),
        )
        .await;
    assert_eq!((status, fork["name"].as_str()), (200, Some("web2")));
    let (status, again) = api
        .call(
            Method::POST,
            "/vms/web/restore",
            Some(json!({"checkpoint_id": ck["id"]})),
        )
        .await;
    assert_eq!((status, again["name"].as_str()), (200, Some("web")));
    let (status, body) = api
        .call(
            Method::POST,
            "/vms/web2/restore",
            Some(json!({"checkpoint_id": ck["id"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    // The checkpoint's own route forks too; a path's id wins no argument with the body.
    let (status, fork3) = api
        .call(
            Method::POST,
            &format!("{ck_path}/restore"),
            Some(json!({"new_name": "web3"})),
        )
        .await;
    assert_eq!(
        (status, fork3["name"].as_str()),
        (200, Some("web3")),
        "{fork3}"
    );
    let (status, body) = api
        .call(
            Method::POST,
            &format!("{ck_path}/restore"),
            Some(json!({"checkpoint_id": "0123456789ab", "new_name": "web4"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    // Ports are routed too (refused here: this server gives VMs no network).
    let (status, body) = api
        .call(
            Method::POST,
            "/vms/web3/ports",
            Some(json!({"host_port": 20080, "guest_port": 80})),
        )
        .await;
    assert!(status >= 400 && body["code"].is_string(), "{status} {body}");
    assert_eq!(api.call(Method::DELETE, "/vms/web3", None).await.0, 204);

    // WebSockets: the console (token in the query, as browsers must) and the logs.
    let ws_base = api.base.replacen("http://", "ws://", 1);
    let mut console = ws_open(&ws_base, "/console/web", &api.token).await;
    console_type(&mut console, "echo $((3*4))-ws", "12-ws").await;
    let mut logs = ws_open(&ws_base, "/logs/web?follow=true", &api.token).await;
    ws_read_until(&mut logs, "noid-agent").await;
    // The logs since a moment, each line with its time: what the console printed before it
    // is left out, what came after is there, stamped.
    let moment = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    console_type(&mut console, "echo $((5*5))-late", "25-late").await;
    let query = format!("/logs/web?since={moment}&timestamps=true");
    let mut since = ws_open(&ws_base, &query, &api.token).await;
    let recent = ws_read_until(&mut since, "25-late").await;
    assert!(!recent.contains("12-ws"), "older output came: {recent}");
    for line in recent.lines().filter(|l| !l.trim().is_empty()) {
        let stamp = line.split_whitespace().next().unwrap_or_default();
        let at = humantime::parse_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("line without its time ({e}): {line:?}"));
        assert!(
            at >= humantime::parse_rfc3339(&moment).unwrap(),
            "{line:?} is from before {moment}"
        );
    }
    assert!(
        tokio_tungstenite::connect_async(format!(
            "{ws_base}/logs/web?token={}&since=yesterday",
            api.token
        ))
        .await
        .is_err(),
        "a bad since is refused"
    );
    assert!(
        tokio_tungstenite::connect_async(format!("{ws_base}/logs/web"))
            .await
            .is_err(),
        "no token, no socket"
    );

    // A streaming exec over a WebSocket: stdin in, stdout and stderr apart (bytes exact),
    // the exit status last.
    let mut ex = ws_open(&ws_base, "/exec/web", &api.token).await;
    let start = json!({"command": ["sh", "-c", "read x; echo out:$x; echo err >&2; printf '\\377\\000'; exit 7"], "stdin": true});
    ex.send(Message::Text(start.to_string())).await.unwrap();
    ex.send(Message::Binary(b"\0hello\n".to_vec()))
        .await
        .unwrap();
    let (stdout, stderr, end) = ws_exec_output(&mut ex).await;
    assert_eq!(stdout, b"out:hello\n\xff\0");
    assert_eq!(stderr, b"err\n");
    assert_eq!(end["exit_code"], 7, "{end}");
    // With a terminal, resized while it runs.
    let mut ex = ws_open(&ws_base, "/exec/web", &api.token).await;
    // (stty runs once its stdin has a line, which comes after the resize on the one stream)
    let start = json!({"command": ["sh", "-c", "read go; stty size"], "tty": true, "stdin": true, "rows": 10, "cols": 20});
    ex.send(Message::Text(start.to_string())).await.unwrap();
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"rows": 40, "cols": 100}"#);
    ex.send(Message::Binary(resize)).await.unwrap();
    ex.send(Message::Binary(b"\0go\n".to_vec())).await.unwrap();
    let (stdout, _, end) = ws_exec_output(&mut ex).await;
    let stdout = String::from_utf8_lossy(&stdout);
    assert_eq!(
        stdout.lines().last().map(str::trim),
        Some("40 100"),
        "{stdout}"
    );
    assert_eq!(end["exit_code"], 0, "{end}");
    // What makes no sense is refused with a JSON error.
    let mut ex = ws_open(&ws_base, "/exec/web", &api.token).await;
    ex.send(Message::Text(r#"{"cmd": ["ls"]}"#.into()))
        .await
        .unwrap();
    let (_, _, end) = ws_exec_output(&mut ex).await;
    assert_eq!(end["code"], "INVALID_ARGUMENT", "{end}");
    // The captured exec keeps bytes that are not text: base64 on request, or beside the text.
    let (_, r) = api
        .call(
            Method::POST,
            "/vms/web/exec",
            Some(json!({"command": ["printf", "\\377ok"], "encoding": "base64"})),
        )
        .await;
    assert_eq!(r["stdout"], "/29r", "{r}");
    let (_, r) = api
        .call(
            Method::POST,
            "/vms/web/exec",
            Some(json!({"command": ["printf", "\\377ok"]})),
        )
        .await;
    assert_eq!(r["stdout_base64"], "/29r", "{r}");

    // The OpenAPI document lists every route.
    let doc = api.public_json("/openapi.json").await;
    for path in [
        "/health",
        "/whoami",
        "/info",
        "/vms",
        "/vms/{name}",
        "/vms/{name}/exec",
        "/exec/{name}",
        "/vms/{name}/files",
        "/vms/{name}/ports",
        "/vms/{name}/ports/{host_port}",
        "/vms/{name}/checkpoints",
        "/vms/{name}/restore",
        "/checkpoints",
        "/checkpoints/{id}",
        "/checkpoints/{id}/restore",
        "/console/{name}",
        "/logs/{name}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }

    // Errors are counted by code (the 404s and 409 above, over REST).
    let text = api.metrics_text().await;
    assert!(
        text.contains("noid_api_errors_total{code=\"NOT_FOUND\"}"),
        "{text}"
    );
    assert!(text.contains("noid_vm_memory_bytes{vm=\"web\""), "{text}");

    for vm in ["web2", "web"] {
        assert_eq!(
            api.call(Method::DELETE, &format!("/vms/{vm}"), None)
                .await
                .0,
            204
        );
    }
    assert_eq!(
        api.call(Method::GET, "/vms", None).await.1,
        json!({"vms": [], "next_page_token": ""})
    );
    let (status, _) = api.call(Method::DELETE, &ck_path, None).await;
    assert_eq!(status, 204);
    assert_eq!(api.call(Method::GET, &ck_path, None).await.0, 404);
}
