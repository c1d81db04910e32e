"""The internet's mail servers, as far as berth's relay tests need them: an aiosmtpd server
that keeps each message it is handed as <n>.eml (bytes as received) and <n>.json (envelope).

usage: mail_sink.py DIR HOST PORT
"""
import json
import os
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        base = os.path.join(self.out, str(time.time_ns()))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".tmp", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        os.rename(base + ".tmp", base + ".json")
        return "250 2.0.0 kept"


out, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
Controller(Keep(out), hostname=host, port=port).start()
print("sink listening", flush=True)
threading.Event().wait()
