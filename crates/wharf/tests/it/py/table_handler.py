"""A Transfer Family handler (the AWS Lambda way) whose users come from the
JSON file named by $WHARF_TEST_USERS: {"name": {"password": ..., "keys":
[...], "response": {...}}}. Used by the identity provider tests."""

import json
import os


def lambda_handler(event, context):
    with open(os.environ["WHARF_TEST_USERS"]) as f:
        users = json.load(f)
    user = users.get(event.get("username", ""))
    if user is None:
        return {}
    response = dict(user["response"])
    password = event.get("password") or ""
    if password:
        if password != user.get("password"):
            return {}
    else:
        if not user.get("keys"):
            return {}
        response["PublicKeys"] = user["keys"]
    return response
