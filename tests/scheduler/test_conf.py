"""conf.yml: the shipped files, refusals with file/line/field, command merges, atomic saves under kill -9."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest
import yaml

from benchbus.yamlfile import FileError
from benchbus_scheduler import conf as conffile
from benchbus_scheduler.loop import group_steps

from .conftest import DEFAULT, ODLED_OFF, STIR_PAUSE, line_of

SIXTEEN_ZEROS = "['0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0']"


def refuse(text: str, name: str = "conf.yml") -> FileError:
    with pytest.raises(FileError) as caught:
        conffile.parse_text(text, name)
    return caught.value


def test_shipped_default_runs_the_five_recurring_boards_in_file_order():
    conf = conffile.load(DEFAULT)
    assert [n for n, p in conf.params.items() if p.recurring] == ["od_90", "od_135", "od_led", "temp", "stir"]
    assert conf.params["od_90"].value == "1000" and conf.params["temp"].value == ["4095"] * 16
    assert conf.params["pump"].value is None and conf.model.broadcast_timing == 20
    assert conf.warnings == ()


def test_stir_pause_alternate_stops_stirring_around_the_od_read():
    conf = conffile.load(STIR_PAUSE)
    steps = group_steps(conf, "od_90")
    assert [(s.phase, s.param) for s in steps] == [("pre", "stir"), ("pre", "wait"), ("main", "od_90"),
                                                   ("post", "stir")]
    assert steps[0].values == ("0",) * 16 and steps[1].seconds == 15
    assert steps[3].values == ("8",) * 16, "`values` is the stir param's current value"
    assert not conf.params["stir"].recurring


def test_odled_alternate_turns_the_leds_on_for_the_od_reads_only():
    conf = conffile.load(ODLED_OFF)
    od_90, od_135 = group_steps(conf, "od_90"), group_steps(conf, "od_135")
    assert [(s.phase, s.param) for s in od_90] == [("pre", "od_led"), ("pre", "wait"), ("main", "od_90")]
    assert [(s.phase, s.param) for s in od_135] == [("main", "od_135"), ("post", "od_led")]
    assert od_90[0].values == ("4095",) * 16 and od_135[1].values == ("0",) * 16
    assert not conf.params["od_led"].recurring, "a recurring od_led would switch them on again every cycle"


def test_unknown_param_in_pre_is_refused_with_line_and_field():
    text = STIR_PAUSE.read_text().replace("    - param: stir\n      value: ['0'",
                                          "    - param: stirr\n      value: ['0'")
    error = refuse(text, "mine.yml")
    problem = error.problems[0]
    assert problem["field"] == "experimental_params.od_90.pre.0.param"
    assert problem["line"] == line_of(text, "param: stirr")
    assert "unknown param 'stirr'" in problem["message"]
    assert f"mine.yml:{problem['line']}: experimental_params.od_90.pre.0.param" in str(error)


def test_value_list_disagreeing_with_fields_expected_outgoing_is_refused():
    text = DEFAULT.read_text().replace("value: ['8', '8', '8', ", "value: ['8', '8', ", 1)
    problem = refuse(text).problems[0]
    assert problem["field"] == "experimental_params.stir.value"
    assert problem["line"] == line_of(text, "value: ['8', '8', ")
    assert "15 values disagree with fields_expected_outgoing 17" in problem["message"]


def test_pre_value_of_the_wrong_length_for_its_param_is_refused():
    text = STIR_PAUSE.read_text().replace(SIXTEEN_ZEROS, "['0', '0']")
    problem = refuse(text).problems[0]
    assert problem["field"] == "experimental_params.od_90.pre.0.value"
    assert problem["line"] == line_of(text, "value: ['0', '0']")


def test_negative_wait_is_refused():
    text = STIR_PAUSE.read_text().replace("value: 15\n", "value: -2\n")
    problem = refuse(text).problems[0]
    assert problem["field"] == "experimental_params.od_90.pre.1.value"
    assert problem["line"] == line_of(text, "value: -2")
    assert "negative" in problem["message"]


def test_yaml_syntax_error_names_the_line():
    text = DEFAULT.read_text().replace("  od_135:\n", "  od_135:\n   - [\n", 1)
    problem = refuse(text).problems[0]
    assert problem["line"] is not None and "not valid YAML" in problem["message"]


def test_unknown_top_level_key_is_kept_and_reported():
    text = DEFAULT.read_text() + "cloud_port: 9000\n"
    conf = conffile.parse_text(text, "conf.yml")
    assert conf.data["cloud_port"] == 9000
    line = line_of(text, "cloud_port")
    assert conf.warnings == (f"conf.yml:{line}: cloud_port: unknown key, kept as is and not used",)


def test_numbers_written_without_quotes_become_the_strings_the_boards_get():
    conf = conffile.parse_text(DEFAULT.read_text().replace("value: '1000'", "value: 1000", 1), "conf.yml")
    assert conf.params["od_90"].value == "1000"


def test_command_merges_element_wise_and_nan_keeps_the_element():
    conf = conffile.load(DEFAULT)
    new = conffile.apply_command(conf, "stir", ["NaN"] * 15 + [12])
    assert new.params["stir"].value == ["8"] * 15 + ["12"]
    assert conf.params["stir"].value == ["8"] * 16, "the old conf is never edited"


@pytest.mark.parametrize("param,value,code,field", [
    ("stirr", ["1"] * 16, "not_found", "param"),
    ("stir", ["1"] * 15, "invalid_request", "value"),
    ("od_90", ["1", "2"], "invalid_request", "value"),
    ("pump", ["NaN"] * 48, "invalid_request", "value"),  # no current value to keep
])
def test_bad_commands_are_refused(param, value, code, field):
    with pytest.raises(conffile.CommandRefused) as caught:
        conffile.apply_command(conffile.load(DEFAULT), param, value)
    assert (caught.value.code, caught.value.field) == (code, field)


def test_saved_conf_keeps_the_users_key_order(tmp_path):
    text = STIR_PAUSE.read_text()
    conf = conffile.apply_command(conffile.parse_text(text, "c"), "stir", ["3"] * 16)
    path = tmp_path / "conf.yml"
    conffile.save_atomic(path, conffile.dump(conf.data))
    saved = yaml.safe_load(path.read_text())
    original = yaml.safe_load(text)
    assert list(saved) == list(original)
    assert list(saved["experimental_params"]) == list(original["experimental_params"])
    assert list(saved["experimental_params"]["od_90"]) == ["recurring", "fields_expected_outgoing",
                                                           "fields_expected_incoming", "value", "pre", "post"]
    assert saved["experimental_params"]["stir"]["value"] == ["3"] * 16
    assert conffile.load(path).params["stir"].value == ["3"] * 16


def _write_forever(path, texts, started_fd: int) -> None:
    conffile.save_atomic(path, texts[-1])
    os.write(started_fd, b"!")  # saving from now on: the parent's random moment falls among saves
    while True:
        for text in texts:
            conffile.save_atomic(path, text)


def test_conf_survives_kill_9_during_writes(tmp_path):
    """200 kills at random moments of a process saving two confs in turn: the file is always one of them, whole."""
    path = tmp_path / "conf.yml"
    old = DEFAULT.read_text()
    new = conffile.dump(conffile.apply_command(conffile.parse_text(old, "c"), "stir", ["11"] * 16).data)
    path.write_text(old)
    rng = random.Random(4)
    killed_mid_write = 0
    for _ in range(200):
        started_r, started_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child saves until it is killed
            try:
                os.close(started_r)
                _write_forever(path, [new, old], started_w)
            finally:
                os._exit(0)
        os.close(started_w)
        # A loaded machine may not run the child before the kill: then no kill could land inside a save
        assert os.read(started_r, 1) == b"!"
        os.close(started_r)
        deadline_spins = rng.randint(0, 3000)
        for _spin in range(deadline_spins):  # a random moment, without sleeping (sleeps are too coarse)
            pass
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert path.read_text() in (old, new), "a kill -9 left a broken conf.yml"
        conffile.load(path)
        killed_mid_write += bool(conffile.remove_stale_temps(tmp_path))
    assert killed_mid_write > 0, "no kill landed inside a save: the test did not test anything"


def test_bad_conf_stops_the_service_at_start_with_file_line_and_field(tmp_path, broker, device):
    text = DEFAULT.read_text().replace("broadcast_timing: 20", "broadcast_timing: -5")
    path = tmp_path / "conf.yml"
    path.write_text(text)
    env = dict(os.environ, BENCHBUS_DEVICE=device, BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_SCHEDULER_CONF_PATH=str(path))
    done = subprocess.run([sys.executable, "-m", "benchbus_scheduler.service"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert f"{path}:{line_of(text, 'broadcast_timing: -5')}: broadcast_timing: Input should be greater than 0" \
        in done.stderr
    assert path.read_text() == text, "a refused file is left as the user wrote it"
