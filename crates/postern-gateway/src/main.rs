//! `postern-gateway`: run the gateway, try it out, make password hashes, look at the
//! queue. A thin layer over the library; errors get context here.

// TODO(structure): CLI and start-up files use std::fs: the pid file is written inside
// block_on, the --ready-file and the demo files are written, the pid file is read by
// `queue flush/delete`. Move the pid file into the spool API and the rest to tokio::fs
// or a blocking CLI helper.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use postern_config::credentials::{
    CredentialLine, CredentialsFile, HashAlgorithm, SenderRule, hash_password,
};
use postern_config::{GatewayConfig, ListenerConfig, ListenerKind, LogFormat};
use postern_gateway::{Gateway, queue, server, spool};

#[derive(Parser)]
#[command(
    name = "postern-gateway",
    version,
    about = "Postern SMTP submission gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway with a configuration file.
    Run {
        #[arg(long, short, default_value = "/etc/postern/gateway.toml")]
        config: PathBuf,
        /// Once every listener is bound, write the addresses bound (JSON) to this file
        /// (written whole, then renamed into place). With port 0 in the configuration
        /// this is how a supervisor learns the ports the kernel chose.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Run a gateway for trying out: ports 2525 (relay), 2587 (submission) and 2465
    /// (implicit TLS) on 127.0.0.1, a self-signed certificate, a spool and a demo user
    /// whose new password is printed, all under DIR.
    Demo {
        #[arg(long, default_value = "postern-demo")]
        dir: PathBuf,
    },
    /// Check a configuration file and print it with every default filled in.
    CheckConfig {
        #[arg(long, short, default_value = "/etc/postern/gateway.toml")]
        config: PathBuf,
    },
    /// Read a password from standard input and print its hash for the credentials file.
    HashPassword {
        /// bcrypt (cost 12) instead of argon2id.
        #[arg(long)]
        bcrypt: bool,
    },
    /// Look at queued messages.
    Queue {
        #[command(subcommand)]
        command: QueueCmd,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// One JSON line per queued message: id, sender, recipients, size, arrival.
    List {
        #[arg(long, short, default_value = "/etc/postern/gateway.toml")]
        config: PathBuf,
    },
    /// Print a queued message's content.
    Show {
        #[arg(long, short, default_value = "/etc/postern/gateway.toml")]
        config: PathBuf,
        id: String,
    },
    /// Try every deferred message now (like `postqueue -f`).
    Flush {
        #[arg(long, short, default_value = "/etc/postern/gateway.toml")]
        config: PathBuf,
    },
    /// Remove messages from the queue without delivering them (like `postsuper -d`).
    Delete {
        #[arg(long, short, default_value = "/etc/postern/gateway.toml")]
        config: PathBuf,
        ids: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run { config, ready_file } => {
            let cfg = GatewayConfig::load(&config)?;
            run(cfg, ready_file)
        }
        Cmd::Demo { dir } => {
            let cfg = demo_setup(&dir)?;
            run(cfg, None)
        }
        Cmd::CheckConfig { config } => {
            let cfg = GatewayConfig::load(&config)?;
            print!("{}", cfg.to_toml()?);
            Ok(())
        }
        Cmd::HashPassword { bcrypt } => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let pw = line.trim_end_matches(['\r', '\n']);
            if pw.is_empty() {
                bail!("no password on standard input");
            }
            let algorithm = if bcrypt {
                HashAlgorithm::Bcrypt
            } else {
                HashAlgorithm::Argon2id
            };
            println!("{}", hash_password(pw, algorithm)?);
            Ok(())
        }
        Cmd::Queue { command } => queue(command),
    }
}

fn run(cfg: GatewayConfig, ready_file: Option<PathBuf>) -> Result<()> {
    init_logging(&cfg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let loaded = Gateway::load(cfg).await.context("starting the gateway")?;
        tracing::info!(
            messages = loaded.recovered,
            "spool scanned; complete messages queued for delivery"
        );
        let gateway = loaded.gateway;
        let listeners = server::bind(gateway.config())
            .await
            .context("starting the gateway")?;
        let pid_file = gateway.spool().pid_file();
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", pid_file.display()))?;
        if let Some(path) = &ready_file {
            write_ready_file(path, &listeners.addresses())?;
        }
        let queue = gateway.queue().clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
                while usr1.recv().await.is_some() {
                    tracing::info!("SIGUSR1: flushing the queue");
                    queue.flush();
                }
            }
        });
        let shutdown = loaded.shutdown;
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new sessions; open transactions may finish");
            let _ = shutdown.send(true);
        });
        server::run(gateway, listeners).await;
        Ok(())
    })
}

/// Writes the bound addresses whole to a temporary file beside `path`, then renames
/// it, so a reader never sees half a document.
fn write_ready_file(path: &Path, addresses: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addresses}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(cfg: &GatewayConfig) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", cfg.log.level))?;
    // Colors only for a person at a terminal; files and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

