//! Entry point for the fuzz target `fuzz/fuzz_targets/ftp_line.rs`, also
//! run over generated inputs by this crate's tests as a smoke run.

use crate::command::{self, Command, LoggedIn, split_command};
use crate::control::{MAX_LINE, clean_line};
use crate::reply::{self, Code, Reply};

/// A control connection's bytes: cut into lines as the control channel
/// cuts them (at LF, refusing lines over [`MAX_LINE`]), each cleaned of its
/// line end and Telnet commands, split into verb and argument and parsed
/// into a command as the session parses it (a command that needs a path
/// never gets an empty one; ABOR is recognised by the parser's rule); and
/// the argument quoted in replies, which must reach the wire with no
/// control character inside a line.
pub fn ftp_lines(data: &[u8]) {
    for raw in data.split(|&b| b == b'\n') {
        if raw.len() > MAX_LINE {
            // The session refuses it (500) and counts a protocol violation.
            continue;
        }
        let line = clean_line(raw);
        assert!(!line.contains('\n'), "a line end survived: {line:?}");
        let (verb, argument) = split_command(&line);
        assert!(!verb.contains(' '), "verb {verb:?}");
        assert!(
            !verb.chars().any(|c| c.is_ascii_lowercase()),
            "verb {verb:?}"
        );
        assert!(line.ends_with(argument), "{line:?} / {argument:?}");
        let (parsed_verb, command) = command::parse(&line);
        assert_eq!(parsed_verb, verb);
        assert_eq!(
            command::is_abort(&line),
            command == Command::LoggedIn(LoggedIn::Abor)
        );
        if let Command::LoggedIn(
            LoggedIn::Retr(path)
            | LoggedIn::Stor(path)
            | LoggedIn::Appe(path)
            | LoggedIn::Dele(path)
            | LoggedIn::Rnfr(path)
            | LoggedIn::Rnto(path)
            | LoggedIn::Mkd(path)
            | LoggedIn::Rmd(path)
            | LoggedIn::Size(path)
            | LoggedIn::Mdtm(path),
        ) = command
        {
            assert!(!path.is_empty(), "{line:?}");
        }
        let mut wire = reply::first_line(Code::FileStatus, &format!("Status of {argument}:"));
        Reply::new(Code::Unavailable, argument).encode(&mut wire);
        let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 2, "{wire:?}");
        for reply_line in lines {
            let text = reply_line.strip_suffix(b"\r\n").unwrap_or_default();
            assert!(
                text.len() + 2 == reply_line.len() && !text.iter().any(u8::is_ascii_control),
                "{wire:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smoke run of the fuzz target over generated inputs.
    #[test]
    fn the_fuzz_target_survives_generated_inputs() {
        let seeds: [&[u8]; 4] = [
            b"USER alice\r\nPASS s3cret\r\nTYPE I\r\nPASV\r\nSTOR caf\xc3\xa9 x.txt\r\n",
            b"\xff\xf4\xff\xf2ABOR\r\nRNFR a\r\nRNTO b\r\n",
            b"MLSD /\r\nSITE CHMOD 644 f\r\nREST 100\r\n\xff\xff\xff",
            b"retr \xfe\xfd\r\nquit",
        ];
        wharf_test_support::fuzz::mutated_inputs(&seeds, 20_000, 4, &[], ftp_lines);
        // Over-long lines are skipped, never split into commands.
        ftp_lines(&[b'A'; MAX_LINE + 10]);
    }
}
