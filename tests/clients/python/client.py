#!/usr/bin/env python3
"""One real python-socketio client (4.x or 5.x, whichever the venv holds), scripted by a Rust
test through line-oriented JSON. Same protocol as tests/clients/node/client.js.

Usage: .venv4/bin/python client.py '<config JSON>'   (or .venv5)
  config: {"url", "namespace", "query", "auth" (5.x only), "transports": polling|websocket|upgrade,
           "autoAck": null | [args...], "reconnection": false}

stdout, one JSON object per line:
  {"type":"ready"} (loaded, about to connect; first line)
  {"type":"connect","transport"} {"type":"connect_error","message","data"}
  {"type":"event","seq","name","args","hasAck"} {"type":"acked","seq"}
  {"type":"ack_response","ref","args"} {"type":"disconnect","reason"}
  {"type":"driver_error","message"}
stdin: {"cmd":"ack","seq"?,"args"?} {"cmd":"emit","name","args","ack","ref"}
       {"cmd":"disconnect"} {"cmd":"close"}; EOF closes too.
"""

import importlib.metadata
import json
import sys
import threading
import traceback
from urllib.parse import urlencode

import socketio

# socketio.__version__ exists in 4.x only; the distribution metadata is there in both.
MAJOR = int(importlib.metadata.version("python-socketio").split(".")[0])

_out_lock = threading.Lock()


