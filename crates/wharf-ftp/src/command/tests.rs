use super::*;

#[test]
fn commands_split_at_the_first_space() {
    assert_eq!(
        split_command("retr a b.txt"),
        ("RETR".to_owned(), "a b.txt")
    );
    assert_eq!(split_command("PWD"), ("PWD".to_owned(), ""));
    assert_eq!(split_command("STOR  x"), ("STOR".to_owned(), " x"));
}

fn command(line: &str) -> Command<'_> {
    parse(line).1
}

#[test]
fn verbs_are_parsed_into_their_class() {
    assert_eq!(
        parse("xpwd"),
        ("XPWD".to_owned(), Command::LoggedIn(LoggedIn::Pwd))
    );
    assert_eq!(
        command("AUTH tls"),
        Command::Anytime(Anytime::Auth { tls: true })
    );
    assert_eq!(
        command("AUTH ssl "),
        Command::Anytime(Anytime::Auth { tls: true })
    );
    assert_eq!(
        command("AUTH KERBEROS"),
        Command::Anytime(Anytime::Auth { tls: false })
    );
    assert_eq!(
        command("USER  alice "),
        Command::Login(Login::User("alice"))
    );
    assert_eq!(
        command("PASS  pass word "),
        Command::Login(Login::Pass(" pass word "))
    );
    assert_eq!(
        command("PROT p"),
        Command::Login(Login::Prot(Some(Protection::Private)))
    );
    assert_eq!(
        command("PROT C"),
        Command::Login(Login::Prot(Some(Protection::Clear)))
    );
    assert_eq!(command("PROT S"), Command::Login(Login::Prot(None)));
    // Unknown verbs, and empty lines, are for logged-in clients only.
    assert_eq!(command("HELLO"), Command::LoggedIn(LoggedIn::Unknown));
    assert_eq!(
        parse(""),
        (String::new(), Command::LoggedIn(LoggedIn::Unknown))
    );
}

#[test]
fn arguments_are_parsed_or_kept_as_sent() {
    assert_eq!(command("STOR  x"), Command::LoggedIn(LoggedIn::Stor(" x")));
    assert_eq!(command("CWD"), Command::LoggedIn(LoggedIn::Cwd("")));
    assert_eq!(
        command("REST 100"),
        Command::LoggedIn(LoggedIn::Rest(Some(100)))
    );
    assert_eq!(command("REST -1"), Command::LoggedIn(LoggedIn::Rest(None)));
    assert_eq!(
        command("TYPE l 8"),
        Command::LoggedIn(LoggedIn::Type(Some(DataType::Image)))
    );
    assert_eq!(
        command("TYPE A N"),
        Command::LoggedIn(LoggedIn::Type(Some(DataType::Ascii)))
    );
    assert_eq!(command("TYPE E"), Command::LoggedIn(LoggedIn::Type(None)));
    assert_eq!(
        command("MODE s"),
        Command::LoggedIn(LoggedIn::Mode { stream: true })
    );
    assert_eq!(
        command("STRU R"),
        Command::LoggedIn(LoggedIn::Stru { file: false })
    );
    assert_eq!(
        command("EPSV all"),
        Command::LoggedIn(LoggedIn::Epsv { all: true })
    );
    assert_eq!(
        command("EPSV 2"),
        Command::LoggedIn(LoggedIn::Epsv { all: false })
    );
    assert_eq!(command("STAT  "), Command::LoggedIn(LoggedIn::Status));
    assert_eq!(
        command("STAT -la dir"),
        Command::LoggedIn(LoggedIn::Stat("-la dir"))
    );
    assert_eq!(
        command("OPTS utf8 on"),
        Command::Anytime(Anytime::Opts(Some(Opt::Utf8)))
    );
    assert_eq!(
        command("OPTS MLST type;size;"),
        Command::Anytime(Anytime::Opts(Some(Opt::Mlst)))
    );
    assert_eq!(
        command("OPTS MODE Z"),
        Command::Anytime(Anytime::Opts(None))
    );
}

#[test]
fn commands_that_need_a_path_never_get_an_empty_one() {
    for verb in ["RETR", "stor", "APPE"] {
        for line in [verb.to_owned(), format!("{verb} ")] {
            assert_eq!(
                command(&line),
                Command::LoggedIn(LoggedIn::MissingPath { transfer: true }),
                "{line:?}"
            );
        }
    }
    for verb in [
        "DELE", "RNFR", "RNTO", "MKD", "XMKD", "RMD", "XRMD", "SIZE", "MDTM",
    ] {
        for line in [verb.to_owned(), format!("{verb} ")] {
            assert_eq!(
                command(&line),
                Command::LoggedIn(LoggedIn::MissingPath { transfer: false }),
                "{line:?}"
            );
        }
    }
    // A path of spaces is a path (a name may be a space).
    assert_eq!(command("RETR  "), Command::LoggedIn(LoggedIn::Retr(" ")));
    // Those whose path may be left out keep their meaning: CWD goes home,
    // the others are of the working directory.
    assert_eq!(command("CWD"), Command::LoggedIn(LoggedIn::Cwd("")));
    assert_eq!(command("LIST"), Command::LoggedIn(LoggedIn::List("")));
    assert_eq!(command("MLST"), Command::LoggedIn(LoggedIn::Mlst("")));
}

#[test]
fn transfers_and_listings() {
    for line in [
        "RETR f", "STOR f", "APPE f", "LIST", "NLST d", "MLSD", "RETR", "STOR",
    ] {
        let Command::LoggedIn(command) = command(line) else {
            panic!("{line}");
        };
        assert!(command.is_transfer(), "{line}");
    }
    for line in [
        "STAT d", "MLST f", "SIZE f", "REST 5", "PASV", "NOOP", "DELE",
    ] {
        assert!(
            !matches!(command(line), Command::LoggedIn(c) if c.is_transfer()),
            "{line}"
        );
    }
    for line in ["LIST", "NLST d", "MLSD", "STAT d"] {
        assert!(
            matches!(command(line), Command::LoggedIn(c) if c.is_listing()),
            "{line}"
        );
    }
    for line in ["STAT", "MLST f", "RETR f", "NOOP"] {
        assert!(
            !matches!(command(line), Command::LoggedIn(c) if c.is_listing()),
            "{line}"
        );
    }
}

/// ABOR during a transfer is recognised by the parser's rule, the same as
/// without one.
#[test]
fn abor_during_a_transfer() {
    for line in ["ABOR", "abor", "Abor ", "ABOR x"] {
        assert!(is_abort(line), "{line:?}");
        assert_eq!(command(line), Command::LoggedIn(LoggedIn::Abor));
    }
    for line in [" ABOR", " abor ", "ABORT", "NOOP", ""] {
        assert!(!is_abort(line), "{line:?}");
        assert_ne!(command(line), Command::LoggedIn(LoggedIn::Abor));
    }
}
