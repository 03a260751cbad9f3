//! The `mticket` binary: parses the command line, loads the configuration, sets up
//! logging, and hands over to `serve` or an admin command.
use clap::Parser;
use mticket::cli::{self, Cli, Command};
use mticket::config::Config;

fn main() -> std::process::ExitCode {
    return_large_blocks_to_the_system();
    survive_the_file_size_limit();
    let args = Cli::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mticket: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let serving = matches!(args.command, Command::Serve { .. });
    init_logging(serving);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mticket: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Serve { demo } => mticket::server::serve(config, demo).await,
            command => cli::run(config, command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mticket: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `serve` logs at info by default; admin commands only warnings, so their output stays
/// readable. `RUST_LOG` overrides both.
fn init_logging(serving: bool) {
    let default = if serving { "info,sqlx=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// glibc raises its mmap threshold to the size of the largest block freed so far. After the
/// first logins every Argon2 verification's block then came from a thread's malloc arena
/// and stayed there, so the gateway grew with every burst of logins. A fixed threshold
/// gives blocks of 1 MiB and more back to the system as soon as they are freed. glibc also
/// gives every thread that allocates at the same time as another an arena of its own (up to
/// 8 per core), each keeping what it once held: the database's threads and the runtime's
/// share two.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_system() {
    // SAFETY: mallopt only sets allocator parameters; it runs before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_system() {}

/// A write past the file size limit (`ulimit -f`) fails like one on a full disk, with an
/// error the store reports and answers (SMTP 451), instead of killing the gateway by
/// SIGXFSZ.
#[cfg(unix)]
fn survive_the_file_size_limit() {
    // SAFETY: sets a signal's disposition to ignore; it runs before any other thread.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[cfg(not(unix))]
fn survive_the_file_size_limit() {}
