"""Checks a message's DKIM signature with dkimpy against records given as JSON (name -> TXT
value, as `berth mail dns T -o json` lists them); prints "ok <d=>" or "bad <d=>".

usage: dkim_verify.py MESSAGE RECORDS_JSON
"""
import json
import sys

import dkim

records = {}
for r in json.load(open(sys.argv[2])):
    if r.get("value"):
        records[r["name"]] = r["value"]


def lookup(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    value = records.get(name.rstrip("."))
    return value.encode() if value else None


msg = open(sys.argv[1], "rb").read()
d = dkim.DKIM(msg)
ok = d.verify(dnsfunc=lookup)
domain = d.domain.decode() if d.domain else "-"
print(("ok " if ok else "bad ") + domain)
sys.exit(0 if ok else 1)
