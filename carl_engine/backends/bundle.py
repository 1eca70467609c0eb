"""The job bundle: one self-contained Python script that runs one spec anywhere.

`write_bundle(spec, dest)` writes a script with PEP 723 inline metadata, so that
`uv run carl-job-<name>.py [run_dir]` installs CARL Studio and its dependencies in a
throw-away environment and runs the spec exactly as `python -m carl_engine.run <run_dir>`
would. The remote backends (hf_jobs, runpod, ssh) ship exactly this file.

Where CARL Studio comes from on the remote side: `carl-studio==<installed version>` from
PyPI by default; `source=` (or `$CARL_BUNDLE_SOURCE`) takes any PEP 508 requirement or URL
instead, e.g. `git+https://github.com/you/carl-studio@main` or a wheel URL.

Relay: with `CARL_RELAY_EVENTS=1` in its environment the script also prints every new
line of `events.jsonl` as `@@carl-event <json>` and, at the end, `result.json` as
`@@carl-result <json>`. Backends whose only channel back is the log (HF Jobs) rebuild the
run directory from those lines with `replay_relay`.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from carl_engine.errors import InvalidSpecError
from carl_engine.runs import RunDir, RunResult

DISTRIBUTION = "carl-studio"
EVENT_MARK = "@@carl-event "
RESULT_MARK = "@@carl-result "
_REQUIRES_PYTHON = ">=3.11"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")

_SCRIPT = '''\
{metadata}
"""CARL Studio job bundle {name!r}, written by `carl bundle`.

