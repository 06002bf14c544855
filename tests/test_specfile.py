"""``--spec`` files against hostile input: alias bombs, deep nesting, loose JSON, repeated keys."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from headwater.errors import SpecError
from headwater.specfile import MAX_ALIAS_VALUES, MAX_SPEC_DEPTH, load_spec, parse_json_spec

HEADWATER = [sys.executable, "-m", "headwater.cli"]

PLUGIN = textwrap.dedent(
    """
    import pyarrow as pa
    import headwater as hw

    class Spec(hw.Spec):
        token: str = ""

    @hw.table("t", columns=[hw.Column("id", pa.int64())])
    def t(client):
        yield {"id": 1}

    plugin = hw.Plugin(name="specs", version="1", tables=[t], spec=Spec)
    """
)

#: Nine levels of nine aliases each: 324 bytes of YAML that expand to 9**9 strings.
ALIAS_BOMB = (
    "a: &a ["
    + ",".join(['"x"'] * 9)
    + "]\n"
    + "".join(
        f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def _limit_memory() -> None:
    # A regression expands the bomb: it must fail with a MemoryError, not eat the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 400
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    done = subprocess.run(
        [*HEADWATER, "check", str(tmp_path / "plugin.py"), "--spec", str(tmp_path / "bomb.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"headwater: error: spec file {str(tmp_path / 'bomb.yaml')!r}: the aliases up to *d at "
        f"line 5, column 8 expand to more than {MAX_ALIAS_VALUES} values; write the values "
        "out, or use fewer aliases of large anchors\n"
    )


def test_aliases_within_the_budget_and_merge_keys_still_work(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            accounts: &accounts [a, b, c]
            regions: *accounts
            defaults: &defaults {retries: 3, timeout: 10}
            api:
              <<: *defaults
              timeout: 30
            """
        )
    )
    assert load_spec(str(spec), {}) == {
        "accounts": ["a", "b", "c"],
        "regions": ["a", "b", "c"],
        "defaults": {"retries": 3, "timeout": 10},
        "api": {"retries": 3, "timeout": 30},
    }
    # Exactly at the budget: one alias of a list holding MAX_ALIAS_VALUES - 1 values.
    values = ", ".join(["1"] * (MAX_ALIAS_VALUES - 1))
    spec.write_text(f"a: &a [{values}]\nb: *a\n")
    assert len(load_spec(str(spec), {})["b"]) == MAX_ALIAS_VALUES - 1
    spec.write_text(f"a: &a [{values}, 1]\nb: *a\n")
    with pytest.raises(SpecError, match=f"expand to more than {MAX_ALIAS_VALUES} values"):
        load_spec(str(spec), {})


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("token: x\nloop: &loop [1, *loop]\n")
    with pytest.raises(SpecError) as info:
        load_spec(str(spec), {})
    assert str(info.value) == (
        f"spec file {str(spec)!r}: the alias *loop at line 2, column 17 is inside the value its "
        "anchor &loop names; a spec cannot contain itself"
    )


@pytest.mark.parametrize("suffix", [".yaml", ".json", "inline"])
def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path: Path, suffix: str) -> None:
    def document(depth: int) -> str:
        return '{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    path = tmp_path / f"spec{suffix}"
    for depth, fits in ((MAX_SPEC_DEPTH, True), (MAX_SPEC_DEPTH + 1, False), (100_000, False)):
        if suffix == "inline":
            value = document(depth)
        else:
            path.write_text(document(depth))
            value = str(path)
        if fits:
            assert "a" in load_spec(value, {})
            continue
        with pytest.raises(SpecError, match=f"is nested deeper than {MAX_SPEC_DEPTH} levels"):
            load_spec(value, {})


def test_deep_nesting_through_aliases_is_refused(tmp_path: Path) -> None:
    half = MAX_SPEC_DEPTH // 2 + 1
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"a: &a {'[' * half}{']' * half}\nb: {'[' * half}*a{']' * half}\n")
    with pytest.raises(SpecError, match=r"nested deeper than 100 levels \(through the alias \*a"):
        load_spec(str(spec), {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"token": "x",}',
            "Expecting property name enclosed in double quotes at line 1, column 15",
        ),
        ('{\n  "token": "x"\n  "b": 1\n}', "Expecting ',' delimiter at line 3, column 3"),
        ("token: x\n", "Expecting value at line 1, column 1"),
        ('{"token": "x", "n": NaN}', "NaN is not a JSON value (JSON numbers are finite)"),
        ('{"n": -Infinity}', "-Infinity is not a JSON value (JSON numbers are finite)"),
        ('{"token": "a", "token": "b"}', "the key 'token' appears twice in one object"),
    ],
)
def test_a_json_file_is_strict_json(tmp_path: Path, text: str, message: str) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(str(spec), {})
    assert str(info.value) == f"spec file {str(spec)!r} is not valid JSON: {message}"
    if text.startswith("{"):  # inline JSON too
        with pytest.raises(SpecError) as inline:
            load_spec(text, {})
        assert str(inline.value) == f"the --spec JSON is not valid JSON: {message}"


def test_a_json_file_with_a_byte_order_mark_and_bad_bytes(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(b'\xef\xbb\xbf{"token": "x"}')
    assert load_spec(str(spec), {}) == {"token": "x"}
    with pytest.raises(
        SpecError, match=r"the spec is not UTF-8 text: invalid start byte at byte 1"
    ):
        parse_json_spec(b'{\xff"a": 1}', "the spec")


def test_a_yaml_key_given_twice_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yml"
    spec.write_text("token: first-secret\nregion: eu\ntoken: second-secret\n")
    with pytest.raises(SpecError) as info:
        load_spec(str(spec), {})
    assert str(info.value) == (
        f"spec file {str(spec)!r}: the key 'token' at line 3, column 1 appears twice in one "
        "mapping (first at line 1, column 1)"
    )


def test_the_cli_reports_spec_file_errors_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "spec.json").write_text('{"token": "x",}')
    done = subprocess.run(
        [*HEADWATER, "sync", str(tmp_path / "plugin.py"), "--spec", str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "line 1, column 15" in done.stderr
    assert not (tmp_path / "headwater.duckdb").exists()