def report(obj):
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class DrivenClient(socketio.Client):
    """A socketio.Client whose server events are all reported, with acks under test control.

    python-socketio answers a server ack with the handler's return value, which cannot wait for
    the test; so event dispatch is taken over here and the ACK packet is sent when told.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.driver_config = config
        self.driver_namespace = config.get("namespace") or "/"
        self.seq = 0
        self.pending = {}  # seq -> (namespace, ack id)
        self.pending_lock = threading.Lock()

    def _handle_event(self, namespace, id, data):
        namespace = namespace or "/"
        name, args = data[0], list(data[1:])
        with self.pending_lock:
            self.seq += 1
            seq = self.seq
            auto = self.driver_config.get("autoAck")
            if id is not None and not isinstance(auto, list):
                self.pending[seq] = (namespace, id)
        report({"type": "event", "seq": seq, "name": name, "args": args, "hasAck": id is not None})
        if id is not None and isinstance(auto, list):
            self.send_ack(namespace, id, auto)
            report({"type": "acked", "seq": seq})

    def send_ack(self, namespace, ack_id, args):
        if MAJOR >= 5:
            pkt = self.packet_class(socketio.packet.ACK, namespace=namespace, id=ack_id, data=list(args))
        else:
            pkt = socketio.packet.Packet(socketio.packet.ACK, namespace=namespace, id=ack_id, data=list(args))
        self._send_packet(pkt)

    def ack(self, seq, args):
        with self.pending_lock:
            if seq is None:
                seq = max(self.pending) if self.pending else None
            entry = self.pending.pop(seq, None) if seq is not None else None
        if entry is None:
            report({"type": "driver_error", "message": "no unacked event with seq %s" % seq})
            return
        self.send_ack(entry[0], entry[1], args)
        report({"type": "acked", "seq": seq})


def main():
    config = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
    namespace = config.get("namespace") or "/"
    transports = {
        "polling": ["polling"],
        "websocket": ["websocket"],
        "upgrade": ["polling", "websocket"],
    }.get(config.get("transports") or "upgrade")
    if transports is None:
        sys.stderr.write("client.py: unknown transports %r\n" % config.get("transports"))
        sys.exit(2)

    # Loaded and about to connect: the test's connect deadline starts now, not at spawn, so a
    # slow start of the interpreter on a loaded machine is not taken for a slow gateway.
    report({"type": "ready"})
    sio = DrivenClient(config, reconnection=bool(config.get("reconnection")))

    # python-engineio hands every incoming message to a new thread (run_async=True), so a
    # Python application sees server events in arbitrary order. The tests are about the order
    # the server sent them in, so dispatch messages on the read loop, one after the other.
    # None of the driver's handlers block.
    eio_trigger = sio.eio._trigger_event

    def trigger_in_order(event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return eio_trigger(event, *args, **kwargs)

    sio.eio._trigger_event = trigger_in_order

    def on_connect():
        state["connect_reported"] = True
        # Both versions upgrade (if at all) before the namespace connects.
        report({"type": "connect", "transport": sio.transport()})

    state = {"connect_reported": False, "connect_error_reported": False, "disconnect_reported": False}

    def on_connect_error(*data):
        state["connect_error_reported"] = True
        raw = data[0] if len(data) == 1 else list(data)
        if isinstance(raw, dict) and "message" in raw:
            message = raw["message"]
        elif isinstance(raw, str):
            message = raw
        else:
            message = json.dumps(raw)
        report({"type": "connect_error", "message": message, "data": raw})

    def on_disconnect(*reason):
        state["disconnect_reported"] = True
        report({"type": "disconnect", "reason": str(reason[0]) if reason else ""})

    sio.on("connect", on_connect, namespace=namespace)
    sio.on("connect_error", on_connect_error, namespace=namespace)
    sio.on("disconnect", on_disconnect, namespace=namespace)

    query = config.get("query") or {}
    url = config["url"] + ("?" + urlencode(query) if query else "")
    kwargs = {"transports": transports, "namespaces": [namespace]}
    if MAJOR >= 5:
        # wait=False: a refused namespace must stay observable as connect_error, not as an
        # exception that also tears the engine connection down.
        kwargs["wait"] = False
        if config.get("auth") is not None:
            kwargs["auth"] = config["auth"]
    try:
        sio.connect(url, **kwargs)
    except Exception as exc:  # the engine connection itself failed
        if not state["connect_error_reported"]:
            report({"type": "connect_error", "message": str(exc), "data": None})

    def client_disconnect():
        # python-engineio aborts on disconnect and leaves the DISCONNECT and CLOSE packets to its
        # write thread: wait for that thread, or the driver may exit before they are sent and
        # the server would only learn of the disconnect from the heartbeat timeout.
        writer = getattr(sio.eio, "write_loop_task", None)
        sio.disconnect()
        if writer is not None and hasattr(writer, "join"):
            writer.join(timeout=5)
        # python-socketio 4 clears its connected flag before the engine closes, so its own
        # disconnect handler never runs for a client-side disconnect: report it as 5.x would.
        if MAJOR < 5 and state["connect_reported"] and not state["disconnect_reported"]:
            state["disconnect_reported"] = True
            report({"type": "disconnect", "reason": "client disconnect"})

    closed = threading.Event()

    def close():
        if closed.is_set():
            return
        closed.set()
        try:
            client_disconnect()
        except Exception:
            traceback.print_exc()

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError as exc:
            report({"type": "driver_error", "message": "bad command line: %s" % exc})
            continue
        try:
            kind = cmd.get("cmd")
            if kind == "ack":
                sio.ack(cmd.get("seq"), cmd.get("args") or [])
            elif kind == "emit":
                callback = None
                if cmd.get("ack"):
                    ref = cmd.get("ref")

                    def callback(*reply, ref=ref):
                        report({"type": "ack_response", "ref": ref, "args": list(reply)})

                args = cmd.get("args") or []
                # python-socketio sends a tuple as several arguments, anything else as one.
                data = tuple(args) if len(args) != 1 else args[0]
                if len(args) == 0:
                    data = None
                sio.emit(cmd["name"], data, namespace=namespace, callback=callback)
            elif kind == "disconnect":
                client_disconnect()
            elif kind == "close":
                break
            else:
                report({"type": "driver_error", "message": "unknown command %s" % line})
        except Exception:
            report({"type": "driver_error", "message": traceback.format_exc()})
    close()
    # python-engineio keeps non-daemon threads around for a while; the test is done with us.
    sys.stdout.flush()
    import os

    os._exit(0)


if __name__ == "__main__":
    main()