Run it anywhere with `uv run {filename} [run_dir]` (default run dir: ./carl-run-{name}).
It writes the spec below to <run_dir>/spec.json and runs `python -m carl_engine.run <run_dir>`.
"""

import json
import os
import runpy
import sys
import threading
from pathlib import Path

NAME = {name!r}
SPEC_JSON = {spec_json!r}
EVENT_MARK = {event_mark!r}
RESULT_MARK = {result_mark!r}


def relay_events(events_path, stop, offset=0):
    """Print each whole new line of events.jsonl with EVENT_MARK until `stop` is set."""
    while True:
        finished = stop.wait(2.0)
        try:
            with open(events_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\\n"):
                break
            offset += len(raw)
            if raw.strip():  # one write per line, so other threads' output cannot split it
                sys.stdout.write(EVENT_MARK + raw.decode().strip() + "\\n")
                sys.stdout.flush()
        if finished:
            return


def main(argv):
    run_dir = Path(argv[1] if len(argv) > 1 else os.environ.get("CARL_RUN_DIR", "carl-run-" + NAME)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / "spec.json"
    if not spec_path.exists():
        spec_path.write_text(SPEC_JSON)
    relay = os.environ.get("CARL_RELAY_EVENTS") == "1"
    stop = threading.Event()
    thread = threading.Thread(target=relay_events, args=(run_dir / "events.jsonl", stop), daemon=True)
    if relay:
        thread.start()
    sys.argv = ["carl_engine.run", str(run_dir)]
    code = 0
    try:
        runpy.run_module("carl_engine.run", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        if relay:
            stop.set()
            thread.join(timeout=10)
            result = run_dir / "result.json"
            if result.exists():
                sys.stdout.write(RESULT_MARK + json.dumps(json.loads(result.read_text())) + "\\n")
                sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''


def runtime_dependencies() -> list[str]:
    """CARL Studio's own runtime requirements, with their version ranges, from the installed metadata.

    Returns:
        PEP 508 strings without extras-only requirements (ray, anthropic, test tools).
    """
    from packaging.requirements import Requirement

    found = []
    for line in metadata.requires(DISTRIBUTION) or []:
        req = Requirement(line)
        if req.marker is not None and "extra" in str(req.marker):
            continue
        found.append(str(req))
    return found


def carl_source(source: str | None = None) -> str:
    """The requirement that installs CARL Studio itself on the remote side.

    Args:
        source: a PEP 508 requirement (`carl-studio>=0.1`), a URL or path to a wheel or git
            repo; default `$CARL_BUNDLE_SOURCE`, else `carl-studio==<installed version>`.

    Returns:
        A PEP 508 string naming `carl-studio`.
    """
    import os

    source = (source or os.environ.get("CARL_BUNDLE_SOURCE") or "").strip()
    if not source:
        return f"{DISTRIBUTION}=={metadata.version(DISTRIBUTION)}"
    if source.startswith(DISTRIBUTION):
        return source
    if "://" in source or source.startswith(("/", "./", "~")) or source.endswith((".whl", ".tar.gz")):
        return f"{DISTRIBUTION} @ {source}"
    raise InvalidSpecError(
        "source",
        "must be a carl-studio requirement, a URL or a path to a wheel",
        got=source,
        hint="e.g. git+https://github.com/you/carl-studio@main",
    )


def metadata_block(dependencies: list[str]) -> str:
    """The PEP 723 `# /// script` block for `dependencies`."""
    lines = ["# /// script", f'# requires-python = "{_REQUIRES_PYTHON}"', "# dependencies = ["]
    lines += [f"#     {json.dumps(dep)}," for dep in dependencies]
    lines += ["# ]", "# ///"]
    return "\n".join(lines)


def render_bundle(spec: dict[str, Any], *, name: str, source: str | None = None) -> str:
    """The bundle's text for `spec` (see the module docstring).

    Raises:
        InvalidSpecError: `spec` is not a JSON object, or `name` is not a plain file name.
    """
    if not isinstance(spec, dict):
        raise InvalidSpecError("spec", "must be a JSON object (a mapping)", got=type(spec).__name__)
    if not _NAME_OK.match(name):
        raise InvalidSpecError("name", "letters, digits, '.', '_' or '-', at most 81 characters", got=name)
    try:
        spec_json = json.dumps(spec, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSpecError("spec", f"must be JSON-serialisable ({exc})") from None
    deps = [carl_source(source), *runtime_dependencies()]
    return _SCRIPT.format(
        metadata=metadata_block(deps),
        name=name,
        filename=f"carl-job-{name}.py",
        spec_json=spec_json,
        event_mark=EVENT_MARK,
        result_mark=RESULT_MARK,
    )


def default_name(spec: Any) -> str:
    """`<kind>-<first 8 hex digits of the spec's SHA-256>`, e.g. `train-1f2e3d4c` ("spec" when not a mapping)."""
    if not isinstance(spec, dict):
        return "spec"
    kind = re.sub(r"[^A-Za-z0-9._-]", "-", str(spec.get("kind", "train")))[:40] or "job"
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{kind}-{digest}"


def write_bundle(spec: dict[str, Any], dest: str | Path, *, name: str | None = None, source: str | None = None) -> Path:
    """Write the self-contained script that runs `spec` with `uv run`.

    Args:
        spec: the job's spec (what goes to spec.json; may carry "kind").
        dest: a folder (the script is written inside it as `carl-job-<name>.py`) or a `.py` path.
        name: names the script and its default run dir; default `<kind>-<8 hex of the spec's hash>`.
        source: where the remote side gets CARL Studio (see `carl_source`).

    Returns:
        The script's path.

    Raises:
        InvalidSpecError: a spec that is not a JSON object, a bad name or source.
    """
    name = name or default_name(spec)
    text = render_bundle(spec, name=name, source=source)
    dest = Path(dest).expanduser()
    path = dest if dest.suffix == ".py" else dest / f"carl-job-{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def read_metadata(text: str) -> dict[str, Any]:
    """Parse the PEP 723 `script` block of a bundle's text (the reference regex of PEP 723)."""
    import tomllib

    block = re.search(r"(?m)^# /// script$\s(?P<content>(^#(| .*)$\s)+)^# ///$", text)
    if block is None:
        raise InvalidSpecError("bundle", "has no `# /// script` metadata block")
    content = "".join(line[2:] if line.startswith("# ") else line[1:] for line in block["content"].splitlines(True))
    return tomllib.loads(content)


def replay_relay(lines: list[str], run_dir: RunDir) -> tuple[int, bool]:
    """Rewrite events.jsonl (and result.json, once relayed) in `run_dir` from relayed log lines.

    Args:
        lines: every log line of the job so far, in order; lines without a mark are ignored.
        run_dir: the local run dir; its events.jsonl is replaced atomically by the relayed events.

    Returns:
        (number of events relayed, whether a result was found).
    """
    events: list[str] = []
    result: RunResult | None = None
    for line in lines:
        # a mark may follow other output on the same line (a progress bar ending in \r)
        for mark in (EVENT_MARK, RESULT_MARK):
            at = line.find(mark)
            if at < 0:
                continue
            payload = line[at + len(mark) :].strip()
            try:
                if mark == EVENT_MARK:
                    events.append(json.dumps(json.loads(payload)) + "\n")
                else:
                    result = RunResult.model_validate_json(payload)
            except ValueError:  # a line cut short or mangled in transit: skip it
                continue
    run_dir.path.mkdir(parents=True, exist_ok=True)
    if events:
        tmp = run_dir.events_path.with_name(".events.jsonl.relay.tmp")
        tmp.write_text("".join(events))
        tmp.replace(run_dir.events_path)
    if result is not None:
        run_dir.write_result(result)
    return len(events), result is not None
