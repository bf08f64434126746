//! `tollgate package`: tollgate.wasm as an OCI image, written as an OCI
//! image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`) with
//! no Docker, and pushed to a registry on request.
//!
//! The format is the *oci* variant of the Wasm image spec (solo-io/wasm
//! `spec/spec.md`), not the single-layer *compat* image (a tar.gz layer
//! holding `plugin.wasm`). Istio pulls both (`pkg/wasm/imagefetcher.go`
//! tries compat, then oci); we take oci because its wasm layer is
//! tollgate.wasm byte for byte: the layer digest is the module's sha256,
//! which anyone can check with `sha256sum`, and no digest depends on tar
//! headers (mtime, owner, order) or gzip settings, so the same module always
//! gives the same image. What it costs: `docker build` cannot make it, and a
//! registry must accept custom media types (the distribution registry the
//! test pushes to does).
//!
//! Istio's oci reader (`extractOCIArtifactImage`) wants exactly two entries
//! in the manifest's `layers`, one of them the wasm content layer ("number
//! of layers must be 2 but got 1" otherwise; its own test pushes a config
//! layer and a wasm layer). So the runtime config is both the manifest's
//! config (`application/vnd.module.wasm.config.v1+json`, the media type by
//! which registries and ORAS tell a wasm module) and the first layer; the
//! module is the second.
//!
//! The manifest digest is what a WasmPlugin's `sha256` pins for an `oci://`
//! URL: Istio's `pkg/wasm/cache.go` compares it with the hex of
//! `img.Digest()`, the manifest's digest (`PrepareFetch` in
//! `imagefetcher.go`), and refuses a mismatch ("module downloaded from ...
//! has checksum ..., which does not match"). For an `http(s)://` URL it
//! compares the sha256 of the module itself, here the layer digest. The
//! CRD takes the hex alone: `sha256` matches `(^$|^[a-f0-9]{64}$)`.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// ORAS names a pulled layer's file after this annotation.
const TITLE: &str = "org.opencontainers.image.title";
/// The proxy-wasm ABI the pinned SDK (proxy-wasm 0.2.5) exports.
const ABI_VERSION: &str = "v0.2.1";
/// Registry credentials for `--push`; without them the push is anonymous.
pub const USERNAME_ENV: &str = "TOLLGATE_REGISTRY_USERNAME";
pub const PASSWORD_ENV: &str = "TOLLGATE_REGISTRY_PASSWORD";

/// One image: each blob's bytes and digest (`sha256:<hex>`). The config
/// blob is also the manifest's first layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

/// An OCI content descriptor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest. Structs, not `serde_json::Value`: the field order,
/// and so the digest, cannot change with serde_json's features.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    /// A SHOULD of the image spec: other tools' indexes may lack it.
    #[serde(default)]
    media_type: String,
    manifests: Vec<Descriptor>,
}

/// The runtime config of the Wasm image spec for Envoy: the runtime, its
/// ABI and the module's root ids (every `pluginName` a WasmPlugin may use).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    r#type: &'static str,
    abi_versions: Vec<&'static str>,
    config: RootIds,
}

#[derive(Serialize)]
struct RootIds {
    root_ids: Vec<&'static str>,
}

pub fn run(wasm: &Path, out: &Path, push_to: Option<&str>, insecure: bool) -> Result<(), String> {
    let image = package(wasm, out)?;
    eprintln!(
        "{}: OCI image layout of {} ({} bytes, layer {})",
        out.display(),
        wasm.display(),
        image.layer.len(),
        image.layer_digest
    );
    if let Some(reference) = push_to {
        push(&image, reference, insecure)?;
        eprintln!("pushed {reference}");
    }
    // The WasmPlugin CRD's `sha256` takes the hex alone (`^[a-f0-9]{64}$`).
    eprintln!(
        "WasmPlugin sha256 (the manifest digest): {}",
        hex_of(&image.manifest_digest)
    );
    println!("{}", image.manifest_digest);
    Ok(())
}

