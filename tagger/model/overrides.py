r"""Reviewed corrections applied after the model: ``labels/overrides.yaml``.

A rule adds or removes one label of one head on every clause its ``pattern`` (a regular
expression) or one of its ``phrases`` matches. Rules are for what the model gets wrong and
a reviewer can state exactly ("算力券" is a voucher: measure ``grant``); they apply at once,
without retraining, in every path that tags (:func:`tagger.tagging.tag_clauses`)::

    rules:
      - id: first-purchase-procurement        # letters, digits, . _ -; unique
        phrases: [首购]                        # or  pattern: "首购|首用"
        head: measure
        add: procurement                      # or  remove: <label id>
        author: reviewer name
        why: 政府首购 is first-buyer procurement (guide, measure procurement)
        examples:                             # clause texts it was checked on; each must match
          - 对符合规定条件的人工智能产品实行政府首购制度。

Matching sees the clause as the model does (:func:`tagger.model.features.model_text`: full-width
digits and letters in ASCII, spaces next to Chinese removed). Rules apply in file order,
so a later ``remove`` can undo an earlier ``add``.

Patterns run on RE2 (``google-re2``), whose matching time is linear in the clause's length
whatever the pattern: with Python's backtracking ``re`` a rule like ``(x+x+)+y`` took
exponential time on a clause of x's, hanging ``tagger tag`` and, on the event loop, the whole
server (SIGTERM ignored). RE2 syntax is Python's minus backreferences (``\1``), lookahead and
lookbehind (``(?=``, ``(?!``, ``(?<=``, ``(?<!``), possessive and atomic forms and ``\Z``
(write ``\z`` or ``$``); ``\d``, ``\w``, ``\s`` and ``\b`` are ASCII-only (the clause is
matched with full-width digits and letters already in ASCII); ``$`` is the end of the clause.

Loading refuses a malformed file with one line (:class:`InvalidOverrides`) that names the file
(never its folder: the message is shown to API clients) and the rule: unknown keys, head or
label id, a bad, unsupported (see above) or empty-matching regular expression, one longer than
:data:`MAX_PATTERN_CHARS`, more than :data:`MAX_RULES` rules or a file over
:data:`MAX_FILE_BYTES`, a missing ``author``/``why``, an example the rule does not match.
``tagger labels overrides check`` (:func:`check_rules`) measures each rule on the labeled
corpus and refuses one below :data:`MIN_PRECISION`.

The file is part of the model's identity: records say ``<bundle version>+ov.<first 8 hex of
the file's sha256>`` when it holds rules. :func:`current_overrides` re-reads it when its
size, mtime or inode change (one ``stat`` per call), so a running server and the next CLI
run use an edited file. A missing file means no rules. The API stats and re-reads it in a
worker thread, never on its event loop, and pins the result for the request
(:func:`pin_overrides`, :func:`tagger.api.deps.fresh_overrides`).
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import re2
import yaml

from ..errors import TaggerError
from ..taxonomy import HEADS, MULTI_HEADS

__all__ = [
    "Rule",
    "Overrides",
    "InvalidOverrides",
    "NO_OVERRIDES",
    "load_overrides",
    "parse_overrides",
    "current_overrides",
    "pin_overrides",
    "RuleCheck",
    "check_rules",
    "MIN_PRECISION",
    "MODEL",
    "MAX_RULES",
    "MAX_PATTERN_CHARS",
    "MAX_FILE_BYTES",
]

MIN_PRECISION = 0.95
MODEL = "model"  # provenance of a label the model assigned
_KEYS = {"id", "pattern", "phrases", "head", "add", "remove", "author", "why", "examples"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
# Bounds on what one file may ask of every clause tagged: each rule is a regular-expression
# search per clause, and a reload parses the whole file.
MAX_RULES = 10_000
MAX_PATTERN_CHARS = 2_000  # a 'pattern', or all of a rule's 'phrases' joined with '|'
MAX_FILE_BYTES = 16 * 1024 * 1024


def _file_name(path) -> str:
    """What messages call the file: its name, never the folder (an API client sees them)."""
    return Path(str(path)).name or str(path)


class InvalidOverrides(TaggerError):
    def __init__(self, path: str, reason: str):
        self.path = path  # as given (logs, callers); the message holds the file name only
        self.reason = reason
        super().__init__(f"overrides file {_file_name(path)}: {reason}")


def _re2_options() -> "re2.Options":
    opts = re2.Options()
    opts.log_errors = False  # RE2 would also print a bad pattern to stderr: the message is ours
    opts.never_capture = True  # only the whole match is used (the evidence span)
    return opts


_RE2_OPTIONS = _re2_options()


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _compile(pattern: str, where: str, path):
    """An RE2 regular expression (linear-time matching, see the module doc) or InvalidOverrides."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        msg = exc.args[0] if exc.args else ""
        msg = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
        raise _fail(
            path,
            f"{where}: bad regular expression {_short(pattern)!r} ({msg}); patterns use RE2 syntax, which matches in linear time: "
            "no backreferences, lookahead/lookbehind or possessive quantifiers",
        ) from None


