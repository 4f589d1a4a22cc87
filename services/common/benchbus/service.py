"""A benchbus service: lifecycle, command handlers, retained state, events, watchdog, clean shutdown.

    class SamdService(Service[SamdSettings]):
        segment = "samd"

        def on_start(self) -> None:          # once, after start(), before `ready`
            self.open_port()

        @handler("transact")
        def transact(self, request: TransactRequest, ctx: RequestContext) -> TransactResult: ...

    run_service(SamdService, argv)            # settings, logging, run until SIGTERM/SIGINT

Every name used here must be declared in bus-schemas (a handler for an undeclared command fails when its class is
defined); payloads are validated against the declared models both ways, so nothing leaves the service that its
model did not produce.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ValidationError

from benchbus_schemas import AuditBatch, AuditRecord, ErrorReply, ServiceState, lookup, roles, topics

from . import sdnotify
from .client import BusClient, decode
from .connection import Connection, reply_properties, user_property
from .errors import BusError
from .settings import ServiceSettings
from .workers import WorkerPool

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
MethodT = TypeVar("MethodT", bound=Callable[..., Any])
Raw = bytes | bytearray  # a payload as paho hands it over
WatchItem = tuple[Callable[[str, Any], None], mqtt.MQTTMessage]
AuditFacts = tuple[float, "RequestContext", Any, Raw, float]  # when, who/what, outcome, request bytes, duration ms


def now_iso() -> str:
    return iso_of(time.time())


def iso_of(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


AUDIT_REQUEST_MAX = 4096  # bytes of a request kept verbatim in its audit record
AUDIT_WINDOW_S = 0.05  # audit records of this long are published together (one message, not one per request)
AUDIT_BATCH_MAX = 500


@dataclass
class RequestContext:
    command: str
    principal: str  # who called, as the broker proved it (the command topic's last level, pinned by the ACL)
    session: str | None = None  # which of the principal's client sessions (from its own reply namespace)
    on_behalf_of: str | None = None  # whom the caller acts for (the gateway's attribution; never authority)
    response_topic: str | None = None

    @property
    def client(self) -> str:
        """The caller's session as leases know it: only the principal itself can speak for its sessions."""
        return f"{self.principal}/{self.session}" if self.session else self.principal

    @property
    def caller(self) -> str:
        """For logs and events: the principal, and whom it acted for."""
        return f"{self.client} for {self.on_behalf_of}" if self.on_behalf_of else self.client


def describe_validation_error(error: ValidationError) -> tuple[str, list[dict[str, str]]]:
    """A message naming the first bad field, and every problem for `detail`."""
    problems = [{"field": ".".join(str(p) for p in e["loc"]) or "(payload)", "message": e["msg"]}
                for e in error.errors()]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"field '{first['field']}': {first['message']}{more}", problems


_RUNTIME_ATTRIBUTES = {"segment", "settings", "device", "version", "log", "connection", "bus", "refused"}
_COMMAND_MARK = "__benchbus_command__"  # set by @handler on the function it decorates, read by __init_subclass__


def handler(command: str) -> Callable[[MethodT], MethodT]:
    """Declare a method as the handler of `cmd/<command>`: `def name(self, request, ctx) -> result`, the request and
    result models being the command's in bus-schemas."""
    def mark(method: MethodT) -> MethodT:
        setattr(method, _COMMAND_MARK, command)
        return method
    return mark


