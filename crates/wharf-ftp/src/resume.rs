//! Which TLS sessions a data connection may resume.
//!
//! SPEC (`tls_session_resumption`): a data connection must resume a TLS
//! session this server issued to a control connection of the same user from
//! the same client address. Clients that run several control connections
//! over one client-side session cache (rclone through Go's crypto/tls, lftp
//! `mirror --parallel`) often resume the session of a *sibling* control
//! connection on a data connection, not the one of the control connection
//! the transfer runs on.
//!
//! Each control connection issues sessions with keys of its own
//! ([`Issued`]: ticket keys for TLS 1.3 and TLS 1.2 tickets, a cache of
//! TLS 1.2 session IDs) and is a member of the server-wide [`Registry`]
//! under its client address from the start, first as `Pending`, then, once
//! logged in, as its user. A data connection of user U from address A
//! ([`DataSessions`], one per data connection) accepts the sessions of the
//! members of A that are U, or still pending; and when the session it
//! resumed belongs to a pending member, its verdict waits until that member
//! logs in (it must log in as U) or goes away. A pending member matters
//! because a client stores the session of a new control connection as soon
//! as the TLS handshake is done, before that connection has logged in, and
//! may resume it on a data connection of another control connection at
//! once (rclone does). So a session of another user, of another address,
//! of a connection whose login fails or that never logs in, is never
//! accepted.
//!
//! A logged-in member stays valid while its control connection is open, and
//! for [`RETAIN`] after it closed or after a data connection last resumed
//! one of its sessions (a pooled client keeps resuming the session of a
//! control connection it has since closed, as long as no newer session
//! replaced it in its cache). Closed members are bounded per (address,
//! user) ([`MAX_CLOSED_PER_GROUP`]) and in total ([`MAX_CLOSED`]), the
//! oldest going first; open ones are as many as the open control
//! connections. A member that closes before logging in is dropped at once.
//!
//! Data connections issue no session IDs, so a data connection that did not
//! resume (and was refused) cannot hand its client a session to resume next
//! time; and a TLS 1.3 ticket only where the client reads (downloads,
//! listings: see `tls.rs`), after a resumption, in the resumed member's
//! name.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::server::{ProducesTickets, StoresServerSessions};
use tokio::sync::watch;

/// How long a closed control connection's sessions stay resumable, counted
/// from its close or from the last time a data connection resumed one.
pub(crate) const RETAIN: Duration = Duration::from_secs(10 * 60);
/// Closed members kept per (address, user).
pub(crate) const MAX_CLOSED_PER_GROUP: usize = 32;
/// Closed members kept in all.
pub(crate) const MAX_CLOSED: usize = 4096;
/// TLS 1.2 session IDs one control connection keeps.
pub(crate) const SESSION_CACHE_ENTRIES: usize = 16;

/// The keys one control connection issues its TLS sessions with.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) tickets: Arc<dyn ProducesTickets>,
    pub(crate) sessions: Arc<SessionCache>,
}