/// Builds the image of the module at `wasm` and writes it as an OCI image
/// layout at `out`: an empty or missing directory, or an earlier layout,
/// whose blobs that the new index does not reach are removed.
pub fn package(wasm: &Path, out: &Path) -> Result<Image, String> {
    let bytes = std::fs::read(wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let image = image(&bytes).map_err(|e| format!("{}: {e}", wasm.display()))?;
    write_layout(&image, out)?;
    Ok(image)
}

/// The image of a module, from its bytes alone: no time, path or user goes
/// in, so the same module gives the same digests.
pub fn image(wasm: &[u8]) -> Result<Image, String> {
    check_wasm(wasm)?;
    let config = to_json(&runtime_config())?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.to_string(),
        config: descriptor(CONFIG_MEDIA_TYPE, &config, None),
        layers: vec![
            descriptor(CONFIG_MEDIA_TYPE, &config, Some("runtime-config.json")),
            descriptor(LAYER_MEDIA_TYPE, wasm, Some("tollgate.wasm")),
        ],
    };
    let manifest = to_json(&manifest)?;
    Ok(Image {
        config_digest: digest(&config),
        config,
        layer_digest: digest(wasm),
        layer: wasm.to_vec(),
        manifest_digest: digest(&manifest),
        manifest,
    })
}

/// Istio refuses a module without the wasm magic and version (`isValidWasmBinary`).
fn check_wasm(wasm: &[u8]) -> Result<(), String> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(()),
        _ => Err("is not a WebAssembly module (no `\\0asm` version 1 header)".to_string()),
    }
}

fn runtime_config() -> RuntimeConfig {
    let root_ids = crate::render::root_ids(false)
        .chain(crate::render::root_ids(true))
        .collect();
    RuntimeConfig {
        r#type: "envoy_proxy",
        abi_versions: vec![ABI_VERSION],
        config: RootIds { root_ids },
    }
}

fn descriptor(media_type: &str, bytes: &[u8], title: Option<&str>) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest(bytes),
        size: bytes.len() as u64,
        annotations: title
            .map(|t| BTreeMap::from([(TITLE.to_string(), t.to_string())]))
            .unwrap_or_default(),
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

/// `sha256:<lowercase hex>`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for byte in hash.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

// ---- the OCI image layout ----

fn write_layout(image: &Image, out: &Path) -> Result<(), String> {
    check_out_dir(out)?;
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    for (digest, bytes) in [
        (&image.layer_digest, &image.layer),
        (&image.config_digest, &image.config),
        (&image.manifest_digest, &image.manifest),
    ] {
        write_file(&blob_path(out, digest)?, bytes)?;
    }
    write_file(&out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = Index {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE.to_string(),
        manifests: vec![descriptor(MANIFEST_MEDIA_TYPE, &image.manifest, None)],
    };
    // The index goes last: a run stopped halfway leaves the previous index,
    // whose blobs are all still there.
    write_file(&out.join("index.json"), &to_json(&index)?)?;
    remove_other_blobs(&blobs, image)
}

/// Writes only into a missing or empty directory or an OCI layout, so that
/// a mistyped `--out` cannot have its files mixed with (or pruned as) blobs.
fn check_out_dir(out: &Path) -> Result<(), String> {
    let mut entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", out.display())),
    };
    if entries.next().is_none() || out.join("oci-layout").is_file() {
        return Ok(());
    }
    Err(format!(
        "{} is neither empty nor an OCI image layout; choose another --out",
        out.display()
    ))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, bytes).map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Blobs of earlier images (another module) would otherwise pile up.
