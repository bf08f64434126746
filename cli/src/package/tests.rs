#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest WebAssembly module (magic, version 1) and a custom section
/// naming the test, so that two tests' modules differ.
fn fake_wasm(name: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let payload = [&[name.len() as u8][..], name.as_bytes(), b"payload"].concat();
    bytes.push(0);
    bytes.push(payload.len() as u8);
    bytes.extend(payload);
    bytes
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tollgate-package-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a blob the way any OCI tool would: by the descriptor's digest,
/// checking its size and sha256. Independent of the code under test.
fn blob(dir: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        bytes.len() as u64,
        descriptor["size"].as_u64().unwrap(),
        "size of {digest}"
    );
    assert_eq!(sha256_hex(&bytes), hex, "sha256 of {digest}");
    bytes
}

#[test]
fn the_layout_is_valid_from_index_to_blobs() {
    let dir = TempDir::new();
    let wasm_path = dir.0.join("tollgate.wasm");
    let wasm = fake_wasm("layout");
    std::fs::write(&wasm_path, &wasm).unwrap();
    let out = dir.0.join("oci");
    let image = package(&wasm_path, &out).unwrap();

    let layout: Value = serde_json::from_slice(&std::fs::read(out.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");

    let index: Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifests[0]["digest"], image.manifest_digest.as_str());

    let manifest_bytes = blob(&out, &manifests[0]);
    assert_eq!(manifest_bytes, image.manifest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let config: Value = serde_json::from_slice(&blob(&out, &manifest["config"])).unwrap();
    assert_eq!(config["type"], "envoy_proxy");
    assert_eq!(config["config"]["root_ids"][0], "tollgate");

    // Istio's oci variant: exactly two layers, the config and the module.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(layers[0]["digest"], manifest["config"]["digest"]);
    assert_eq!(layers[1]["mediaType"], LAYER_MEDIA_TYPE);
    assert_eq!(blob(&out, &layers[0]), image.config);
    assert_eq!(blob(&out, &layers[1]), wasm);
    assert_eq!(image.layer_digest, format!("sha256:{}", sha256_hex(&wasm)));

    // Nothing else in blobs/ (no temporary files left behind).
    let mut names: Vec<String> = std::fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = [&image.config_digest, &image.layer_digest, &image.manifest_digest]
        .map(|d| d.strip_prefix("sha256:").unwrap().to_string())
        .to_vec();
    expected.sort();
    assert_eq!(names, expected);

    assert_eq!(manifest_digest_of_layout(&out).unwrap(), image.manifest_digest);
}

#[test]
fn the_same_module_gives_the_same_digests_and_files() {
    let dir = TempDir::new();
    let wasm_path = dir.0.join("m.wasm");
    std::fs::write(&wasm_path, fake_wasm("same")).unwrap();
    let first = package(&wasm_path, &dir.0.join("a")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = package(&wasm_path, &dir.0.join("b")).unwrap();
    assert_eq!(first, second);
    for file in ["index.json", "oci-layout"] {
        assert_eq!(
            std::fs::read(dir.0.join("a").join(file)).unwrap(),
            std::fs::read(dir.0.join("b").join(file)).unwrap()
        );
    }
    let other = image(&fake_wasm("other")).unwrap();
    assert_ne!(other.manifest_digest, first.manifest_digest);
    assert_eq!(other.config_digest, first.config_digest);
}

#[test]
fn repackaging_a_layout_replaces_the_image_and_drops_old_blobs() {
    let dir = TempDir::new();
    let wasm_path = dir.0.join("m.wasm");
    let out = dir.0.join("oci");
    std::fs::write(&wasm_path, fake_wasm("old")).unwrap();
    let old = package(&wasm_path, &out).unwrap();
    std::fs::write(&wasm_path, fake_wasm("new")).unwrap();
    let new = package(&wasm_path, &out).unwrap();
    assert_eq!(manifest_digest_of_layout(&out).unwrap(), new.manifest_digest);
    assert!(blob_path(&out, &new.layer_digest).unwrap().is_file());
    assert!(!blob_path(&out, &old.layer_digest).unwrap().exists());
    assert!(!blob_path(&out, &old.manifest_digest).unwrap().exists());
}

#[test]
fn a_directory_that_is_not_a_layout_is_left_alone() {
    let dir = TempDir::new();
    let wasm_path = dir.0.join("m.wasm");
    std::fs::write(&wasm_path, fake_wasm("x")).unwrap();
    // dir.0 holds m.wasm: not empty, no oci-layout.
    let err = package(&wasm_path, &dir.0).unwrap_err();
    assert!(err.contains("neither empty nor an OCI image layout"), "{err}");
    assert!(!dir.0.join("index.json").exists());
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    assert!(image(b"").is_err());
    assert!(image(b"\0asm").is_err());
    let err = image(b"#!/bin/sh\necho not wasm\n").unwrap_err();
    assert!(err.contains("not a WebAssembly module"), "{err}");
    // A wasm version 2 header is not what Envoy loads.
    assert!(image(b"\0asm\x02\0\0\0").is_err());
}

#[test]
fn a_tampered_or_broken_layout_is_reported() {
    let dir = TempDir::new();
    let wasm_path = dir.0.join("m.wasm");
    std::fs::write(&wasm_path, fake_wasm("t")).unwrap();
    let out = dir.0.join("oci");
    let image = package(&wasm_path, &out).unwrap();

    let manifest_blob = blob_path(&out, &image.manifest_digest).unwrap();
    let mut bytes = std::fs::read(&manifest_blob).unwrap();
    bytes[0] = b' ';
    std::fs::write(&manifest_blob, &bytes).unwrap();
    let err = manifest_digest_of_layout(&out).unwrap_err();
    assert!(err.contains("its sha256 is"), "{err}");

    std::fs::write(out.join("index.json"), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
    let err = manifest_digest_of_layout(&out).unwrap_err();
    assert!(err.contains("lists 0 manifests"), "{err}");

    // A digest read from index.json cannot point outside blobs/sha256.
    std::fs::write(
        out.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MANIFEST_MEDIA_TYPE}","digest":"sha256:../../oci-layout","size":1}}]}}"#
        ),
    )
    .unwrap();
    let err = manifest_digest_of_layout(&out).unwrap_err();
    assert!(err.contains("is not a sha256 digest"), "{err}");

    let err = manifest_digest_of_layout(&dir.0.join("missing")).unwrap_err();
    assert!(err.contains("index.json"), "{err}");
}

#[test]
fn a_reference_pinned_to_another_digest_is_refused_before_any_network() {
    let image = image(&fake_wasm("pin")).unwrap();
    let other = format!("127.0.0.1:9/tollgate@sha256:{}", "0".repeat(64));
    let err = push(&image, &other, true).unwrap_err();
    assert!(err.contains("names a digest"), "{err}");
    assert!(push(&image, "not a reference!", true)
        .unwrap_err()
        .contains("is not an image reference"));
}
