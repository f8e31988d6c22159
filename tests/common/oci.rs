//! Container image archives made by the tests themselves: tar layers, gzip, and the OCI image
//! layout around them (index, manifest, config with diff_ids), as `skopeo` writes it.

use std::io::Write;

use sha2::{Digest, Sha256};

pub fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A tar of `entries`: (path, kind, content or link target, mode).
pub fn tar_of(entries: &[(&str, tar::EntryType, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = std::str::from_utf8(data).unwrap();
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            _ => {
                h.set_size(data.len() as u64);
                // Raw names, so that a hostile `../` can be written too.
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout archive of `layers` (tar bytes, gzip them or not) with this run config.
pub fn oci_archive(layers: &[(Vec<u8>, bool)], config: serde_json::Value) -> Vec<u8> {
    let blobs: Vec<(Vec<u8>, &str)> = layers
        .iter()
        .map(|(tar, gz)| {
            if *gz {
                (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
            }
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|(t, _)| digest(t)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let layer_descs: Vec<_> = blobs
        .iter()
        .map(|(b, media)| {
            serde_json::json!({"mediaType": media, "digest": digest(b), "size": b.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(&manifest), "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    use tar::EntryType::Regular;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index),
    ];
    for b in [config, manifest]
        .into_iter()
        .chain(blobs.into_iter().map(|(b, _)| b))
    {
        files.push((format!("blobs/sha256/{}", &digest(&b)[7..]), b));
    }
    let entries: Vec<_> = files
        .iter()
        .map(|(p, b)| (p.as_str(), Regular, b.as_slice(), 0o644))
        .collect();
    tar_of(&entries)
}

/// The image's first layer: busybox as /bin (but no `ip`), users, files to delete and keep.
pub fn base_layer() -> Vec<u8> {
    use tar::EntryType::*;
    let applets: Vec<String> = ["sh", "ls", "cat", "echo", "pwd", "id", "stat", "true", "df"]
        .iter()
        .map(|a| format!("bin/{a}"))
        .collect();
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut entries: Vec<(&str, tar::EntryType, &[u8], u32)> = vec![
        ("bin/", Directory, b"", 0o755),
        ("bin/busybox", Regular, &busybox, 0o755),
        ("etc/", Directory, b"", 0o755),
        (
            "etc/passwd",
            Regular,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            0o644,
        ),
        ("etc/group", Regular, b"root:x:0:\napp:x:1000:\n", 0o644),
        ("etc/doomed", Regular, b"delete me\n", 0o644),
        ("etc/kept", Regular, b"kept\n", 0o600),
        ("etc/kept-link", Link, b"etc/kept", 0o600),
        ("srv/", Directory, b"", 0o755),
        ("srv/app/", Directory, b"", 0o755),
        ("srv/app/old.txt", Regular, b"old\n", 0o644),
        ("cache/", Directory, b"", 0o755),
        ("cache/stale", Regular, b"stale\n", 0o644),
        ("home/", Directory, b"", 0o755),
        ("home/app/", Directory, b"", 0o755),
    ];
    for applet in &applets {
        entries.push((applet, Symlink, b"busybox", 0o777));
    }
    tar_of(&entries)
}
