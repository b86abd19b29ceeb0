/// mimalloc rather than glibc's allocator: the engine allocates and frees small objects for every
/// task change, and glibc grew and shrank its arena with each batch (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match switchyard::cli::run(switchyard::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            std::process::ExitCode::from(switchyard::cli::exit_code(&error))
        }
    }
}