@dataclass(frozen=True)
class Rule:
    id: str
    head: str
    action: str  # "add" | "remove"
    label: str
    regex: "re2._Regexp"  # RE2: ``finditer``/``search``/``pattern`` as re.Pattern
    author: str
    why: str
    examples: tuple[str, ...]
    # When the pattern is an alternation of plain strings (every 'phrases' rule): those
    # strings. The pattern matches exactly where one of them occurs, so a clause holding
    # none of them needs no RE2 call (most clauses, for most rules).
    literals: tuple[str, ...] | None = None

    @property
    def provenance(self) -> str:
        return f"override:{self.id}"

    def spans(self, text: str, limit: int = 3, norm: str | None = None) -> list[tuple[int, int]]:
        """Where the rule matches, as offsets into ``text`` (at most ``limit``); ``norm``:
        ``model_text(text)``, when already computed."""
        from .evidence import match_spans

        return match_spans(self.regex, text, limit, norm)

    def matches(self, text: str) -> bool:
        return bool(self.spans(text, 1))


@dataclass(frozen=True)
class Overrides:
    rules: tuple[Rule, ...] = ()
    sha256: str = ""  # of the file's bytes; "" without a file
    path: str = ""

    def __bool__(self) -> bool:
        return bool(self.rules)

    def version(self, bundle_version: str) -> str:
        """The version stamp of records tagged by this bundle with these rules."""
        return f"{bundle_version}+ov.{self.sha256[:8]}" if self.rules else bundle_version

    def apply(self, text: str, labels: Mapping[str, Sequence[str]], order: Mapping[str, Sequence[str]]):
        """``(labels, provenance, added)`` after the rules: labels per head (in ``order``, the
        bundle's label order), ``{head: {label: "model" | "override:<id>"}}`` for every
        assigned label, and ``{(head, label): [(start, end), ...]}`` for labels a rule added
        (where it matched, for the evidence)."""
        prov = {h: {lab: MODEL for lab in labels.get(h, ())} for h in HEADS}
        added: dict[tuple[str, str], list[tuple[int, int]]] = {}
        norm = None  # the text as the model reads it, computed once for all rules
        for rule in self.rules:
            have = prov[rule.head]
            if (rule.action == "add") == (rule.label in have):
                continue  # nothing to change: skip the match
            if norm is None:
                from .features import model_text

                norm = model_text(text)
            if rule.literals is not None and not any(lit in norm for lit in rule.literals):
                continue  # none of its strings: RE2 would find no match
            spans = rule.spans(text, norm=norm)
            if not spans:
                continue
            if rule.action == "add":
                have[rule.label] = rule.provenance
                added[(rule.head, rule.label)] = spans
            else:
                del have[rule.label]
                added.pop((rule.head, rule.label), None)
        out = {h: [lab for lab in order[h] if lab in prov[h]] for h in HEADS}
        # Labels a model knows but `order` lacks cannot occur: rules are checked against it.
        return out, {h: {lab: prov[h][lab] for lab in out[h]} for h in HEADS}, added


