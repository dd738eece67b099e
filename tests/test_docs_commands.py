"""Every command that README.md and docs/*.md tell a user to run names only options its program accepts today.

The docs are scanned for ``fsrfer-<tool> ...`` (the console scripts of setup.py), ``[python] scripts/<name>.py
...``, ``[python] benchmarks/<name>.py ...`` and ``-m trainer.cli ...`` (fsrfer-train under torchrun), in
backticks or shell code blocks, where a command starts (not ``which fsrfer-train`` or a path that holds the
name). Each program's long options are read once, in one subprocess for all of them, from the argparse parser
its entry point builds: ``ArgumentParser.parse_known_args`` is replaced by a function that raises with the
parser, so nothing past argument parsing runs (a script that reads ``sys.argv`` by hand offers the
``"--..."`` strings of its source). A program that cannot get that far here, for a library that is not
installed, is skipped with the reason. A documented option must be an accepted one in full: argparse also
takes an unambiguous prefix, which the docs should not rely on.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONSOLE_SCRIPTS = dict(re.findall(r'"(fsrfer-[a-z-]+)=([\w.]+:\w+)"', (REPO / "setup.py").read_text()))

# Commands inside generated blocks (<!-- table:... --> / <!-- results:... -->) are copied from the `command`
# field of a committed result file: the record of what was run then, not to be edited. Where one names an
# option that has since been renamed or removed, it is exempt here, and only inside generated blocks:
# (doc file, program, old option) -> what it became and the commit (`git log -S'--old-option' --oneline`).
# None is needed today: every recorded command in the docs names options their programs still accept.
RECORDED: dict[tuple[str, str, str], str] = {}

FENCE = re.compile(r"^\s*(```|~~~)\s*(\w*)")
SHELL = {"", "bash", "sh", "shell", "console"}
BLOCK_START = re.compile(r"^<!-- ?(table|results):")
BLOCK_END = re.compile(r"^<!-- ?/(table|results) ?-->")
PROGRAM = re.compile(r"(?<![\w./:-])(?:(?P<tool>fsrfer-[a-z]+(?:-[a-z]+)*)"
                     r"|(?:python3?\s+(?:-[A-Za-z]\s+)*)?(?P<script>(?:scripts|benchmarks)/[\w-]+\.py)"
                     r"|(?P<trainer>-m\s+trainer\.cli))(?=\s|$)")
WRAPPER = re.compile(r"^(?:\$|time|nohup|env|exec|timeout|\d+[smh]?|[A-Za-z_]\w*=\S*)$")  # before a command
SEPARATOR = re.compile(r"&&|\|\||[;|(]|\$\(")
END = re.compile(r"\s(?:&&|\|\||\||#)\s|;|\)|\s#")
OPTION = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")


@dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository
    line: int
    program: str  # "fsrfer-export", "scripts/report.py", ...
    text: str
    generated: bool  # inside a <!-- table:... --> or <!-- results:... --> block

    def where(self) -> str:
        return f"{self.doc}:{self.line}: `{self.text}`"


def _pieces(path: Path) -> list[tuple[int, str, bool]]:
    """(first line number, code text, generated) for every fenced code line (continuations joined) and every
    inline code span of ``path``."""
    lines = path.read_text().splitlines()
    pieces: list[tuple[int, str, bool]] = []
    prose = []  # the lines outside fences, fenced lines blanked, so spans keep their line numbers
    generated = [False] * len(lines)
    fenced = shell = False
    inside = False
    pending: tuple[int, str] | None = None
    for i, line in enumerate(lines):
        if BLOCK_START.match(line):
            inside = True
        elif BLOCK_END.match(line):
            inside = False
        generated[i] = inside
        fence = FENCE.match(line)
        if fence:
            fenced = not fenced
            shell = not fenced or fence.group(2) in SHELL
            prose.append("")
            continue
        if not fenced:
            prose.append(line)
            continue
        prose.append("")
        if not shell:  # a python example: its comments may name a tool, but it runs no command line
            continue
        start, text = pending or (i + 1, "")
        text += line.rstrip()
        if text.endswith("\\"):
            pending = (start, text[:-1] + " ")
            continue
        pending = None
        if not text.lstrip().startswith("#"):
            pieces.append((start, text, generated[start - 1]))
    text = "\n".join(prose)
    for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.DOTALL):
        if "\n\n" not in m.group(2):
            line = text.count("\n", 0, m.start(2)) + 1
            pieces.append((line, m.group(2), generated[line - 1]))
    return pieces


def find_commands(path: Path) -> list[Command]:
    """Every command of a documented program in ``path``; a program's name counts only where a command starts
    (after a separator, environment assignments or ``time``/``nohup``), not as an argument or inside a path."""
    found = []
    for first, text, generated in _pieces(path):
        for m in PROGRAM.finditer(text):
            if not m.group("trainer"):
                before = SEPARATOR.split(text[:m.start()])[-1].split()
                if not all(WRAPPER.match(w) for w in before):
                    continue
            program = m.group("tool") or m.group("script") or "fsrfer-train"
            end = END.search(text, m.end())
            command = " ".join(text[m.start():end.start() if end else len(text)].split())
            line = first + text.count("\n", 0, m.start())
            found.append(Command(str(path.relative_to(REPO)), line, program, command, generated))
    return found


COMMANDS = [c for doc in DOCS for c in find_commands(doc)]
PROGRAMS = sorted({c.program for c in COMMANDS})

_COLLECT = r'''
import argparse, ast, importlib, importlib.util, inspect, io, json, sys, contextlib
from pathlib import Path

class Parsed(BaseException):
    def __init__(self, parser):
        self.parser = parser

def raise_parsed(self, args=None, namespace=None):
    raise Parsed(self)

argparse.ArgumentParser.parse_known_args = raise_parsed

def long_options(parser):
    found = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= long_options(sub)
    return found

def collect(program, target):
    if target.endswith(".py"):
        source = Path(target).read_text()
        if "parse_args" not in source:  # options read by hand (`"--check" in argv`): its string literals
            return {"options": sorted({n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
                                       and isinstance(n.value, str) and n.value.startswith("--")
                                       and n.value[2:].replace("-", "").isalnum()})}
        spec = importlib.util.spec_from_file_location("_doc_" + target.replace("/", "_")[:-3], target)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(Path(target).parent))
        spec.loader.exec_module(module)
        entry = module.main
    else:
        module_name, function = target.split(":")
        entry = getattr(importlib.import_module(module_name), function)
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [program, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            entry(["--help"]) if inspect.signature(entry).parameters else entry()
    except Parsed as parsed:
        return {"options": sorted(long_options(parsed.parser))}
    except SystemExit:
        pass
    said = " ".join((out.getvalue() + err.getvalue()).split())[:300]
    return {"skip": f"{program} stopped before parsing its arguments: {said or 'no message'}"}

result = {}
for program, target in json.loads(sys.argv[1]).items():
    try:
        result[program] = collect(program, target)
    except ImportError as exc:
        result[program] = {"skip": f"{program} needs a library that is not installed here: {exc}"}
    except (Exception, SystemExit) as exc:  # SystemExit: a module that exits while it is imported
        result[program] = {"error": f"{type(exc).__name__}: {exc}"}
print("\n" + json.dumps(result))
'''


@pytest.fixture(scope="module")
def accepted() -> dict[str, dict]:
    """Each documented program's long options (or why they could not be read), from one subprocess."""
    targets = {p: CONSOLE_SCRIPTS[p] if p in CONSOLE_SCRIPTS else str(REPO / p) for p in PROGRAMS
               if p in CONSOLE_SCRIPTS or (REPO / p).is_file()}
    run = subprocess.run([sys.executable, "-c", _COLLECT, json.dumps(targets)], cwd=REPO, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_the_scan_finds_every_row_of_the_readme_command_table():
    """The README's command-line table stays covered: each of its rows is a command the scan finds, so a change
    of format that hides commands from the scan fails here instead of passing with them unchecked."""
    lines = DOCS[0].read_text().splitlines()
    heading = lines.index("## Command-line tools")
    end = next(i for i in range(heading + 1, len(lines)) if lines[i].startswith("## "))
    rows = [ln.split("`")[1] for ln in lines[heading:end] if ln.startswith("| `fsrfer")]
    assert len(rows) >= 8
    found = {" ".join(c.text.split()) for c in COMMANDS if c.doc == "README.md" and heading < c.line <= end}
    assert not [r for r in rows if r not in found], "README.md's command table has rows the scan does not find"


def test_every_recorded_command_exemption_is_still_needed(accepted):
    """An entry of RECORDED that no generated block needs any more (the block was re-rendered from a newer
    result file, or the option is back) is removed, so the list holds only the commands it is there for."""
    needed = {(c.doc, c.program, o) for c in COMMANDS if c.generated and "options" in accepted.get(c.program, {})
              for o in OPTION.findall(c.text) if o not in accepted[c.program]["options"]}
    stale = [k for k in RECORDED if k not in needed]
    assert not stale, f"RECORDED entries that no generated block needs any more (remove them): {stale}"


@pytest.mark.parametrize("program", PROGRAMS)
def test_documented_commands_name_only_options_their_program_accepts(program, accepted):
    commands = [c for c in COMMANDS if c.program == program]
    runs = "\n".join(c.where() for c in commands)
    if program.startswith("fsrfer-"):
        assert program in CONSOLE_SCRIPTS, f"no console script {program} in setup.py, yet the docs run it:\n{runs}"
    else:
        assert (REPO / program).is_file(), f"{program} does not exist, yet the docs run it:\n{runs}"
    got = accepted[program]
    if "skip" in got:
        pytest.skip(got["skip"])
    assert "error" not in got, f"could not read {program}'s options: {got['error']}"
    known = set(got["options"])
    unknown = [f"{c.where()}: {option} is not an option of {program}" for c in commands
               for option in OPTION.findall(c.text)
               if option not in known and not (c.generated and (c.doc, program, option) in RECORDED)]
    assert not unknown, "\n".join(unknown)
