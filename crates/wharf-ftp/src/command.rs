//! The command parser: a control line (cleaned by `control.rs`) becomes a
//! [`Command`], once; the session dispatches on it (`session.rs`) to the
//! module of the command's family (`session/`).
//!
//! Commands come in three classes, by when they are allowed: at any time
//! ([`Anytime`]), before login but, with FTPS, after AUTH TLS ([`Login`]),
//! and logged in only ([`LoggedIn`]). Unknown verbs are of the last class:
//! before login they get 530 (534 before AUTH TLS) like the known ones.
//!
//! Paths are kept as sent (a file name may start with a space); a command
//! that needs one and got none is [`LoggedIn::MissingPath`] (501, nothing
//! resolved: it never means the working directory). Other arguments are
//! parsed into what they mean, one not understood kept as such: its reply
//! waits for the checks of its class (a REST with a bad offset before login
//! gets 530, not 501).

/// A command, by when it is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    Anytime(Anytime),
    Login(Login<'a>),
    LoggedIn(LoggedIn<'a>),
}

/// Allowed at any time: before AUTH TLS and before login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Anytime {
    /// AUTH; `tls`: the mechanism is TLS (`TLS`, `TLS-C` or `SSL`).
    Auth {
        tls: bool,
    },
    Ccc,
    Feat,
    Help,
    Noop,
    /// OPTS; `None`: an option not understood.
    Opts(Option<Opt>),
    Quit,
    Syst,
}

/// What OPTS sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opt {
    /// `UTF8 ON` (always on).
    Utf8,
    /// `MLST facts...` (always all of them).
    Mlst,
}

/// Login and protection: allowed before login; with FTPS, after AUTH TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login<'a> {
    /// USER, its name trimmed (maybe empty).
    User(&'a str),
    /// PASS, the password as sent.
    Pass(&'a str),
    Pbsz,
    /// PROT; `None`: a level other than P and C.
    Prot(Option<Protection>),
}

/// A PROT level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protection {
    /// P: data connections over TLS.
    Private,
    /// C: data connections in the clear.
    Clear,
}

