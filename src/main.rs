//! Entry point: parse the command line, start logging, run the agent or a client command.

use anyhow::{Context, Result};
use berth::{cli, daemon, desired, spec::host::DEFAULT_CONFIG_PATH};
use clap::Parser;
use std::path::PathBuf;

fn main() {
    let args = cli::Cli::parse();
    berth::certs::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: cli::Cli) -> Result<i32> {
    match &args.command {
        cli::Command::Validate { dir } => {
            cli::validate::run(&dir.clone().unwrap_or_else(|| PathBuf::from(".")))
        }
        cli::Command::Serve => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into());
            let host = desired::host::load(&path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("host config {}", path.display()))?;
            daemon::run(host).await?;
            Ok(0)
        }
        cli::Command::Export { cmd } => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into());
            cli::export::run(&path, cmd)
        }
        cli::Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = cli::Cli::command();
            clap_complete::generate(*shell, &mut cmd, "berth", &mut std::io::stdout());
            Ok(0)
        }
        _ => cli::run(args).await,
    }
}
