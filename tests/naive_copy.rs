//! Every `src/**/naive.rs` kernel depends on nothing but `ndarray` and the crate's `shape` and
//! `error` modules: copied byte for byte beside those two files into a fresh crate that depends
//! only on `ndarray` and `thiserror`, they build.

use std::ffi::OsString;
use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `naive.rs` files the crate has today; finding fewer means the walk is broken.
const MIN_NAIVE_FILES: usize = 4;

/// The crate's modules a naive kernel may use, as paths under `src/`.
const SHARED_MODULES: [&str; 2] = ["error.rs", "shape.rs"];

/// The only dependencies the copy gets: `ndarray` for the kernels, `thiserror` for `error.rs`.
const DEPENDENCIES: [&str; 2] = ["ndarray", "thiserror"];

/// The value of an I/O result, or a failure that names what was being done.
fn io<T>(what: impl Display, result: std::io::Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{what}: {err}"))
}

/// Every file named `naive.rs` under `dir`, at any depth.
fn naive_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = io(format_args!("listing {}", dir.display()), fs::read_dir(dir));
    for entry in entries {
        let path = io(format_args!("listing {}", dir.display()), entry).path();
        if path.is_dir() {
            naive_files(&path, found);
        } else if path.file_name().is_some_and(|name| name == "naive.rs") {
            found.push(path);
        }
    }
}

/// The module name a copied kernel gets in the scratch crate: `src/conv1d/naive.rs` becomes
/// `conv1d_naive`.
fn module_name(relative: &Path) -> String {
    relative
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("_")
}

/// Copies `relative` (a path under the crate root) from the crate to the scratch crate, byte for
/// byte, at the same relative path.
fn copy_verbatim(root: &Path, scratch: &Path, relative: &Path) {
    let (from, to) = (root.join(relative), scratch.join(relative));
    if let Some(dir) = to.parent() {
        io(
            format_args!("creating {}", dir.display()),
            fs::create_dir_all(dir),
        );
    }
    io(
        format_args!("copying {} to {}", from.display(), to.display()),
        fs::copy(&from, &to),
    );
}

/// Runs `cargo build` in the scratch crate, with `--offline` if asked.
fn cargo_build(cargo: &OsString, scratch: &Path, target: &Path, offline: bool) -> Output {
    let mut command = Command::new(cargo);
    command
        .current_dir(scratch)
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--color", "never", "--manifest-path"])
        .arg(scratch.join("Cargo.toml"));
    if offline {
        command.arg("--offline");
    }
    io(
        format_args!("running {} build", cargo.to_string_lossy()),
        command.output(),
    )
}

#[test]
fn naive_kernels_build_alone_beside_shape_and_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("naive-copy");
    let scratch = work.join("crate");
    let target = work.join("target");

    let mut naive = Vec::new();
    naive_files(&root.join("src"), &mut naive);
    naive.sort();
    let naive: Vec<PathBuf> = naive
        .iter()
        .map(|path| path.strip_prefix(root).unwrap_or(path).to_path_buf())
        .collect();
    assert!(
        naive.len() >= MIN_NAIVE_FILES,
        "found {} naive.rs files under {}, expected at least {MIN_NAIVE_FILES}: {naive:?}",
        naive.len(),
        root.join("src").display(),
    );

    if scratch.exists() {
        io(
            format_args!("removing {}", scratch.display()),
            fs::remove_dir_all(&scratch),
        );
    }
    let shared = SHARED_MODULES.map(|file| Path::new("src").join(file));
    for relative in shared.iter().chain(&naive) {
        copy_verbatim(root, &scratch, relative);
    }
    // A module's documentation is its chapter, pulled in with `include_str!("../chapters/…")`.
    let chapters = io("listing chapters/", fs::read_dir(root.join("chapters")));
    for entry in chapters {
        let name = io("listing chapters/", entry).file_name();
        copy_verbatim(root, &scratch, &Path::new("chapters").join(name));
    }

    let mut lib = String::from(
        "//! Copies of convlab's naive kernels with the `shape` and `error` modules they use.\n\n\
         pub mod error;\npub mod shape;\n",
    );
    for relative in &naive {
        let within_src = relative.strip_prefix("src").unwrap_or(relative);
        lib.push_str(&format!(
            "\n#[path = \"{}\"]\npub mod {};\n",
            within_src.to_string_lossy().replace('\\', "/"),
            module_name(within_src),
        ));
    }
    io(
        "writing src/lib.rs",
        fs::write(scratch.join("src/lib.rs"), lib),
    );

    let manifest = io(
        "reading Cargo.toml",
        fs::read_to_string(root.join("Cargo.toml")),
    );
    let edition = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("edition = "))
        .unwrap_or_else(|| panic!("Cargo.toml has no `edition = \"…\"` line"));
    let mut scratch_manifest = format!(
        "[package]\nname = \"convlab-naive-copy\"\nversion = \"0.0.0\"\nedition = {edition}\n\
         publish = false\n\n[dependencies]\n"
    );
    // Any version: the project's Cargo.lock, copied below, pins the ones it builds with.
    for name in DEPENDENCIES {
        scratch_manifest.push_str(&format!("{name} = \"*\"\n"));
    }
    scratch_manifest.push_str("\n[workspace]\n");
    io(
        "writing the scratch Cargo.toml",
        fs::write(scratch.join("Cargo.toml"), scratch_manifest),
    );
    io(
        "copying Cargo.lock",
        fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock")),
    );

    // The project's own build has just put ndarray and thiserror in the registry cache, so the
    // offline build works on a clean machine; the network is tried only when it did not.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut output = cargo_build(&cargo, &scratch, &target, true);
    if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("offline") {
        output = cargo_build(&cargo, &scratch, &target, false);
    }
    assert!(
        output.status.success(),
        "the naive kernels {naive:?}, copied verbatim beside src/error.rs and src/shape.rs into \
         {}, do not build with only {DEPENDENCIES:?} as dependencies ({}):\n{}{}",
        scratch.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
