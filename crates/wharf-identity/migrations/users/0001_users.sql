-- Service-managed users. Each user row holds what an identity provider
-- response would carry; keys live in their own table.
CREATE TABLE users (
    username               TEXT PRIMARY KEY NOT NULL,
    password_hash          TEXT,
    home_directory_type    TEXT NOT NULL DEFAULT 'PATH',
    home_directory         TEXT,
    home_directory_details TEXT,
    role                   TEXT,
    policy                 TEXT,
    session_tags           TEXT NOT NULL DEFAULT '{}',
    created_at             TEXT NOT NULL
);

CREATE TABLE user_keys (
    username    TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (username, fingerprint)
);
