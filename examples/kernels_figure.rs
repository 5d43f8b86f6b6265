//! Draw chapter 12's montage, every image kernel on the bundled photograph, to
//! `figures/kernels.png` (or to the path given as the first argument).
//!
//!     cargo run --release --example kernels_figure

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "figures/kernels.png".to_string());
    match convlab::plot::save_kernels_figure(&path) {
        Ok(()) => println!("wrote {path}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
