//! The data module: IDX and CIFAR-10 readers on files written here (valid, corrupt, lying,
//! compressed), the embedded Fashion-MNIST subset against facts computed from the original files,
//! where convlab looks for the data, and seeded, augmented, scaled mini-batches.

mod common;
use common::*;

use convlab::data::{
    Augment, BatchParams, Batches, CIFAR10_CLASSES, DATA_ENV, Dataset, FASHION_MNIST_CLASSES,
    MNIST_FILES, SYSTEM_FASHION_MNIST, Split, Transform, cifar10, fashion_mnist,
    fashion_mnist_places, find_fashion_mnist, find_fashion_mnist_among, mnist, read_cifar_batch,
    read_idx,
};
use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::{Array3, Array4, Axis, array};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// The largest single allocation this thread asks for, so the tests can prove that a reader sizes
// its memory by the bytes a file really holds, not by what its header claims.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping only
// touches a const-initialised thread-local that needs no allocation and no destructor.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// `f()` and the largest single allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(|l| l.get()))
}

/// Room for the reader's fixed buffers (an 8 KiB `BufReader`, the inflater's state and its
/// 32 KiB window), independent of the file.
const FIXED_BUFFERS: usize = 256 << 10;

// ---------------------------------------------------------------------------------------------
// Writing files.

