//! Development-only helpers shared by the test suites: launchers for real
//! peer programs (an S3 API server, an OpenLDAP server, a PostgreSQL server,
//! HAProxy, the wharf binary, the OpenSSH and paramiko clients) and
//! fixtures.

pub mod fuzz;
pub mod haproxy;
pub mod ldap;
pub mod postgres;
pub mod process;
pub mod s3;
pub mod tools;
pub mod wharf;
