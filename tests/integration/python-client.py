#!/usr/bin/env python3
# usage: python-client.py SOCKET REF ALG FILE >SIG   (PIN=... logs in first)
import base64, itertools, json, os, socket, sys

class Agent:
    def __init__(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        self.f, self.ids = s.makefile("rwb"), itertools.count()
        self.call("hello", version=1)

    def call(self, op, **args):
        req = dict(args, id=next(self.ids), op=op)
        self.f.write(json.dumps(req).encode() + b"\n")
        self.f.flush()
        while True:
            resp = json.loads(self.f.readline())
            if resp.get("id") == req["id"]:     # anything else is an event
                break
        if not resp["ok"]:
            raise SystemExit("%(code)s: %(message)s" % resp["error"])
        return resp["result"]

agent = Agent(sys.argv[1])
ref, alg, data = sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read()
token = agent.call("find", ref=ref)["token"]
if "PIN" in os.environ:
    agent.call("login", token=token, pin=os.environ["PIN"])
sig = agent.call("sign", ref=ref, alg=alg, data=base64.b64encode(data).decode())
sys.stdout.buffer.write(base64.b64decode(sig["signature"]))
