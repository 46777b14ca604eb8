//! `allowed_groups`: is the user a member of one of them, directly or
//! through nested groups?
//!
//! * Active Directory (the rootDSE lists the AD capability OID): one base
//!   search on the user's entry with the `LDAP_MATCHING_RULE_IN_CHAIN`
//!   rule, `(memberOf:1.2.840.113556.1.4.1941:=GROUP)`, which the server
//!   resolves through every level of nesting.
//! * Other directories (OpenLDAP, 389-ds, ...), which lack that rule: a
//!   bounded walk upward from the user. The groups of an entry are its
//!   `memberOf` values (OpenLDAP's memberOf overlay, 389-ds's plugin) and
//!   the groups that list it in `member` or `uniqueMember` (found by a
//!   search, so directories without memberOf work too); the user's
//!   `posixGroup`s (`memberUid`) count at the first level. The walk stops
//!   at the first allowed group, after [`MAX_DEPTH`] levels or
//!   [`MAX_GROUPS`] groups (then the user is denied, and the reason says
//!   the limit was reached).

use std::collections::BTreeSet;

use ldap3::{Ldap, Scope, SearchOptions};

use super::escape::{filter_value, is_under, normalize_dn, parent};
use super::{Failure, UserEntry, parse_entries};

/// `LDAP_CAP_ACTIVE_DIRECTORY_OID` and `LDAP_CAP_ACTIVE_DIRECTORY_ADAM_OID`.
const AD_CAPABILITIES: [&str; 2] = ["1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1851"];
/// `LDAP_MATCHING_RULE_IN_CHAIN`.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// The deepest nesting the walk follows.
pub(super) const MAX_DEPTH: usize = 8;
/// The most groups the walk visits for one login.
pub(super) const MAX_GROUPS: usize = 500;
/// Groups asked about in one search filter.
const BATCH: usize = 32;

/// What the rootDSE says about the directory, read once per provider.
#[derive(Debug, Clone, Default)]
pub(super) struct ServerInfo {
    pub(super) active_directory: bool,
    /// Normalised `namingContexts`.
    pub(super) naming_contexts: Vec<String>,
}

pub(super) async fn server_info(ldap: &mut Ldap, url: &str) -> Result<ServerInfo, Failure> {
    let result = ldap
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["supportedCapabilities", "namingContexts"],
        )
        .await
        .map_err(|e| Failure::transport(url, "reading the rootDSE", &e))?;
    // A rootDSE the account may not read is not an error: no AD, no
    // naming contexts (the walk then searches below the groups' parents).
    let entries = parse_entries(result.0)?;
    let mut info = ServerInfo::default();
    if let Some(entry) = entries.into_iter().next() {
        info.active_directory = entry
            .values("supportedCapabilities")
            .iter()
            .any(|oid| AD_CAPABILITIES.contains(&oid.trim()));
        info.naming_contexts = entry
            .values("namingContexts")
            .iter()
            .filter_map(|dn| normalize_dn(dn))
            .collect();
    }
    Ok(info)
}

/// The configured groups, normalised, with the bases the walk searches.
#[derive(Debug, Clone)]
pub(super) struct AllowedGroups {
    /// As configured, for reasons.
    pub(super) shown: Vec<String>,
    pub(super) normalized: BTreeSet<String>,
}

impl AllowedGroups {
    pub(super) fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    /// Where groups are searched: the naming contexts that hold an allowed
    /// group, else each allowed group's parent.
    fn bases(&self, info: &ServerInfo) -> Vec<String> {
        let mut bases = BTreeSet::new();
        for group in &self.normalized {
            match info
                .naming_contexts
                .iter()
                .filter(|context| is_under(group, context))
                .max_by_key(|context| context.len())
            {
                Some(context) => bases.insert(context.clone()),
                None => bases.insert(parent(group).unwrap_or(group).to_owned()),
            };
        }
        bases.into_iter().collect()
    }
}

/// The outcome of a membership check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Membership {
    /// Through this allowed group (as configured).
    Member(String),
    NotMember,
    /// The walk hit a limit before finding an allowed group.
    Unknown(String),
}

/// The AD filter: the user's entry matches when it is in one of the
/// groups at any depth.
pub(super) fn in_chain_filter(groups: &[String]) -> String {
    let terms: String = groups
        .iter()
        .map(|g| format!("(memberOf:{IN_CHAIN}:={})", filter_value(g)))
        .collect();
    if groups.len() == 1 {
        terms
    } else {
        format!("(|{terms})")
    }
}

/// The filter for the groups that list any of `dns` as a member.
pub(super) fn member_filter(dns: &[String], username: Option<&str>) -> String {
    let mut terms = String::new();
    for dn in dns {
        let dn = filter_value(dn);
        terms.push_str(&format!("(member={dn})(uniqueMember={dn})"));
    }
    if let Some(username) = username {
        terms.push_str(&format!("(memberUid={})", filter_value(username)));
    }
    format!("(|{terms})")
}

pub(super) async fn check(
    ldap: &mut Ldap,
    url: &str,
    info: &ServerInfo,
    allowed: &AllowedGroups,
    user: &UserEntry,
    username: &str,
) -> Result<Membership, Failure> {
    // Direct memberships the entry already shows need no round trip.
    for group in user.values("memberOf") {
        if let Some(hit) = allowed_hit(allowed, group) {
            return Ok(Membership::Member(hit));
        }
    }
    if info.active_directory {
        let filter = in_chain_filter(&allowed.shown);
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(1))
            .search(&user.dn, Scope::Base, &filter, vec!["1.1"])
            .await
            .map_err(|e| Failure::transport(url, "checking allowed_groups", &e))?;
        check_search_result(url, &result.1)?;
        if result.0.is_empty() {
            return Ok(Membership::NotMember);
        }
        // Which group matched is not told by the server; name them all.
        return Ok(Membership::Member(allowed.shown.join(" | ")));
    }
    walk(ldap, url, info, allowed, user, username).await
}

