//! The `wharf` binary: command line, configuration, wiring, signals.
//!
//! This is the only crate that knows the configuration file format and
//! that depends on every other crate. Protocol details stay in the
//! front-end crates.

mod admin;
mod cluster;
mod config;
mod hostkeys;
mod limits;
mod memory;
mod serve;
mod testidp;
mod users;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A failure of a command, with the exit status it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the user asked for something wrong (one line says what).
    User(String),
    /// Exit 1 with several problems (check-config).
    Config(Vec<String>),
    /// Exit 2: something broke inside.
    Internal(String),
    /// Exit 3: a clean "no" (denied login, denied request).
    No,
}

pub type CommandResult = Result<(), Failure>;

#[derive(Parser, Debug)]
#[command(
    name = "wharf",
    version,
    about = "SFTP and FTPS in front of S3 or a filesystem, the AWS Transfer Family way"
)]
struct Cli {
    /// Configuration file (default: ./wharf.toml, else the embedded default).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every enabled protocol until SIGINT or SIGTERM, then drain.
    Serve,
    /// Validate the configuration and print every problem with its key path.
    CheckConfig,
    /// Manage service-managed users.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Ask the identity provider exactly as a login would.
    TestIdp(testidp::TestIdpArgs),
    /// IAM policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Evaluate a user's effective policies for one request.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
struct SimulateArgs {
    #[arg(long)]
    user: String,
    #[arg(long)]
    action: String,
    #[arg(long)]
    resource: String,
    /// Extra condition keys, KEY=VALUE (repeatable).
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
}

/// Loads the configuration named on the command line, with the process
/// environment applied.
pub fn load_config(explicit: Option<&std::path::Path>) -> Result<config::Config, Failure> {
    let file = config::locate(explicit);
    let env: Vec<(String, String)> = std::env::vars().collect();
    config::load(file.as_deref(), &env).map_err(Failure::Config)
}

fn run(cli: Cli) -> CommandResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("cannot start the runtime: {e}")))?;
    let config_path = cli.config.clone();
    match cli.command {
        Command::Serve => {
            let config = load_config(config_path.as_deref())?;
            runtime.block_on(serve::serve(config))
        }
        Command::CheckConfig => {
            let config = load_config(config_path.as_deref())?;
            // Everything serve builds before it listens, without its side
            // effects: what this accepts, serve runs.
            wiring::ServePlan::build(&config).map_err(Failure::Config)?;
            for warning in config.cluster_warnings() {
                eprintln!("wharf: warning: {warning}");
            }
            let source = config
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "the embedded default".to_owned());
            println!("{source}: configuration is valid");
            Ok(())
        }
        Command::User(command) => {
            let config = load_config(config_path.as_deref())?;
            runtime.block_on(users::run(&config, command))
        }
        Command::TestIdp(args) => {
            let config = load_config(config_path.as_deref())?;
            runtime.block_on(testidp::run(&config, args))
        }
        Command::Policy(PolicyCommand::Simulate(args)) => {
            let config = load_config(config_path.as_deref())?;
            runtime.block_on(testidp::simulate(
                &config,
                &args.user,
                &args.action,
                &args.resource,
                &args.context,
            ))
        }
    }
}

fn main() -> ExitCode {
    memory::tune_allocator();
    limits::raise_descriptor_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with status 0; a usage error is
            // a user error (status 1, as every command's).
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User(message)) => {
            eprintln!("wharf: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Config(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("wharf: {} configuration problem(s)", problems.len());
            ExitCode::from(1)
        }
        Err(Failure::Internal(message)) => {
            eprintln!("wharf: internal error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::No) => ExitCode::from(3),
    }
}
