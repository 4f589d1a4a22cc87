"""python-socketio (~5 MB resident per gateway) is imported only when an Engine.IO 4 client needs it, httpx (~2 MB)
only when a request is relayed to the recorder (issue 21)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent("""
    import sys
    from benchbus_gateway.app import create_app
    from benchbus_gateway.settings import GatewaySettings

    class Bridge:
        device = "lazy"
        async def call(self, *args, **kwargs): ...
        def connected(self): return True

    settings = GatewaySettings(device="lazy", data_dir=sys.argv[1], dashboard=False)
    _app, gateway = create_app(settings, Bridge())
    print("socketio" in sys.modules, "httpx" in sys.modules)
    server = gateway.sio4.server()  # what the first EIO=4 request does
    print("socketio" in sys.modules, type(server).__name__, "*" in server.handlers.get(settings.namespace, {}))
""")


def test_socketio_and_httpx_wait_until_first_needed(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.splitlines()
    assert before == "False False"
    assert after == "True AsyncServer True"  # made with the handlers registered before it existed
