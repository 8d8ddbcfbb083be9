"""The adversarial corpus: cases, how each one is run, and how its outcome is told.

A case attacks one algorithm (through QGIS Processing, as a user of the Toolbox or qgis_process
meets it) or the Python API, in a folder of its own holding a fresh copy of a small simulated pair
and everything made from it (:func:`conftest.mini_set`). Every file in that folder before the run is
watched: changed, it is an input modified; gone, data lost. The run's answer is then judged against
what the case expects:

* ``refuse``: an error of the plugin (QgsProcessingException, or a SarStereoError from the API)
  whose message matches the case's pattern (it names the file or field and says what to do);
* ``warn``: a result with a warning matching the pattern, or a refusal matching it;
* ``succeed``: a result that passes the case's check.

Outcome categories, worst first: data loss, input modified, raw traceback, crash/hang, silent wrong
result, unclear message, clean. A run that answered with a Python exception other than the plugin's
(or a QGIS "There were errors executing the algorithm" with a traceback in the log) is a raw
traceback; one that timed out or died on a signal a crash/hang; a run that should have been refused
or warned about but succeeded in silence, or succeeded with a result failing the check, a silent
wrong result; a refusal whose message does not match, an unclear message. Temporaries or outputs
left behind by a refused run count as data loss (something that looks like a result and is not).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CATEGORIES = ("data loss", "input modified", "raw traceback", "crash/hang", "silent wrong result",
              "unclear message", "clean")
ROOT = Path(__file__).resolve().parents[2]
TEMPORARY = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.(partial|replaced|keeping)")
CASES = []
OUTCOMES = []  # (case id, algorithm, category, detail), in run order: what the summary prints
_TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Case:
    id: str
    algorithm: str  # a sarstereo algorithm id, or "api"
    what: str
    run: object  # run(ctx) -> Answer
    expect: str  # "refuse" | "warn" | "succeed" | "either"
    pattern: str = ""  # what a refusal or warning must say (regex, case-insensitive)
    check: object = None  # check(ctx, answer) -> None or a string saying what is wrong
    changes: tuple = ()  # files (relative to the case folder) the run may legitimately change or replace
    needs_qgis: bool = False
    timeout: float = 120.0


@dataclass
class Answer:
    """What a run gave: a value, or an error; with the warnings and messages it emitted."""

    value: object = None
    error: BaseException = None
    error_text: str = ""
    raw: bool = False  # the error was not the plugin's own
    crashed: str = ""  # "timeout", "signal N", ...
    warnings: list = field(default_factory=list)
    messages: list = field(default_factory=list)

    @property
    def ok(self):
        return self.error is None and not self.crashed and not self.error_text


def case(algorithm, what, *, refuse=None, warn=None, succeed=None, either=None, check=None, changes=(),
         timeout=120.0):
    """Register the decorated function (ctx -> Answer) as a case. Exactly one of ``refuse``,
    ``warn``, ``succeed`` (True or a check) or ``either`` (a refusal pattern; success then passes
    ``check``) says what is right."""
    def register(fn):
        if refuse is not None:
            expect, pattern = "refuse", refuse
        elif warn is not None:
            expect, pattern = "warn", warn
        elif either is not None:
            expect, pattern = "either", either
        else:
            expect, pattern = "succeed", ""
        test = check if check is not None else (succeed if callable(succeed) else None)
        CASES.append(Case(f"{algorithm}-{fn.__name__}", algorithm, what, fn, expect, pattern, test, tuple(changes),
                          algorithm != "api", timeout))
        return fn
    return register


# ---------------------------------------------------------------- running
class Ctx:
    """A case's folder ``d`` (a Path holding the copied set) and the ways to run an attack."""

    def __init__(self, folder, base):
        self.d = Path(folder)
        self.base = base  # the session's mini set (read only; never handed to a run)
        self.before = None  # the folder as the run found it (the case's own inputs made)

    def _start(self):
        """Note every file present as the run starts: the inputs it must leave as they are."""
        if self.before is None:
            self.before = snapshot(self.d)

    def __truediv__(self, name):
        return self.d / name

    def qgis(self, algorithm, **params):
        """processing.run of sarstereo:<algorithm> with a feedback that records every message."""
        import processing
        from qgis.core import QgsProcessingException
        self._start()
        feedback = _recording_feedback()
        answer = Answer()
        try:
            answer.value = processing.run(f"sarstereo:{algorithm}", {k: _param(v) for k, v in params.items()},
                                          feedback=feedback)
        except QgsProcessingException as exc:
            answer.error, answer.error_text = exc, str(exc)
        except BaseException as exc:  # noqa: BLE001 - the corpus judges what came out
            answer.error, answer.error_text, answer.raw = exc, f"{type(exc).__name__}: {exc}", True
        answer.warnings, answer.messages = feedback.warnings, feedback.messages
        if any(_TRACEBACK in m for m in feedback.messages + [answer.error_text]) or \
                "There were errors executing the algorithm" in answer.error_text:
            answer.raw = True
        return answer

    def api(self, fn, *args, **kwargs):
        """Call a core function; warnings are those its result carries."""
        from sar_stereo_plugin.core.errors import SarStereoError
        self._start()
        answer = Answer()
        try:
            answer.value = fn(*args, **kwargs)
        except SarStereoError as exc:
            answer.error, answer.error_text = exc, str(exc)
        except BaseException as exc:  # noqa: BLE001
            answer.error, answer.error_text, answer.raw = exc, f"{type(exc).__name__}: {exc}", True
        answer.warnings = list(getattr(answer.value, "warnings", None) or [])
        return answer

    def isolated(self, code, timeout=60, memory_gb=4, qgis=False, nobody=False):
        """Run Python ``code`` (the core API, or processing with ``qgis``) in a fresh interpreter
        limited to ``memory_gb`` and ``timeout`` seconds (with ``nobody`` as the user nobody, for
        whom folders can be read-only); its last stdout line is JSON {"value"|"error"|"raw"|
        "warnings"} written by the wrapper."""
        self._start()
        script = _ISOLATED_QGIS if qgis else _ISOLATED_API
        body = script.replace("BODY", textwrap.indent(textwrap.dedent(code), "    "))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "CASE_DIR": str(self.d)}
        limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_gb << 30}, {memory_gb << 30}))\n"
        scratch = tempfile.mkdtemp(prefix="sarstereo-case-") if nobody else None
        if nobody:  # nobody's matplotlib cache, and a way through the case folder's parents
            os.chmod(scratch, 0o777)
            env.update(HOME=scratch, MPLCONFIGDIR=scratch)
        try:
            with _traversable(self.d if nobody else None):
                out = subprocess.run([sys.executable, "-c", limit + body], capture_output=True, text=True,
                                     timeout=timeout, env=env, cwd=str(self.d),
                                     preexec_fn=_become_nobody if nobody else None)
        except subprocess.TimeoutExpired:
            return Answer(crashed=f"no answer within {timeout} s (hang)")
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        lines = out.stdout.strip().splitlines()
        if out.returncode < 0 or not lines or not lines[-1].startswith("{"):
            tail = (out.stderr.strip().splitlines() or [""])[-1]
            return Answer(crashed=f"exit {out.returncode}: {tail[:300]}")
        doc = json.loads(lines[-1])
        raw = doc.get("raw", False) or _TRACEBACK in doc.get("error", "")
        answer = Answer(value=doc.get("value"), error_text=doc.get("error", ""), raw=raw,
                        warnings=doc.get("warnings", []), messages=doc.get("messages", []) + out.stderr.splitlines())
        if answer.error_text:
            answer.error = RuntimeError(answer.error_text)
        return answer