/// TLS 1.2 session IDs of one control connection. `take` does not remove:
/// clients (FileZilla among them) resume the same session for every data
/// connection.
#[derive(Debug, Default)]
pub(crate) struct SessionCache {
    entries: Mutex<VecDeque<(Vec<u8>, Vec<u8>)>>,
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock();
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= SESSION_CACHE_ENTRIES {
            entries.pop_front();
        }
        entries.push_back((key, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries
            .lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Who a member's control connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Login {
    /// Not logged in (yet).
    Pending,
    User(String),
}

struct Member {
    id: u64,
    issued: Arc<Issued>,
    /// Its login; data connections waiting on a pending member watch it.
    /// The member's removal (its connection ended before a login) closes
    /// the channel.
    login: watch::Sender<Login>,
    /// `None` while its control connection is open.
    expires: Option<Instant>,
}

impl Member {
    fn is_closed_user(&self, user: &str) -> bool {
        self.expires.is_some() && matches!(&*self.login.borrow(), Login::User(u) if u == user)
    }
}

#[derive(Default)]
struct State {
    addresses: HashMap<IpAddr, Vec<Member>>,
    /// Closed members in all.
    closed: usize,
    next_id: u64,
}

impl State {
    /// Drops the expired members of an address, and the address when empty.
    fn prune(&mut self, ip: IpAddr, now: Instant) {
        let Some(members) = self.addresses.get_mut(&ip) else {
            return;
        };
        let before = members.len();
        members.retain(|m| m.expires.is_none_or(|e| e > now));
        self.closed -= before - members.len();
        if members.is_empty() {
            self.addresses.remove(&ip);
        }
    }

    /// Drops the closed member of `ip` (of `user` only, if given) that
    /// expires first.
    fn evict_oldest_closed(&mut self, ip: IpAddr, user: Option<&str>) {
        let Some(members) = self.addresses.get_mut(&ip) else {
            return;
        };
        let oldest = members
            .iter()
            .enumerate()
            .filter(|(_, m)| user.is_none_or(|u| m.is_closed_user(u)))
            .filter_map(|(i, m)| m.expires.map(|e| (e, i)))
            .min();
        if let Some((_, i)) = oldest {
            members.swap_remove(i);
            self.closed -= 1;
            if members.is_empty() {
                self.addresses.remove(&ip);
            }
        }
    }

    fn close(&mut self, ip: IpAddr, id: u64, now: Instant) {
        let Some(members) = self.addresses.get_mut(&ip) else {
            return;
        };
        let Some(index) = members.iter().position(|m| m.id == id) else {
            return;
        };
        let user = match &*members[index].login.borrow() {
            Login::Pending => None,
            Login::User(user) => Some(user.clone()),
        };
        let Some(user) = user else {
            // Never logged in: nothing of it may be resumed, from now on.
            members.swap_remove(index);
            if members.is_empty() {
                self.addresses.remove(&ip);
            }
            return;
        };
        if members[index].expires.is_none() {
            self.closed += 1;
        }
        members[index].expires = Some(now + RETAIN);
        self.prune(ip, now);
        let closed_here = self.addresses.get(&ip).map_or(0, |ms| {
            ms.iter().filter(|m| m.is_closed_user(&user)).count()
        });
        if closed_here > MAX_CLOSED_PER_GROUP {
            self.evict_oldest_closed(ip, Some(&user));
        }
        if self.closed > MAX_CLOSED {
            let mut expired = 0;
            self.addresses.retain(|_, members| {
                let before = members.len();
                members.retain(|m| m.expires.is_none_or(|e| e > now));
                expired += before - members.len();
                !members.is_empty()
            });
            self.closed -= expired;
            while self.closed > MAX_CLOSED {
                let oldest = self
                    .addresses
                    .iter()
                    .flat_map(|(ip, ms)| ms.iter().filter_map(move |m| m.expires.map(|e| (e, *ip))))
                    .min_by_key(|(e, _)| *e)
                    .map(|(_, ip)| ip);
                match oldest {
                    Some(ip) => self.evict_oldest_closed(ip, None),
                    None => break,
                }
            }
        }
    }
}

/// The server-wide registry of the control connections whose sessions data
/// connections may resume, by client address.
#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Registry")
            .field("addresses", &state.addresses.len())
            .field("closed", &state.closed)
            .finish()
    }
}

/// A session a data connection's handshake found: whose it is.
enum Found {
    /// A member logged in as the data connection's user.
    User,
    /// A member not logged in yet: the verdict waits for its login.
    Pending(watch::Receiver<Login>),
}

impl Registry {
    /// A new control connection from `ip` joins, pending, until the
    /// returned membership logs in or is dropped.
    pub(crate) fn join(self: &Arc<Self>, ip: IpAddr, issued: Arc<Issued>) -> Membership {
        let mut state = self.state.lock();
        state.prune(ip, Instant::now());
        state.next_id += 1;
        let id = state.next_id;
        let (login, _) = watch::channel(Login::Pending);
        state.addresses.entry(ip).or_default().push(Member {
            id,
            issued,
            login,
            expires: None,
        });
        Membership {
            registry: self.clone(),
            ip,
            id,
        }
    }

    /// The members of `ip` a data connection of `user` may resume: valid
    /// ones of `user`, and pending ones (expired members are dropped first).
    fn candidates(&self, ip: IpAddr, user: &str, now: Instant) -> Vec<(u64, Arc<Issued>)> {
        let mut state = self.state.lock();
        state.prune(ip, now);
        state.addresses.get(&ip).map_or_else(Vec::new, |members| {
            members
                .iter()
                .filter(|m| match &*m.login.borrow() {
                    Login::Pending => true,
                    Login::User(u) => u == user,
                })
                .map(|m| (m.id, m.issued.clone()))
                .collect()
        })
    }

    /// A data connection resumed a session of member `id`: whose it is
    /// (`None` when the member is gone meanwhile). A closed member stays
    /// valid for [`RETAIN`] from now.
    fn resumed(&self, ip: IpAddr, id: u64, now: Instant) -> Option<Found> {
        let mut state = self.state.lock();
        let member = state
            .addresses
            .get_mut(&ip)
            .and_then(|ms| ms.iter_mut().find(|m| m.id == id))?;
        if member.expires.is_some() {
            member.expires = Some(now + RETAIN);
        }
        let found = match &*member.login.borrow() {
            Login::Pending => Found::Pending(member.login.subscribe()),
            Login::User(_) => Found::User,
        };
        Some(found)
    }

