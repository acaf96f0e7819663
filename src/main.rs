//! The `drover` command line: parses the arguments and hands them to `drover::cli`, which
//! holds the commands. When started as PID 1 (as `/init` of drover's initramfs) it runs the
//! node agent instead.

use clap::Parser;

fn main() {
    if drover::agent::is_initramfs_init() {
        drover::agent::run();
    }
    let cli = drover::cli::args::Cli::parse();
    init_logging();
    if let Err(e) = drover::cli::run(cli) {
        eprintln!("drover: error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
