"""The fan-out floor: the bench's clients served by the same web server with none of the gateway on top.

uvicorn (httptools, websockets-sansio, uvloop: the gateway's own server and settings) runs a bare ASGI app, and a
bare paho subscriber hands each broadcast to its loop. The app knows just enough of each protocol for the bench's
clients: an Engine.IO 3 handshake, the namespace join echoed back, long-polls answered with the packet in binary
framing, and WebSocket text frames sent through ASGI. No sessions are checked, no access, no Socket.IO parsing, no
history, no bus contract: what one broadcast to N clients costs this server stack before any code of ours runs.

    python bench/fanout_floor.py --broker-host H --broker-port P --port N --topic T
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets

import paho.mqtt.client as mqtt
import uvicorn

NAMESPACE = "/dpu-evolver"
JOINED = f"40{NAMESPACE}"


def binary_framed(packets: list[str]) -> bytes:
    """Engine.IO 3 binary payload framing: 0x00, the length's decimal digits as bytes, 0xFF, the packet."""
    out = bytearray()
    for packet in packets:
        data = packet.encode()
        out += bytes([0, *map(int, str(len(data))), 0xFF]) + data
    return bytes(out)


class Poller:
    """A long-polling client's packets waiting, and the wake-up of its waiting poll."""

    def __init__(self) -> None:
        self.packets: list[str] = []
        self.ready = asyncio.Event()

    def push(self, packet: str) -> None:
        self.packets.append(packet)
        self.ready.set()


class FloorApp:
    def __init__(self) -> None:
        self.pollers: dict[str, Poller] = {}
        self.eio_sockets: list = []  # ASGI send callables of Engine.IO 3 WebSocket clients
        self.json_sockets: list = []  # of /ws JSON clients

    def broadcast(self, payload: str) -> None:
        packet = f'42{NAMESPACE},["broadcast",{payload}]'
        for poller in self.pollers.values():
            poller.push(packet)
        for send in self.eio_sockets:
            asyncio.ensure_future(send({"type": "websocket.send", "text": packet}))
        frame = '{"op":"message","topic":"scheduler/event/broadcast","payload":' + payload + "}"
        for send in self.json_sockets:
            asyncio.ensure_future(send({"type": "websocket.send", "text": frame}))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        else:
            await self.http(scope, receive, send)

    @staticmethod
    async def lifespan(receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope, receive, send) -> None:
        query = dict(pair.partition("=")[::2] for pair in scope["query_string"].decode().split("&") if pair)
        sid = query.get("sid")
        if sid is None:  # the handshake
            sid = secrets.token_urlsafe(15)
            self.pollers[sid] = Poller()
            opened = {"sid": sid, "upgrades": [], "pingInterval": 25000, "pingTimeout": 60000}
            await respond(send, binary_framed(["0" + json.dumps(opened)]))
            return
        poller = self.pollers[sid]
        if scope["method"] == "POST":
            while (await receive()).get("more_body"):
                pass
            poller.push(JOINED)  # the only thing the bench's clients post first is the namespace join
            await respond(send, b"ok")
            return
        await poller.ready.wait()
        packets, poller.packets = poller.packets, []
        poller.ready.clear()
        await respond(send, binary_framed(packets))

    async def websocket(self, scope, receive, send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        eio = scope["path"].startswith("/socket.io")
        if eio:
            await send({"type": "websocket.send", "text": "0" + json.dumps({"sid": secrets.token_urlsafe(15)})})
        sockets = self.eio_sockets if eio else self.json_sockets
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                if send in sockets:
                    sockets.remove(send)
                return
            text = message.get("text") or ""
            if eio and text == JOINED:
                await send({"type": "websocket.send", "text": JOINED})
                sockets.append(send)
            elif eio and text.startswith("2"):
                await send({"type": "websocket.send", "text": "3" + text[1:]})
            elif not eio:
                await send({"type": "websocket.send", "text": '{"op":"subscribed"}'})
                sockets.append(send)


async def respond(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()),
                            (b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": body})


async def serve(args: argparse.Namespace) -> None:
    app = FloorApp()
    loop = asyncio.get_running_loop()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-fanout-floor", protocol=mqtt.MQTTv5)

    def on_message(_client, _userdata, message: mqtt.MQTTMessage) -> None:
        loop.call_soon_threadsafe(app.broadcast, message.payload.decode())
    subscriber.on_message = on_message
    subscriber.on_connect = lambda client, *_: client.subscribe(args.topic, qos=1)
    subscriber.connect(args.broker_host, args.broker_port)
    subscriber.loop_start()
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                            http="httptools", ws="websockets-sansio", loop="uvloop", proxy_headers=False,
                            ws_ping_interval=None, lifespan="on")
    try:
        await uvicorn.Server(config).serve()
    finally:
        subscriber.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-host", required=True)
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    import uvloop
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
