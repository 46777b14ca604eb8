//! The `service_managed` identity provider: answers from the [`UserStore`],
//! passwords checked in the bounded [`HashQueue`].

use super::*;

/// The status of a login refused because password checks are saturated
/// (not checked, so not a failed guess).
pub const BUSY: u16 = 429;

/// The `service_managed` identity provider over a [`UserStore`].
#[derive(Debug, Clone)]
pub struct ServiceManaged {
    users: UserStore,
    timeout: Duration,
    hashing: Arc<HashQueue>,
}

impl ServiceManaged {
    /// Password checks run in a [`HashQueue`] sized to this machine, whose
    /// waiters give up at half the provider's `timeout`: a login the queue
    /// could not serve is refused as busy (not counted as a guess) rather
    /// than as a provider timeout (which is).
    pub fn new(users: UserStore, timeout: Duration) -> ServiceManaged {
        ServiceManaged {
            users,
            timeout,
            hashing: HashQueue::for_this_machine(timeout / 2),
        }
    }

    pub fn users(&self) -> &UserStore {
        &self.users
    }
}

/// What a busy verification queue answers: the password was not checked,
/// which is not a wrong password ([`BUSY`] does not count towards a ban).
fn busy() -> Answer {
    Answer::denied(
        BUSY,
        "password verification is saturated (too many concurrent password checks)",
    )
}

#[async_trait]
impl IdentityProvider for ServiceManaged {
    fn kind(&self) -> &'static str {
        "service_managed"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let found = match self.users.get_with_hash(&request.username).await {
            Ok(found) => found,
            Err(error) => return Answer::denied(500, error.0),
        };
        let source = request.source_ip;
        let Some((user, hash)) = found else {
            if let Credential::Password(password) = &request.credential {
                // Spend the same time, in the same queue, as a wrong
                // password would.
                let verdict = self
                    .hashing
                    .verify(source, password.expose(), dummy_hash())
                    .await;
                if verdict == Verdict::Busy {
                    return busy();
                }
            }
            return Answer::denied(
                404,
                format!("no service-managed user {:?}", request.username),
            );
        };
        if let Credential::Password(password) = &request.credential {
            let (hash, has_password) = match &hash {
                Some(hash) => (hash.as_str(), true),
                None => (dummy_hash(), false),
            };
            match self.hashing.verify(source, password.expose(), hash).await {
                Verdict::Busy => return busy(),
                _ if !has_password => {
                    return Answer::denied(401, "the user has no password (key logins only)");
                }
                Verdict::Mismatch => return Answer::denied(401, "wrong password"),
                Verdict::Match => {}
            }
        }
        Answer {
            status_code: 200,
            message: "authenticated".to_owned(),
            response: Some(user.response()),
        }
    }
}
