"""An AWS Transfer Family custom identity provider, written the AWS Lambda way.

wharf asks it exactly as AWS Transfer Family asks a Lambda function: with the
event {"username", "password" (absent or empty for a key login), "protocol",
"serverId", "sourceIp"}, and it answers with the user's session description,
or with {} to deny. The same file runs unchanged on AWS Lambda, behind the
Lambda runtime interface emulator, or under runner.py (lambda, api_gateway
and command contracts).

The user table is in the file to keep the example small; a real handler
looks users up in a directory, a database or a secret store, and compares
password hashes, not passwords.
"""

import hmac
import json

# The role every user here shares; wharf needs a [roles.transfer-users]
# section (its default ARN is exactly this). The scope-down policy below
# narrows it per user, the "shared role + session policy" pattern.
ROLE = "arn:aws:iam::000000000000:role/transfer-users"

# A session (scope-down) policy: AWS sends it as a JSON *string*.
# ${transfer:UserName} is filled in by wharf (and by AWS) at login.
SCOPE_DOWN_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListOwnFolder",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::default",
                "Condition": {
                    "StringLike": {
                        "s3:prefix": ["${transfer:UserName}", "${transfer:UserName}/*"]
                    }
                },
            },
            {
                "Sid": "ReadWriteOwnFolder",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:PutObject",
                    "s3:DeleteObject",
                ],
                "Resource": "arn:aws:s3:::default/${transfer:UserName}/*",
            },
        ],
    }
)

USERS = {
    # PATH home: alice sees real paths and starts in /default/alice.
    "alice": {
        "password": "alice-correct-horse",
        "response": {
            "Role": ROLE,
            "Policy": SCOPE_DOWN_POLICY,
            "HomeDirectoryType": "PATH",
            "HomeDirectory": "/default/alice",
            # wharf extension: principal tags for this session only.
            "SessionTags": {"department": "finance"},
        },
    },
    # LOGICAL home: bob is chrooted to the union of two entries. AWS wants
    # HomeDirectoryDetails as a JSON *string*.
    "bob": {
        "password": "bob-battery-staple",
        "response": {
            "Role": ROLE,
            "HomeDirectoryType": "LOGICAL",
            "HomeDirectoryDetails": json.dumps(
                [
                    {"Entry": "/", "Target": "/default/bob"},
                    {"Entry": "/reports", "Target": "/reports/shared"},
                ]
            ),
            "SessionTags": {"department": "engineering", "team": "blue"},
        },
    },
    # Key user: no password; logs in with the matching private key.
    "carol": {
        "public_keys": [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7SmEUZC9EGIHNN3JgWN0qF7lwqtWPhN8S+T04UqtJ5 carol@example"
        ],
        "response": {
            "Role": ROLE,
            "HomeDirectory": "/default/carol",
        },
    },
    # An e-mail address as the username (wharf percent-encodes it as
    # user%40example.com in the api_gateway path).
    "user@example.com": {
        "password": "mail-user-password",
        "response": {
            "Role": ROLE,
            "Policy": SCOPE_DOWN_POLICY,
            "HomeDirectory": "/default/user@example.com",
        },
    },
}


def lambda_handler(event, context):
    username = event.get("username", "")
    password = event.get("password") or ""  # absent or empty: a key login
    print(
        json.dumps(
            {
                "login": username,
                "protocol": event.get("protocol"),
                "sourceIp": event.get("sourceIp"),
                "method": "password" if password else "public key",
            }
        )
    )

    user = USERS.get(username)
    if user is None:
        return {}  # unknown user: denied

    response = dict(user["response"])
    if password:
        expected = user.get("password")
        if expected is None or not hmac.compare_digest(
            password.encode("utf-8"), expected.encode("utf-8")
        ):
            return {}  # wrong password, or a key-only user: denied
    else:
        # Key login: hand back the user's keys; wharf checks the client's
        # key against them (the SSH layer has verified its signature).
        keys = user.get("public_keys")
        if not keys:
            return {}
        response["PublicKeys"] = keys
    return response