fn remove_other_blobs(blobs: &Path, image: &Image) -> Result<(), String> {
    let keep = [&image.layer_digest, &image.config_digest, &image.manifest_digest].map(|d| hex_of(d).to_string());
    let entries = std::fs::read_dir(blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && entry.path().is_file() {
            std::fs::remove_file(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Where a blob lives in a layout. The digest is checked first: one read
/// from an index.json must not name a path outside `blobs/sha256`.
fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| format!("'{digest}' is not a sha256 digest"))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

/// A blob of a layout, checked against its descriptor's size and digest.
pub fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, String> {
    let path = blob_path(dir, &descriptor.digest)?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 != descriptor.size {
        return Err(format!(
            "{}: {} bytes, but its descriptor says {}",
            path.display(),
            bytes.len(),
            descriptor.size
        ));
    }
    let actual = digest(&bytes);
    if actual != descriptor.digest {
        return Err(format!("{}: its sha256 is {actual}", path.display()));
    }
    Ok(bytes)
}

/// The digest of the one image manifest a layout's index.json lists, after
/// checking that blob: what a WasmPlugin's `sha256` pins (hex part).
pub fn manifest_digest_of_layout(dir: &Path) -> Result<String, String> {
    let path = dir.join("index.json");
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let index: Index = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let [entry] = index.manifests.as_slice() else {
        return Err(format!(
            "{}: lists {} manifests; expected one",
            path.display(),
            index.manifests.len()
        ));
    };
    if entry.media_type != MANIFEST_MEDIA_TYPE {
        return Err(format!(
            "{}: the manifest is {}, not {MANIFEST_MEDIA_TYPE}",
            path.display(),
            entry.media_type
        ));
    }
    read_blob(dir, entry)?;
    Ok(entry.digest.clone())
}

// ---- pushing ----

/// Pushes the image's blobs, then its manifest bytes as they are (so the
/// registry holds the digest the layout has), and checks the digest the
/// registry then reports for `reference`. `insecure`: plain HTTP to that
/// registry, as for Istio's insecure registries. Returns the manifest digest.
pub fn push(image: &Image, reference: &str, insecure: bool) -> Result<String, String> {
    let parsed: oci_client::Reference = reference
        .parse()
        .map_err(|e| format!("'{reference}' is not an image reference: {e}"))?;
    if let Some(pinned) = parsed.digest() {
        if pinned != image.manifest_digest {
            return Err(format!(
                "{reference} names a digest, but this image is {}",
                image.manifest_digest
            ));
        }
    }
    // reqwest is built without a TLS provider: install ring's. A second
    // install (a second push in one process) is refused, and changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&parsed, insecure)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("async runtime: {e}"))?;
    runtime
        .block_on(upload(&client, &parsed, image, &auth()))
        .map_err(|e| format!("push to {reference}: {e}"))
}

fn client(reference: &oci_client::Reference, insecure: bool) -> Result<oci_client::Client, String> {
    use oci_client::client::{ClientConfig, ClientProtocol};
    let protocol = if insecure {
        ClientProtocol::HttpsExcept(vec![reference.resolve_registry().to_string()])
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config).map_err(|e| format!("registry client: {e}"))
}

fn auth() -> oci_client::secrets::RegistryAuth {
    match (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV)) {
        (Ok(user), Ok(password)) => oci_client::secrets::RegistryAuth::Basic(user, password),
        _ => oci_client::secrets::RegistryAuth::Anonymous,
    }
}

async fn upload(
    client: &oci_client::Client,
    reference: &oci_client::Reference,
    image: &Image,
    auth: &oci_client::secrets::RegistryAuth,
) -> Result<String, String> {
    client.store_auth_if_needed(reference.resolve_registry(), auth).await;
    client
        .push_blob(reference, image.layer.clone(), &image.layer_digest)
        .await
        .map_err(|e| format!("wasm layer: {e}"))?;
    client
        .push_blob(reference, image.config.clone(), &image.config_digest)
        .await
        .map_err(|e| format!("config: {e}"))?;
    let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
    client
        .push_manifest_raw(reference, image.manifest.clone(), content_type)
        .await
        .map_err(|e| format!("manifest: {e}"))?;
    let stored = client
        .fetch_manifest_digest(reference, auth)
        .await
        .map_err(|e| format!("reading the pushed manifest's digest back: {e}"))?;
    if stored != image.manifest_digest {
        return Err(format!(
            "the registry reports {stored}, not the pushed {}",
            image.manifest_digest
        ));
    }
    Ok(stored)
}

#[cfg(test)]
mod tests;