fn queue(cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::List { config } => {
            let cfg = GatewayConfig::load(&config)?;
            let out = std::io::stdout();
            let mut out = out.lock();
            let states = spool::admin::states(&cfg.spool.directory);
            for m in spool::admin::list(&cfg.spool.directory)? {
                let state = queue::state::load(&states, &m.envelope.id);
                let line = serde_json::json!({
                    "id": m.envelope.id,
                    "sender": m.envelope.sender,
                    "recipients": m.envelope.recipients,
                    "size": m.size,
                    "received_at": m.envelope.received_at,
                    "auth_user": m.envelope.auth_user,
                    "attempts": state.as_ref().map(|s| s.attempts).unwrap_or(0),
                    "next_attempt": state.as_ref().map(|s| s.next_attempt).unwrap_or(0),
                    "delivery": state.map(|s| s.recipients),
                });
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
        QueueCmd::Show { config, id } => {
            let cfg = GatewayConfig::load(&config)?;
            let out = std::io::stdout();
            spool::admin::show(&cfg.spool.directory, &id, &mut out.lock())?;
            Ok(())
        }
        QueueCmd::Flush { config } => {
            let cfg = GatewayConfig::load(&config)?;
            signal_gateway(&cfg)
        }
        QueueCmd::Delete { config, ids } => {
            let cfg = GatewayConfig::load(&config)?;
            for id in &ids {
                spool::admin::delete(&cfg.spool.directory, id)?;
                println!("{id}: removed");
            }
            // A running gateway forgets them at its next flush.
            signal_gateway(&cfg).or_else(|e| {
                eprintln!("note: {e:#}");
                Ok(())
            })
        }
    }
}

/// Sends SIGUSR1 to the gateway that owns this spool (its pid file).
fn signal_gateway(cfg: &GatewayConfig) -> Result<()> {
    let pid_file = spool::admin::pid_file(&cfg.spool.directory);
    let pid = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("no running gateway found ({})", pid_file.display()))?;
    let pid = pid.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{} does not hold a process id", pid_file.display());
    }
    let status = std::process::Command::new("kill")
        .args(["-USR1", pid])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("the gateway (pid {pid}) is not running");
    }
    Ok(())
}

/// Writes the demo configuration and a fresh demo user under `dir`.
fn demo_setup(dir: &Path) -> Result<GatewayConfig> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let mut pw = [0u8; 12];
    getrandom::fill(&mut pw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let password: String = pw
        .iter()
        .map(|b| {
            b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"[*b as usize % 55] as char
        })
        .collect();
    let hash = hash_password(&password, HashAlgorithm::Argon2id)?;
    let demo = CredentialLine::new("demo", hash, vec![SenderRule::Domain("example.com".into())])
        .context("building the demo user")?;
    let mut users = CredentialsFile::new();
    users.push_user(demo).context("building the demo user")?;
    let creds = dir.join("credentials");
    std::fs::write(&creds, users.render())
        .with_context(|| format!("writing {}", creds.display()))?;
    let mut cfg = GatewayConfig {
        hostname: "localhost".into(),
        listeners: vec![
            ListenerConfig::new(ListenerKind::Relay, ([127, 0, 0, 1], 2525).into()),
            ListenerConfig::new(ListenerKind::Submission, ([127, 0, 0, 1], 2587).into()),
            ListenerConfig::new(ListenerKind::Submissions, ([127, 0, 0, 1], 2465).into()),
        ],
        ..GatewayConfig::default()
    };
    cfg.tls.certificate = dir.join("tls.crt");
    cfg.tls.private_key = dir.join("tls.key");
    cfg.tls.self_signed_if_missing = true;
    cfg.spool.directory = dir.join("spool");
    cfg.metrics.address = ([127, 0, 0, 1], 9098).into();
    cfg.auth.credentials_file = Some(creds);
    // A demo must not send mail into the world by accident: mail stays queued.
    cfg.delivery.mode = postern_config::DeliveryMode::Hold;
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg.to_toml()?).with_context(|| format!("writing {}", path.display()))?;
    println!("Postern demo gateway");
    println!("  configuration: {}", path.display());
    println!("  user:          demo");
    println!("  password:      {password}");
    println!("  may send as:   any address @example.com");
    println!("  submission:    127.0.0.1:2587 (STARTTLS), 127.0.0.1:2465 (implicit TLS)");
    println!("  metrics:       http://127.0.0.1:9098/metrics  (/healthz, /readyz)");
    println!("  try:           swaks --server 127.0.0.1:2587 --tls --auth PLAIN \\");
    println!("                   --auth-user demo --auth-password '{password}' \\");
    println!("                   --from app@example.com --to someone@example.net");
    println!(
        "  queued mail:   postern-gateway queue list --config {}",
        path.display()
    );
    println!();
    std::io::stdout().flush()?;
    Ok(cfg)
}