/// An IDX file of element type `code` with these dimensions and elements.
fn idx_bytes(code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The error message of `r`, which must be an error.
fn message<T: std::fmt::Debug>(r: convlab::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn assert_says(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{msg}` does not say `{p}`");
    }
}

// ---------------------------------------------------------------------------------------------
// IDX.

#[test]
fn idx_reads_every_rank_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    for dims in [vec![5u32], vec![2, 3], vec![2, 3, 4], vec![2, 1, 3, 2]] {
        let n: u32 = dims.iter().product();
        let data: Vec<u8> = (0..n).map(|k| (k * 37 % 256) as u8).collect();
        let bytes = idx_bytes(0x08, &dims, &data);
        // Compression is recognised by content: the gzip file has no `.gz`, the plain one has.
        for (name, content) in [("plain.gz", bytes.clone()), ("packed", gzip(&bytes))] {
            let idx = read_idx(write(dir.path(), name, &content)).unwrap();
            assert_eq!(
                idx.dims,
                dims.iter().map(|&d| d as usize).collect::<Vec<_>>()
            );
            assert_eq!(idx.data, data, "{name} of dims {dims:?}");
        }
    }
}

#[test]
fn idx_reads_concatenated_gzip_members() {
    // `gzip -c a b` writes two members that decompress to one stream, as Python's gzip reads.
    let bytes = idx_bytes(0x08, &[6], &[1, 2, 3, 4, 5, 6]);
    let mut two = gzip(&bytes[..7]);
    two.extend(gzip(&bytes[7..]));
    let dir = tempfile::tempdir().unwrap();
    let idx = read_idx(write(dir.path(), "two-members.gz", &two)).unwrap();
    assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn idx_errors_name_the_file_and_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |name: &str, bytes: Vec<u8>, parts: &[&str]| {
        let path = write(d, name, &bytes);
        let msg = message(read_idx(&path));
        assert_says(&msg, &[&path.display().to_string()]);
        assert_says(&msg, parts);
        // The same content compressed fails the same way.
        let gz = write(d, &format!("{name}.gz"), &gzip(&bytes));
        let msg = message(read_idx(&gz));
        assert_says(&msg, &[&gz.display().to_string()]);
        assert_says(&msg, parts);
    };
    let ok = idx_bytes(0x08, &[2, 3], &[0; 6]);
    check(
        "short-data",
        ok[..ok.len() - 2].to_vec(),
        &["truncated: header says 6 bytes", "holds 4"],
    );
    check(
        "trailing",
        [ok.clone(), vec![9]].concat(),
        &["trailing", "6 bytes"],
    );
    check(
        "short-header",
        ok[..9].to_vec(),
        &["truncated", "needs 12 bytes", "holds 9"],
    );
    check("tiny", vec![0, 0], &["truncated", "4 bytes", "holds 2"]);
    check("empty", vec![], &["truncated", "holds 0"]);
    check(
        "magic",
        vec![1, 0, 8, 1, 0, 0, 0, 1, 7],
        &["not an IDX file", "0x01 0x00"],
    );
    check(
        "float",
        idx_bytes(0x0D, &[1], &[0; 4]),
        &["0x0d (32-bit float)", "0x08"],
    );
    check(
        "int",
        idx_bytes(0x0C, &[1], &[0; 4]),
        &["0x0c (32-bit integer)"],
    );
    check(
        "unknown",
        idx_bytes(0x0A, &[1], &[0]),
        &["unknown element type 0x0a"],
    );
    check("rank0", idx_bytes(0x08, &[], &[]), &["rank 0", "1 to 4"]);
    check(
        "rank5",
        idx_bytes(0x08, &[1; 5], &[0]),
        &["rank 5", "1 to 4"],
    );
    check(
        "zero-dim",
        idx_bytes(0x08, &[3, 0, 2], &[]),
        &["dimension 1 of [3, 0, 2] is 0"],
    );
    check(
        "overflow",
        idx_bytes(0x08, &[u32::MAX; 4], &[0; 8]),
        &["more bytes than"],
    );

    let missing = d.join("no-such-file");
    assert_says(
        &message(read_idx(&missing)),
        &[&missing.display().to_string(), "cannot open"],
    );
    // A compressed stream cut inside its trailer, and one whose checksum is wrong.
    let packed = gzip(&ok);
    let len = packed.len();
    let mut bad_crc = packed.clone();
    bad_crc[len - 8] ^= 1;
    for (name, bytes) in [("cut.gz", packed[..len - 4].to_vec()), ("crc.gz", bad_crc)] {
        let path = write(d, name, &bytes);
        assert_says(
            &message(read_idx(&path)),
            &[&path.display().to_string(), "gzip"],
        );
    }
}

#[test]
fn a_lying_header_costs_only_what_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    // 2³¹ images of 28×28 claimed over a 100-byte file, plain and compressed.
    let liar = idx_bytes(0x08, &[1 << 31, 28, 28], &[7; 84]);
    assert_eq!(liar.len(), 100);
    for (name, bytes) in [("liar", liar.clone()), ("liar.gz", gzip(&liar))] {
        let path = write(dir.path(), name, &bytes);
        let (r, largest) = largest_allocation(|| read_idx(&path));
        assert_says(
            &message(r),
            &["truncated", "header says 1683627180032 bytes", "holds 84"],
        );
        assert!(largest < FIXED_BUFFERS, "{name}: allocated {largest} bytes");
    }
    // A gzip bomb: the header allows 1,000 bytes, the stream inflates to 16 MiB.
    let mut bomb = idx_bytes(0x08, &[1000], &[]);
    bomb.resize(16 << 20, 0);
    let path = write(dir.path(), "bomb.gz", &gzip(&bomb));
    let (r, largest) = largest_allocation(|| read_idx(&path));
    assert_says(&message(r), &["trailing data", "1000 bytes"]);
    assert!(largest < FIXED_BUFFERS, "bomb: allocated {largest} bytes");
}

/// A change to a valid file.
#[derive(Debug, Clone)]
enum Mutation {
    /// Keep the first `at` bytes (taken modulo the length).
    Truncate(usize),
    /// XOR bytes at these positions (modulo the length) with non-zero masks.
    Flip(Vec<(usize, u8)>),
    /// Overwrite header dimension `axis` (modulo the rank) with `value`.
    Lie(usize, u32),
    /// Append these bytes.
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<usize>(), 1u8..=255), 1..4).prop_map(Mutation::Flip),
        (
            any::<usize>(),
            prop_oneof![Just(u32::MAX), Just(1 << 31), any::<u32>(), 0u32..8]
        )
            .prop_map(|(a, v)| Mutation::Lie(a, v)),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Append),
    ]
}

/// `bytes` changed by `m`; for `Lie`, the file's rank is `rank`.
fn mutate(bytes: &[u8], m: &Mutation, rank: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match m {
        Mutation::Truncate(at) => out.truncate(at % bytes.len()),
        Mutation::Flip(flips) => {
            for &(at, mask) in flips {
                out[at % bytes.len()] ^= mask;
            }
        }
        Mutation::Lie(axis, value) => {
            let at = 4 + 4 * (axis % rank);
            out[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        Mutation::Append(extra) => out.extend_from_slice(extra),
    }
    out
}

/// Where a file is compressed, if at all, relative to the mutation.
#[derive(Debug, Clone, Copy)]
enum Packing {
    Plain,
    /// Mutate the IDX bytes, then compress: a well-formed gzip stream with a bad IDX inside.
    MutateThenGzip,
    /// Compress, then mutate the compressed bytes.
    GzipThenMutate,
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn idx_survives_any_corruption(
        dims in prop::collection::vec(1u32..6, 1..=4),
        seed in any::<u8>(),
        m in mutation(),
        packing in prop_oneof![
            Just(Packing::Plain), Just(Packing::MutateThenGzip), Just(Packing::GzipThenMutate)
        ],
    ) {
        let n: u32 = dims.iter().product();
        let data: Vec<u8> = (0..n).map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let valid = idx_bytes(0x08, &dims, &data);
        let header = 4 + 4 * dims.len();
        let bytes = match packing {
            Packing::Plain => mutate(&valid, &m, dims.len()),
            Packing::MutateThenGzip => gzip(&mutate(&valid, &m, dims.len())),
            Packing::GzipThenMutate => mutate(&gzip(&valid), &m, dims.len()),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "mutated", &bytes);
        let (r, largest) = largest_allocation(|| read_idx(&path));
        // The stream a reader can get out of the file is at most ~1032 times its compressed
        // size; whatever the header says, memory follows that.
        let bound = FIXED_BUFFERS + 2 * 1032 * bytes.len();
        prop_assert!(largest < bound, "allocated {largest} bytes for a {}-byte file", bytes.len());
        match r {
            Ok(idx) => {
                prop_assert!((1..=4).contains(&idx.dims.len()));
                prop_assert_eq!(idx.dims.iter().product::<usize>(), idx.data.len());
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
        }
        // Where the outcome is certain, it is the one expected.
        let inner = matches!(packing, Packing::Plain | Packing::MutateThenGzip);
        let r = read_idx(&path);
        match &m {
            Mutation::Truncate(at) if inner => prop_assert!(r.is_err(), "cut at {}", at % valid.len()),
            Mutation::Append(_) => prop_assert!(r.is_err()),
            Mutation::Lie(axis, value) if inner && *value != dims[axis % dims.len()] => {
                prop_assert!(r.is_err())
            }
            Mutation::Flip(flips) if inner && flips.iter().all(|&(at, _)| at % valid.len() >= header) => {
                let mut expected = data.clone();
                for &(at, mask) in flips {
                    expected[at % valid.len() - header] ^= mask;
                }
                prop_assert_eq!(r.map(|idx| idx.data).ok(), Some(expected));
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded Fashion-MNIST subset.

fn embedded() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist")
}

/// Images per class among `labels`.
fn label_counts(labels: &[u8]) -> [usize; 10] {
    let mut counts = [0; 10];
    labels.iter().for_each(|&l| counts[usize::from(l)] += 1);
    counts
}

fn image_sum(d: &Dataset, i: usize) -> u64 {
    d.images
        .index_axis(Axis(0), i)
        .iter()
        .map(|&v| u64::from(v))
        .sum()
}

#[test]
fn embedded_subset_matches_the_original_files() {
    // The facts below were computed with NumPy from the full set Debian installs in
    // /usr/share/datasets/fashion-mnist (not from the subset):
    //   ti = np.frombuffer(gzip.open(".../train-images-idx3-ubyte.gz").read(), np.uint8,
    //                      offset=16).reshape(-1, 28, 28)
    //   tl = np.frombuffer(gzip.open(".../train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    //   np.bincount(tl[:10000]), tl[:10], int(ti[0].sum()), int(ti[9999].sum()),
    //   int(ti[:10000].sum()), ti[0, 14], and the same for the first 2,000 test images.
    let train = fashion_mnist(embedded(), Split::Train).unwrap();
    assert_eq!(train.images.shape(), &[10_000, 1, 28, 28]);
    assert_eq!(train.labels.len(), 10_000);
    assert_eq!(
        label_counts(&train.labels),
        [942, 1027, 1016, 1019, 974, 989, 1021, 1022, 990, 1000]
    );
    assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(image_sum(&train, 0), 76_247);
    assert_eq!(image_sum(&train, 9_999), 79_936);
    assert_eq!(
        train.images.iter().map(|&v| u64::from(v)).sum::<u64>(),
        572_388_787
    );
    assert_eq!(
        train.images.slice(ndarray::s![0, 0, 14, ..]).to_vec(),
        vec![
            0, 0, 1, 4, 6, 7, 2, 0, 0, 0, 0, 0, 237, 226, 217, 223, 222, 219, 222, 221, 216, 223,
            229, 215, 218, 255, 77, 0
        ]
    );
    assert_eq!(train.classes, FASHION_MNIST_CLASSES);

    let test = fashion_mnist(embedded(), Split::Test).unwrap();
    assert_eq!(test.images.shape(), &[2_000, 1, 28, 28]);
    assert_eq!(
        label_counts(&test.labels),
        [200, 203, 214, 190, 219, 195, 197, 200, 194, 188]
    );
    assert_eq!(test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(image_sum(&test, 0), 33_456);
    assert_eq!(image_sum(&test, 1_999), 59_629);
    assert_eq!(
        test.images.iter().map(|&v| u64::from(v)).sum::<u64>(),
        114_763_281
    );
    assert!(test.labels.iter().all(|&l| l < 10));

    // MNIST's reader reads the same format, naming the classes by digit.
    let digits = mnist(embedded(), Split::Test).unwrap();
    assert_eq!(digits.images, test.images);
    assert_eq!(digits.classes[9], "9");
}

/// A directory holding a small MNIST-format set, from these IDX files.
fn idx_set(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        write(dir.path(), name, bytes);
    }
    dir
}

#[test]
fn mnist_format_checks_name_the_file_and_the_numbers() {
    let images = idx_bytes(0x08, &[3, 2, 2], &(0..12).collect::<Vec<u8>>());
    let labels = idx_bytes(0x08, &[3], &[4, 0, 9]);

    // Valid, one file plain and one compressed; the plain file wins when both exist.
    let dir = idx_set(&[
        ("t10k-images-idx3-ubyte", images.clone()),
        ("t10k-labels-idx1-ubyte.gz", gzip(&labels)),
        ("t10k-labels-idx1-ubyte", labels.clone()),
    ]);
    let d = fashion_mnist(dir.path(), Split::Test).unwrap();
    assert_eq!(d.images.shape(), &[3, 1, 2, 2]);
    assert_eq!(d.images[[1, 0, 1, 0]], 6);
    assert_eq!(d.labels, vec![4, 0, 9]);

    let case = |files: &[(&str, Vec<u8>)], blame: &str, parts: &[&str]| {
        let dir = idx_set(files);
        let msg = message(fashion_mnist(dir.path(), Split::Test));
        assert_says(&msg, &[&dir.path().join(blame).display().to_string()]);
        assert_says(&msg, parts);
    };
    let img = "t10k-images-idx3-ubyte";
    let lab = "t10k-labels-idx1-ubyte";
    case(&[(img, images.clone())], lab, &["not found", ".gz"]);
    case(
        &[(img, images.clone()), (lab, idx_bytes(0x08, &[2], &[1, 2]))],
        lab,
        &["holds 2 labels", "holds 3 images"],
    );
    case(
        &[
            (img, images.clone()),
            (lab, idx_bytes(0x08, &[3], &[1, 10, 2])),
        ],
        lab,
        &["label 10 at index 1", "0 to 9"],
    );
    case(
        &[
            (img, images.clone()),
            (lab, idx_bytes(0x08, &[3, 1], &[1, 1, 2])),
        ],
        lab,
        &["rank 1", "[3, 1]"],
    );
    case(
        &[
            (img, idx_bytes(0x08, &[12], &[0; 12])),
            (lab, labels.clone()),
        ],
        img,
        &["rank 3", "[12]"],
    );
    case(
        &[(img, images[..20].to_vec()), (lab, labels.clone())],
        img,
        &["truncated", "header says 12 bytes", "holds 4"],
    );
}

// ---------------------------------------------------------------------------------------------
// Finding Fashion-MNIST.

/// A directory with the four files (empty, which is enough to be found), some compressed.
fn fake_fashion(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, name) in MNIST_FILES.iter().enumerate() {
        let name = if k % 2 == 0 {
            format!("{name}.gz")
        } else {
            name.to_string()
        };
        write(dir, &name, &[]);
    }
}

#[test]
fn places_follow_the_documented_order() {
    let cwd = Path::new("/work/somewhere");
    assert_eq!(
        fashion_mnist_places(Some(OsStr::new("/datasets")), cwd),
        vec![
            PathBuf::from("/datasets"),
            cwd.join("data"),
            PathBuf::from(SYSTEM_FASHION_MNIST)
        ]
    );
    // A relative $CONVLAB_DATA is relative to the current directory; an empty one is unset.
    assert_eq!(
        fashion_mnist_places(Some(OsStr::new("sets")), cwd)[0],
        cwd.join("sets")
    );
    let default = vec![cwd.join("data"), PathBuf::from(SYSTEM_FASHION_MNIST)];
    assert_eq!(fashion_mnist_places(Some(OsStr::new("")), cwd), default);
    assert_eq!(fashion_mnist_places(None, cwd), default);
    assert_eq!(DATA_ENV, "CONVLAB_DATA");
}

#[test]
fn the_first_place_holding_the_files_wins() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    fake_fashion(&b.join("fashion-mnist"));
    fake_fashion(&c);
    std::fs::create_dir_all(&a).unwrap();
    // `a` holds three of the four files: not enough.
    for name in &MNIST_FILES[..3] {
        write(&a, name, &[]);
    }
    let places = vec![a.clone(), b.clone(), c.clone()];
    assert_eq!(
        find_fashion_mnist_among(None, &places).unwrap(),
        b.join("fashion-mnist")
    );
    assert_eq!(find_fashion_mnist_among(None, &places[2..]).unwrap(), c);
    // D itself is tried before D/fashion-mnist.
    fake_fashion(&c.join("fashion-mnist"));
    assert_eq!(find_fashion_mnist_among(None, &places[2..]).unwrap(), c);
    // An explicit directory comes first, in either form.
    assert_eq!(find_fashion_mnist_among(Some(&c), &places).unwrap(), c);
    assert_eq!(
        find_fashion_mnist_among(Some(&b), &places).unwrap(),
        b.join("fashion-mnist")
    );
    // An explicit directory without the files is an error, even though `places` has them.
    let msg = message(find_fashion_mnist_among(Some(&a), &places));
    assert_says(
        &msg,
        &[
            &a.display().to_string(),
            "missing t10k-labels-idx1-ubyte",
            &a.join("fashion-mnist").display().to_string(),
        ],
    );
    assert!(!msg.contains("train-images"), "{msg}");
    // Nothing anywhere: every directory looked at is listed.
    let msg = message(find_fashion_mnist_among(None, &places[..1]));
    let msg2 = message(find_fashion_mnist_among(
        None,
        &[a.clone(), root.path().join("nothing")],
    ));
    assert_says(&msg, &[&a.display().to_string(), "CONVLAB_DATA"]);
    for d in [&a, &root.path().join("nothing")] {
        assert_says(
            &msg2,
            &[
                &d.display().to_string(),
                &d.join("fashion-mnist").display().to_string(),
            ],
        );
    }
    // The public entry point honours an explicit directory.
    assert_eq!(find_fashion_mnist(Some(&embedded())).unwrap(), embedded());
    assert!(find_fashion_mnist(Some(&a)).is_err());
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10.

/// `n` CIFAR records with these labels; pixel byte `k` of record `r` is `(7r + k) mod 256`.
fn cifar_bytes(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (r, &l) in labels.iter().enumerate() {
        out.push(l);
        out.extend((0..3072).map(|k| ((7 * r + k) % 256) as u8));
    }
    out
}

#[test]
fn cifar_records_are_channel_major_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "test_batch.bin", &cifar_bytes(&[6, 0, 9]));
    let d = read_cifar_batch(&path).unwrap();
    assert_eq!(d.images.shape(), &[3, 3, 32, 32]);
    assert_eq!(d.labels, vec![6, 0, 9]);
    assert_eq!(d.classes, CIFAR10_CLASSES);
    assert_eq!(d.classes[6], "frog");
    // The binary format: after the label, 1024 red, 1024 green, 1024 blue bytes, row-major.
    for ((n, c, i, j), &v) in d.images.indexed_iter() {
        let k = c * 1024 + i * 32 + j;
        assert_eq!(v, ((7 * n + k) % 256) as u8);
    }
    // The loader reads the same file from the directory, or from the archive's folder.
    assert_eq!(cifar10(dir.path(), Split::Test).unwrap(), d);
    let nested = tempfile::tempdir().unwrap();
    let inner = nested.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&inner).unwrap();
    write(&inner, "test_batch.bin", &cifar_bytes(&[6, 0, 9]));
    assert_eq!(cifar10(nested.path(), Split::Test).unwrap(), d);
}

#[test]
fn cifar_train_concatenates_five_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for b in 1..=5u8 {
        write(
            dir.path(),
            &format!("data_batch_{b}.bin"),
            &cifar_bytes(&[b, b - 1]),
        );
    }
    let d = cifar10(dir.path(), Split::Train).unwrap();
    assert_eq!(d.images.shape(), &[10, 3, 32, 32]);
    assert_eq!(d.labels, vec![1, 0, 2, 1, 3, 2, 4, 3, 5, 4]);
    // Record 1 of file b + 1 is image 2b + 1: its first pixel is 7·1 = 7.
    assert!((0..5).all(|b| d.images[[2 * b + 1, 0, 0, 0]] == 7));

    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    let msg = message(cifar10(dir.path(), Split::Train));
    assert_says(
        &msg,
        &[
            &dir.path().display().to_string(),
            "missing data_batch_4.bin",
        ],
    );
}

#[test]
fn cifar_errors_name_the_file_and_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8], parts: &[&str]| {
        let path = write(dir.path(), name, bytes);
        let msg = message(read_cifar_batch(&path));
        assert_says(&msg, &[&path.display().to_string()]);
        assert_says(&msg, parts);
    };
    check("empty.bin", &[], &["holds 0 bytes"]);
    let two = cifar_bytes(&[1, 2]);
    check(
        "short.bin",
        &two[..6000],
        &["6000 bytes", "1 records and 2927 bytes left"],
    );
    check(
        "label.bin",
        &cifar_bytes(&[1, 2, 10]),
        &["record 2", "offset 6146", "label 10"],
    );
    let missing = dir.path().join("absent.bin");
    assert_says(
        &message(read_cifar_batch(&missing)),
        &[&missing.display().to_string()],
    );
}

/// The CIFAR-10 reader's specification, written independently: labels and images, or `None`.
fn cifar_oracle(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(3073) {
        return None;
    }
    let labels: Vec<u8> = bytes.iter().step_by(3073).copied().collect();
    if labels.iter().any(|&l| l > 9) {
        return None;
    }
    let pixels = bytes
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 3073 != 0)
        .map(|(_, &v)| v)
        .collect();
    Some((labels, pixels))
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn cifar_survives_any_corruption(
        labels in prop::collection::vec(0u8..10, 1..4),
        m in prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            prop::collection::vec((any::<usize>(), 1u8..=255), 1..4).prop_map(Mutation::Flip),
            prop::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Append),
            // Exactly one more record, whose label may or may not be valid.
            (any::<u8>(), any::<u8>()).prop_map(|(l, v)| {
                let mut r = vec![v; 3073];
                r[0] = l;
                Mutation::Append(r)
            }),
        ],
    ) {
        let bytes = mutate(&cifar_bytes(&labels), &m, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "data_batch_1.bin", &bytes);
        let (r, largest) = largest_allocation(|| read_cifar_batch(&path));
        prop_assert!(largest < FIXED_BUFFERS + 2 * bytes.len(), "allocated {largest}");
        match (r, cifar_oracle(&bytes)) {
            (Ok(d), Some((l, p))) => {
                prop_assert_eq!(d.labels, l);
                prop_assert_eq!(d.images.into_raw_vec_and_offset().0, p);
            }
            (Err(e), None) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            (r, o) => prop_assert!(false, "reader {:?} but expected {:?}", r.map(|d| d.len()), o.map(|o| o.0)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Batches.

/// `n` images of `c × h × w` whose bytes are `(13·i + k) mod 256`, labels `i mod classes`.
fn synthetic(n: usize, [c, h, w]: [usize; 3], classes: usize) -> Dataset {
    let images = Array4::from_shape_fn((n, c, h, w), |(i, ci, y, x)| {
        ((13 * i + (ci * h + y) * w + x) % 256) as u8
    });
    let labels = (0..n).map(|i| (i % classes) as u8).collect();
    Dataset::new(
        images,
        labels,
        (0..classes).map(|k| format!("class {k}")).collect(),
    )
    .unwrap()
}

fn epoch<T: convlab::gemm::Scalar>(
    d: &Dataset,
    p: BatchParams,
    e: u64,
) -> Vec<convlab::data::Batch<T>> {
    Batches::<T>::new(d, p, e).unwrap().collect()
}

#[test]
fn batches_are_a_function_of_seed_and_epoch() {
    let d = synthetic(300, [1, 4, 4], 10);
    let p = BatchParams::new(32).seed(7);
    let e2 = epoch::<f32>(&d, p, 2);
    assert_eq!(e2, epoch::<f32>(&d, p, 2));
    let order = |b: &[convlab::data::Batch<f32>]| -> Vec<usize> {
        b.iter().flat_map(|b| b.indices.clone()).collect()
    };
    assert_ne!(order(&e2), order(&epoch::<f32>(&d, p, 3)));
    assert_ne!(order(&e2), order(&epoch::<f32>(&d, p.seed(8), 2)));
    // Storage order without shuffling.
    let plain = epoch::<f32>(&d, p.shuffle(false), 2);
    assert_eq!(order(&plain), (0..300).collect::<Vec<_>>());
    // The iterator's order is the one it reports.
    let b = Batches::<f32>::new(&d, p, 2).unwrap();
    assert_eq!(b.order(), order(&e2).as_slice());
    // Augmented epochs repeat too, and differ between epochs beyond their order.
    let aug = p
        .augment(Augment::none().hflip(true).max_shift(1))
        .shuffle(false);
    assert_eq!(epoch::<f64>(&d, aug, 5), epoch::<f64>(&d, aug, 5));
    assert_ne!(epoch::<f64>(&d, aug, 5), epoch::<f64>(&d, aug, 6));
}

#[test]
fn shuffles_are_uniform() {
    // Fisher–Yates with unbiased draws makes all 3! orders of 3 items equally likely: over
    // 60,000 epochs each appears 10,000 ± 91 (one standard deviation) times. A shuffle that
    // swaps each position with any position (a classic bias) makes 3 orders 4/27 likely and 3
    // orders 5/27: counts near 8,889 and 11,111.
    let d = synthetic(3, [1, 1, 1], 1);
    let p = BatchParams::new(3).seed(11);
    let mut counts: HashMap<Vec<usize>, usize> = HashMap::new();
    for e in 0..60_000 {
        let b = Batches::<f32>::new(&d, p, e).unwrap();
        *counts.entry(b.order().to_vec()).or_default() += 1;
    }
    assert_eq!(counts.len(), 6);
    assert!(
        counts.values().all(|&c| (9_600..=10_400).contains(&c)),
        "{counts:?}"
    );
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn every_image_once_per_epoch(
        n in 0usize..200,
        batch_size in 1usize..70,
        shuffle in any::<bool>(),
        seed in any::<u64>(),
        e in any::<u64>(),
    ) {
        let d = synthetic(n, [2, 3, 2], 7);
        let p = BatchParams::new(batch_size).shuffle(shuffle).seed(seed);
        let it = Batches::<f32>::new(&d, p, e).unwrap();
        prop_assert_eq!(it.len(), n.div_ceil(batch_size));
        let batches: Vec<_> = it.collect();
        prop_assert_eq!(batches.len(), n.div_ceil(batch_size));
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        for (k, b) in batches.iter().enumerate() {
            // Full batches, then a short last one (PyTorch's drop_last=False).
            let size = if k + 1 < batches.len() { batch_size } else { n - k * batch_size };
            prop_assert_eq!(b.len(), size);
            prop_assert_eq!(b.images.shape(), &[size, 2, 3, 2]);
            for (row, &i) in b.indices.iter().enumerate() {
                prop_assert_eq!(b.labels[row], i % 7);
                let expected = d.images.index_axis(Axis(0), i).mapv(|v| f32::from(v) / 255.0);
                prop_assert_eq!(b.images.index_axis(Axis(0), row), expected);
            }
        }
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
}

#[test]
fn bytes_scale_to_the_unit_interval_as_to_tensor_does() {
    // Every byte value once: image k holds byte k.
    let images = Array4::from_shape_fn((256, 1, 1, 1), |(k, ..)| k as u8);
    let d = Dataset::new(images, vec![0; 256], vec!["x".into()]).unwrap();
    let b = epoch::<f32>(&d, BatchParams::new(256).shuffle(false), 0).remove(0);
    let x = d.to_tensor::<f64>(..).unwrap();
    for k in 0..256 {
        // torchvision: `img.float().div(255)`, one rounding in the float type.
        assert_eq!(b.images[[k, 0, 0, 0]], k as f32 / 255.0);
        assert_eq!(x[[k, 0, 0, 0]], k as f64 / 255.0);
    }
    assert_eq!(
        (b.images[[0, 0, 0, 0]], b.images[[255, 0, 0, 0]]),
        (0.0, 1.0)
    );
    // A range in storage order.
    let part = d.to_tensor::<f32>(10..13).unwrap();
    assert_eq!(
        part.into_raw_vec_and_offset().0,
        vec![10.0 / 255.0, 11.0 / 255.0, 12.0 / 255.0]
    );
    assert_eq!(d.to_tensor::<f32>(256..).unwrap().shape(), &[0, 1, 1, 1]);
    assert_says(
        &message(d.to_tensor::<f32>(250..257)),
        &["250..257", "256 images"],
    );
}

#[test]
fn transforms_match_hand_computed_images() {
    // A 2-channel 3×4 image: channel 0 holds 1..=12 row by row, channel 1 the same plus 100.
    let x = Array3::from_shape_fn((2, 3, 4), |(c, i, j)| (100 * c + 4 * i + j + 1) as u8);
    let t = |flip, dy, dx| Transform { flip, dy, dx }.apply(x.view());
    assert_eq!(t(false, 0, 0), x);
    // Mirror: column j takes column 3 − j.
    assert_eq!(
        t(true, 0, 0).index_axis(Axis(0), 0),
        array![[4, 3, 2, 1], [8, 7, 6, 5], [12, 11, 10, 9]]
    );
    // Content one row up and two columns right: row i takes row i + 1, column j takes j − 2.
    assert_eq!(
        t(false, -1, 2).index_axis(Axis(0), 0),
        array![[0, 0, 5, 6], [0, 0, 9, 10], [0, 0, 0, 0]]
    );
    // Mirror first, then one row down and one column left.
    assert_eq!(
        t(true, 1, -1).index_axis(Axis(0), 1),
        array![[0, 0, 0, 0], [103, 102, 101, 0], [107, 106, 105, 0]]
    );
    // A shift as large as the image leaves nothing.
    assert_eq!(t(true, 0, 4), Array3::<u8>::zeros((2, 3, 4)));
    assert_eq!(t(false, -3, 0), Array3::<u8>::zeros((2, 3, 4)));
    assert_eq!(
        t(true, isize::MIN, isize::MAX),
        Array3::<u8>::zeros((2, 3, 4))
    );
    assert_eq!(
        t(false, isize::MAX, isize::MIN),
        Array3::<u8>::zeros((2, 3, 4))
    );
}

#[test]
fn augmented_batches_draw_every_transform_fairly() {
    let d = synthetic(2_000, [1, 5, 5], 3);
    let p = BatchParams::new(100)
        .seed(3)
        .augment(Augment::none().hflip(true).max_shift(2));
    let mut seen: HashMap<Transform, usize> = HashMap::new();
    let candidates: Vec<Transform> = [false, true]
        .into_iter()
        .flat_map(|flip| {
            (-2..=2).flat_map(move |dy| (-2..=2).map(move |dx| Transform { flip, dy, dx }))
        })
        .collect();
    for b in Batches::<f64>::new(&d, p, 1).unwrap() {
        for (row, &i) in b.indices.iter().enumerate() {
            let src = d.images.index_axis(Axis(0), i);
            let got = b.images.index_axis(Axis(0), row);
            // The synthetic images have no symmetry, so exactly one transform explains each.
            let fits: Vec<_> = candidates
                .iter()
                .filter(|t| t.apply(src).mapv(|v| f64::from(v) / 255.0) == got)
                .collect();
            assert_eq!(fits.len(), 1, "image {i}: {fits:?}");
            *seen.entry(*fits[0]).or_default() += 1;
        }
    }
    // 50 equally likely transforms over 2,000 images: 40 ± 6.2 each.
    assert_eq!(seen.len(), 50);
    assert!(seen.values().all(|&c| (15..=65).contains(&c)), "{seen:?}");
    let flips: usize = seen.iter().filter(|(t, _)| t.flip).map(|(_, c)| c).sum();
    assert!((900..=1_100).contains(&flips), "{flips} flips");
}

#[test]
fn batch_parameters_are_checked() {
    let d = synthetic(10, [1, 3, 3], 2);
    let p = BatchParams::default();
    assert_eq!(
        (p.batch_size, p.shuffle, p.seed, p.augment),
        (64, true, 0, Augment::none())
    );
    assert_says(
        &message(Batches::<f32>::new(&d, p.batch_size(0), 0)),
        &["batch_size", "0"],
    );
    assert_says(
        &message(Batches::<f32>::new(
            &d,
            p.augment(Augment::none().max_shift(3)),
            0,
        )),
        &["max_shift", "3", "below 3"],
    );
    assert!(Batches::<f32>::new(&d, p.augment(Augment::none().max_shift(2)), 0).is_ok());
    // A data set whose public fields disagree is refused, not read out of bounds.
    let mut broken = d.clone();
    broken.labels.pop();
    assert_says(
        &message(Batches::<f32>::new(&broken, p, 0)),
        &["9 labels for 10 images"],
    );
    let mut broken = d.clone();
    broken.labels[4] = 2;
    assert_says(
        &message(Batches::<f32>::new(&broken, p, 0)),
        &["label 2 of image 4", "2 classes"],
    );
    // An empty data set has no batches.
    let empty = d.subset(..0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(Batches::<f32>::new(&empty, p, 0).unwrap().count(), 0);
}

#[test]
fn splits_and_subsets() {
    let d = synthetic(10, [1, 2, 2], 3);
    let (a, b) = d.split_at(4).unwrap();
    assert_eq!((a.len(), b.len()), (4, 6));
    assert_eq!(a.images, d.images.slice(ndarray::s![..4, .., .., ..]));
    assert_eq!(b.labels, d.labels[4..]);
    assert_eq!(b.classes, d.classes);
    let (all, none) = d.split_at(10).unwrap();
    assert_eq!((all, none.len()), (d.clone(), 0));
    assert_says(&message(d.split_at(11)), &["11", "10"]);
    let s = d.subset(2..=3).unwrap();
    assert_eq!(s.labels, vec![2, 0]);
    assert_eq!(s.images, d.images.slice(ndarray::s![2..4, .., .., ..]));
    assert_says(&message(d.subset(5..11)), &["5..11", "10 images"]);
    assert!(Dataset::new(Array4::zeros((2, 1, 1, 1)), vec![0], vec!["x".into()]).is_err());
}
