"""Schemathesis hooks for the positive run: the rules that belong to the
deployment, the day or the service's memory rather than to the request, so
that the OpenAPI document states them in words only, are met the way a
caller meets them:

- `tenant` must name a configured tenant: the run uses the default one;
- `tradingAccount` is for tenants on Broker-API v2 only, and the default
  tenant is on v1: the run leaves it out;
- `personalDetails.dateOfBirth` must not lie in the future: the run leaves a
  future date out;
- an `idempotencyKey` used before for a different request is refused: the
  run derives each key from the rest of its body, so that a repeated body
  repeats its key and a different one does not.

Everything else in a generated body is sent as generated. The negative run
loads no hooks: what the schema refuses must be refused as it is."""

from __future__ import annotations

import datetime
import hashlib
import json

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    """Runs before every request of every phase (`map_body` misses the coverage phase)."""
    body = case.body
    if not isinstance(body, dict):
        return
    body.pop("tenant", None)
    body.pop("tradingAccount", None)
    personal = body.get("personalDetails")
    if isinstance(personal, dict):
        born = personal.get("dateOfBirth")
        if isinstance(born, str) and born > datetime.date.today().isoformat():
            del personal["dateOfBirth"]
    if body.get("idempotencyKey"):
        rest = {key: value for key, value in body.items() if key != "idempotencyKey"}
        body["idempotencyKey"] = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()
