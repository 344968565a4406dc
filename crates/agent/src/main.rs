//! The `kube-ipvs` binary: parses the flags, sets up logging and the
//! runtime, and runs one subcommand ([`kube_ipvs::cmd`]).

use std::process::ExitCode;

use clap::Parser as _;
use kube_ipvs::cli::{Cli, Command, LogFormat};
use kube_ipvs::cmd;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Run(run) => run.log_format,
        _ => LogFormat::Text,
    };
    init_logging(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ipvs: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cmd::run::run(*args).await,
            Command::Plan(args) => cmd::plan::plan(args).await,
            Command::Dump(args) => cmd::dump::dump(args).await,
            Command::Cleanup(args) => cmd::cleanup::cleanup(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kube-ipvs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
