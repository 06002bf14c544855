"""Runs the code blocks of one documentation page in order; used by ``test_docs.py``.

``python docs_runner.py STEPS OUTPUTS`` reads a JSON list of steps, each
``{"kind": "python" | "bash", "code": ..., "where": "docs/page.md", "line": N}``, and runs them
in the current directory: Python blocks in one module namespace (so a block can use what an
earlier block on the page defined), compiled under the page's name and line so a traceback
points into the Markdown; each line of a bash block as its own command (``bash -euo pipefail
-c``). It writes the stdout of every command to OUTPUTS (a JSON object keyed by the command)
and exits non-zero at the first failing block or command, naming its page and line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path


def commands_of(code: str) -> list[str]:
    """The commands of a bash block: one a line, comments after ``  #`` dropped."""
    commands = []
    for line in code.splitlines():
        command = line.split("  #")[0].strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def main(steps_path: str, outputs_path: str) -> int:
    steps = json.loads(Path(steps_path).read_text())
    # As for `python -c`: the page's own files (a titled block) import from where it runs.
    sys.path.insert(0, str(Path.cwd()))
    module = types.ModuleType("docs_page")
    sys.modules["docs_page"] = module
    outputs: dict[str, str] = {}
    for step in steps:
        where = f"{step['where']}:{step['line']}"
        if step["kind"] == "python":
            # Blank lines in front so the compiled block's line numbers are the page's.
            code = compile("\n" * step["line"] + step["code"], step["where"], "exec")
            exec(code, module.__dict__)
            sys.stdout.flush()
            continue
        for command in commands_of(step["code"]):
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                print(f"{where}: {command!r} exited {done.returncode}:", file=sys.stderr)
                print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
                return 1
            outputs[command] = done.stdout
    Path(outputs_path).write_text(json.dumps(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
