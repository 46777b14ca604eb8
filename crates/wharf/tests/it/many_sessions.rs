//! 10,000 concurrent SFTP sessions on one node (AWS Transfer Family's quota
//! per server), on a 2-core machine: opened in bursts by several asyncssh
//! processes (`py/many_sessions.py`), all usable, a new login served within
//! a second while they are held, and the memory they took given back once
//! they close, burst after burst.
//!
//! It needs a hard `RLIMIT_NOFILE` of 20,000 (wharf gives its connections
//! half of its descriptors); the test raises the soft limit of itself, and
//! so of wharf and the helpers, to the hard one. `WHARF_TEST_SESSIONS`
//! runs it with fewer sessions (development).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use wharf_test_support::process::{open_fds as fds, rss_kib, within};

use crate::*;

/// Sessions at once: AWS Transfer Family's quota per server, and wharf's
/// cap per listener (`serve::MAX_CONNECTIONS`). The helpers hold all but
/// one; the timed OpenSSH login is the last.
const SESSIONS: usize = 10_000;
/// Helper processes, one user each.
const HELPERS: usize = 4;
/// Logins in flight per helper: together below the guard's limit of
/// connections not logged in from one address (32), as a client behind one
/// address would have to stay.
const IN_FLIGHT: usize = 7;
const _: () = assert!(HELPERS * IN_FLIGHT < wharf_listen::MAX_PENDING_PER_ADDRESS);
/// A login and `ls` while every session is held.
const LOGIN_WITHIN: Duration = Duration::from_secs(1);
/// What RSS may keep once every session has closed, above where it was
/// before the first burst (KiB).
const RSS_KEPT: u64 = 16 * 1024;
/// What a second burst may add to that (KiB).
const RSS_GROWTH: u64 = 8 * 1024;
/// The longest one burst, its closing or the heap trim may take.
const STEP: Duration = Duration::from_secs(240);