NO_OVERRIDES = Overrides()


def _fail(path, msg) -> InvalidOverrides:
    return InvalidOverrides(str(path), msg)


def _text_field(raw: dict, key: str, where: str, path) -> str:
    v = raw.get(key)
    if not isinstance(v, str) or not v.strip():
        raise _fail(path, f"{where}: '{key}' must be a non-empty string")
    return v.strip()


def _rule(raw, n: int, labels: Mapping[str, Sequence[str]], path) -> Rule:
    where = f"rule {n}"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where}: expected a mapping with id, pattern or phrases, head, add or remove, author, why, examples")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise _fail(path, f"{where}: 'id' must be 1-80 letters, digits, '.', '_' or '-' (got {rid!r})")
    where = f"rule {rid!r}"
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise _fail(path, f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    head = raw.get("head")
    # kind is single-label: a rule that adds or removes one would leave a clause with none or two.
    if head not in MULTI_HEADS:
        raise _fail(path, f"{where}: 'head' must be one of {', '.join(MULTI_HEADS)} (got {head!r})")
    if ("add" in raw) == ("remove" in raw):
        raise _fail(path, f"{where}: give exactly one of 'add' or 'remove'")
    action = "add" if "add" in raw else "remove"
    label = raw[action]
    if label not in labels[head]:
        raise _fail(path, f"{where}: unknown {head} label id {label!r} (known: {', '.join(labels[head])})")
    if ("pattern" in raw) == ("phrases" in raw):
        raise _fail(path, f"{where}: give exactly one of 'pattern' (a regular expression) or 'phrases' (a list)")
    if "pattern" in raw:
        pat = raw["pattern"]
        if not isinstance(pat, str) or not pat:
            raise _fail(path, f"{where}: 'pattern' must be a non-empty string")
        if len(pat) > MAX_PATTERN_CHARS:
            raise _fail(path, f"{where}: 'pattern' has {len(pat)} characters; the limit is {MAX_PATTERN_CHARS}")
        regex = _compile(pat, where, path)
    else:
        phrases = raw["phrases"]
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise _fail(path, f"{where}: 'phrases' must be a non-empty list of non-empty strings")
        # Longest first, so that the match (the evidence) is the longest phrase present.
        pat = "|".join(re2.escape(p.strip()) for p in sorted(set(phrases), key=lambda p: (-len(p), p)))
        if len(pat) > MAX_PATTERN_CHARS:
            raise _fail(path, f"{where}: 'phrases' make a pattern of {len(pat)} characters; the limit is {MAX_PATTERN_CHARS} (split the rule)")
        regex = _compile(pat, where, path)
    if regex.search(""):
        raise _fail(path, f"{where}: the pattern matches the empty string (it would match every clause)")
    author = _text_field(raw, "author", where, path)
    why = _text_field(raw, "why", where, path)
    examples = raw.get("examples")
    if not isinstance(examples, list) or not examples or not all(isinstance(e, str) and e.strip() for e in examples):
        raise _fail(path, f"{where}: 'examples' must be a non-empty list of the clause texts the rule was checked on")
    rule = Rule(rid, head, action, label, regex, author, why, tuple(examples), _literals(regex.pattern))
    for k, ex in enumerate(examples, 1):
        if not rule.matches(ex):
            raise _fail(path, f"{where}: example {k} does not match the rule ({ex[:40]!r})")
    return rule


_META = frozenset("\\.^$*+?()[]{}|")


def _literals(pattern: str) -> tuple[str, ...] | None:
    """The alternatives of ``pattern`` if it is ``a|b|...`` of plain strings (no RE2 syntax
    but escaped characters that stand for themselves), else None."""
    out, lit, i = [], [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            # re2.escape puts \ before every character but [A-Za-z0-9_]; an escaped ASCII
            # letter or digit is syntax (\d, \b, \x41, \Q ...): not a plain string.
            if not nxt or (nxt.isascii() and (nxt.isalnum() or nxt == "_")):
                return None
            lit.append(nxt)
            i += 2
            continue
        if ch == "|":
            if not lit:
                return None
            out.append("".join(lit))
            lit = []
        elif ch in _META:
            return None
        else:
            lit.append(ch)
        i += 1
    if not lit:
        return None
    out.append("".join(lit))
    return tuple(out)


# libyaml when PyYAML has it: a 10,000-rule file parses ~4x faster than in pure Python.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_overrides(data: bytes, labels: Mapping[str, Sequence[str]], path: str = "<overrides>") -> Overrides:
    """Rules from the bytes of an overrides file; ``labels``: valid label ids per head."""
    if len(data) > MAX_FILE_BYTES:
        raise _fail(path, f"larger than the limit of {MAX_FILE_BYTES} bytes")
    try:
        raw = yaml.load(data.decode("utf-8"), Loader=_YAML_LOADER) if data.strip() else None
    except UnicodeDecodeError:
        raise _fail(path, "not UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(path, f"not valid YAML{at} ({getattr(exc, 'problem', None) or type(exc).__name__})") from None
    if raw is None:
        return Overrides((), hashlib.sha256(data).hexdigest(), path)
    if not isinstance(raw, dict) or set(raw) - {"rules"}:
        raise _fail(path, "expected a mapping with one key, 'rules' (a list of rules)")
    items = raw.get("rules") or []
    if not isinstance(items, list):
        raise _fail(path, "'rules' must be a list")
    if len(items) > MAX_RULES:
        raise _fail(path, f"{len(items)} rules; the limit is {MAX_RULES} (each is a search in every clause tagged)")
    rules = [_rule(r, n, labels, path) for n, r in enumerate(items, 1)]
    seen: set[str] = set()
    for r in rules:
        if r.id in seen:
            raise _fail(path, f"rule id {r.id!r} is used twice")
        seen.add(r.id)
    return Overrides(tuple(rules), hashlib.sha256(data).hexdigest(), path)


def _taxonomy_labels() -> dict[str, tuple[str, ...]]:
    from ..config import get_settings
    from ..taxonomy import load_taxonomy

    return load_taxonomy(get_settings().taxonomy_file).labels


def load_overrides(path: Path | str, labels: Mapping[str, Sequence[str]] | None = None) -> Overrides:
    """Read and check an overrides file (no rules if it does not exist). ``labels``: the
    valid ids per head (default: the taxonomy's)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # a larger file is refused without reading it all
    except FileNotFoundError:
        return NO_OVERRIDES
    except OSError as exc:
        raise _fail(path, exc.strerror or type(exc).__name__) from None
    return parse_overrides(data, labels if labels is not None else _taxonomy_labels(), str(path))


# (path, labels) -> (the file's stamp, its rules or the (path, reason) of its InvalidOverrides)
_CACHE: dict[tuple, tuple[tuple, "Overrides | tuple[str, str]"]] = {}
_LOCK = threading.Lock()
# Rules (or the error) pinned for the current context by pin_overrides: an API request's task.
_PINNED: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("tagger_overrides_pinned", default=None)


def _cache_key(path: Path | str, labels: Mapping[str, Sequence[str]] | None) -> tuple:
    return (str(path), None if labels is None else tuple((h, tuple(labels[h])) for h in HEADS))


def _result(got: "Overrides | tuple[str, str]") -> Overrides:
    if isinstance(got, Overrides):
        return got
    raise InvalidOverrides(*got)  # a new exception each time: a cached one would grow its traceback


def current_overrides(path: Path | str, labels: Mapping[str, Sequence[str]] | None = None) -> Overrides:
    """:func:`load_overrides`, re-read only when the file changed (size, mtime, inode).

    One ``stat`` per call: callers call it once per batch or request, which is what makes an
    edit apply "at once" in a running server. A malformed edit raises InvalidOverrides on
    every call until it is fixed (never silently keeps the old rules); the failure is cached
    like rules are, so a broken file is parsed once, not once per request. Concurrent callers
    after an edit wait for one reload. Rules pinned for this context by
    :func:`pin_overrides` are returned (or their error raised) without touching the file."""
    key = _cache_key(path, labels)
    pinned = _PINNED.get()
    if pinned is not None and pinned[0] == key:
        return _result(pinned[1])
    path = Path(path)
    try:
        st = os.stat(path)
        stamp: tuple = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    except FileNotFoundError:
        return NO_OVERRIDES
    except OSError as exc:
        raise _fail(path, exc.strerror or type(exc).__name__) from None
    hit = _CACHE.get(key)
    if hit is None or hit[0] != stamp:
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is None or hit[0] != stamp:  # not reloaded by the caller we waited for
                try:
                    got: Overrides | tuple[str, str] = load_overrides(path, labels)
                except InvalidOverrides as exc:
                    got = (exc.path, exc.reason)
                hit = _CACHE[key] = (stamp, got)
    return _result(hit[1])


def pin_overrides(path: Path | str, labels: Mapping[str, Sequence[str]] | None, result: "Overrides | InvalidOverrides") -> None:
    """Make :func:`current_overrides` (``path``, ``labels``) return ``result`` (or raise it, an
    InvalidOverrides) in the current context, without a ``stat``: for the rest of an API
    request (an asyncio task, whose context is its own) once the rules were read off the
    event loop; the request also sees one version of the file throughout."""
    got = result if isinstance(result, Overrides) else (result.path, result.reason)
    _PINNED.set((_cache_key(path, labels), got))


# --- tagger labels overrides check ---------------------------------------------------------


@dataclass
class RuleCheck:
    rule: Rule
    hits: int = 0
    agree: int = 0
    counterexamples: list[dict] = field(default_factory=list)  # clauses where gold disagrees
    changes: int = 0  # hits where the model's own output differs from what the rule sets
    fixes: int = 0  # ... and gold agrees with the rule: model misses the rule repairs

    @property
    def precision(self) -> float | None:
        return self.agree / self.hits if self.hits else None

    @property
    def accepted(self) -> bool:
        # No hits: the precision is unknown, so the rule is not shown to be safe.
        return self.hits > 0 and self.agree / self.hits >= MIN_PRECISION


def check_rules(overrides: Overrides, clauses: Iterable[dict], model_labels=None) -> list[RuleCheck]:
    """Each rule on its own against gold labels: a hit agrees if gold has the label (``add``)
    or lacks it (``remove``). ``model_labels(clauses) -> [{head: [labels]} or None]``
    (optional) counts what the rule changes in the model's output and how many of those
    changes gold confirms (None: no prediction for that clause, not counted)."""
    clauses = list(clauses)
    out = []
    for rule in overrides.rules:
        rc = RuleCheck(rule)
        hits = [c for c in clauses if rule.matches(c["text"])]
        rc.hits = len(hits)
        for c in hits:
            gold_has = rule.label in (c.get(rule.head) or [])
            if gold_has == (rule.action == "add"):
                rc.agree += 1
            else:
                rc.counterexamples.append(c)
        if model_labels is not None and hits:
            for c, pred in zip(hits, model_labels(hits)):
                if pred is None:
                    continue
                model_has = rule.label in pred[rule.head]
                if model_has != (rule.action == "add"):
                    rc.changes += 1
                    if (rule.label in (c.get(rule.head) or [])) == (rule.action == "add"):
                        rc.fixes += 1
        out.append(rc)
    return out