fn allowed_hit(allowed: &AllowedGroups, dn: &str) -> Option<String> {
    let normalized = normalize_dn(dn)?;
    if !allowed.normalized.contains(&normalized) {
        return None;
    }
    allowed
        .shown
        .iter()
        .find(|g| normalize_dn(g).as_deref() == Some(normalized.as_str()))
        .cloned()
}

async fn walk(
    ldap: &mut Ldap,
    url: &str,
    info: &ServerInfo,
    allowed: &AllowedGroups,
    user: &UserEntry,
    username: &str,
) -> Result<Membership, Failure> {
    let bases = allowed.bases(info);
    let mut visited: BTreeSet<String> = BTreeSet::new();
    if let Some(user_dn) = normalize_dn(&user.dn) {
        visited.insert(user_dn);
    }
    // Level 0: the user's own groups.
    let mut level: Vec<String> = user.values("memberOf").to_vec();
    level.extend(
        find_groups(
            ldap,
            url,
            &bases,
            std::slice::from_ref(&user.dn),
            Some(username),
        )
        .await?,
    );
    for depth in 1..=MAX_DEPTH {
        let mut frontier = Vec::new();
        for group in level {
            let Some(normalized) = normalize_dn(&group) else {
                continue;
            };
            if !visited.insert(normalized) {
                continue;
            }
            if let Some(hit) = allowed_hit(allowed, &group) {
                return Ok(Membership::Member(hit));
            }
            frontier.push(group);
        }
        if frontier.is_empty() {
            return Ok(Membership::NotMember);
        }
        if visited.len() > MAX_GROUPS {
            return Ok(Membership::Unknown(format!(
                "the group walk stopped after {MAX_GROUPS} groups"
            )));
        }
        if depth == MAX_DEPTH {
            break;
        }
        level = Vec::new();
        for batch in frontier.chunks(BATCH) {
            level.extend(find_groups(ldap, url, &bases, batch, None).await?);
        }
    }
    Ok(Membership::Unknown(format!(
        "the group walk stopped at nesting depth {MAX_DEPTH}"
    )))
}

/// The DNs of the groups (under `bases`) that list one of `dns` as a
/// member (or `username` in `memberUid`).
async fn find_groups(
    ldap: &mut Ldap,
    url: &str,
    bases: &[String],
    dns: &[String],
    username: Option<&str>,
) -> Result<Vec<String>, Failure> {
    let filter = member_filter(dns, username);
    let mut found = Vec::new();
    for base in bases {
        let limit = i32::try_from(MAX_GROUPS + 1).unwrap_or(i32::MAX);
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(limit))
            .search(base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .map_err(|e| Failure::transport(url, "searching groups for allowed_groups", &e))?;
        check_search_result(url, &result.1)?;
        found.extend(parse_entries(result.0)?.into_iter().map(|e| e.dn));
    }
    Ok(found)
}

/// Success, a size limit (the entries so far count) or a missing base (no
/// groups there) are fine; any other result is a directory failure.
fn check_search_result(url: &str, result: &ldap3::LdapResult) -> Result<(), Failure> {
    match result.rc {
        0 | 4 | 32 => Ok(()),
        _ => Err(Failure::directory(format!(
            "the LDAP directory at {url} failed a group search: {}",
            super::conn::result_text(result)
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filters_escape_their_dns() {
        assert_eq!(
            in_chain_filter(&["cn=g,dc=x".into()]),
            "(memberOf:1.2.840.113556.1.4.1941:=cn=g,dc=x)"
        );
        let filter = in_chain_filter(&["cn=a (x)*,dc=x".into(), "cn=b\\,c,dc=x".into()]);
        assert_eq!(
            filter,
            "(|(memberOf:1.2.840.113556.1.4.1941:=cn=a \\28x\\29\\2a,dc=x)\
             (memberOf:1.2.840.113556.1.4.1941:=cn=b\\5c,c,dc=x))"
        );
        assert!(ldap3::parse_filter(&filter).is_ok());
        let filter = member_filter(&["uid=a*,dc=x".into()], Some("a*"));
        assert_eq!(
            filter,
            "(|(member=uid=a\\2a,dc=x)(uniqueMember=uid=a\\2a,dc=x)(memberUid=a\\2a))"
        );
        assert!(ldap3::parse_filter(&filter).is_ok());
    }

    #[test]
    fn groups_are_searched_in_their_naming_context() {
        let allowed = AllowedGroups {
            shown: vec![
                "CN=Staff,OU=Groups,DC=Example,DC=com".into(),
                "cn=ops,ou=teams,o=other".into(),
            ],
            normalized: [
                "cn=staff,ou=groups,dc=example,dc=com".to_owned(),
                "cn=ops,ou=teams,o=other".to_owned(),
            ]
            .into_iter()
            .collect(),
        };
        let info = ServerInfo {
            active_directory: false,
            naming_contexts: vec!["dc=example,dc=com".into(), "dc=com".into()],
        };
        assert_eq!(
            allowed.bases(&info),
            ["dc=example,dc=com", "ou=teams,o=other"]
        );
        assert_eq!(
            allowed_hit(&allowed, "cn=staff, ou=groups, dc=example, dc=com").as_deref(),
            Some("CN=Staff,OU=Groups,DC=Example,DC=com")
        );
        assert_eq!(allowed_hit(&allowed, "cn=staff,dc=example,dc=com"), None);
    }
}
