//! The command line: `run`, `replay`, `check`, `rules`, `status` and
//! `reload`, and the mapping of failures to exit codes (0 ok, 1 findings or
//! no daemon running, 2 usage or configuration error or a refused reload).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, DEFAULT_RULES_DIR};

#[derive(Debug, Parser)]
#[command(
    name = "dockwatch",
    version,
    about = "Runtime monitor for the hardening baseline of Docker hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the host and send alerts (the daemon).
    Run(RunArgs),
    /// Run the rules over archived audit logs (forensics).
    Replay(ReplayArgs),
    /// Report the baseline once, with CIS ids; exit code 1 when a check fails.
    Check(CheckArgs),
    /// Rule tooling.
    Rules(RulesArgs),
    /// Ask the running daemon how it is doing; exit code 1 when none runs.
    Status(StatusArgs),
    /// Have the running daemon reload its configuration and rules; exit code
    /// 2 (with file:line:col) when it refuses them, 1 when none runs.
    Reload(ControlArgs),
}

#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// Configuration file naming the control socket (`[control] socket`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control socket (default: the configuration's).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// One JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Directory of rule files (YAML).
    #[arg(long, value_name = "DIR", global = true)]
    pub rules: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where alerts go; repeatable; replaces the configuration's outputs.
    #[arg(long = "output", value_name = "URL")]
    pub outputs: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where alerts go; repeatable (default: stdout).
    #[arg(long = "output", value_name = "URL")]
    pub outputs: Vec<String>,
    /// Audit logs, rotated generations and .gz files in any order; `-` is stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub action: RulesAction,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum RulesAction {
    /// Validate the rule files; errors carry file:line:col.
    Lint,
    /// List the rules.
    List,
    /// Print audit rules for `auditctl -R`.
    Auditctl,
}

/// Exit code of a run that found failing checks.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code of a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        // A reader that went away (`dockwatch rules list | head`) is not an
        // error of ours: stop quietly, as other Unix tools do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dockwatch: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => {
            let config = Config::load(args.common.config.as_deref())?;
            let rules_dir = rules_dir(args.common.rules.as_deref(), &config)?;
            let plan = crate::control::reload::ReloadPlan {
                config_path: args.common.config,
                rules_flag: args.common.rules,
                rules_dir,
            };
            crate::daemon::run(config, plan, args.outputs)?;
            Ok(0)
        }
        Command::Replay(args) => {
            let config = Config::load(args.common.config.as_deref())?;
            let rules_dir = rules_dir(args.common.rules.as_deref(), &config)?;
            crate::daemon::replay(config, rules_dir, args.outputs, args.files)
        }
        Command::Check(args) => {
            let config = Config::load(args.config.as_deref())?;
            let failed = crate::posture::check_command(&config, args.json)?;
            Ok(if failed { EXIT_FINDINGS } else { 0 })
        }
        Command::Rules(args) => {
            let config = Config::load(args.common.config.as_deref())?;
            let rules_dir = rules_dir(args.common.rules.as_deref(), &config)?;
            let report = match args.action {
                RulesAction::Lint => crate::rules::Report::Lint,
                RulesAction::List => crate::rules::Report::List,
                RulesAction::Auditctl => crate::rules::Report::Auditctl,
            };
            print!("{}", crate::rules::report(report, &rules_dir)?);
            Ok(0)
        }
        Command::Status(args) => {
            let socket = control_socket(&args.control)?;
            crate::control::status_command(&socket, args.json)
        }
        Command::Reload(args) => {
            let socket = control_socket(&args)?;
            crate::control::reload_command(&socket)
        }
    }
}

/// `--socket`, else the configuration's control socket.
fn control_socket(args: &ControlArgs) -> Result<PathBuf, ConfigError> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    Ok(Config::load(args.config.as_deref())?.control.socket)
}

/// `--rules`, else the configuration's, else the installed directory, else
/// the rules shipped with this build.
pub fn rules_dir(flag: Option<&Path>, config: &Config) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = flag.or(config.rules.dir.as_deref()) {
        return Ok(dir.to_path_buf());
    }
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    [DEFAULT_RULES_DIR, "/usr/share/dockwatch/rules", shipped]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            ConfigError::new(format!(
                "no rules directory: give --rules DIR or install rules in {DEFAULT_RULES_DIR}"
            ))
        })
}