/// Allowed logged in only (with FTPS, after AUTH TLS). Paths as sent; those
/// of RETR, STOR, APPE, DELE, RNFR, RNTO, MKD, RMD, SIZE and MDTM never
/// empty ([`LoggedIn::MissingPath`] instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoggedIn<'a> {
    // Navigation and directories.
    /// PWD, XPWD.
    Pwd,
    /// CWD, XCWD.
    Cwd(&'a str),
    /// CDUP, XCUP.
    Cdup,
    /// MKD, XMKD.
    Mkd(&'a str),
    /// RMD, XRMD.
    Rmd(&'a str),
    // One file over the control connection.
    Size(&'a str),
    Mdtm(&'a str),
    Dele(&'a str),
    Rnfr(&'a str),
    Rnto(&'a str),
    // Transfer parameters and transfers.
    /// TYPE; `None`: a type not supported.
    Type(Option<DataType>),
    /// MODE; `stream`: MODE S, the only one supported.
    Mode {
        stream: bool,
    },
    /// STRU; `file`: STRU F, the only one supported.
    Stru {
        file: bool,
    },
    Allo,
    /// REST; `None`: not a byte offset.
    Rest(Option<u64>),
    Retr(&'a str),
    Stor(&'a str),
    Appe(&'a str),
    /// ABOR with no transfer running (during one, `control.rs` takes it,
    /// recognised by [`is_abort`]).
    Abor,
    // Data connections.
    Pasv,
    /// EPSV; `all`: EPSV ALL.
    Epsv {
        all: bool,
    },
    /// PORT, EPRT, LPRT: active mode, not supported.
    Active,
    // Listings.
    List(&'a str),
    Nlst(&'a str),
    Mlsd(&'a str),
    Mlst(&'a str),
    /// STAT with a path: its listing over the control connection.
    Stat(&'a str),
    /// STAT alone: the connection's status.
    Status,
    /// One of the commands above that needs a path, without one; `transfer`:
    /// RETR, STOR or APPE (a transfer command all the same: see
    /// [`LoggedIn::is_transfer`]).
    MissingPath {
        transfer: bool,
    },
    // The rest.
    Acct,
    /// STOU, SITE, SMNT, REIN, MFMT, MFCT, MFF.
    NotImplemented,
    Unknown,
}

impl LoggedIn<'_> {
    /// A transfer command: RETR, STOR, APPE, LIST, NLST, MLSD (also without
    /// the path it needs). Whatever its outcome it ends the passive port it
    /// would have used, and the REST before it (see `session.rs`).
    pub(crate) fn is_transfer(&self) -> bool {
        matches!(
            self,
            LoggedIn::Retr(_)
                | LoggedIn::Stor(_)
                | LoggedIn::Appe(_)
                | LoggedIn::List(_)
                | LoggedIn::Nlst(_)
                | LoggedIn::Mlsd(_)
                | LoggedIn::MissingPath { transfer: true }
        )
    }

    /// A listing, over a data connection or the control connection (STAT of
    /// a path): a REST before it is dropped, as after a transfer.
    pub(crate) fn is_listing(&self) -> bool {
        matches!(
            self,
            LoggedIn::List(_) | LoggedIn::Nlst(_) | LoggedIn::Mlsd(_) | LoggedIn::Stat(_)
        )
    }
}

/// A TYPE this server takes (bytes go through unchanged in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataType {
    /// `I`, `L 8`.
    Image,
    /// `A`, `A N`.
    Ascii,
}

/// Parses a command line: its verb (upper case, for the log) and the
/// command.
pub(crate) fn parse(line: &str) -> (String, Command<'_>) {
    let (verb, arg) = split_command(line);
    let command = if let Some(command) = anytime(&verb, arg) {
        Command::Anytime(command)
    } else if let Some(command) = login(&verb, arg) {
        Command::Login(command)
    } else {
        Command::LoggedIn(logged_in(&verb, arg))
    };
    (verb, command)
}

/// Splits a command line into its verb (upper case) and argument.
pub(crate) fn split_command(line: &str) -> (String, &str) {
    match line.split_once(' ') {
        Some((verb, arg)) => (verb.to_ascii_uppercase(), arg),
        None => (line.to_ascii_uppercase(), ""),
    }
}

/// Whether a line waiting during a transfer is ABOR (`Control::watch`): by
/// the same rule as any other line, the parser's (the verb before the
/// first space, in any case; `" ABOR"` is no ABOR, but a 500 after the
/// transfer, as it is without one).
pub(crate) fn is_abort(line: &str) -> bool {
    matches!(parse(line).1, Command::LoggedIn(LoggedIn::Abor))
}

/// An argument trimmed and in upper case, as keywords are compared.
fn keyword(arg: &str) -> String {
    arg.trim().to_ascii_uppercase()
}

fn anytime(verb: &str, arg: &str) -> Option<Anytime> {
    let command = match verb {
        "AUTH" => Anytime::Auth {
            tls: matches!(keyword(arg).as_str(), "TLS" | "TLS-C" | "SSL"),
        },
        "CCC" => Anytime::Ccc,
        "FEAT" => Anytime::Feat,
        "HELP" => Anytime::Help,
        "NOOP" => Anytime::Noop,
        "OPTS" => Anytime::Opts(opt(arg)),
        "QUIT" => Anytime::Quit,
        "SYST" => Anytime::Syst,
        _ => return None,
    };
    Some(command)
}

fn opt(arg: &str) -> Option<Opt> {
    let option = keyword(arg);
    if option == "UTF8 ON" || option == "UTF8" || option == "UTF-8 ON" {
        Some(Opt::Utf8)
    } else if option.starts_with("MLST") {
        Some(Opt::Mlst)
    } else {
        None
    }
}

fn login<'a>(verb: &str, arg: &'a str) -> Option<Login<'a>> {
    let command = match verb {
        "USER" => Login::User(arg.trim()),
        "PASS" => Login::Pass(arg),
        "PBSZ" => Login::Pbsz,
        "PROT" => Login::Prot(match keyword(arg).as_str() {
            "P" => Some(Protection::Private),
            "C" => Some(Protection::Clear),
            _ => None,
        }),
        _ => return None,
    };
    Some(command)
}

/// A command that needs a path: `command` with it, or
/// [`LoggedIn::MissingPath`] without one.
fn with_path<'a>(arg: &'a str, command: fn(&'a str) -> LoggedIn<'a>) -> LoggedIn<'a> {
    if arg.is_empty() {
        LoggedIn::MissingPath { transfer: false }
    } else {
        command(arg)
    }
}

/// RETR, STOR or APPE: [`with_path`], a transfer without its path too.
fn transfer_with_path<'a>(arg: &'a str, command: fn(&'a str) -> LoggedIn<'a>) -> LoggedIn<'a> {
    if arg.is_empty() {
        LoggedIn::MissingPath { transfer: true }
    } else {
        command(arg)
    }
}

fn logged_in<'a>(verb: &str, arg: &'a str) -> LoggedIn<'a> {
    match verb {
        "PWD" | "XPWD" => LoggedIn::Pwd,
        "CWD" | "XCWD" => LoggedIn::Cwd(arg),
        "CDUP" | "XCUP" => LoggedIn::Cdup,
        "MKD" | "XMKD" => with_path(arg, LoggedIn::Mkd),
        "RMD" | "XRMD" => with_path(arg, LoggedIn::Rmd),
        "SIZE" => with_path(arg, LoggedIn::Size),
        "MDTM" => with_path(arg, LoggedIn::Mdtm),
        "DELE" => with_path(arg, LoggedIn::Dele),
        "RNFR" => with_path(arg, LoggedIn::Rnfr),
        "RNTO" => with_path(arg, LoggedIn::Rnto),
        "TYPE" => LoggedIn::Type(match keyword(arg).as_str() {
            "I" | "L 8" => Some(DataType::Image),
            "A" | "A N" => Some(DataType::Ascii),
            _ => None,
        }),
        "MODE" => LoggedIn::Mode {
            stream: keyword(arg) == "S",
        },
        "STRU" => LoggedIn::Stru {
            file: keyword(arg) == "F",
        },
        "ALLO" => LoggedIn::Allo,
        "REST" => LoggedIn::Rest(arg.trim().parse().ok()),
        "RETR" => transfer_with_path(arg, LoggedIn::Retr),
        "STOR" => transfer_with_path(arg, LoggedIn::Stor),
        "APPE" => transfer_with_path(arg, LoggedIn::Appe),
        "ABOR" => LoggedIn::Abor,
        "PASV" => LoggedIn::Pasv,
        "EPSV" => LoggedIn::Epsv {
            all: arg.trim().eq_ignore_ascii_case("ALL"),
        },
        "PORT" | "EPRT" | "LPRT" => LoggedIn::Active,
        "LIST" => LoggedIn::List(arg),
        "NLST" => LoggedIn::Nlst(arg),
        "MLSD" => LoggedIn::Mlsd(arg),
        "MLST" => LoggedIn::Mlst(arg),
        "STAT" if arg.trim().is_empty() => LoggedIn::Status,
        "STAT" => LoggedIn::Stat(arg),
        "ACCT" => LoggedIn::Acct,
        "STOU" | "SITE" | "SMNT" | "REIN" | "MFMT" | "MFCT" | "MFF" => LoggedIn::NotImplemented,
        _ => LoggedIn::Unknown,
    }
}

#[cfg(test)]
mod tests;
