"""Edits that cannot fail to apply: a grammar built from the files themselves.

The `code` tool (agx/execution/code_tool.py) shows Delta's engine the current text of some
files and asks for edits in this format:

    ### path/of/file.py
    @@
    -an exact line of the file that occurs in it only once
    -the line after it (as many consecutive lines as the edit replaces)
    +the new lines that replace them
    ### path/of/new_file.py
    =
    +every line of the whole (new) file

The GBNF grammar generated here admits only outputs that apply: a hunk's first "-" line is one of
the file's unique non-blank lines (so the hunk's place is unambiguous), each further "-" line is
the file's next line, hunks of a file go strictly downwards without overlapping, files appear
in the order given and at most once, and "=" (whole-file rewrite) is the only form for a file
that does not exist yet. "+" lines are free text of any length. `parse_edits` reads exactly the
language of that grammar, so nothing the grammar allows is rejected when applying.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FILE_LINES = 4000  # beyond this the grammar (a rule per line) gets slow to compile


class EditFormatError(Exception):
    """Model output that is not in the edit language (remote engines, which get no grammar)."""


@dataclass
class FileView:
    """One file as the model sees it: its path and current text (None: does not exist yet)."""

    path: str
    text: str | None

    def __post_init__(self) -> None:
        self.lines: list[str] = []
        self.trailing_newline = True
        if self.text is not None:
            self.lines = self.text.split("\n")
            self.trailing_newline = self.text.endswith("\n") or self.text == ""
            if self.lines and self.lines[-1] == "":
                self.lines.pop()
        counts: dict[str, int] = {}
        for line in self.lines:
            counts[line] = counts.get(line, 0) + 1
        # 0-based indexes of the lines a hunk may start at: non-blank and unique in the file.
        self.anchors: list[int] = [i for i, line in enumerate(self.lines) if line.strip() and counts[line] == 1]
        self.anchor_at: dict[str, int] = {self.lines[i]: i for i in self.anchors}


@dataclass
class Hunk:
    start: int  # 0-based first replaced line
    end: int  # 0-based one past the last replaced line
    new_lines: list[str]


@dataclass
class FileEdit:
    path: str
    rewrite: list[str] | None = None  # whole-file content lines ("=")
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def created(self) -> bool:
        return self.rewrite is not None


# -- grammar --------------------------------------------------------------------------------
def _literal(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _file_rules(k: int, view: FileView) -> list[str]:
    """Rules for file k: `f{k}` derives one "### path" block of it."""
    header = _literal(f"### {view.path}\n")
    if view.text is None or not view.anchors:
        return [f"f{k} ::= {header} \"=\\n\" plus"]
    rules = [f"f{k} ::= {header} ( \"=\\n\" plus | \"@@\\n\" a{k}-0 )"]
    n = len(view.lines)
    nxt: dict[int, int | None] = {}  # for each position p, the first anchor >= p
    following = None
    anchors = set(view.anchors)
    for p in range(n, -1, -1):
        if p < n and p in anchors:
            following = p
        nxt[p] = following

    def after(end: int) -> str:
        """What may follow a hunk whose replaced lines end before `end` (0-based)."""
        a = nxt.get(end)
        return f"( \"@@\\n\" a{k}-{end} )?" if a is not None else ""

    # a{k}-{p}: a hunk starting at some anchor >= p. Defined for the p that are referenced.
    referenced = {0} | {i + 1 for i in range(n)}
    for p in sorted(referenced):
        a = nxt.get(p)
        if a is None:
            continue
        alts = [f"s{k}-{a}"]
        if nxt.get(a + 1) is not None:
            alts.append(f"a{k}-{a + 1}")
        rules.append(f"a{k}-{p} ::= " + " | ".join(alts))
    # s{k}-{i}: "-" line i, then either line i+1 of the same hunk or the new lines and what follows.
    for i in range(n):
        lit = _literal(f"-{view.lines[i]}\n")
        tail = f"plus {after(i + 1)}".strip()
        if i + 1 < n:
            rules.append(f"s{k}-{i} ::= {lit} ( s{k}-{i + 1} | {tail} )")
        else:
            rules.append(f"s{k}-{i} ::= {lit} {tail}")
    return rules


def edit_grammar(views: list[FileView]) -> str:
    """The GBNF of every output that applies cleanly to these files (at least one file block)."""
    if not views:
        raise ValueError("no files to edit")
    m = len(views)
    rules = []
    for k in range(m):
        x_alts = [f"f{k} y{k + 1}" if k + 1 < m else f"f{k}"]
        if k + 1 < m:
            x_alts.append(f"x{k + 1}")
        rules.append(f"x{k} ::= " + " | ".join(x_alts))
        if k > 0:
            rules.append(f"y{k} ::= f{k}? " + (f"y{k + 1}" if k + 1 < m else "").rstrip())
    rules.insert(0, "root ::= x0")
    rules.append('plus ::= ( "+" [^\\n]* "\\n" )*')
    for k, view in enumerate(views):
        rules.extend(_file_rules(k, view))
    return "\n".join(r.rstrip() for r in rules) + "\n"


# -- parsing and applying ---------------------------------------------------------------------
def complete_part(output: str) -> str:
    """The output up to its last complete line (a generation cut by max_tokens ends mid-line)."""
    cut = output.rfind("\n")
    return output[: cut + 1] if cut >= 0 else ""


def parse_edits(output: str, views: list[FileView]) -> list[FileEdit]:
    """Read model output in the edit language; EditFormatError says where it is not."""
    lines = output.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    by_path = {v.path: (k, v) for k, v in enumerate(views)}
    edits: list[FileEdit] = []
    pos = 0
    last_file = -1

    def plus_lines() -> list[str]:
        nonlocal pos
        got = []
        while pos < len(lines) and lines[pos].startswith("+"):
            got.append(lines[pos][1:])
            pos += 1
        return got

    while pos < len(lines):
        line = lines[pos]
        if not line.startswith("### "):
            raise EditFormatError(f"output line {pos + 1}: expected '### <path>', got {line[:60]!r}")
        path = line[4:]
        if path not in by_path:
            raise EditFormatError(f"output line {pos + 1}: {path!r} is not one of the task's files")
        k, view = by_path[path]
        if k <= last_file:
            raise EditFormatError(f"output line {pos + 1}: {path!r} out of order or repeated")
        last_file = k
        pos += 1
        edit = FileEdit(path)
        mode = lines[pos] if pos < len(lines) else None
        if mode == "=":
            pos += 1
            edit.rewrite = plus_lines()
        elif mode == "@@" and view.text is not None and view.anchors:
            floor = 0
            while pos < len(lines) and lines[pos] == "@@":
                pos += 1
                if pos >= len(lines) or not lines[pos].startswith("-"):
                    raise EditFormatError(f"output line {pos + 1}: a hunk starts with a '-' line of the file")
                first = lines[pos][1:]
                start = view.anchor_at.get(first)
                if start is None:
                    raise EditFormatError(f"output line {pos + 1}: {first[:60]!r} is not a line that occurs once in {path}")
                if start < floor:
                    raise EditFormatError(f"output line {pos + 1}: hunks of {path} must go down the file without overlapping")
                end = start
                while pos < len(lines) and lines[pos].startswith("-"):
                    if end >= len(view.lines) or lines[pos][1:] != view.lines[end]:
                        raise EditFormatError(f"output line {pos + 1}: '-' lines must be consecutive lines of {path}")
                    end += 1
                    pos += 1
                edit.hunks.append(Hunk(start, end, plus_lines()))
                floor = end
        else:
            raise EditFormatError(f"output line {pos + 1}: expected '@@' or '=' after '### {path}'")
        edits.append(edit)
    if not edits:
        raise EditFormatError("the output holds no edit")
    return edits


def apply_file_edit(view: FileView, edit: FileEdit) -> str:
    """The file's new text. Hunks were checked against `view` by parse_edits."""
    if edit.rewrite is not None:
        return "".join(line + "\n" for line in edit.rewrite)
    lines = list(view.lines)
    for hunk in reversed(edit.hunks):  # bottom up: earlier line numbers stay valid
        lines[hunk.start:hunk.end] = hunk.new_lines
    text = "\n".join(lines)
    return text + "\n" if lines and view.trailing_newline else text


def describe(view: FileView, edit: FileEdit) -> str:
    if edit.rewrite is not None:
        verb = "rewrote" if view.text is not None else "created"
        return f"{verb} {edit.path} ({len(edit.rewrite)} lines)"
    removed = sum(h.end - h.start for h in edit.hunks)
    added = sum(len(h.new_lines) for h in edit.hunks)
    return f"edited {edit.path} ({len(edit.hunks)} hunk{'s' if len(edit.hunks) != 1 else ''}, -{removed} +{added} lines)"
