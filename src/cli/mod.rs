//! The `suborg` command line: argument parsing and the commands that need no cluster.

pub mod files;
pub mod get;
pub mod progress;
pub mod report;
pub mod run;
pub mod store;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::api;
use crate::manifest::Loader;

/// Manage organizations and sub-organizations declaratively.
#[derive(Parser, Debug)]
#[command(name = "suborg", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions (or write one file per CRD with --out-dir).
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check a manifest set offline with every rule the API server and the controller apply.
    Validate(ValidateArgs),
    /// Validate a manifest set and make the store match it, in one transaction.
    Apply(store::ApplyArgs),
    /// Run the controller: keep the store in step with the objects in the cluster.
    Run(run::RunArgs),
    /// Read the store.
    Get(get::GetArgs),
}

/// Arguments of `suborg validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Files or directories (read recursively: *.yaml, *.yml, *.json); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Namespace of namespaced objects that do not set metadata.namespace (as kubectl's -n).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Largest file accepted, in bytes (suffixes Ki, Mi, Gi allowed).
    #[arg(long, default_value = "8Mi", value_parser = files::parse_size)]
    pub max_file_size: u64,
}

/// Output formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `FILE: Kind/name: field: message`, one problem a line.
    Text,
    /// One JSON document with every problem and the counts.
    Json,
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Crd { out_dir } => crd(out_dir),
        Command::Validate(args) => validate(&args),
        Command::Apply(args) => store::apply(&args),
        Command::Get(args) => get::get(&args),
        Command::Run(args) => return run::run(&args),
    };
    match result {
        Ok(code) => code,
        // A closed pipe (`suborg crd | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suborg: {e}");
            ExitCode::FAILURE
        }
    }
}

fn crd(out_dir: Option<PathBuf>) -> io::Result<ExitCode> {
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in api::crds() {
                std::fs::write(dir.join(api::crd_file_name(&crd)), api::crd_yaml(&crd))?;
            }
        }
        None => {
            let mut out = io::stdout().lock();
            for crd in api::crds() {
                write!(out, "---\n{}", api::crd_yaml(&crd))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &ValidateArgs) -> io::Result<ExitCode> {
    let mut progress = progress::Progress::stderr();
    let mut loader = Loader::new(&args.namespace);
    files::load_with(&args.paths, args.max_file_size, &mut loader, &mut |n| {
        progress.step(&format!("reading manifests: {n} files"));
    });
    progress.step("checking the objects");
    let (report, _, _) = loader.finish(k8s_openapi::jiff::Timestamp::now());
    progress.finish();
    let mut out = io::stdout().lock();
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        Output::Text => {
            report::write_text(&mut out, &report)?;
            out.flush()?;
            eprintln!(
                "{} object{} in {} file{}: {} error{}, {} warning{}",
                report.objects,
                plural(report.objects),
                report.files,
                plural(report.files),
                report.errors,
                plural(report.errors),
                report.warnings,
                plural(report.warnings),
            );
        }
    }
    let failed = report.errors > 0 || (args.strict && report.warnings > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
