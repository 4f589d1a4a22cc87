"""The emulators' JSON control interface (benchbus.control), over real HTTP."""
import json
import urllib.error
import urllib.request

from benchbus.control import serve_json_control
from benchbus.testing.broker import free_port


def request(port, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_get_post_and_errors():
    faults = []
    port = free_port()
    server = serve_json_control("t", "127.0.0.1", port,
                                get={"/state": lambda query: {"since": int(query.get("since", "0")), "faults": faults}},
                                post={"/fault": lambda body: faults.append(body["kind"])})
    try:
        assert request(port, "/fault", {"kind": "garbled"}) == (200, {"ok": True})
        assert request(port, "/state?since=3") == (200, {"since": 3, "faults": ["garbled"]})
        status, answer = request(port, "/fault", {"colour": "red"})
        assert status == 400 and "kind" in answer["error"]
        status, answer = request(port, "/nowhere")
        assert status == 404 and "/state" in answer["error"]
        status, answer = request(port, "/state?since=soon")
        assert status == 400
    finally:
        server.shutdown()
