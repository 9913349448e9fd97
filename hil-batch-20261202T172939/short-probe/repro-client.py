import json, socket, sys, time
reqs = [json.loads(l) for l in open(sys.argv[1])]
s = socket.socket(socket.AF_UNIX)
for _ in range(600):
    try:
        s.connect("agent.sock"); break
    except OSError:
        time.sleep(0.1)
f = s.makefile("rwb")
for req in reqs:
    f.write(json.dumps(req).encode() + b"\n"); f.flush()
    if req["cmd"] == "poweroff":
        f.read()   # hold the socket open until QEMU exits: closing early can drop the request
    while req["cmd"] != "poweroff":
        msg = json.loads(f.readline())
        if msg.get("id") == req["id"]:
            r = msg.get("result") or msg
            print(json.dumps({k: v for k, v in r.items() if k != "serial"}))
            print(r.get("serial", ""))
            break
