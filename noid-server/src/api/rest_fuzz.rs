//! Fuzz targets for the gateway's request bodies: whatever bytes a client sends, decoding and
//! checking them ends in a value or a clear error, never a panic. Bolero targets: `cargo test`
//! runs each for about a second; see the README for longer runs.

use serde_json::json;

use super::*;

/// Everything the gateway does with a body before the core sees it.
fn check_body(bytes: &[u8]) {
    if let Ok(b) = serde_json::from_slice::<CreateBody>(bytes) {
        let _ = noid::names::validate_name("VM", &b.name);
        if let Some(p) = b.network_policy {
            check_policy(p);
        }
    }
    if let Ok(b) = serde_json::from_slice::<ExecBody>(bytes) {
        if let Ok(Some(t)) = exec_timeout(b.timeout_secs) {
            assert!(t >= Duration::from_millis(1) && t < Duration::from_secs(4_000_000));
        }
    }
    if let Ok(b) = serde_json::from_slice::<RestoreBody>(bytes) {
        if let Some(p) = b.network_policy {
            check_policy(p);
        }
    }
    if let Ok(p) = serde_json::from_slice::<PolicyBody>(bytes) {
        check_policy(p);
    }
    match checkpoint_label(bytes) {
        Ok(label) => assert!(label.is_empty() || !bytes.iter().all(u8::is_ascii_whitespace)),
        Err(e) => assert!(matches!(e, CoreError::InvalidArgument(_))),
    }
}

fn check_policy(p: PolicyBody) {
    let egress = p.egress.unwrap_or_default();
    let _ = noid::netpolicy::NetPolicy::parse(egress, &p.allow, &p.deny, p.isolated);
}

#[test]
fn fuzz_rest_body_bytes() {
    bolero::check!().for_each(check_body);
}

/// Bodies that are JSON objects with the right keys and values of any type, so that most
/// inputs get past the JSON parser to the checks behind it.
#[test]
fn fuzz_rest_body_fields() {
    bolero::check!()
        .with_type::<(String, Option<u32>, Vec<String>, f64, Option<bool>, u8)>()
        .for_each(|(text, number, list, secs, flag, egress)| {
            let egress = ["allow", "deny", "", "ALLOW"][usize::from(*egress % 4)];
            let bodies = [
                json!({"name": text, "cpus": number, "memory_mib": number, "request_id": text}),
                json!({"name": text, "network_policy": {"egress": egress, "allow": list, "deny": list, "isolated": flag}}),
                json!({"command": list, "cwd": text, "stdin": text, "timeout_secs": secs}),
                json!({"command": list, "env": {text.clone(): text}, "timeout_secs": number}),
                json!({"label": text}),
                json!({"label": number}),
                json!({"checkpoint_id": text, "new_name": text, "network_policy": {"allow": list}}),
                json!({"egress": egress, "allow": list, "deny": list, "isolated": flag, "extra": 1}),
            ];
            for b in bodies {
                check_body(&serde_json::to_vec(&b).unwrap());
            }
        });
}

#[test]
fn fuzz_exec_timeout() {
    bolero::check!().with_type::<f64>().for_each(|s| {
        if let Ok(Some(t)) = exec_timeout(Some(*s)) {
            assert!(t >= Duration::from_millis(1));
        }
    });
}