@contextmanager
def _traversable(folder):
    """Let other users pass through ``folder``'s parents (pytest makes them 0700) while inside."""
    changed = []
    try:
        for parent in ([] if folder is None else list(Path(folder).parents)[::-1] + [Path(folder)]):
            mode = parent.stat().st_mode & 0o777
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
                changed.append((parent, mode))
        yield
    finally:
        for parent, mode in reversed(changed):
            os.chmod(parent, mode)


def _become_nobody():
    os.setgid(65534)
    os.setuid(65534)


def _param(value):
    return str(value) if isinstance(value, Path) else value


def _recording_feedback():
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings, self.messages = [], []

        def pushWarning(self, text):  # noqa: N802 - QGIS API
            self.warnings.append(text)
            self.messages.append(text)

        def reportError(self, text, fatal=False):  # noqa: N802 - QGIS API
            self.messages.append(text)

        def pushInfo(self, text):  # noqa: N802 - QGIS API
            self.messages.append(text)

        def pushConsoleInfo(self, text):  # noqa: N802 - QGIS API
            self.messages.append(text)

        def pushDebugInfo(self, text):  # noqa: N802 - QGIS API
            self.messages.append(text)

        def pushCommandInfo(self, text):  # noqa: N802 - QGIS API
            self.messages.append(text)
    return Recording()