    fn logged_in(&self, ip: IpAddr, id: u64, user: &str) {
        let state = self.state.lock();
        if let Some(member) = state
            .addresses
            .get(&ip)
            .and_then(|ms| ms.iter().find(|m| m.id == id))
        {
            member.login.send_replace(Login::User(user.to_owned()));
        }
    }

    fn close(&self, ip: IpAddr, id: u64, now: Instant) {
        self.state.lock().close(ip, id, now);
    }
}

/// A control connection's place in the registry; dropping it (when the
/// control connection ends) drops a pending member at once and starts the
/// [`RETAIN`] period of a logged-in one.
pub(crate) struct Membership {
    registry: Arc<Registry>,
    ip: IpAddr,
    id: u64,
}

impl Membership {
    /// The control connection logged in as `user`: what its data
    /// connections may resume from now on.
    pub(crate) fn logged_in(&self, user: &str) -> UserSessions {
        self.registry.logged_in(self.ip, self.id, user);
        UserSessions {
            registry: self.registry.clone(),
            ip: self.ip,
            user: user.to_owned(),
        }
    }
}

/// The sessions the data connections of a logged-in control connection may
/// resume: those of its user's members at its address (and of pending
/// members). Only a login makes one ([`Membership::logged_in`]).
#[derive(Debug)]
pub(crate) struct UserSessions {
    registry: Arc<Registry>,
    ip: IpAddr,
    user: String,
}

impl UserSessions {
    /// What one data connection may resume; `issue`: whether it issues a
    /// TLS 1.3 ticket (see `tls.rs`).
    pub(crate) fn data_sessions(&self, lifetime: u32, issue: bool) -> Arc<DataSessions> {
        Arc::new(DataSessions {
            registry: self.registry.clone(),
            ip: self.ip,
            user: self.user.clone(),
            lifetime,
            found: Mutex::new(None),
            resumed_keys: Mutex::new(None),
            issue,
        })
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.close(self.ip, self.id, Instant::now());
    }
}

/// The ticket decrypter and session-ID store of one data connection: the
/// sessions of its user's members at its address (and of pending members),
/// accepted, never issued; and, after the handshake, whose session it
/// resumed ([`DataSessions::verdict`]).
pub(crate) struct DataSessions {
    registry: Arc<Registry>,
    ip: IpAddr,
    user: String,
    lifetime: u32,
    /// The member whose session the handshake resumed (the last one found:
    /// rustls looks up the client's offers in turn and keeps the first that
    /// resumes).
    found: Mutex<Option<Found>>,
    /// That member's keys: a ticket this data connection issues is issued
    /// in that member's name.
    resumed_keys: Mutex<Option<Arc<Issued>>>,
    /// Whether this data connection issues a TLS 1.3 ticket (downloads and
    /// listings: see `tls.rs`).
    issue: bool,
}

impl std::fmt::Debug for DataSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSessions").finish_non_exhaustive()
    }
}

impl DataSessions {
    fn find(&self, lookup: impl Fn(&Issued) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
        let now = Instant::now();
        for (id, issued) in self.registry.candidates(self.ip, &self.user, now) {
            if let Some(value) = lookup(&issued) {
                let found = self.registry.resumed(self.ip, id, now)?;
                *self.found.lock() = Some(found);
                *self.resumed_keys.lock() = Some(issued);
                return Some(value);
            }
        }
        None
    }

    /// After a resumed handshake: whether the session was issued to a
    /// control connection of this data connection's user (from its
    /// address). A session of a member that has not logged in yet is
    /// decided by its login, awaited for at most `wait`.
    pub(crate) async fn verdict(&self, wait: Duration) -> bool {
        let found = self.found.lock().take();
        match found {
            None => false,
            Some(Found::User) => true,
            Some(Found::Pending(mut login)) => {
                let decided =
                    tokio::time::timeout(wait, login.wait_for(|login| *login != Login::Pending))
                        .await;
                match decided {
                    Ok(Ok(login)) => *login == Login::User(self.user.clone()),
                    // Gone without logging in, or still pending.
                    Ok(Err(_)) | Err(_) => false,
                }
            }
        }
    }
}

impl ProducesTickets for DataSessions {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // Only after a resumption, in the name of the member resumed (so
        // the ticket is accepted as that member's), and only where the
        // client reads (downloads, listings). Otherwise none: no ticket in
        // TLS 1.3, an empty one in TLS 1.2 ("the server changed its mind",
        // RFC 5077 3.3; clients keep the one they have).
        if !self.issue {
            return None;
        }
        self.resumed_keys.lock().as_ref()?.tickets.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.find(|issued| issued.tickets.decrypt(cipher))
    }
}

impl StoresServerSessions for DataSessions {
    fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
        false
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.find(|issued| issued.sessions.get(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    /// false: a full handshake on a data connection gets no session ID.
    fn can_cache(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
