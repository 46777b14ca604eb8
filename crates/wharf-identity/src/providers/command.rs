//! `command`: runs a program (argv, no shell) with the request object as
//! JSON on stdin and reads the response object from its stdout.
//!
//! The program runs in a process group of its own; past `timeout` (or when
//! the query is abandoned) the whole group is killed with SIGKILL and the
//! program is reaped. Stdout is read up to [`MAX_RESPONSE_BYTES`]; only the
//! last few KiB of stderr are kept, for the reason of a failure.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Child;

use super::{
    BACKSTOP_GRACE, MAX_RESPONSE_BYTES, ProviderConfigError, check_timeout, excerpt, interpret,
    request_event,
};
use crate::{Answer, Credential, IdentityProvider, LoginRequest};

/// How much of the end of stderr is kept for a reason.
const STDERR_KEEP: usize = 8 * 1024;

/// `[identity_provider]` with `type = "command"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// `command`: the program and its arguments; `argv[0]` is looked up
    /// in `PATH` unless it holds a `/`.
    #[serde(rename = "command")]
    pub argv: Vec<String>,
}

/// The `command` identity provider.
#[derive(Debug, Clone)]
pub struct CommandProvider {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandProvider {
    /// `timeout`: the longest the program may run per login.
    pub fn new(
        config: CommandConfig,
        timeout: Duration,
    ) -> Result<CommandProvider, ProviderConfigError> {
        check_timeout(timeout)?;
        match config.argv.first() {
            None => {
                return Err(ProviderConfigError(
                    "command must name a program: [\"/path/to/program\", \"arg\", ...]".to_owned(),
                ));
            }
            Some(program) if program.is_empty() => {
                return Err(ProviderConfigError(
                    "command[0], the program, is empty".to_owned(),
                ));
            }
            Some(_) => {}
        }
        Ok(CommandProvider {
            argv: config.argv,
            timeout,
        })
    }

    fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }
}

/// Owns the running program. Until the program has been reaped, dropping
/// the guard kills its process group and reaps it in the background: an
/// abandoned query leaves nothing running.
struct Running {
    child: Option<Child>,
    group: Option<Pid>,
}

impl Running {
    /// Kills the whole group. `child` is `Some` only while the leader has
    /// not been reaped, so its pid, which is the group id, is still held (by
    /// the leader or its zombie) and cannot belong to anyone else.
    fn kill_group(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(group) = self.group {
                let _ = kill_process_group(group, Signal::KILL);
            }
            let _ = child.start_kill();
        }
    }

    /// Kills what is left and waits for the leader.
    async fn kill_and_reap(&mut self) {
        self.kill_group();
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait().await;
        }
        self.child = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
        if let Some(mut child) = self.child.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

struct TooLarge;

async fn read_capped(mut pipe: impl AsyncRead + Unpin, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => {
                if out.len() + n > MAX_RESPONSE_BYTES {
                    return Err(TooLarge);
                }
                out.extend_from_slice(&buffer[..n]);
            }
        }
    }
}

/// Reads to the end, keeping only the last [`STDERR_KEEP`] bytes.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, out: &mut Vec<u8>) {
    let mut buffer = [0u8; 8 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                out.extend_from_slice(&buffer[..n]);
                if out.len() > 2 * STDERR_KEEP {
                    out.drain(..out.len() - STDERR_KEEP);
                }
            }
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}

enum Outcome {
    Exited(ExitStatus),
    TooLarge,
    WaitFailed(std::io::Error),
}

#[async_trait]
impl IdentityProvider for CommandProvider {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn timeout(&self) -> Duration {
        self.timeout + BACKSTOP_GRACE
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let kind = self.kind();
        let program = self.program();
        // One line, so that `read line` in a shell script gets all of it.
        let event = format!("{}\n", request_event(request));
        let mut command = tokio::process::Command::new(program);
        command
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return Answer::denied(
                    502,
                    format!("cannot start the {kind} identity provider {program:?}: {error}"),
                );
            }
        };
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let mut running = Running {
            child: Some(child),
            group,
        };

        let mut out = Vec::new();
        let mut err = Vec::new();
        let run = async {
            let write = async {
                if let Some(mut stdin) = stdin {
                    // A program that does not read its stdin is its business.
                    let _ = stdin.write_all(event.as_bytes()).await;
                    let _ = stdin.shutdown().await;
                }
                Ok::<(), TooLarge>(())
            };
            let read_out = async {
                match stdout {
                    Some(stdout) => read_capped(stdout, &mut out).await,
                    None => Ok(()),
                }
            };
            let read_err = async {
                if let Some(stderr) = stderr {
                    read_tail(stderr, &mut err).await;
                }
                Ok::<(), TooLarge>(())
            };
            if tokio::try_join!(write, read_out, read_err).is_err() {
                return Outcome::TooLarge;
            }
            match running.child.as_mut() {
                Some(child) => match child.wait().await {
                    Ok(status) => Outcome::Exited(status),
                    Err(error) => Outcome::WaitFailed(error),
                },
                None => Outcome::WaitFailed(std::io::Error::other("no child")),
            }
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let credential: &Credential = &request.credential;
        let stderr_note = |err: &[u8]| {
            let text = excerpt(err, credential, true);
            if text.is_empty() {
                String::new()
            } else {
                format!("; stderr: {text}")
            }
        };
        match outcome {
            Err(_elapsed) => {
                running.kill_and_reap().await;
                Answer::denied(
                    504,
                    format!(
                        "the {kind} identity provider {program:?} did not finish within {:?} \
                         and was killed{}",
                        self.timeout,
                        stderr_note(&err)
                    ),
                )
            }
            Ok(Outcome::TooLarge) => {
                running.kill_and_reap().await;
                Answer::denied(
                    502,
                    format!(
                        "the {kind} identity provider {program:?} printed more than \
                         {MAX_RESPONSE_BYTES} bytes and was killed"
                    ),
                )
            }
            Ok(Outcome::WaitFailed(error)) => {
                running.kill_and_reap().await;
                Answer::denied(
                    502,
                    format!("cannot wait for the {kind} identity provider {program:?}: {error}"),
                )
            }
            Ok(Outcome::Exited(status)) => {
                // Reaped: nothing is left to kill.
                running.child = None;
                if let Some(signal) = status.signal() {
                    return Answer::denied(
                        502,
                        format!(
                            "the {kind} identity provider {program:?} was killed by signal \
                             {signal} ({}){}",
                            signal_name(signal),
                            stderr_note(&err)
                        ),
                    );
                }
                if !status.success() {
                    let code = status.code().unwrap_or(-1);
                    return Answer::denied(
                        502,
                        format!(
                            "the {kind} identity provider {program:?} exited with status \
                             {code}{}",
                            stderr_note(&err)
                        ),
                    );
                }
                if out.iter().all(u8::is_ascii_whitespace) {
                    return Answer::denied(
                        502,
                        format!(
                            "the {kind} identity provider {program:?} printed nothing{}",
                            stderr_note(&err)
                        ),
                    );
                }
                interpret(kind, 200, &out, credential)
            }
        }
    }
}
