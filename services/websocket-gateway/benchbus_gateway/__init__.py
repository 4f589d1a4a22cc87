"""benchbus websocket-gateway: the HTTP/WebSocket port for the eVOLVER DPU and GUI, browsers and OT-2 scripts."""
