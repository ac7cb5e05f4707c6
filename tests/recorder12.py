"""A v0.12 worker that records every byte its runtime sends it, for the suites that compare the
dev runtime's v0.12 mode with the real runtime (tests/test_dev_v012.py on the dev runtime,
tests/conformance_v012/test_dev12.py on both side by side): one script, so both suites look at
the runtime through the same worker.

RECORDER is a slave's body, after a #! line and `import sys` (`write_slave`,
`Runtime12.slave_script`). Its environment says where and how:

- RECORD: the file to append to; or RECORD_DIR: a folder, where each worker appends to
  `record-<uuid>`. The first line is `{"argv": [...]}`, then one `{"bytes": hex}` per read.
- NO_BEAT=1: no heartbeat at all (the handshake alone); BEAT_EVERY=S: one every S seconds
  after the first (the real runtime drops a worker silent for its heartbeat-timeout).

It answers a session on its close with one write `b"reply"` and a close; the event "err" with
the error `[[42, 7], "boom"]`; the event "slow" never (its client leaves first); terminate with
its own terminate `[1, "bye"]`, then it exits 0.
"""

RECORDER = r'''
import json, os, socket, threading, time, msgpack
args = sys.argv[1:]
def arg(name):
    return args[args.index("--" + name) + 1]
path = os.environ.get("RECORD") or os.path.join(os.environ["RECORD_DIR"], "record-" + arg("uuid"))
out = open(path, "a", buffering=1)
out.write(json.dumps({"argv": args}) + "\n")
sock = socket.socket(socket.AF_UNIX)
sock.connect(arg("endpoint"))
def send(obj):
    sock.sendall(msgpack.packb(obj, use_bin_type=False))
send([1, 0, [arg("uuid")]])
if not os.environ.get("NO_BEAT"):
    send([1, 0, []])
def beat(every):
    while True:
        time.sleep(every)
        send([1, 0, []])
if os.environ.get("BEAT_EVERY") and not os.environ.get("NO_BEAT"):
    threading.Thread(target=beat, args=(float(os.environ["BEAT_EVERY"]),), daemon=True).start()
unpacker = msgpack.Unpacker(raw=True)
events = {}
while True:
    data = sock.recv(65536)
    if not data:
        break
    out.write(json.dumps({"bytes": data.hex()}) + "\n")
    unpacker.feed(data)
    for channel, mid, payload, *_ in unpacker:
        if channel == 1:
            if mid == 1:
                send([1, 1, [1, b"bye"]])
                raise SystemExit(0)
            continue
        if channel not in events:
            events[channel] = payload[0]
        elif events[channel] == b"slow":
            continue  # never answers: its client leaves first
        elif mid == 2 and events[channel] == b"err":
            send([channel, 1, [[42, 7], "boom"]])
        elif mid == 2:
            send([channel, 0, [b"reply"]])
            send([channel, 2, []])
'''
