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
    /// Mint a join token with the configured secret and print it with a join link.
    Token {
        /// Room id the token admits to.
        #[arg(long)]
        room: String,
        /// therapist, coFacilitator, peerSupport, participant, observer or familyGuest.
        #[arg(long, default_value = "participant")]
        role: hearth::auth::Role,
        /// Family guests: the participant id of the member whose guest they are (their link
        /// lives at most 4 hours).
        #[arg(long)]
        sponsor: Option<String>,
        /// Display name shown to the group.
        #[arg(long)]
        name: String,
        /// Participant id (default: a fresh random one). Reuse it to let someone rejoin as themselves.
        #[arg(long)]
        participant: Option<String>,
        /// Lifetime, e.g. 90m, 2h, 1day.
        #[arg(long, default_value = "2h")]
        ttl: humantime::Duration,
        /// Base URL of the web client, for the printed link.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
}

/// Errors print as one readable line (with their causes), never as a debug dump.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = hearth::config::Config::load(cli.config.as_deref())?;
    if let Some(Command::Token { room, role, name, participant, sponsor, ttl, base_url }) = &cli.command {
        let room = hearth::room::RoomId::new(room.clone())?;
        let issuer = hearth::auth::TokenIssuer::new(&config.auth.token_secret);
        let (token, claims) = issuer.mint_with_sponsor(&room, *role, name, participant.as_deref(), (*ttl).into(), sponsor.as_deref())?;
        println!("{token}");
        eprintln!("participant id: {}  expires: {} (unix)", claims.sub, claims.exp);
        eprintln!("join link: {}/#token={token}", base_url.trim_end_matches('/'));
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))
        .map_err(|e| anyhow::anyhow!("invalid configuration: key `log.filter` has value `{}`: {e}", config.log.filter))?;
    // Every event goes through `Escaping`: text from clients inside a field cannot start a new
    // log line or drive a terminal. No ANSI colours: they are escapes too, and logs are read
    // from files and journals more than from terminals.
    let writer = hearth::log_escape::Escaping(std::io::stderr);
    // Repeated warnings of one kind are written a few times per window and then summarised
    // (`log_limit`): overload must not turn into a log line per packet.
    {
        use tracing_subscriber::filter::FilterExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let filter = filter.and(hearth::log_limit::RateLimit::global());
        let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer);
        match config.log.format {
            hearth::config::LogFormat::Json => tracing_subscriber::registry().with(layer.json().with_filter(filter)).init(),
            hearth::config::LogFormat::Text => tracing_subscriber::registry().with(layer.with_filter(filter)).init(),
        }
    }
    hearth::log_limit::spawn_reporter();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token { .. } => Ok(()),
        Command::CheckConfig => {
            let mut shown = config.clone();
            shown.auth.token_secret = "<redacted>".into();
            if !shown.auth.api_key.is_empty() {
                shown.auth.api_key = "<redacted>".into();
            }
            if shown.cluster.redis_url.contains('@') {
                shown.cluster.redis_url = "<redacted: contains credentials>".into();
            }
            if !shown.webhook.secret.is_empty() {
                shown.webhook.secret = "<redacted>".into();
            }
            if !shown.server.metrics_key.is_empty() {
                shown.server.metrics_key = "<redacted>".into();
            }
            let (mode, why) = config.mode();
            println!("mode: {} ({why})", mode.as_str());
            println!("{}", toml_like(&shown));
            Ok(())
        }
        Command::Serve => {
            match config.mode() {
                (hearth::config::Mode::Development, why) => {
                    tracing::warn!("development mode: {why}; set server.production = true and auth.token_secret in deployments")
                }
                (hearth::config::Mode::Production, why) => tracing::info!("production mode: {why}"),
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