fn sessions() -> usize {
    std::env::var("WHARF_TEST_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SESSIONS)
        .max(200)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Raises this process's soft descriptor limit to the hard one, so that the
/// helpers and wharf (which raises its own too) start with it, and checks
/// it leaves wharf half its descriptors for connections (`limits.rs`).
fn raise_descriptor_limit(sessions: usize) {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let needed = 2 * sessions as u64;
    assert!(
        hard >= needed,
        "{sessions} sessions need a hard RLIMIT_NOFILE of at least {needed} (wharf gives \
         connections half of its descriptors); it is {hard} (`ulimit -Hn`)"
    );
}

/// One `many_sessions.py` process and its share of the sessions.
struct Helper {
    child: Child,
    input: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl Helper {
    fn start(port: u16, user: &str, key: &std::path::Path, count: usize) -> Helper {
        let mut child = Command::new(wharf_test_support::tools::venv_python())
            .arg(py("many_sessions.py"))
            .arg(port.to_string())
            .arg(user)
            .arg(key)
            .arg(count.to_string())
            .arg(IN_FLIGHT.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let input = child.stdin.take().unwrap();
        Helper {
            child,
            input,
            answers,
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.input, "{command}").unwrap();
    }

    /// The answer to the last command, which must start with `expected`.
    fn answer(&self, expected: &str) -> String {
        let line = self
            .answers
            .recv_timeout(STEP)
            .unwrap_or_else(|e| panic!("no answer ({expected}...): {e}"));
        assert!(line.starts_with(expected), "{line}");
        line
    }

    fn finish(self) {
        let Helper {
            mut child, input, ..
        } = self;
        drop(input);
        assert!(child.wait().unwrap().success());
    }
}

/// Every helper runs `command`, at once; their answers.
fn all(helpers: &mut [Helper], command: &str, expected: &str) -> Vec<String> {
    for helper in helpers.iter_mut() {
        helper.send(command);
    }
    helpers.iter().map(|h| h.answer(expected)).collect()
}

/// OpenSSH `sftp -b` login + `ls`, timed.
fn timed_login(wharf: &Wharf, user: &str, key: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = sftp_batch(
        wharf.sftp_port(),
        user,
        &Login::Key(key.to_owned()),
        "ls\n",
        wharf.dir.path(),
        &[],
    );
    let took = start.elapsed();
    assert!(
        out.status.success() && stdout(&out).contains("probe"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    took
}

#[test]
fn ten_thousand_idle_sessions_are_served_and_their_memory_given_back() {
    let begun = Instant::now();
    let sessions = sessions();
    raise_descriptor_limit(sessions);
    let (key, public) = ssh_key("many_sessions");
    let wharf = prepare("");
    std::fs::write(wharf.path("many.pub"), format!("{public}\n")).unwrap();
    let users: Vec<String> = (0..HELPERS).map(|i| format!("many{i}")).collect();
    for user in &users {
        wharf.add_user(
            user,
            None,
            &[
                "--ssh-key",
                "@many.pub",
                "--home-directory-mapping",
                &format!("/=/default/{user}"),
            ],
        );
        std::fs::create_dir_all(wharf.path(&format!("files/{user}"))).unwrap();
        std::fs::write(wharf.path(&format!("files/{user}/probe")), b"x").unwrap();
    }
    let wharf = wharf.start();
    let pid = wharf.pid();
    eprintln!("{sessions} sessions, {HELPERS} asyncssh processes");
    eprintln!("RSS at start: {}", mib(rss_kib(pid)));
    let quiet = timed_login(&wharf, &users[0], &key);
    let fds_before = fds(pid);
    let rss_before = rss_kib(pid);
    eprintln!(
        "before (after one login): RSS {}, {fds_before} descriptors; login + ls {quiet:?}",
        mib(rss_before)
    );

    let held = sessions - 1;
    let mut helpers: Vec<Helper> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let share = held / HELPERS + usize::from(i < held % HELPERS);
            Helper::start(wharf.sftp_port(), user, &key, share)
        })
        .collect();
    let mut settled = Vec::new();
    for burst in 1..=2 {
        let start = Instant::now();
        let opened = all(&mut helpers, "open", "opened ");
        let took = start.elapsed();
        let open_fds = fds(pid);
        assert!(open_fds >= fds_before + held, "{open_fds} descriptors");
        let rss_held = rss_kib(pid);
        eprintln!(
            "burst {burst}: {held} sessions in {took:.1?} ({:.0}/s; {}), RSS {} ({:.1} KiB a session), {open_fds} descriptors",
            held as f64 / took.as_secs_f64(),
            opened.join(", "),
            mib(rss_held),
            rss_held.saturating_sub(rss_before) as f64 / held as f64,
        );
        // The last session of the quota, timed, while every other is held.
        let login = timed_login(&wharf, &users[burst % HELPERS], &key);
        eprintln!("  a new login + ls while they are held: {login:?}");
        assert!(
            login < LOGIN_WITHIN,
            "a login took {login:?} with {held} sessions held"
        );
        // A sample spread over every helper's sessions.
        all(&mut helpers, "sample 25", "sampled 25");
        let start = Instant::now();
        all(&mut helpers, "close", "closed ");
        let closed = start.elapsed();
        // (The user store's pool may have opened a few more connections.)
        let what = || format!("descriptors back to {fds_before} (now {})", fds(pid));
        within(STEP, what, || fds(pid) <= fds_before + 16);
        let fds_back = start.elapsed();
        let what = || {
            format!(
                "RSS back within {} of its {} before the first burst (now {})",
                mib(RSS_KEPT),
                mib(rss_before),
                mib(rss_kib(pid))
            )
        };
        within(STEP, what, || rss_kib(pid) <= rss_before + RSS_KEPT);
        let rss_back = start.elapsed();
        let rss_after = rss_kib(pid);
        eprintln!(
            "  closed in {closed:.1?}, descriptors back after {fds_back:.1?}, RSS {} after {rss_back:.1?}",
            mib(rss_after),
        );
        settled.push(rss_after);
    }
    for helper in helpers {
        helper.finish();
    }
    assert!(
        settled[1] <= settled[0] + RSS_GROWTH,
        "a second burst grew RSS: {} then {}",
        mib(settled[0]),
        mib(settled[1])
    );
    // Every session was logged in and out once.
    let what = || "a DISCONNECTED line for every session".to_owned();
    within(Duration::from_secs(30), what, || {
        let log = std::fs::read_to_string(wharf.path("audit.log")).unwrap();
        log.matches("\"DISCONNECTED\"").count() == 2 * held + 3
    });
    assert_eq!(
        wharf.activities("CONNECTED").len(),
        2 * held + 3,
        "CONNECTED lines"
    );
    eprintln!("test wall time: {:.1?}", begun.elapsed());
}
