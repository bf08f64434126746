//! Container images built here, from `scratch` only (no pull, ever): Envoy
//! from the cached binary, the parties from `tollgate-party`, the rate limit
//! service from `tollgate-ratelimit`, Redis from Debian's `redis-server`,
//! the Kafka REST front from `tollgate-kafka-rest`, Tansu from its cached
//! static binary, each with the shared libraries `ldd` lists. Each image is labelled with the digest of
//! what went in and rebuilt only when that changes.

use crate::util::{cargo, root, run};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate_integration::docker::{
    envoy_image, KAFKA_REST_IMAGE, PARTY_IMAGE, RATELIMIT_IMAGE, REDIS_IMAGE, REDIS_PORT, TANSU_IMAGE,
};
use tollgate_integration::paths;

const LABEL: &str = "tollgate.inputs";
const PASSWD: &str = "root:x:0:0:root:/:/sbin/nologin\nenvoy:x:101:101:envoy:/:/sbin/nologin\n";

/// One image: its tag, its entrypoint (with fixed arguments; `docker run`
/// arguments come after them) and the files of its root filesystem.
struct Image {
    tag: String,
    entrypoint: Vec<String>,
    /// (path inside the image, file on the host)
    files: Vec<(String, PathBuf)>,
}

pub fn all() -> Result<(), String> {
    if let Err(why) = tollgate_integration::docker::engine() {
        println!("skipped: no Docker engine answers ({why})");
        return Ok(());
    }
    build_party()?;
    build_ratelimit()?;
    build_kafka_rest()?;
    let envoy = with_libraries(Image {
        tag: envoy_image(),
        entrypoint: vec!["/usr/local/bin/envoy".into()],
        files: vec![("/usr/local/bin/envoy".into(), paths::cached_envoy())],
    })?;
    let party = with_libraries(Image {
        tag: PARTY_IMAGE.into(),
        entrypoint: vec!["/usr/local/bin/tollgate-party".into()],
        files: vec![("/usr/local/bin/tollgate-party".into(), party_binary())],
    })?;
    let ratelimit = with_libraries(Image {
        tag: RATELIMIT_IMAGE.into(),
        entrypoint: vec!["/usr/local/bin/tollgate-ratelimit".into()],
        files: vec![("/usr/local/bin/tollgate-ratelimit".into(), ratelimit_binary())],
    })?;
    let redis = with_libraries(redis_image())?;
    let kafka_rest = with_libraries(Image {
        tag: KAFKA_REST_IMAGE.into(),
        entrypoint: vec!["/usr/local/bin/tollgate-kafka-rest".into()],
        files: vec![("/usr/local/bin/tollgate-kafka-rest".into(), kafka_rest_binary())],
    })?;
    // Statically linked (static-pie): the binary alone.
    let tansu = with_libraries(Image {
        tag: TANSU_IMAGE.into(),
        entrypoint: vec!["/usr/local/bin/tansu".into()],
        files: vec![("/usr/local/bin/tansu".into(), paths::cached_tansu())],
    })?;
    let mut hashes = Hashes::load();
    let result = [envoy, party, ratelimit, redis, kafka_rest, tansu]
        .iter()
        .try_for_each(|image| ensure(image, &mut hashes));
    hashes.save();
    result
}

pub fn party_binary() -> PathBuf {
    root().join("target/debug/tollgate-party")
}

fn build_party() -> Result<(), String> {
    build_bin("tollgate-integration", "tollgate-party")
}

pub fn ratelimit_binary() -> PathBuf {
    root().join("target/debug/tollgate-ratelimit")
}

/// The rate limit service (tonic, redis) is built by cargo as a command:
/// xtask does not depend on its crate, so it never compiles tonic itself.
pub(crate) fn build_ratelimit() -> Result<(), String> {
    build_bin("tollgate-ratelimit-party", "tollgate-ratelimit")
}

pub fn kafka_rest_binary() -> PathBuf {
    root().join("target/debug/tollgate-kafka-rest")
}

/// The Kafka REST front (rskafka, hyper), built by cargo as a command like
/// the rate limit service.
fn build_kafka_rest() -> Result<(), String> {
    build_bin("tollgate-kafka-party", "tollgate-kafka-rest")
}

fn build_bin(package: &str, bin: &str) -> Result<(), String> {
    let out = cargo()
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(root())
        .status()
        .map_err(|e| format!("cargo build {bin}: {e}"))?;
    if out.success() {
        Ok(())
    } else {
        Err(format!("cargo build {bin}: {out}"))
    }
}

