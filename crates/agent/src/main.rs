//! The `kube-ipvs` binary: parses the flags, merges kube-proxy's
//! configuration file into them, sets up logging and the runtime, and runs
//! one subcommand ([`kube_ipvs::cmd`]).

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use kube_ipvs::cli::{Cli, Command, LogFormat};
use kube_ipvs::error::Chain;
use kube_ipvs::kubeproxy_config::{self, Notes};
use kube_ipvs::{cmd, logging};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = |name| {
        matches
            .subcommand_matches(name)
            .expect("the parsed subcommand has matches")
    };
    let notes = match &mut cli.command {
        Command::Run(args) => kubeproxy_config::resolve_run(args, sub("run")),
        Command::Plan(args) => kubeproxy_config::resolve_plan(args, sub("plan")),
        _ => Ok(Notes::default()),
    };
    let notes = match notes {
        Ok(notes) => notes,
        Err(e) => {
            eprintln!("kube-ipvs: {}", Chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let (log_format, verbosity) = match &cli.command {
        Command::Run(run) => (run.log_format, run.kube_proxy.v),
        _ => (LogFormat::Text, 0),
    };
    logging::init(log_format, verbosity);
    notes.log();
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
