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

/// The lines of the `[section]` table of a `Cargo.toml`, up to the next table header.
fn section<'a>(manifest: &'a str, section: &str) -> Vec<&'a str> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .collect()
}

/// The first quoted string after `key =` in `text`.
fn quoted_after(text: &str, key: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix(key)?;
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// The version requirement of dependency `name` in the root manifest's `[dependencies]`, written
/// either `name = "req"` or `name = { version = "req", … }`.
fn version_requirement(manifest: &str, name: &str) -> String {
    let dependencies = section(manifest, "dependencies");
    let line = dependencies
        .iter()
        .find(|line| {
            line.trim_start()
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .unwrap_or_else(|| panic!("Cargo.toml's [dependencies] has no `{name} = …` line"));
    quoted_after(line, name)
        .or_else(|| {
            let table = &line[line.find('{')? + 1..];
            table
                .split(',')
                .find_map(|field| quoted_after(field, "version"))
        })
        .unwrap_or_else(|| panic!("no version requirement in Cargo.toml's line `{line}`"))
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
/// byte, along with every file it pulls in with `include_str!` or `include_bytes!` (a module doc
/// kept in `chapters/`), at the same relative paths so those macros find them.
fn copy_verbatim(root: &Path, scratch: &Path, relative: &Path) {
    let from = root.join(relative);
    let to = scratch.join(relative);
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
    let Ok(text) = fs::read_to_string(&from) else {
        return;
    };
    let dir = relative.parent().unwrap_or(Path::new(""));
    for line in text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
    {
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in line.match_indices(mac) {
                let rest = &line[at + mac.len()..];
                let Some(end) = rest.find('"') else { continue };
                let included = normalise(&dir.join(&rest[..end]));
                assert!(
                    !included.starts_with(".."),
                    "{} includes `{}`, which lies outside the crate and cannot be copied",
                    relative.display(),
                    &rest[..end],
                );
                copy_verbatim(root, scratch, &included);
            }
        }
    }
}

/// `path` with its `.` and `dir/..` pairs removed, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for part in path.iter() {
        match part.to_str() {
            Some(".") => {}
            Some("..") if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.iter().collect()
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
    let edition = section(&manifest, "package")
        .iter()
        .find_map(|line| quoted_after(line, "edition"))
        .unwrap_or_else(|| panic!("Cargo.toml's [package] has no `edition = \"…\"` line"));
    let mut scratch_manifest = format!(
        "[package]\nname = \"convlab-naive-copy\"\nversion = \"0.0.0\"\nedition = \"{edition}\"\n\
         publish = false\n\n[dependencies]\n"
    );
    for name in DEPENDENCIES {
        let requirement = version_requirement(&manifest, name);
        scratch_manifest.push_str(&format!("{name} = \"{requirement}\"\n"));
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