_ISOLATED_API = """
import json, os, sys
from pathlib import Path
D = Path(os.environ["CASE_DIR"])
def main():
    from sar_stereo_plugin.core.errors import SarStereoError
    try:
        value = run()
    except SarStereoError as exc:
        return {"error": str(exc)}
    except BaseException as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "raw": True}
    return {"value": repr(value)[:200], "warnings": list(getattr(value, "warnings", None) or [])}
def run():
BODY
print(json.dumps(main()))
"""

_ISOLATED_QGIS = """
import json, os, sys
from pathlib import Path
D = Path(os.environ["CASE_DIR"])
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
import processing
from processing.core.Processing import Processing
Processing.initialize()
import sar_stereo_plugin
class Iface:
    def __getattr__(self, name):
        return lambda *a, **k: None
plugin = sar_stereo_plugin.classFactory(Iface())
plugin.initProcessing()
class Feedback(QgsProcessingFeedback):
    messages = []
    def reportError(self, text, fatal=False):
        self.messages.append(text)
    def pushWarning(self, text):
        self.messages.append(text)
feedback = Feedback()
def qgis(alg, **params):
    return processing.run("sarstereo:" + alg, {k: str(v) if isinstance(v, Path) else v for k, v in params.items()},
                          feedback=feedback)
def main():
    try:
        value = run()
    except QgsProcessingException as exc:
        raw = "There were errors" in str(exc) or any("Traceback" in m for m in feedback.messages)
        return {"error": str(exc), "raw": raw, "messages": feedback.messages}
    except BaseException as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "raw": True}
    return {"value": repr(value)[:200], "messages": feedback.messages}
def run():
BODY
print(json.dumps(main()))
"""


# ---------------------------------------------------------------- judging
def snapshot(folder):
    """{relative path: (size, sha1)} of every file under ``folder`` (links followed to files)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        try:
            if path.is_file() and not path.is_symlink():
                size = path.stat().st_size  # a huge (sparse) attack file: its size and time tell
                out[str(path.relative_to(folder))] = (size, _sha1(path) if size < 1 << 26 else path.stat().st_mtime_ns)
            elif path.is_symlink() or not path.exists():
                out[str(path.relative_to(folder))] = ("link", os.readlink(path) if path.is_symlink() else "")
        except OSError:
            continue
    return out


def _sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def temporaries(folder):
    """Temporaries of the atomic writers left anywhere under ``folder`` (and in /tmp of this case)."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*") if TEMPORARY.match(p.name))


def judge(case, ctx, answer):
    """(category, detail) of a finished run."""
    before = ctx.before if ctx.before is not None else {}
    after = snapshot(ctx.d)
    allowed = set(case.changes)
    gone = [p for p in before if p not in after and not _allowed(p, allowed)]
    changed = [p for p in before if p in after and after[p] != before[p] and not _allowed(p, allowed)]
    litter = temporaries(ctx.d)
    if gone:
        return "data loss", f"files gone: {gone[:5]}"
    if changed:
        return "input modified", f"files changed: {changed[:5]}"
    if answer.crashed:
        return "crash/hang", answer.crashed
    if answer.raw:
        return "raw traceback", answer.error_text[:400]
    if litter:
        return "data loss", f"temporaries left: {litter[:5]}"
    pattern = re.compile(case.pattern, re.I | re.S) if case.pattern else None
    if answer.ok:
        if not answer.error_text and case.expect in ("refuse",):
            said = [w for w in answer.warnings if pattern and pattern.search(w)]
            return ("clean", f"warned: {said[0][:200]}") if said else ("silent wrong result", "accepted in silence")
        if case.expect == "warn":
            said = [w for w in answer.warnings if pattern.search(w)]
            return ("clean", said[0][:300]) if said else (
                "silent wrong result", f"no warning matching {case.pattern!r}; warnings: {answer.warnings[:3]}")
        if case.check is not None:
            problem = case.check(ctx, answer)
            if problem:
                return "silent wrong result", problem
        return "clean", "succeeded"
    new = [p for p in after if p not in before and not TEMPORARY.match(Path(p).name)]
    if case.expect == "succeed":
        return "unclear message", f"refused what should work: {answer.error_text[:300]}"
    if new and case.expect in ("refuse", "warn", "either"):
        return "data loss", f"refused, yet wrote {new[:5]}"
    if pattern and not pattern.search(answer.error_text):
        return "unclear message", f"message does not match {case.pattern!r}: {answer.error_text[:400]}"
    return "clean", answer.error_text[:300]


def _allowed(path, allowed):
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)
