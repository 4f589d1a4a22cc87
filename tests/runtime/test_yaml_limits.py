"""YAML from outside (settings files, conf.yml, environment values) is read within limits: no anchors or aliases (the
"billion laughs"), at most 1 MB, at most 64 levels deep; each refusal names the file and the line."""
import pytest

from benchbus import yamlfile
from benchbus.demo import DemoSettings
from benchbus.settings import load_settings
from benchbus.yamlfile import FileError


def alias_bomb(levels: int = 9) -> str:
    """9 strings, then 9 lists of 9 references to the previous level, `levels` deep: 9**levels strings when expanded
    (PyYAML shares the references while loading; whoever walks or dumps the result pays for them all)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_its_first_anchor():
    with pytest.raises(FileError) as caught:
        yamlfile.LocatedYaml(alias_bomb(), "conf.yml")
    assert caught.value.problems == [{"field": None, "line": 1,
                                      "message": "YAML refused: anchors are not allowed (&a0)"}]
    assert str(caught.value) == "conf.yml:1: (top level): YAML refused: anchors are not allowed (&a0)"


@pytest.mark.parametrize("text,line,what", [
    ("x: 1\ny: *nowhere\n", 2, "aliases are not allowed (*nowhere)"),
    ("base: &b {host: a}\nbroker:\n  <<: *b\n", 1, "anchors are not allowed (&b)"),
    ("x:\n  y: [1, 2, &z 3]\n", 2, "anchors are not allowed (&z)"),
])
def test_every_anchor_and_alias_is_refused_with_its_line(text, line, what):
    with pytest.raises(FileError) as caught:
        yamlfile.loads(text, "f.yaml")
    assert caught.value.problems[0]["line"] == line and what in caught.value.problems[0]["message"]


def test_a_settings_file_with_aliases_stops_the_service_with_file_and_line(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("device: rig-7\nbroker: &b\n  host: broker.lab\n")
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", path, environ={})
    assert str(caught.value) == f"{path}:2: (top level): YAML refused: anchors are not allowed (&b)"


def test_an_environment_value_with_an_alias_is_only_text(tmp_path):
    settings = load_settings(DemoSettings, "demo", None, environ={"BENCHBUS_BROKER_HOST": "*lol"})
    assert settings.broker.host == "*lol"


def test_a_file_over_one_megabyte_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "demo.yaml"
    with path.open("w") as handle:
        handle.write("device: rig-7\n")
        handle.write("#" + "x" * (yamlfile.MAX_BYTES) + "\n")  # a comment: valid YAML, only too big
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", path, environ={})
    assert str(caught.value) == f"{path}: (top level): larger than the 1000000 bytes a YAML file may have; not read"


def test_text_over_one_megabyte_is_refused():
    text = "a: 1\n" + "#" * yamlfile.MAX_BYTES
    with pytest.raises(FileError) as caught:
        yamlfile.LocatedYaml(text, "load_conf")
    assert "more than the 1000000 bytes" in str(caught.value)


def test_a_file_of_exactly_the_limit_is_read(tmp_path):
    path = tmp_path / "demo.yaml"
    head = "device: rig-7\n#"
    path.write_text(head + "x" * (yamlfile.MAX_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == yamlfile.MAX_BYTES
    assert load_settings(DemoSettings, "demo", path, environ={}).device == "rig-7"


def test_nesting_deeper_than_the_limit_is_refused():
    deep = "x: " + "[" * (yamlfile.MAX_DEPTH + 1) + "]" * (yamlfile.MAX_DEPTH + 1) + "\n"
    with pytest.raises(FileError) as caught:
        yamlfile.loads(deep, "deep.yaml")
    assert f"nested more than {yamlfile.MAX_DEPTH} levels deep" in str(caught.value)
    shallow = "x: " + "[" * 10 + "]" * 10 + "\n"
    assert yamlfile.loads(shallow) == {"x": [[[[[[[[[[]]]]]]]]]]}


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_bytes(b"device: rig-7\nbroker:\n  host: \xff\n")
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", path, environ={})
    assert str(caught.value) == f"{path}:3: (top level): not UTF-8 text"
