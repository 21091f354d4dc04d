use clap::Parser;

fn main() -> std::process::ExitCode {
    suborg::cli::run(suborg::cli::Cli::parse())
}