class Service(Generic[SettingsT]):
    segment: ClassVar[str]  # the service's topic segment, as bus-schemas declares it
    settings_model: ClassVar[type[ServiceSettings]]  # taken from Service[Model] unless the class sets it
    _handlers: ClassVar[dict[str, str]] = {}  # command -> name of the method handling it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = _settings_model_of(cls)
        if model is not None and "settings_model" not in cls.__dict__:
            cls.settings_model = model
        cls._handlers = {**cls._handlers, **_declared_handlers(cls)}

    @classmethod
    def handled_commands(cls) -> dict[str, str]:
        """Each command this service handles, with the name of its handler method."""
        return dict(cls._handlers)

    def __init__(self, settings: SettingsT, version: str | None = None):
        segment = self.segment
        self.settings = settings
        self.device = settings.device
        self.version = version or _version_of(segment)
        self.log = logging.getLogger(f"benchbus.{segment}")
        self._lifecycle_topic = topics.lifecycle_topic(self.device, segment)
        self._audit_topic = topics.audit_topic(self.device, segment)
        self._lifecycle = ServiceState(state="starting", version=self.version, pid=os.getpid(), since=now_iso())
        # a change of state and a re-publish (paho's thread, answering a stale will) go out in the order they read the
        # state: unlocked, a re-publish of `starting` could reach the broker after `ready` and stay retained
        self._lifecycle_lock = threading.RLock()
        offline = ServiceState(state="offline", version=self.version, pid=os.getpid())
        self.connection = Connection(f"benchbus-{self.device}-{segment}", settings.broker,
                                     will=(self._lifecycle_topic, offline.model_dump_json(exclude_none=True).encode()),
                                     offline_queue=settings.offline_queue)
        # Replies to this service arrive under benchbus/<device>/_client/<segment>/..., which the broker ACL grants it.
        self.bus = BusClient(self.device, name=f"{segment}-{os.getpid()}", connection=self.connection)
        self._executor = WorkerPool(settings.handler_threads, f"{segment}-handler")
        self._watch_queue: queue.Queue[WatchItem | None] = queue.Queue()
        self._audit_queue: queue.SimpleQueue[AuditFacts | None] = queue.SimpleQueue()
        self._audit_thread = threading.Thread(target=self._audit_loop, name=f"{segment}-audit", daemon=True)
        self._inflight = 0
        self._inflight_done = threading.Condition()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._periodic: list[list[Any]] = []  # [interval, next_due, fn]
        self._started = False
        self.refused: dict[str, int] = {"retained": 0, "foreign_response_topic": 0}  # requests never executed

    # -- declaring -------------------------------------------------------------------------------------------------

    def on_start(self) -> None:
        """Run once after the service started serving and before it says ready (it stays degraded if this says so).
        A subclass opens its device or starts its threads here."""

    def every(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run `fn` on the service's main loop every `seconds` (the loop that feeds the systemd watchdog)."""
        self._periodic.append([seconds, time.monotonic() + seconds, fn])

    def watch(self, topic_filter: str, callback: Callable[[str, Any], None]) -> None:
        """Follow another topic; callbacks run one at a time, in arrival order, on the service's watch thread."""
        self.connection.subscribe(topic_filter, lambda message: self._watch_queue.put((callback, message)))

    @property
    def _command_filter(self) -> str:
        return self.topic("cmd", "+") + "/+"  # .../cmd/<command>/<principal>

    def topic(self, kind: str, name: str, service: str | None = None) -> str:
        return topics.topic(self.device, service or self.segment, kind, name)

    def caller_has_role(self, ctx: RequestContext, role: str) -> bool:
        """Whether the caller's proven principal has `role` (roles.py). The broker's ACL already enforces this; a
        handler asks again before something irreversible. On the anonymous development broker (we have no username
        either) nobody is proven, and the plainly named development identity may do everything."""
        if ctx.principal == topics.DEV_PRINCIPAL == self.connection.principal:
            return True
        actual = roles.role_of(ctx.principal)
        return actual is not None and roles.role_allows(actual, role)

    # -- publishing ------------------------------------------------------------------------------------------------

    def set_state(self, name: str, value: BaseModel | dict[str, Any]) -> BaseModel:
        """Publish retained `state/<name>`; it is re-published on every reconnect."""
        payload = self._conform("state", name, value)
        self.connection.publish(self.topic("state", name), payload.model_dump_json().encode(), kind="state",
                                retain=True)
        return payload

    def emit(self, name: str, value: BaseModel | dict[str, Any]) -> BaseModel:
        """Publish `event/<name>` (not retained)."""
        payload = self._conform("event", name, value)
        self.connection.publish(self.topic("event", name), payload.model_dump_json().encode(), kind="event")
        return payload

    def _conform(self, kind: str, name: str, value: BaseModel | dict[str, Any]) -> BaseModel:
        model = lookup(self.segment, kind, name).model
        if isinstance(value, model):
            return value
        data = value.model_dump() if isinstance(value, BaseModel) else value
        return model.model_validate(data)

    def call(self, service: str, command: str, payload: Any = None, timeout: float = 5.0) -> Any:
        return self.bus.call(service, command, payload, timeout)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._lifecycle.state

    def ready(self) -> None:
        self._set_lifecycle("ready")

    def degraded(self, reason: str) -> None:
        self._set_lifecycle("degraded", reason)

    def _set_lifecycle(self, state: str, reason: str | None = None) -> None:
        if self._lifecycle.state == state and self._lifecycle.reason == reason:
            return
        was_ready = self._lifecycle.state == "ready"
        with self._lifecycle_lock:
            self._lifecycle = ServiceState(state=state, version=self.version, pid=os.getpid(), since=now_iso(),
                                           reason=reason)
            self._publish_lifecycle()
        log = self.log.warning if state == "degraded" else self.log.info
        log("state %s%s", state, f" ({reason})" if reason else "")
        if state == "ready" and not was_ready:
            sdnotify.notify("READY=1\nSTATUS=ready")
        elif state == "degraded":
            sdnotify.notify(f"STATUS=degraded: {reason}")

    def _publish_lifecycle(self) -> None:
        with self._lifecycle_lock:
            self.connection.publish(self._lifecycle_topic,
                                    self._lifecycle.model_dump_json(exclude_none=True).encode(), kind="state",
                                    retain=True)

    def _on_own_lifecycle(self, message: mqtt.MQTTMessage) -> None:
        """A late last will (from an earlier connection) says offline while we run: publish the truth again."""
        try:
            seen = decode(message.payload) or {}
        except ValueError:
            seen = {}
        if seen.get("state") == "offline" and self._lifecycle.state != "offline":
            self.log.info("a stale last will said offline; re-publishing %s", self._lifecycle.state)
            self._publish_lifecycle()

    def start(self, connect_timeout: float | None = None) -> None:
        """Connect and begin serving (non-blocking). With a timeout, wait for the first connection."""
        if self._started:
            return
        self._started = True
        self.connection.subscribe(self._lifecycle_topic, self._on_own_lifecycle, no_local=True)
        self.connection.subscribe(self._command_filter, self._on_command)
        threading.Thread(target=self._watch_loop, name=f"{self.segment}-watch", daemon=True).start()
        self._audit_thread.start()
        self._publish_lifecycle()
        self.connection.start()
        if connect_timeout is not None:
            self.connection.wait_connected(connect_timeout)

    def run(self) -> int:
        """Start, run on_start, become ready (unless on_start chose degraded), serve until SIGTERM/SIGINT."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        self.start()
        self._start_up()
        self._main_loop()
        self.stop()
        return 0

    def serve_in_background(self, connect_timeout: float = 10.0) -> threading.Thread:
        """What run() does, without signal handlers and on a thread of its own (tests, embedding); stop() ends it."""
        self.start(connect_timeout)
        self._start_up()
        thread = threading.Thread(target=self._main_loop, name=f"{self.segment}-main", daemon=True)
        thread.start()
        return thread

    def _start_up(self) -> None:
        self.on_start()
        if self.state == "starting":
            self.ready()

    def _main_loop(self) -> None:
        watchdog = sdnotify.watchdog_interval()
        tick = min([watchdog or 1.0, 1.0] + [p[0] for p in self._periodic])
        while not self._stopping.wait(tick):
            if watchdog is not None:
                sdnotify.notify("WATCHDOG=1")
            now = time.monotonic()
            for task in self._periodic:
                if now >= task[1]:
                    task[1] = now + task[0]
                    try:
                        task[2]()
                    except Exception:
                        self.log.exception("periodic task %s failed", getattr(task[2], "__name__", task[2]))

    def stop(self) -> None:
        """stopping -> finish in-flight requests (bounded) -> offline -> disconnect."""
        if self._stopped.is_set():
            return
        self._stopping.set()
        sdnotify.notify("STOPPING=1")
        self._set_lifecycle("stopping")
        self.connection.unsubscribe(self._command_filter)
        with self._inflight_done:
            self._inflight_done.wait_for(lambda: self._inflight == 0, timeout=self.settings.shutdown_grace_s)
        if self._audit_thread.is_alive():
            self._audit_queue.put(None)  # publish the records still waiting, before the connection goes
            self._audit_thread.join(timeout=2)
        self._set_lifecycle("offline")
        self.connection.flush()
        self.connection.stop()
        self._executor.shutdown()
        self._watch_queue.put(None)
        self._stopped.set()

    # -- requests --------------------------------------------------------------------------------------------------

    def _on_command(self, message: mqtt.MQTTMessage) -> None:
        parsed = topics.parse_command(message.topic)
        if parsed is None:
            self.log.warning("ignored a request on %s: no valid principal level", message.topic)
            return
        _device, _service, command, principal = parsed
        response_topic = getattr(message.properties, "ResponseTopic", None)
        context = RequestContext(command, principal, None, user_property(message, "on_behalf_of"), response_topic)
        if not self._may_execute(message, context):
            return
        correlation = getattr(message.properties, "CorrelationData", None)
        if self._stopping.is_set():
            self._reply(context, correlation, BusError("unavailable", f"{self.segment} is stopping"), message.payload)
            return
        with self._inflight_done:
            self._inflight += 1
        self._executor.submit(self._handle, context, correlation, message.payload)

    def _may_execute(self, message: mqtt.MQTTMessage, context: RequestContext) -> bool:
        """Refuse, without executing or publishing a reply: retained commands, replies aimed outside the caller."""
        if message.retain:
            # A retained command is a replay (the broker kept it for whoever subscribes next): never run it.
            return self._refuse(context, "retained", "a retained command is never executed", message.payload)
        if context.response_topic is not None:
            context.session = topics.session_of(context.response_topic, self.device, context.principal)
            if context.session is None:
                # A reply goes only into the caller's own namespace: no publish at all on a topic a caller chose.
                return self._refuse(context, "foreign_response_topic",
                                    f"response topic {context.response_topic!r} lies outside "
                                    f"{topics.reply_namespace(self.device, context.principal)}", message.payload)
        return True

    def _refuse(self, context: RequestContext, counter: str, why: str, raw: Raw) -> bool:
        self.refused[counter] += 1
        self.log.warning("refused %s from %s: %s (%d so far)", context.command, context.caller, why,
                         self.refused[counter])
        self._audit(context, BusError("unauthorized" if counter != "retained" else "invalid_request", why), raw, 0.0)
        return False

    def _handle(self, context: RequestContext, correlation: bytes | None, raw: Raw) -> None:
        started = time.perf_counter()
        try:
            outcome = self._dispatch(context, raw)
        except BusError as error:
            outcome = error
        except Exception as exc:  # a handler bug must cost one request, never the service
            self.log.exception("handler of %s failed", context.command)
            outcome = BusError("internal", f"{type(exc).__name__}: {str(exc)[:200]}")
        try:
            self._reply(context, correlation, outcome, raw, (time.perf_counter() - started) * 1000)
        finally:
            with self._inflight_done:
                self._inflight -= 1
                self._inflight_done.notify_all()

    def _dispatch(self, context: RequestContext, raw: Raw) -> Any:
        method = self._handlers.get(context.command)
        if method is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise BusError("not_found", f"unknown command '{context.command}' of {self.segment}; known: {known}")
        spec = lookup(self.segment, "cmd", context.command)
        try:
            if not raw.strip():  # an empty payload is how a retained message is cleared: never a command
                raise BusError("invalid_request", "empty payload: send a JSON object (`{}` for no fields)")
            request = spec.model.model_validate_json(raw)
        except ValidationError as exc:
            if exc.errors()[0]["type"] == "json_invalid":
                raise BusError("invalid_request", f"payload is not valid JSON: {exc.errors()[0]['msg']}") from None
            message, problems = describe_validation_error(exc)
            raise BusError("invalid_request", message, {"errors": problems}) from None
        if spec.result is None:  # bus-schemas' command() always sets one
            raise BusError("internal", f"{context.command} declares no result model")
        result = getattr(self, method)(request, context)
        if isinstance(result, spec.result):
            return result
        if result is None:
            result = {}
        return spec.result.model_validate(result.model_dump() if isinstance(result, BaseModel) else result)

    def _reply(self, context: RequestContext, correlation: bytes | None, outcome: Any, raw: Raw,
               duration_ms: float = 0.0) -> None:
        try:
            self._send_reply(context, correlation, outcome)
        finally:
            self._audit(context, outcome, raw, duration_ms)  # after the reply: the caller does not wait for it

    def _send_reply(self, context: RequestContext, correlation: bytes | None, outcome: Any) -> None:
        if isinstance(outcome, BusError):
            if outcome.code != "internal":  # an internal error was logged with its traceback already
                self.log.info("%s from %s: %s", context.command, context.caller, outcome)
            body = ErrorReply(error=outcome.body()).model_dump_json().encode()
        else:
            # OkReply's envelope around the result model's own JSON: one serialisation, no re-validation.
            body = b'{"ok":true,"result":' + outcome.model_dump_json().encode() + b"}"
        if context.response_topic is None:
            self.log.info("%s had no response topic (fire-and-forget): %s", context.command,
                          outcome.code if isinstance(outcome, BusError) else "ok")
            return
        self.connection.publish(context.response_topic, body, kind="reply", properties=reply_properties(correlation))

    def _audit(self, context: RequestContext, outcome: Any, raw: Raw, duration_ms: float) -> None:
        """One AuditRecord per request, handled or refused: who (as the broker proved it) did what, and how it ended.
        Only the facts are queued here; the audit thread builds and validates the record, off the request's path."""
        self._audit_queue.put((time.time(), context, outcome, raw, duration_ms))

    def _audit_record(self, at: float, context: RequestContext, outcome: Any, raw: Raw,
                      duration_ms: float) -> AuditRecord:
        failed = isinstance(outcome, BusError)
        return AuditRecord(time=iso_of(at), service=self.segment, command=context.command,
                           principal=context.principal, on_behalf_of=context.on_behalf_of, ok=not failed,
                           error={"code": outcome.code, "message": outcome.message} if failed else None,
                           request=_audited_request(raw), duration_ms=round(duration_ms, 3))

    def _built_record(self, facts: AuditFacts) -> AuditRecord | None:
        """A record that cannot be built is logged with who and what; it must not end the audit thread."""
        try:
            return self._audit_record(*facts)
        except Exception:
            self.log.exception("audit record of %s from %s could not be built", facts[1].command, facts[1].caller)
            return None

    def _audit_loop(self) -> None:
        """Publish audit records in batches: the first record opens a short window, the rest of it rides along.
        The thread sleeps the window out and then takes what came: one wake-up per batch, not one per request."""
        while True:
            first = self._audit_queue.get()
            if first is None:
                return
            time.sleep(AUDIT_WINDOW_S)
            batch, stopping = [first], False
            while len(batch) < AUDIT_BATCH_MAX:
                try:
                    item = self._audit_queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            records = [record for facts in batch if (record := self._built_record(facts)) is not None]
            if records:  # a batch holds at least one record
                payload = AuditBatch(records=records).model_dump_json().encode()
                self.connection.publish(self._audit_topic, payload, kind="event")
            if stopping:
                return

    def _watch_loop(self) -> None:
        while True:
            item = self._watch_queue.get()
            if item is None:
                return
            callback, message = item
            try:
                data = decode(message.payload)
            except ValueError:
                self.log.warning("ignored a message on %s that is not JSON", message.topic)
                continue
            try:
                callback(message.topic, data)
            except Exception:
                self.log.exception("watch callback for %s failed", message.topic)


def _settings_model_of(cls: type) -> type[ServiceSettings] | None:
    """`Model` from `class X(Service[Model])`, None when the class does not name one (it inherits its parent's)."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Service):
            (model,) = get_args(base)
            if isinstance(model, type) and issubclass(model, ServiceSettings):
                return model
    return None


def _declared_handlers(cls: type[Service[Any]]) -> dict[str, str]:
    """The @handler methods defined in `cls` itself, each checked against the service's declarations in bus-schemas:
    a handler of an undeclared command, or two handlers of one command, is an error when the class is defined."""
    found: dict[str, str] = {}
    for name, member in cls.__dict__.items():
        command = getattr(member, _COMMAND_MARK, None)
        if command is None:
            continue
        segment = getattr(cls, "segment", None)
        if segment is None:
            raise TypeError(f"{cls.__qualname__}.{name} handles {command!r} but the class names no `segment`")
        try:
            lookup(segment, "cmd", command)
        except KeyError as error:
            raise TypeError(f"{cls.__qualname__}.{name}: {error.args[0]}") from None
        if command in found:
            raise TypeError(f"{cls.__qualname__}: {command!r} is handled by both {found[command]} and {name}")
        if hasattr(Service, name) or name in _RUNTIME_ATTRIBUTES:
            raise TypeError(f"{cls.__qualname__}.{name} (handler of {command!r}) would replace the runtime's own "
                            f"{name!r}: name it after what it does to the service's things (e.g. {command}_run)")
        found[command] = name
    return found


def _audited_request(raw: Raw) -> Any:
    if len(raw) > AUDIT_REQUEST_MAX:
        return {"truncated": True, "bytes": len(raw)}
    try:
        return decode(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _version_of(segment: str) -> str:
    for name in (f"benchbus-{segment}", "benchbus"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "0+unknown"
