//! The AFL++ harness: `drover-fuzz TARGET` runs one of `drover::fuzz::TARGETS` under
//! `afl-fuzz` (input on stdin or in AFL++'s shared memory, persistent mode). Everything a
//! target does is in `drover::fuzz`, so the same code replays the seeds and regressions in
//! drover's own `cargo test`; this file only picks the target.

use std::process::ExitCode;

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = drover::fuzz::target(&name) else {
        let names: Vec<&str> = drover::fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("usage: drover-fuzz TARGET   (one of: {})", names.join(" "));
        return ExitCode::from(2);
    };
    afl::fuzz!(|data: &[u8]| (target.run)(data));
    ExitCode::SUCCESS
}
