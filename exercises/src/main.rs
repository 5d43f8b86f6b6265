//! The course's exercises: the kernels of chapters 1–8, written by the student in `src/chNN.rs`
//! and checked against convlab's reference kernels.
//!
//! `cargo run` checks every exercise, `cargo run -- 3` those of chapter 3 (several chapters may be
//! named). Each report says how many cases passed and the worst error; for the first failing
//! case it prints the parameters, the inputs and both results, and a hint when the result is one
//! of the usual mistakes. The exit status is 1 if an exercise failed, 0 otherwise (exercises not
//! done yet do not fail).

mod ch01;
mod ch02;
mod ch03;
mod ch04;
mod ch05;
mod ch06;
mod ch07;
mod ch08;

use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};

use convlab::exercise::{self, Report, Status};

/// Where the first panic of the exercise being checked happened.
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// [`FIRST_PANIC`], also after a panic while it was held.
fn first_panic() -> MutexGuard<'static, Option<String>> {
    FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every exercise, in the order of the chapters.
fn exercises() -> Vec<(u32, fn() -> Report)> {
    vec![
        (1, || {
            exercise::check_convolve(|x, w, p| ch01::convolve(x, w, p))
        }),
        (2, || exercise::check_conv_output_len(ch02::conv_output_len)),
        (3, || exercise::check_conv2d(ch03::conv2d::<f64>)),
        (4, || exercise::check_unfold(ch04::unfold::<f64>)),
        (5, || {
            exercise::check_max_pool2d_with_indices(ch05::max_pool2d_with_indices::<f64>)
        }),
        (5, || exercise::check_avg_pool2d(ch05::avg_pool2d::<f64>)),
        (6, || {
            exercise::check_softmax(|x, axis| ch06::softmax(x, axis))
        }),
        (7, || {
            exercise::check_cross_entropy(ch07::cross_entropy::<f64>)
        }),
        (8, || {
            exercise::check_conv2d_backward(ch08::conv2d_backward::<f64>)
        }),
        (8, || {
            exercise::check_max_pool2d_backward(ch08::max_pool2d_backward::<f64>)
        }),
    ]
}

fn main() -> ExitCode {
    let mut chapters = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<u32>() {
            Ok(n) if (1..=8).contains(&n) => chapters.push(n),
            _ => {
                eprintln!(
                    "error: `{arg}` is not a chapter with exercises; expected a number from 1 to 8 \
                     (`cargo run -- 3`), or nothing for every chapter"
                );
                return ExitCode::from(2);
            }
        }
    }
    // A student's panic is part of the report; print only where the first one happened.
    std::panic::set_hook(Box::new(|info| {
        let mut first = first_panic();
        if first.is_none() {
            *first = info.location().map(|l| l.to_string());
        }
    }));
    let (mut passed, mut failed, mut not_done) = (0, 0, 0);
    for (chapter, check) in exercises() {
        if !chapters.is_empty() && !chapters.contains(&chapter) {
            continue;
        }
        *first_panic() = None;
        let report = check();
        println!("{report}");
        if report.panics > 0
            && let Some(at) = first_panic().take()
        {
            println!("  (the first panic was at {at})");
        }
        if report.failure.is_some() {
            println!();
        }
        match report.status() {
            Status::Passed => passed += 1,
            Status::Failed => failed += 1,
            Status::NotDone => not_done += 1,
        }
    }
    println!("{passed} passed, {failed} failed, {not_done} not done yet");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
