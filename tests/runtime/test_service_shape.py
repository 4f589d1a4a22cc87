"""One service shape: every service is a Service[Settings] subclass whose @handler methods cover exactly the commands
bus-schemas declares for its segment, and a handler of an undeclared command is refused when its class is defined."""
import importlib

import pytest

from benchbus.service import RequestContext, Service, handler
from benchbus.settings import ServiceSettings
from benchbus_schemas import specs

SERVICES = [
    "benchbus_experiment.service:ExperimentService",
    "benchbus_gpio.service:GpioService",
    "benchbus_recorder.service:RecorderService",
    "benchbus_smoothie.service:SmoothieService",
    "benchbus_runner.service:Runner",
    "benchbus_update.service:UpdateService",
    "benchbus_gateway.service:GatewayService",
    "benchbus_calibration.service:CalibrationService",
    "benchbus_scheduler.service:SchedulerService",
    "benchbus_samd.service:SamdService",
    "benchbus.demo:DemoService",
]


def service_class(path: str) -> type[Service]:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", SERVICES)
def test_every_declared_command_has_exactly_one_handler_method(path):
    cls = service_class(path)
    declared = {spec.name for spec in specs(cls.segment) if spec.kind == "cmd"}
    handled = cls.handled_commands()
    assert set(handled) == declared
    for command, method in handled.items():  # a method, not something attached from outside
        assert callable(getattr(cls, method)), command
    assert issubclass(cls.settings_model, ServiceSettings)


def test_handlers_are_declared_on_the_class_only():
    """No registration from outside: a made service offers no way to add or swap a handler."""
    assert not any(hasattr(Service, name) for name in ("handles", "register", "add_handler"))


def test_a_handler_of_an_undeclared_command_fails_when_the_class_is_defined():
    with pytest.raises(TypeError, match="demo/cmd/no_such_command is not declared in bus-schemas"):
        class Broken(Service[ServiceSettings]):
            segment = "demo"

            @handler("no_such_command")
            def nothing(self, _request, _ctx: RequestContext) -> None: ...


def test_two_handlers_of_one_command_fail_when_the_class_is_defined():
    with pytest.raises(TypeError, match="'echo' is handled by both"):
        class Twice(Service[ServiceSettings]):
            segment = "demo"

            @handler("echo")
            def first(self, _request, _ctx: RequestContext) -> None: ...

            @handler("echo")
            def second(self, _request, _ctx: RequestContext) -> None: ...


def test_a_handler_may_not_replace_the_runtime():
    with pytest.raises(TypeError, match="would replace the runtime's own 'stop'"):
        class Shadowing(Service[ServiceSettings]):
            segment = "demo"

            @handler("echo")
            def stop(self, _request, _ctx: RequestContext) -> None: ...


def test_the_settings_model_comes_from_the_generic_parameter():
    class Mine(ServiceSettings):
        extra: int = 1

    class MineService(Service[Mine]):
        segment = "demo"

    class Derived(MineService):
        pass

    assert MineService.settings_model is Mine and Derived.settings_model is Mine
