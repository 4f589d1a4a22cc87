"""The `benchbus` command line against a running service."""
import json
import subprocess
import sys


def run_cli(broker, device, *args, timeout=30):
    return subprocess.run([sys.executable, "-m", "benchbus", *args, "--broker", f"{broker.host}:{broker.port}",
                           "--device", device], capture_output=True, text=True, timeout=timeout)


def test_call_prints_the_result(spawn, broker, device):
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    run = run_cli(broker, device, "call", "demo", "echo", '{"text": "from the shell"}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"text": "from the shell", "count": 1}


def test_call_error_reply_exits_non_zero(spawn, broker, device):
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    run = run_cli(broker, device, "call", "demo", "echo", '{"count": 2}')
    assert run.returncode == 1
    assert json.loads(run.stderr)["error"]["code"] == "invalid_request"


def test_call_timeout_exits_non_zero(spawn, broker, device):
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    run = run_cli(broker, device, "call", "demo", "sleep", '{"seconds": 3}', "--timeout", "0.5")
    assert run.returncode == 3
    assert json.loads(run.stderr)["error"]["code"] == "timeout"


def test_status_lists_services(spawn, broker, device):
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    run = run_cli(broker, device, "status")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "demo" in run.stdout and "ready" in run.stdout


def test_watch_shows_traffic(spawn, broker, device):
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    run = run_cli(broker, device, "watch", "--seconds", "1")
    assert f"benchbus/{device}/demo/$state [retained]" in run.stdout
    assert '"ready"' in run.stdout


def test_health_is_zero_only_when_ready(spawn, broker, device):
    assert run_cli(broker, device, "health", "demo", "--timeout", "0.5").returncode == 1
    service = spawn(["python", "-m", "benchbus.demo"], segment="demo")
    assert run_cli(broker, device, "health", "demo").returncode == 0
    service.terminate()
    assert run_cli(broker, device, "health", "demo").returncode == 1