/// Debian's `redis-server` (installed by setup), listening on all the
/// container's addresses at `REDIS_PORT`, with nothing on disk (`--save ""`,
/// no AOF; `--dir /tmp`, which every image has) and no protected mode (no
/// password, reached over the test's network).
fn redis_image() -> Image {
    let binary = crate::setup::REDIS_SERVER;
    let mut entrypoint = vec![binary.to_string()];
    for arg in [
        "--bind",
        "0.0.0.0",
        "--port",
        &REDIS_PORT.to_string(),
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        "/tmp",
    ] {
        entrypoint.push(arg.to_string());
    }
    // `/usr/bin/redis-server` is a symlink to `redis-check-rdb`; the copy
    // follows it, and the server picks its role from argv[0], the name here.
    Image {
        tag: REDIS_IMAGE.into(),
        entrypoint,
        files: vec![(binary.into(), PathBuf::from(binary))],
    }
}

/// Adds what `ldd` lists for each binary, at the same paths.
fn with_libraries(mut image: Image) -> Result<Image, String> {
    let mut libs = Vec::new();
    for (_, binary) in &image.files {
        let out = Command::new("ldd")
            .arg(binary)
            .output()
            .map_err(|e| format!("ldd {}: {e}", binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "ldd {}: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
            let path = line.split("=>").last().and_then(|r| r.split_whitespace().next());
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                libs.push((path.to_string(), PathBuf::from(path)));
            }
        }
    }
    image.files.extend(libs);
    image.files.sort();
    image.files.dedup();
    Ok(image)
}

fn dockerfile(image: &Image) -> String {
    // A JSON array (exec form): `["/usr/local/bin/envoy"]` for a bare one.
    let entrypoint = serde_json::to_string(&image.entrypoint).unwrap_or_default();
    format!("FROM scratch\nCOPY rootfs/ /\nENTRYPOINT {entrypoint}\n")
}

/// Builds the image unless one with the same inputs' digest is there.
fn ensure(image: &Image, hashes: &mut Hashes) -> Result<(), String> {
    let mut manifest = format!("{}\n{PASSWD}", dockerfile(image));
    for (inside, host) in &image.files {
        manifest.push_str(&format!("{inside} {}\n", hashes.of(host)?));
    }
    let digest = sha256_of_text(&manifest)?;
    let have = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"{LABEL}\"}}}}"),
        ])
        .arg(&image.tag)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(digest.as_str()) {
        println!("present: {} ({LABEL}={})", image.tag, short(&digest));
        return Ok(());
    }
    let context = root().join(".cache/docker").join(image.tag.replace(['/', ':'], "-"));
    let _ = fs::remove_dir_all(&context);
    let rootfs = context.join("rootfs");
    for (inside, host) in &image.files {
        let to = rootfs.join(inside.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        // fs::copy follows symlinks: the image gets the library itself.
        fs::copy(host, &to).map_err(|e| format!("copy {} -> {}: {e}", host.display(), to.display()))?;
    }
    fs::create_dir_all(rootfs.join("etc")).map_err(|e| e.to_string())?;
    fs::create_dir_all(rootfs.join("tmp")).map_err(|e| e.to_string())?;
    fs::write(rootfs.join("etc/passwd"), PASSWD).map_err(|e| e.to_string())?;
    fs::write(context.join("Dockerfile"), dockerfile(image)).map_err(|e| e.to_string())?;
    run(Command::new("docker")
        .args(["build", "-q", "--label", &format!("{LABEL}={digest}"), "-t", &image.tag])
        .arg(&context))?;
    let _ = fs::remove_dir_all(&context);
    println!("built: {} ({LABEL}={})", image.tag, short(&digest));
    Ok(())
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn sha256_of_text(text: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("sha256sum: no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| format!("sha256sum: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("sha256sum: {e}"))?;
    first_word(&out.stdout).map(|h| format!("sha256:{h}"))
}

fn first_word(out: &[u8]) -> Result<String, String> {
    String::from_utf8_lossy(out)
        .split_whitespace()
        .next()
        .map(String::from)
        .ok_or_else(|| "sha256sum printed nothing".to_string())
}

/// File digests remembered by (size, modification time), so a second setup
/// does not read Envoy's 100+ MB again.
struct Hashes {
    file: PathBuf,
    known: BTreeMap<String, (u64, u128, String)>,
}

impl Hashes {
    fn load() -> Hashes {
        let file = root().join(".cache/docker/digests.json");
        let known = fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Hashes { file, known }
    }

    fn save(&self) {
        if let Some(dir) = self.file.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Ok(text) = serde_json::to_string(&self.known) {
            let _ = fs::write(&self.file, text);
        }
    }

    fn of(&mut self, path: &Path) -> Result<String, String> {
        let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = path.display().to_string();
        if let Some((size, at, hash)) = self.known.get(&key) {
            if *size == meta.len() && *at == mtime {
                return Ok(hash.clone());
            }
        }
        let out = Command::new("sha256sum")
            .arg(path)
            .output()
            .map_err(|e| format!("sha256sum: {e}"))?;
        let hash = first_word(&out.stdout)?;
        self.known.insert(key, (meta.len(), mtime, hash.clone()));
        Ok(hash)
    }
}
