//! The `hearth` binary: parse the command line, load config, start tracing, run the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hearth", version, about = "Real-time video server for group therapy")]
struct Cli {
    /// A TOML file overriding the embedded defaults (see config/default.toml).
    #[arg(long, global = true, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the effective configuration (secrets redacted) and exit.
    CheckConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = hearth::config::Config::load(cli.config.as_deref())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,webrtc=warn,rtc=warn")),
        )
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            let mut shown = config.clone();
            shown.auth.token_secret = "<redacted>".into();
            println!("{}", toml_like(&shown));
            Ok(())
        }
        Command::Serve => {
            if !config.server.production {
                tracing::warn!("development mode: the default token secret is accepted; set server.production = true in deployments");
            }
            let server = hearth::server::start(config).await.context("start-up failed")?;
            println!("Hearth is listening on http://{}", server.addr());
            server.run_until(hearth::server::shutdown_signal()).await;
            Ok(())
        }
    }
}

fn toml_like(config: &hearth::config::Config) -> String {
    serde_json::to_string_pretty(config).unwrap_or_default()
}
