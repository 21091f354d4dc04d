use clap::Parser;

// glibc malloc spends a fifth of validation time in arena bookkeeping; mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    suborg::cli::run(suborg::cli::Cli::parse())
}
