//! Development-only helpers shared by the test suites: launchers for real
//! peer programs (an S3 API server, the OpenSSH and paramiko clients),
//! fixtures and fault injection.

pub mod s3;
