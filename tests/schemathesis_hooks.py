"""Hooks for tests/openapi.rs's schemathesis runs.

`GET /v1/instances/{tenant}/logs?follow=true` streams a container's log until the client
leaves: by design it never ends, so a fuzzer waiting for the whole body can only time out.
Every other parameter of those calls is still fuzzed; following itself is tested in
src/api/follow.rs and tests/access.rs (caps per token, streams ended when the token goes).
"""

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    query = case.query
    if isinstance(query, dict) and str(query.get("follow", "")).lower() in ("true", "1"):
        query["follow"] = False
