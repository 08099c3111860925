use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::{LogConfig, LogFormat};
use herald::{Config, Server};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Herald, an MQTT broker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: ./broker.toml if present, else built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print the effective configuration.
    CheckConfig { path: PathBuf },
    /// Add a user to a password file, or change their password (read from standard
    /// input, one line); the file is created if missing.
    Passwd {
        file: PathBuf,
        user: String,
        /// Remove the user instead.
        #[arg(long)]
        delete: bool,
    },
}

/// Exit code for a configuration that cannot be used.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { path }) => match Config::from_file(&path) {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Some(Command::Passwd { file, user, delete }) => match passwd(&file, &user, delete) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herald passwd: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            let config = match load_config(cli.config.as_deref()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("herald: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            init_logging(&config.log);
            // Freed memory goes back to the system from a background thread, also while
            // the broker is quiet (a million retained messages cleared: 430 MB back to
            // 12 MB within 15 s, where it otherwise stays).
            if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
                warn!("cannot start jemalloc's background thread: {e}");
            }
            run(config)
        }
    }
}

/// `herald passwd`: sets or removes `user` in the password file `file`.
fn passwd(file: &Path, user: &str, delete: bool) -> Result<(), String> {
    use herald::passwd::{PasswordFile, PasswordHash};
    if user.is_empty() || user.contains(':') {
        return Err("a user name is not empty and has no ':'".into());
    }
    let mut users = if file.exists() {
        PasswordFile::load(file)?
    } else {
        PasswordFile::default()
    };
    if delete {
        if !users.remove(user) {
            return Err(format!("no user {user:?} in {}", file.display()));
        }
    } else {
        let mut password = String::new();
        std::io::stdin()
            .read_line(&mut password)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err("the password (on standard input) is empty".into());
        }
        users.set(user, PasswordHash::new(password.as_bytes())?);
    }
    // Written whole next to the file, then moved over it: never half a file.
    let fresh = file.with_extension("tmp");
    std::fs::write(&fresh, users.to_string())
        .and_then(|()| std::fs::rename(&fresh, file))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn load_config(path: Option<&Path>) -> Result<Config, herald::config::ConfigError> {
    match path {
        Some(path) => Config::from_file(path),
        None if Path::new("broker.toml").exists() => Config::from_file(Path::new("broker.toml")),
        None => Ok(Config::default()),
    }
}

fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.format {
        LogFormat::Text => lines.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => lines.json().init(),
    }
}

fn run(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Watched before anything starts, so that a signal during start-up (loading a
        // large database) stops the broker gracefully once it is up.
        let stop = StopSignals::watch();
        let server = match Server::start(&config).await {
            Ok(server) => server,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        info!("herald {} ready", env!("CARGO_PKG_VERSION"));
        stop.wait(|| server.reload()).await;
        info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT, which stop the broker, and SIGHUP, which reloads; each watched
/// if it can be.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn watch() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(e) => {
                error!("cannot watch {name}: {e}");
                None
            }
        };
        StopSignals {
            term: watch(SignalKind::terminate(), "SIGTERM"),
            interrupt: watch(SignalKind::interrupt(), "SIGINT"),
            hangup: watch(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Returns at SIGTERM or SIGINT, calling `reload` at each SIGHUP meanwhile.
    async fn wait(mut self, reload: impl Fn()) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                _ = next(&mut self.term) => return,
                _ = next(&mut self.interrupt) => return,
                _ = next(&mut self.hangup) => {
                    info!("SIGHUP: reloading");
                    reload();
                }
            }
        }
    }
}
