"""A runner for Dovecot imaptest's scripted tests (conformance/imaptest/).

The script language is described in conformance/imaptest/FORMAT.md. Where
FORMAT.md is silent, this runner follows what imaptest itself does, because
the scripts were written against it:

- `{{{` at the end of a line starts a multi-line literal that ends at a line
  beginning with `}}}`; its lines are joined with CRLF and the line break before
  `}}}` is not part of it. `~{{{` makes a literal8 whose lines are joined with a
  bare LF (a line's own CR stays), so scripts can spell exact byte sequences.
- `*` lines must match some untagged reply of the command group, `!` lines must
  match none, `?` lines may match. A reply may satisfy several expected lines.
- Untagged OK/NO/BAD/BYE and tagged replies are prefix matches: the expected
  arguments may stop early and the last one is compared as a prefix.
- `$$` is a literal `$`; `$` alone matches any string or list (not NIL); `$]`
  skips atoms up to one containing `]`; `$tag` is the tag of the group's first
  command; `$N` (a number) is the current sequence of the message that had
  sequence N when the group began (updated by EXPUNGE replies).
- Variables compare case-sensitively, literal script text case-insensitively.
- `append` alone appends the next message of the script's mbox (with its From
  line date); `append ARGS` without a message body appends the next message with
  those arguments; the mbox is one cursor per script that wraps at its end.
- Before a test (unless state is nonauth) every mailbox matching `$mailbox*` is
  deleted and unsubscribed, as LIST/LSUB report them.
- A LOGOUT on connection 1 ends every script that has none of its own.
- Group directives `!ordered`, `!sleep N`, `!output TEXT` and the header
  `user N: $user2` are supported.

Deliberate differences from imaptest: literals are sent as synchronizing
literals when the server lacks LITERAL+ (imaptest aborts); a failed attempt
to match one element of an unordered list forgets the variables it captured;
`messages:` defaults to all messages, as FORMAT.md says; a reply line for a
multi-connection script may omit the connection number (the `append` script
does). imaptest's own mailbox-state tracking (which complains about e.g.
inconsistent FLAGS between sessions independently of the script) is not
reproduced: only what the script states is checked. As in imaptest, strings
are compared as C strings, so a NUL ends the comparison (append-binary needs
that: its expected literal is one byte shorter than the binary.size it states).
$modseqN: see run_script(modseq_rule=...).

Public API: parse_script(), run_script(), run_scripts(), list_scripts(),
format_results(). Nothing here depends on pytest.
"""
import calendar
import fnmatch
import os
import re
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

DEFAULT_DIR = os.environ.get(
    "SORA_IMAPTEST_DIR", "/work/shared/conformance/imaptest")

MUST, MUST_NOT, MAY = "*", "!", "?"
STATES = ["nonauth", "auth", "created", "appended", "selected"]
MAX_CONNECTIONS = 100
FULL = -1  # match_args(): every element matched

_UPPER = {i: i - 32 for i in range(ord("a"), ord("z") + 1)}


def _up(s):
    """ASCII-only upper case (C's toupper in the C locale)."""
    return s.translate(_UPPER)


def _is_var_char(c):
    return c.isascii() and (c.isalnum() or c == "_")


class ScriptError(Exception):
    """The script itself is malformed."""


# ---------------------------------------------------------------------------
# IMAP arguments: one parser for the server's replies and the script's lines.
# Text is latin-1 decoded bytes throughout so any octet survives unchanged.

class Arg:
    __slots__ = ("kind", "val")
    ATOM, STRING, LITERAL, NIL, LIST = "atom", "string", "literal", "nil", "list"

    def __init__(self, kind, val):
        self.kind = kind
        self.val = val

    def is_astring(self):
        return self.kind in (Arg.ATOM, Arg.STRING, Arg.LITERAL)

    def __repr__(self):
        return args_to_str([self])


def _quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def args_to_str(args, limit=400):
    out = []
    for a in args:
        if a.kind == Arg.ATOM:
            out.append(a.val)
        elif a.kind == Arg.NIL:
            out.append("NIL")
        elif a.kind == Arg.LIST:
            out.append("(" + args_to_str(a.val, limit) + ")")
        elif a.kind == Arg.LITERAL or "\r" in a.val or "\n" in a.val:
            body = a.val if len(a.val) <= limit else a.val[:limit] + "...(truncated)"
            out.append("{%d}%r" % (len(a.val), body))
        else:
            out.append(_quote(a.val))
    return " ".join(out)


_LITERAL_RE = re.compile(r"~?\{(\d+)\+?\}")


def parse_args(data, pos=0):
    """Parse IMAP arguments from data[pos:] up to its end or a line break
    outside a literal. Mirrors Dovecot's imap-parser with ATOM_ALLCHARS and
    LITERAL8: an atom runs to a space, a line break, or (inside a list) ')';
    '[' and ']' have no meaning of their own, so BODY[HEADER.FIELDS (FROM)]
    becomes three arguments on both sides of a comparison."""
    stack = [[]]
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == " ":
            pos += 1
        elif c in "\r\n":
            break
        elif c == "(":
            stack.append([])
            pos += 1
        elif c == ")" and len(stack) > 1:
            lst = stack.pop()
            stack[-1].append(Arg(Arg.LIST, lst))
            pos += 1
        elif c == '"':
            pos += 1
            buf = []
            while True:
                if pos >= n:
                    raise ScriptError("unterminated quoted string")
                ch = data[pos]
                if ch == "\\" and pos + 1 < n:
                    buf.append(data[pos + 1])
                    pos += 2
                elif ch == '"':
                    pos += 1
                    break
                else:
                    buf.append(ch)
                    pos += 1
            stack[-1].append(Arg(Arg.STRING, "".join(buf)))
        elif (c == "{" or (c == "~" and data.startswith("{", pos + 1))) and \
                _LITERAL_RE.match(data, pos):
            m = _LITERAL_RE.match(data, pos)
            size = int(m.group(1))
            pos = m.end()
            if data.startswith("\r\n", pos):
                pos += 2
            elif data.startswith("\n", pos):
                pos += 1
            else:
                raise ScriptError("literal size not followed by CRLF")
            if pos + size > n:
                raise ScriptError("literal shorter than its size")
            stack[-1].append(Arg(Arg.LITERAL, data[pos:pos + size]))
            pos += size
        else:
            start = pos
            while pos < n:
                ch = data[pos]
                if ch == " " or ch in "\r\n" or (ch == ")" and len(stack) > 1):
                    break
                pos += 1
            atom = data[start:pos]
            if _up(atom) == "NIL":
                stack[-1].append(Arg(Arg.NIL, None))
            else:
                stack[-1].append(Arg(Arg.ATOM, atom))
    if len(stack) != 1:
        raise ScriptError("unbalanced parentheses")
    return stack[0], pos


# ---------------------------------------------------------------------------
# Script model and parser

@dataclass
class Untagged:
    args: list
    existence: str
    linenum: int
    text: str


@dataclass
class Command:
    linenum: int
    text: str                    # as in the script (literals inline)
    tag: int = 0                 # "tagN" of method 3, 0 otherwise
    reply: Optional[list] = None  # expected tagged reply arguments


@dataclass
class Group:
    conn: int = 0
    commands: List[Command] = field(default_factory=list)
    untagged: List[Untagged] = field(default_factory=list)
    replies_pending: int = 0
    ordered: bool = False
    sleep: float = 0.0
    output: List[str] = field(default_factory=list)
    have_bye: bool = False


@dataclass
class Script:
    name: str
    path: str
    mbox_path: str
    capabilities: List[str] = field(default_factory=list)
    connections: int = 1
    messages: Optional[int] = None   # None = all
    state: str = "selected"
    ignore_extra_untagged: bool = True
    users: Dict[int, str] = field(default_factory=dict)
    require_user2: bool = False
    groups: List[Group] = field(default_factory=list)
    have_banner_check: bool = False


REPLY_ANY = [Arg(Arg.ATOM, "")]


class _Directives:
    """Per-list context used to add the default `$!` directives."""

    def __init__(self, reply_name, parent=None, prev_atom=None, parent_chain_idx=0):
        self.reply_name = reply_name
        self.parent = parent
        self.prev_atom = prev_atom
        self.parent_chain_idx = parent_chain_idx
        self.chain_count = 1
        self.directives = False


def _parse_directive_atoms(ctx, args):
    i = 0
    while i < len(args) and args[i].kind == Arg.ATOM and args[i].val.startswith("$!"):
        d = args[i].val[2:]
        if d.startswith("unordered"):
            rest = d[9:]
            if rest.startswith("=") and rest[1:].isdigit() and int(rest[1:]) > 0:
                ctx.chain_count = int(rest[1:])
            elif rest:
                raise ScriptError("Broken $!unordered directive")
        elif not (d in ("ordered", "noextra", "extra") or d.startswith("ignore=")
                  or d.startswith("ban=")):
            raise ScriptError("Unknown directive: " + d)
        ctx.directives = True
        i += 1


def _add_default_directives(ctx, args):
    if ctx.parent is None:
        return
    top_parent = ctx.parent.parent is None and ctx.parent.parent_chain_idx == 0
    name = ctx.reply_name
    defaults = []
    if name in ("list", "lsub"):
        if top_parent and ctx.parent_chain_idx == 1:
            defaults = ["$!unordered"]
    elif name == "status":
        if top_parent and ctx.parent_chain_idx == 2:
            defaults = ["$!unordered=2"]
    elif name == "fetch":
        if top_parent and ctx.parent_chain_idx == 2:
            defaults = ["$!unordered=2"]
        elif (ctx.parent.parent is not None and ctx.parent.parent.parent is None
              and ctx.parent.parent.parent_chain_idx == 0
              and ctx.parent.parent_chain_idx == 2 and ctx.prev_atom == "flags"):
            defaults = ["$!unordered", "$!noextra", "$!ignore=\\recent",
                        "$!ignore=$HasAttachment", "$!ignore=$HasNoAttachment"]
    for d in defaults:
        _parse_directive_atoms(ctx, [Arg(Arg.ATOM, d)])
    args[0:0] = [Arg(Arg.ATOM, d) for d in defaults]


def _handle_directives(ctx, args):
    _parse_directive_atoms(ctx, args)
    if not ctx.directives:
        _add_default_directives(ctx, args)
    ndir = 0
    while ndir < len(args) and args[ndir].kind == Arg.ATOM and args[ndir].val.startswith("$!"):
        ndir += 1
    if (len(args) - ndir) % ctx.chain_count != 0:
        raise ScriptError("Invalid list argument count, chain size=%d" % ctx.chain_count)
    prev_atom = None
    for i, a in enumerate(args):
        if a.kind in (Arg.ATOM, Arg.NIL):
            prev_atom = (a.val or "NIL").lower()
        if a.kind != Arg.LIST:
            continue
        sub = _Directives(ctx.reply_name, ctx, prev_atom,
                          i if ctx.chain_count == 1 else i % ctx.chain_count)
        _handle_directives(sub, a.val)


def _parse_untagged(script, group, text, existence, linenum):
    args, _ = parse_args(text)
    name = ""
    if args and args[0].kind == Arg.ATOM:
        name = args[0].val
        if name[:1] == "$" or name[:1].isdigit():
            name = args[1].val if len(args) > 1 and args[1].kind == Arg.ATOM else ""
    _handle_directives(_Directives(name.lower()), args)
    if _up(name).startswith("BYE"):
        if existence == MUST:
            group.have_bye = True
        elif existence == MAY:
            raise ScriptError("? BYE not currently supported")
    group.untagged.append(Untagged(args, existence, linenum, text))


def _get_cmd_reply(line):
    """Split an optional "tagN" and an ok/no/bad/"" prefix off line.
    Returns (tag, reply-or-None, rest)."""
    tag = 0
    first = line.split(" ", 1)[0]
    if first[:3].lower() == "tag" and " " in line and first[3:].isdigit() and int(first[3:]) > 0:
        tag = int(first[3:])
        line = line.split(" ", 1)[1]
        first = line.split(" ", 1)[0]
    low = first.lower()
    reply = None
    if low in ("ok", "no", "bad"):
        reply = [Arg(Arg.ATOM, low)]
        line = line[len(first):]
    elif first == '""':
        reply = REPLY_ANY
        line = line[2:]
    if reply is not None and line.startswith(" "):
        line = line[1:]
    return tag, reply, line


def _is_untagged_line(line):
    if line[:2] in ("* ", "! ", "? "):
        return line[0]
    return None


def _strip_conn_index(line):
    first = line.split(" ", 1)[0]
    if first.isdigit() and int(first) > 0:
        return int(first), (line.split(" ", 1)[1] if " " in line else "")
    return 0, line


class _Parser:
    def __init__(self, script, env):
        self.script = script
        self.env = env
        self.group = None
        self.ifenv = []   # (linenum, else_seen, saved_skip)
        self.skip = False

    def header_line(self, line):
        if ":" not in line:
            raise ScriptError("Missing ':'")
        key, value = line.split(":", 1)
        key = key.rstrip(" ").lower()
        value = value.lstrip(" ")
        s = self.script
        if key == "capabilities":
            s.capabilities = value.split()
        elif key == "connections":
            try:
                s.connections = int(value.split()[0])
            except (ValueError, IndexError):
                s.connections = 0
            if s.connections == 0 or s.connections > MAX_CONNECTIONS:
                raise ScriptError("Too many connections")
        elif key == "ignore_extra_untagged":
            s.ignore_extra_untagged = value[:1] == "y"
        elif key.startswith("user ") and key[5:].isdigit() and int(key[5:]) > 0:
            idx = int(key[5:])
            if idx > MAX_CONNECTIONS:
                raise ScriptError("Too many connections")
            if value in ("$user2", "${user2}"):
                s.require_user2 = True
            s.users[idx] = value
        elif key == "messages":
            s.messages = None if value.strip() == "all" else int(re.match(r"\d*", value).group(0) or 0)
        elif key == "state":
            if value.lower() not in STATES:
                raise ScriptError("Unknown state value")
            s.state = value.lower()
        else:
            raise ScriptError("Unknown setting")

    def command_line(self, linenum, line):
        s = self.script
        for kw in ("!ifenv ", "!ifnenv "):
            if line.startswith(kw):
                present = line[len(kw):] in self.env
                run = present if kw == "!ifenv " else not present
                self.ifenv.append([linenum, False, self.skip])
                if not run:
                    self.skip = True
                return
        if line == "!else":
            if not self.ifenv:
                raise ScriptError("!else without !ifenv")
            if self.ifenv[-1][1]:
                raise ScriptError("!else already seen")
            self.ifenv[-1][1] = True
            if not self.ifenv[-1][2]:
                self.skip = not self.skip
            return
        if line == "!endif":
            if not self.ifenv:
                raise ScriptError("!endif without !ifenv")
            self.skip = self.ifenv.pop()[2]
            return
        if self.skip:
            return

        group = self.group
        if group is not None:
            if line.startswith("!sleep "):
                group.sleep = _parse_interval(line[7:])
                return
            if line.startswith("!output "):
                group.output.append(line[8:])
                return
            if line == "!ordered":
                group.ordered = True
                return
            ex = _is_untagged_line(line)
            if ex:
                _parse_untagged(s, group, line[2:], ex, linenum)
                return
            if group.replies_pending > 0:
                conn_idx, rest = (0, line)
                if s.connections > 1:
                    conn_idx, rest = _strip_conn_index(line)
                tag, reply, _ = _get_cmd_reply(rest)
                if reply is not None:
                    # imaptest insists on the connection number here; the
                    # shipped `append` script omits it, so accept its absence.
                    if s.connections > 1 and conn_idx and conn_idx - 1 != group.conn:
                        raise ScriptError("Reply for wrong connection")
                    cmd = next((c for c in group.commands if c.tag == tag), None)
                    if cmd is None:
                        raise ScriptError("Reply for unknown tag")
                    if cmd.reply is not None:
                        raise ScriptError("Command already has a reply")
                    args, _ = parse_args(rest)
                    cmd.reply = args[1:] if tag else args
                    group.replies_pending -= 1
                    return

        if group is None or group.replies_pending == 0:
            group = Group()
            self.group = group
            s.groups.append(group)

        if s.connections > 1:
            first = line.split(" ", 1)[0]
            if not first.isdigit() or int(first) == 0:
                raise ScriptError("Missing client index")
            idx = int(first)
            if idx > MAX_CONNECTIONS:
                raise ScriptError("Too many connections")
            if group.commands and group.conn != idx - 1:
                raise ScriptError("All pipelined commands must use the same connection")
            group.conn = idx - 1
            s.connections = max(s.connections, idx)
            line = line.split(" ", 1)[1] if " " in line else ""

        tag, reply, line = _get_cmd_reply(line)
        if tag == 0:
            if group.replies_pending > 0:
                raise ScriptError("Missing reply from previous command group")
        elif any(c.tag == tag for c in group.commands):
            raise ScriptError("Tag reused within command group")
        if not group.commands:
            ex = _is_untagged_line(line)
            if ex:
                s.have_banner_check = True
                _parse_untagged(s, group, line[2:], ex, linenum)
                return
        if reply is None:
            group.replies_pending += 1
        group.commands.append(Command(linenum, line, tag, reply))


def _parse_interval(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|msecs?|s|secs?)?\s*", text)
    if not m:
        raise ScriptError("Invalid !sleep value " + text)
    v = float(m.group(1))
    return v / 1000.0 if (m.group(2) or "ms").startswith("m") else v


def parse_script(path, env=None):
    """Parse one script file into a Script. Raises ScriptError."""
    env = os.environ if env is None else env
    name = os.path.basename(path)
    mbox = path + ".mbox"
    if not os.path.exists(mbox):
        mbox = os.path.join(os.path.dirname(path), "default.mbox")
    script = Script(name=name, path=path, mbox_path=mbox)
    p = _Parser(script, env)
    with open(path, "rb") as f:
        raw = f.read().decode("latin-1")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header = True
    continues = binary = False
    ml = ""
    start_pos = last_line_end = start_linenum = 0
    for linenum, line in enumerate(lines, 1):
        try:
            if continues:
                if not line.startswith("}}}"):
                    ml += line
                    last_line_end = len(ml)
                    ml += "\n" if binary else "\r\n"
                    continue
                ml = ml[:last_line_end]
                line = line[3:]
                size = len(ml) - start_pos
                ml = ml[:start_pos] + ("~" if binary else "") + "{%d}\r\n" % size + ml[start_pos:]
                if line.endswith("{{{"):
                    binary = len(line) > 3 and line[-4] == "~"
                    ml += line[:-4] if binary else line[:-3]
                    start_pos = last_line_end = len(ml)
                    continue
                line = ml + line
                continues = False
            else:
                start_linenum = linenum
                if line == "":
                    header = False
                    continue
                if line.startswith("#"):
                    continue
                if line.endswith("{{{"):
                    binary = len(line) > 3 and line[-4] == "~"
                    ml = line[:-4] if binary else line[:-3]
                    start_pos = last_line_end = len(ml)
                    continues = True
                    continue
            if header:
                p.header_line(line)
            else:
                p.command_line(start_linenum, line)
        except ScriptError as e:
            raise ScriptError("%s line %d: %s" % (path, linenum, e)) from None
    if continues:
        raise ScriptError("%s: Multiline reply at line %d not ended" % (path, start_linenum))
    if not script.groups:
        raise ScriptError("%s: No commands in file" % path)
    if p.group is not None and p.group.replies_pending > 0:
        cmd = next(c for c in p.group.commands if c.reply is None)
        raise ScriptError("%s: Missing reply from command at line %d" % (path, cmd.linenum))
    if p.ifenv:
        raise ScriptError("%s: !ifenv at line %d not closed with !endif" % (path, p.ifenv[0][0]))
    has_logout = any(g.have_bye or any(c.text.lower() == "logout" for c in g.commands)
                     for g in script.groups)
    if not has_logout:
        g = Group(conn=0)
        g.commands.append(Command(0, "logout", 0, [Arg(Arg.ATOM, "ok")]))
        script.groups.append(g)
    return script


# ---------------------------------------------------------------------------
# mbox source

_FROM_RE = re.compile(
    r"From \S*\s+\w{3} (\w{3})\s+(\d{1,2}) (\d{1,2}):(\d\d):(\d\d) (\d{4})(?:\s+([+-])(\d\d)(\d\d))?")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _from_line_date(line):
    m = _FROM_RE.match(line)
    if not m:
        return None
    mon = m.group(1).capitalize()
    if mon not in _MONTHS:
        return None
    tz = "+0000"
    if m.group(7):
        tz = m.group(7) + m.group(8) + m.group(9)
    return "%02d-%s-%s %02d:%s:%s %s" % (int(m.group(2)), mon, m.group(6), int(m.group(3)),
                                          m.group(4), m.group(5), tz)


def load_mbox(path):
    """[(imap datetime, message text with CRLF line ends)] from an mbox."""
    with open(path, "rb") as f:
        data = f.read().decode("latin-1")
    lines = data.split("\n")
    msgs, cur, date = [], None, None
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        d = _from_line_date(line) if line.startswith("From ") else None
        if d is not None:
            if cur:   # consecutive From lines: the empty one is skipped
                msgs.append((date, "".join(cur)))
            cur, date = [], d
            continue
        if cur is None:
            raise ScriptError("%s: not an mbox file" % path)
        if last:
            if line:
                cur.append(line)
        else:
            cur.append(line if line.endswith("\r") else line)
            cur.append("\n" if line.endswith("\r") else "\r\n")
    if cur:
        msgs.append((date, "".join(cur)))
    if not msgs:
        raise ScriptError("%s: empty mbox" % path)
    return msgs


# ---------------------------------------------------------------------------
# Connection

class TestFailed(Exception):
    pass


class Disconnected(Exception):
    pass


class Timeout(Exception):
    pass


@dataclass
class Response:
    raw: str            # without the final CRLF, literals inline
    tag: str            # "*", "+" or the tag
    args: list          # arguments after the tag

    def short(self, limit=300):
        r = self.raw
        return r if len(r) <= limit else r[:limit] + "...(%d bytes)" % len(r)


class Connection:
    _next_id = 1

    def __init__(self, host, port, deadline, transcript):
        self.id = Connection._next_id
        Connection._next_id += 1
        self.deadline = deadline
        self.transcript = transcript
        self.sock = socket.create_connection((host, port), timeout=max(0.1, deadline() ))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.tagn = 0
        self.closed = False
        self.exists = 0
        self.caps = []
        self.storage = None
        self.seen_bye = False
        self.greeting = None

    def log(self, direction, text):
        if len(text) > 2000:
            text = text[:2000] + "...(%d bytes)" % len(text)
        self.transcript.append("%d%s %s" % (self.id, direction, text))

    def id_of_next_tag(self):
        return "%d.%d" % (self.id, self.tagn + 1)

    def next_tag(self):
        self.tagn += 1
        return "%d.%d" % (self.id, self.tagn)

    def send(self, data):
        self.log("C:", data.rstrip("\r\n"))
        try:
            self.sock.sendall(data.encode("latin-1"))
        except OSError as e:
            raise Disconnected("send failed: %s" % e)

    def _fill(self):
        left = self.deadline()
        if left <= 0:
            raise Timeout("timed out waiting for the server")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout("timed out waiting for the server")
        except OSError as e:
            self.closed = True
            raise Disconnected("connection error: %s" % e)
        if not chunk:
            self.closed = True
            raise Disconnected("server closed the connection")
        self.buf += chunk

    def has_buffered_line(self):
        return b"\n" in self.buf

    def readable(self):
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], 0)
        return bool(r)

    def read_response(self):
        """One whole response: a line plus any literals it announces."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            out += line
            m = re.search(rb"~?\{(\d+)\+?\}$", line)
            if not m:
                break
            size = int(m.group(1))
            out += b"\r\n"
            while len(self.buf) < size:
                self._fill()
            out += self.buf[:size]
            self.buf = self.buf[size:]
        raw = out.decode("latin-1")
        self.log("S:", raw)
        sp = raw.find(" ")
        tag = raw if sp < 0 else raw[:sp]
        try:
            args, _ = parse_args(raw, len(tag) + 1 if sp >= 0 else len(raw))
        except ScriptError as e:
            raise TestFailed("unparsable server reply (%s): %s" % (e, raw[:300]))
        resp = Response(raw, tag, args)
        self._track(resp)
        return resp

    def _track(self, resp):
        if resp.tag != "*" or not resp.args:
            return
        a0 = resp.args[0]
        if a0.kind == Arg.ATOM and a0.val.isdigit() and len(resp.args) > 1 \
                and resp.args[1].kind == Arg.ATOM:
            what = _up(resp.args[1].val)
            if what == "EXISTS":
                self.exists = int(a0.val)
            elif what == "EXPUNGE" and self.exists > 0:
                self.exists -= 1
        elif a0.kind == Arg.ATOM and _up(a0.val) == "CAPABILITY":
            self.caps = [a.val for a in resp.args[1:] if a.kind == Arg.ATOM]
        elif a0.kind == Arg.ATOM and _up(a0.val) == "BYE":
            self.seen_bye = True
        elif a0.kind == Arg.ATOM and _up(a0.val) == "OK" and len(resp.args) > 1 \
                and resp.args[1].kind == Arg.ATOM and _up(resp.args[1].val) == "[CAPABILITY":
            caps = []
            for a in resp.args[2:]:
                if a.kind != Arg.ATOM:
                    break
                caps.append(a.val.rstrip("]"))
                if a.val.endswith("]"):
                    break
            self.caps = caps

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


def _imap_quote(s):
    if any(c in s for c in "\r\n\0") or any(ord(c) > 127 for c in s):
        return "{%d}\r\n%s" % (len(s), s)
    return _quote(s)


def _mailbox_url(name):
    """imaptest's $mailbox_url: mUTF-7 decoded to UTF-8, then percent-encoded
    as an IMAP URL path segment."""
    def dec(m):
        b64 = m.group(1).replace(",", "/")
        if not b64:
            return "&"
        import base64
        raw = base64.b64decode(b64 + "=" * (-len(b64) % 4))
        return raw.decode("utf-16-be")
    utf8 = re.sub(r"&([^-]*)-", dec, name).encode("utf-8")
    out = []
    for b in utf8:
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-._~!$&'()*+,=:@/"):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


# ---------------------------------------------------------------------------
# Execution

@dataclass
class Failure:
    group: int            # 1-based command group index (0 = initialization)
    linenum: int
    command: str
    message: str

    def __str__(self):
        where = "init" if self.group == 0 else "command group %d (line %d)" % (self.group, self.linenum)
        return "%s: %s\n  command: %s" % (where, self.message, self.command)


@dataclass
class ScriptResult:
    name: str
    status: str                   # passed | failed | skipped | excluded
    reason: str = ""
    failures: List[Failure] = field(default_factory=list)
    transcript: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def details(self, transcript_lines=60):
        out = ["%s: %s%s" % (self.name, self.status, (" (%s)" % self.reason) if self.reason else "")]
        for f in self.failures:
            out.append(str(f))
        if self.failures and transcript_lines:
            out.append("--- last %d transcript lines (N C:/S: = connection N client/server)"
                       % transcript_lines)
            out.extend(self.transcript[-transcript_lines:])
        return "\n".join(out)


class _Skip(Exception):
    pass


class _Abort(Exception):
    """Stop the script (disconnection, timeout, too many failures)."""


class _Runner:
    MAX_FAILURES = 25

    def __init__(self, script, host, port, creds, mailbox, timeout, literal_plus,
                 ignore_capabilities, host_for_domain, modseq_rule="increasing"):
        if modseq_rule not in ("increasing", "format", "plain"):
            raise ValueError("modseq_rule must be increasing, format or plain")
        self.modseq_rule = modseq_rule
        self.s = script
        self.host, self.port = host, port
        self.creds = creds            # {conn index 0..: (user, password)}
        self.mailbox = mailbox
        self.timeout = timeout
        self.literal_plus = literal_plus
        self.ignore_caps = {_up(c) for c in ignore_capabilities}
        self.end = time.monotonic() + timeout
        self.transcript = []
        self.failures = []
        self.vars = {}
        self.added = []
        self.modseq_idx = 0
        self.modseq_val = 0
        self.seqmap = []
        self.conns = []
        self.msgs = load_mbox(script.mbox_path)
        self.msg_cursor = 0
        self.group_idx = 0
        self.host_for_domain = host_for_domain
        self.cur_group = None
        self.cur_cmdline = ""
        self.sending_cmd = None

    # -- helpers
    def deadline(self):
        return self.end - time.monotonic()

    def fail(self, message, linenum=None, command=None):
        g = self.cur_group
        if linenum is None:
            linenum = g.commands[0].linenum if g and g.commands else (
                g.untagged[0].linenum if g and g.untagged else 0)
        self.failures.append(Failure(self.group_idx, linenum,
                                     command if command is not None else self.cur_cmdline,
                                     message))
        if len(self.failures) >= self.MAX_FAILURES:
            raise _Abort("too many failures")

    def next_message(self):
        if self.msg_cursor >= len(self.msgs):
            self.msg_cursor = 0
        m = self.msgs[self.msg_cursor]
        self.msg_cursor += 1
        return m

    def use_literal_plus(self, conn, size):
        if self.literal_plus is not None:
            return self.literal_plus
        caps = {_up(c) for c in conn.caps}
        return "LITERAL+" in caps or ("LITERAL-" in caps and size <= 4096)

    # -- variables
    def relseq(self, n):
        if n == 0:
            return "<zero seq>"
        if n > len(self.seqmap):
            return "<out of range>"
        if self.seqmap[n - 1] == 0:
            return "<expunged>"
        return str(self.seqmap[n - 1])

    def expand_all(self, text, skip_uninitialized=False):
        """Expand $variables in a command line (literal contents untouched)."""
        out = []
        i, n = 0, len(text)
        while i < n:
            m = _LITERAL_RE.match(text, i) if text[i] in "{~" else None
            if m and text.startswith("\r\n", m.end()):
                size = int(m.group(1))
                end = m.end() + 2 + size
                out.append(text[i:end])
                i = end
                continue
            c = text[i]
            if c != "$" or i == n - 1:
                out.append(c)
                i += 1
                continue
            i += 1
            if text[i] == "$":
                out.append("$")
                i += 1
                continue
            if text[i] == "!":
                while i + 1 < n and text[i + 1] != " ":
                    i += 1
                i += 1
                continue
            if text[i] == "{":
                j = text.find("}", i + 1)
                if j < 0:
                    raise TestFailed("Missing '}'")
                name, i = text[i + 1:j], j + 1
            else:
                j = i
                while j < n and _is_var_char(text[j]):
                    j += 1
                name, i = text[i:j], j
            if name.isdigit():
                out.append(self.relseq(int(name)))
                continue
            value = self.vars.get(name)
            if value is None:
                if not skip_uninitialized:
                    raise TestFailed("Uninitialized variable: %s" % (name or "$"))
                value = "$" + name
            out.append(value)
        return "".join(out)

    def _bind(self, name, value):
        if name not in self.vars:
            self.added.append(name)
        self.vars[name] = value

    def expand_input(self, pat, inp):
        """Match one script string against one server string, capturing
        unset variables. Returns (expanded pattern or None, case-insensitive)."""
        icase = True
        out = []
        i = j = 0
        n = len(pat)
        while i < n:
            c = pat[i]
            if c != "$" or pat[i + 1:i + 2] == "$":
                if c == "$":
                    i += 1
                    c = pat[i]
                if j >= len(inp) or _up(c) != _up(inp[j]):
                    return None, icase
                j += 1
                out.append(c)
                i += 1
                continue
            i += 1
            if pat[i:i + 1] == "{":
                k = pat.find("}", i + 1)
                if k < 0:
                    return "", icase
                name, i = pat[i + 1:k], k + 1
            else:
                k = i
                while k < n and _is_var_char(pat[k]):
                    k += 1
                name, i = pat[i:k], k
            if name.isdigit():
                value = self.relseq(int(name))
            elif name.startswith("case:"):
                icase = False
                value = name[5:]
            else:
                value = self.vars.get(name) if name else None
                if value is None:
                    stop = self._stop_char(pat[i:])
                    p = j
                    if stop is None:
                        p = len(inp)
                    else:
                        while p < len(inp) and _up(inp[p]) != _up(stop):
                            p += 1
                    value = inp[j:p]
                    m = re.fullmatch(r"modseq(\d+)", name)
                    if not name:
                        pass
                    elif m:
                        value = self._new_modseq(int(m.group(1)), value)
                        self.vars[name] = value
                    else:
                        self._bind(name, value)
            out.append(value)
            if inp[j:j + len(value)] != value:
                return None, icase
            j += len(value)
        return "".join(out), icase

    def _stop_char(self, rest):
        """The first character the rest of a pattern will produce, or None
        to capture to the end of the input."""
        if not rest:
            return None
        if rest[0] != "$":
            return rest[0]
        if rest[1:2] == "$":
            return "$"
        m = re.match(r"\$(?:\{([^}]*)\}|(\w*))", rest)
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if name.isdigit():
            return self.relseq(int(name))[:1] or None
        if name.startswith("case:"):
            return name[5:6] or None
        v = self.vars.get(name) if name else None
        return v[:1] if v else None

    def _new_modseq(self, idx, value):
        if not value.isdigit():
            return "$modseq-not-number"
        if self.modseq_rule == "plain":
            return value
        if self.modseq_rule == "increasing":
            v = int(value)
            if v <= self.modseq_val and self.modseq_idx:
                return "$modseq-not-increasing-after-%d" % self.modseq_val
            self.modseq_idx, self.modseq_val = idx, v
            return value
        if self.modseq_idx > idx:
            return "$modseq-order-mismatch"
        v = int(value)
        at_least = self.modseq_val + (idx - self.modseq_idx)
        result = value
        if v < at_least:
            result = "$modseq-at-least-%d" % at_least
            v = at_least
        self.modseq_idx, self.modseq_val = idx, v
        return result

    # -- matching
    def match_args(self, match, args, maxn=None, prefix=False):
        ret = 0
        ai = 0
        count = 0
        for mi, m in enumerate(match):
            if maxn is not None and count >= maxn:
                break
            a = args[ai] if ai < len(args) else None
            if m.kind == Arg.NIL:
                if a is None or a.kind != Arg.NIL:
                    return ret
            elif m.kind == Arg.LIST:
                if a is None or a.kind != Arg.LIST:
                    return ret
                sub = self.match_list(m.val, a.val)
                if sub != FULL:
                    return ret + sub
            else:
                ms = m.val
                if ms == "$" and a is not None and a.kind == Arg.LIST:
                    pass
                elif ms == "$]":
                    while a is not None and a.kind in (Arg.ATOM, Arg.NIL) and "]" not in (a.val or ""):
                        ai += 1
                        a = args[ai] if ai < len(args) else None
                else:
                    if a is None or not a.is_astring():
                        return ret
                    # imaptest compares C strings: a NUL ends both sides.
                    # (append-binary relies on it: its expected literal is
                    # one byte shorter than the binary.size it states.)
                    av = a.val.split("\0", 1)[0]
                    out, icase = self.expand_input(ms.split("\0", 1)[0], av)
                    if out is None:
                        return ret
                    if prefix and mi == len(match) - 1:
                        av = av[:len(out)]
                    if (icase and _up(av) != _up(out)) or (not icase and av != out):
                        return ret
            ret += 1
            ai += 1
            count += 1
        if prefix or ai >= len(args) or (maxn is not None and count >= maxn):
            return FULL
        return ret

    def match_list(self, match, args):
        unordered = False
        chain = 1
        noextra = None
        ignores, bans = [], []
        i = 0
        while i < len(match) and match[i].kind == Arg.ATOM and match[i].val.startswith("$!"):
            d = match[i].val[2:]
            if d.startswith("unordered"):
                unordered = True
                if noextra is None:
                    noextra = False
                if d[9:10] == "=":
                    chain = int(d[10:])
            elif d == "ordered":
                unordered = False
            elif d == "extra":
                noextra = False
            elif d == "noextra":
                noextra = True
            elif d.startswith("ignore="):
                ignores.append(_up(d[7:]))
            elif d.startswith("ban="):
                bans.append(_up(d[4:]))
            i += 1
        match = match[i:]
        if noextra is None:
            noextra = True
        if not unordered:
            return self.match_args(match, args)
        if len(args) % chain:
            return 0
        matched = [False] * len(args)
        ret = 0
        for mi in range(0, len(match), chain):
            for ai in range(0, len(args), chain):
                saved = (dict(self.vars), list(self.added))
                if self.match_args(match[mi:], args[ai:], maxn=chain) == FULL:
                    matched[ai] = True
                    break
                self.vars, self.added = saved
            else:
                return ret
            ret += 1
        check = ignores if noextra else bans
        if noextra or bans:
            for ai in range(0, len(args), chain):
                if matched[ai] or not args[ai].is_astring():
                    continue
                listed = _up(args[ai].val) in check
                if noextra and not listed:
                    return ret
                if not noextra and listed:
                    return ret
        return FULL

    # -- per group state
    def begin_group(self, group, conn):
        self.cur_group = group
        self.found = [False] * len(group.untagged)
        self.maybe = [(0, None)] * len(group.untagged)
        self.mismatches = 0
        self.first_extra = None
        self.received = []
        self.seqmap = list(range(1, conn.exists + 1))

    def handle_untagged(self, conn, resp, first_tag):
        group = self.cur_group
        self.received.append(resp)
        if group.untagged or not self.s.ignore_extra_untagged:
            self._match_untagged(conn, resp, first_tag)
        args = resp.args
        if len(args) >= 2 and args[0].kind == Arg.ATOM and args[0].val.isdigit() \
                and args[1].kind == Arg.ATOM and _up(args[1].val) == "EXPUNGE":
            seq = int(args[0].val)
            if seq <= len(self.seqmap):
                for k in range(seq - 1, len(self.seqmap)):
                    if self.seqmap[k] == seq:
                        self.seqmap[k] = 0
                    elif self.seqmap[k] > seq:
                        self.seqmap[k] -= 1

    def _match_untagged(self, conn, resp, first_tag):
        group = self.cur_group
        args = resp.args
        prefix = bool(args) and args[0].kind == Arg.ATOM and \
            _up(args[0].val) in ("OK", "NO", "BAD", "BYE")
        self.added = []
        found_some = False
        for i, ut in enumerate(group.untagged):
            if self.found[i]:
                continue
            if first_tag is not None:
                self.vars["tag"] = first_tag
            r = self.match_args(ut.args, args, prefix=prefix)
            self.vars.pop("tag", None)
            if r == FULL:
                if ut.existence == MUST_NOT:
                    self.fail("Unexpected untagged match (a '!' line matched):\n"
                              "  Match: %s\n  Reply: %s" % (ut.text, resp.short()), ut.linenum)
                    return
                self.found[i] = True
                found_some = True
                self.added = []
                if group.ordered:
                    break
                continue
            if self.maybe[i][0] < r or self.maybe[i][1] is None:
                self.maybe[i] = (r, resp.short())
            for name in self.added:
                self.vars.pop(name, None)
            self.added = []
            if group.ordered and ut.existence == MUST:
                break
        if not found_some:
            self.mismatches += 1
            if not self.s.ignore_extra_untagged and self.first_extra is None:
                self.first_extra = resp.short()

    def end_group(self, group):
        missing = [i for i, ut in enumerate(group.untagged)
                   if ut.existence == MUST and not self.found[i]]
        if missing:
            lines = []
            for i in missing:
                ut = group.untagged[i]
                try:
                    expanded = self.expand_all(ut.text, skip_uninitialized=True)
                except TestFailed:
                    expanded = ut.text
                best = self.maybe[i][1] or "(none)"
                lines.append("  expected (line %d): * %s\n     expanded: * %s\n     best match: %s"
                             % (ut.linenum, _clip(ut.text), _clip(expanded), best))
            got = "\n".join("    " + r.short() for r in self.received) or "    (none)"
            self.fail("Missing %d untagged replies (%d mismatches)\n%s\n  untagged replies received:\n%s"
                      % (len(missing), self.mismatches, "\n".join(lines), got),
                      group.untagged[missing[0]].linenum)
        if self.first_extra is not None:
            self.fail("%d unexpected untagged replies received, first: %s"
                      % (self.mismatches, self.first_extra))
        for text in group.output:
            try:
                self.transcript.append("output: " + self.expand_all(text))
            except TestFailed as e:
                self.fail(str(e))
        if group.sleep:
            time.sleep(group.sleep)

    # -- sending
    def send_command(self, conn, cmdline, pending, on_response):
        """Send one command; literals go as LITERAL+ or synchronizing
        literals (waiting for '+' while handling other replies)."""
        tag = conn.next_tag()
        pending[tag] = cmdline
        pieces = _split_literals(cmdline)
        text = tag + " "
        for kind, piece in pieces:
            if kind == "text":
                text += piece
                continue
            size = int(_LITERAL_RE.match(piece).group(1))
            plus = self.use_literal_plus(conn, size)
            marker = re.sub(r"\+?\}$", "+}" if plus else "}", piece)
            text += marker + "\r\n"
            if not plus:
                conn.send(text)
                text = ""
                if not self.wait_continuation(conn, tag, pending, on_response):
                    return tag
        conn.send(text + "\r\n")
        return tag

    def wait_continuation(self, conn, tag, pending, on_response):
        while True:
            resp = conn.read_response()
            if resp.tag == "+":
                return True
            on_response(conn, resp)
            if tag not in pending:
                return False   # the command was answered instead

    def append_message(self, conn, prefix, args, with_date, pending, on_response):
        date, body = self.next_message()
        cmd = prefix + " " + args
        if with_date:
            cmd += ' "%s"' % date
        cmd += " {%d}\r\n%s" % (len(body), body)
        return self.send_command(conn, cmd, pending, on_response)

    # -- the test
    def run(self):
        s = self.s
        try:
            self.setup()
        except _Skip:
            raise
        except (TestFailed, Disconnected, Timeout, ScriptError) as e:
            self.group_idx = 0
            self.fail("initialization failed: %s" % e, 0, "")
            return
        for gi, group in enumerate(s.groups, 1):
            self.group_idx = gi
            try:
                self.run_group(group)
            except TestFailed as e:
                self.fail(str(e))
            except Timeout as e:
                self.fail(str(e) + " (pending: %s)" % self.cur_cmdline)
                return
            except Disconnected as e:
                self.fail("Unexpected disconnection: %s" % e)
                return

    def run_group(self, group):
        conn = self.conns[group.conn]
        self.cur_cmdline = " | ".join(c.text for c in group.commands) or "(banner)"
        self.begin_group(group, conn)
        if not group.commands:   # banner check
            if conn.greeting is not None:
                self.handle_untagged(conn, conn.greeting, None)
            self.end_group(group)
            return
        if conn.closed:
            raise Disconnected("connection %d already closed" % (group.conn + 1))
        pending = {}       # our tag -> command line
        by_tag = {}        # our tag -> Command
        first_tag = [None]
        replies = {}

        def on_response(c, resp):
            if resp.tag == "*":
                self.handle_untagged(c, resp, first_tag[0])
            elif resp.tag == "+":
                pass   # continuation for something we did not wait for
            elif resp.tag in pending:
                del pending[resp.tag]
                replies[resp.tag] = resp
                # A reply can arrive while a synchronizing literal of the
                # command itself is still being sent.
                cmd = by_tag.get(resp.tag) or self.sending_cmd
                self.vars["tag"] = resp.tag
                self.added = []
                r = self.match_args(cmd.reply, resp.args, prefix=True)
                self.vars.pop("tag", None)
                if r != FULL:
                    for name in self.added:
                        self.vars.pop(name, None)
                    self.fail("Expected tagged reply '%s', got '%s'"
                              % (args_to_str(cmd.reply), resp.short()), cmd.linenum,
                              self.cur_sent.get(resp.tag, cmd.text))
                self.added = []
            else:
                self.fail("reply with unknown tag: %s" % resp.short())

        self.cur_sent = {}
        try:
            for cmd in group.commands:
                try:
                    cmdline = self.expand_all(cmd.text)
                except TestFailed as e:
                    # Commands already sent still get their replies read.
                    self.fail(str(e), cmd.linenum, cmd.text)
                    break
                self.sending_cmd = cmd
                self.cur_sent[conn.id_of_next_tag()] = cmdline
                tag = self._send_test_command(conn, cmdline, pending, on_response)
                self.sending_cmd = None
                by_tag[tag] = cmd
                self.cur_sent[tag] = cmdline
                if first_tag[0] is None:
                    first_tag[0] = tag
                if len(group.commands) == 1:
                    self.cur_cmdline = cmdline
            while pending:
                on_response(conn, conn.read_response())
        except Disconnected:
            if group.have_bye and conn.seen_bye:
                for tag in pending:
                    cmd = by_tag.get(tag)
                    if cmd is not None and cmd.reply is not REPLY_ANY:
                        self.fail("Command expected '%s' as tagged reply - only \"\" allowed "
                                  "when BYE happens" % args_to_str(cmd.reply), cmd.linenum)
                self.end_group(group)
                return
            raise
        self.end_group(group)

    def _send_test_command(self, conn, cmdline, pending, on_response):
        low = cmdline.lower()
        if low in ("select", "examine") or low.startswith(("select ", "examine ")):
            conn.exists = 0
            try:
                a, _ = parse_args(cmdline.split(" ", 1)[1])
                if a and a[0].is_astring():
                    conn.storage = a[0].val
            except (ScriptError, IndexError):
                pass
        if low == "append":
            return self.append_message(conn, "APPEND", _quote(conn.storage), True,
                                       pending, on_response)
        for prefix, replace in (("append ", False), ("replace ", True), ("uid replace ", True)):
            if low.startswith(prefix) and not _append_has_body(cmdline[len(prefix):], replace):
                return self.append_message(conn, cmdline[:len(prefix) - 1], cmdline[len(prefix):],
                                           False, pending, on_response)
        return self.send_command(conn, cmdline, pending, on_response)

    # -- initialization
    def simple(self, conn, cmdline, allow_no=False):
        """Run an initialization command and return its untagged replies."""
        pending = {}
        untagged = []

        def on_response(c, resp):
            if resp.tag == "*":
                untagged.append(resp)
            elif resp.tag in pending:
                del pending[resp.tag]
                st = _up(resp.args[0].val) if resp.args and resp.args[0].kind == Arg.ATOM else ""
                if st != "OK" and not (allow_no and st == "NO"):
                    raise TestFailed("%s failed: %s" % (cmdline.split("\r\n")[0], resp.short()))

        if cmdline == "APPEND":
            self.append_message(conn, "APPEND", _quote(self.mailbox), True, pending, on_response)
        else:
            self.send_command(conn, cmdline, pending, on_response)
        while pending:
            on_response(conn, conn.read_response())
        return untagged

    def capabilities_ok(self, conn):
        have = {_up(c) for c in conn.caps} - self.ignore_caps
        missing = [c for c in self.s.capabilities if _up(c) not in have]
        if missing:
            raise _Skip("server lacks capabilit%s %s" % ("y" if len(missing) == 1 else "ies",
                                                            " ".join(missing)))

    def setup(self):
        s = self.s
        for i in range(s.connections):
            conn = Connection(self.host, self.port, self.deadline, self.transcript)
            self.conns.append(conn)
            greet = conn.read_response()
            conn.greeting = greet
            st = _up(greet.args[0].val) if greet.args and greet.args[0].kind == Arg.ATOM else ""
            if greet.tag != "*" or st not in ("OK", "PREAUTH"):
                raise TestFailed("Malformed banner: " + greet.short())
            conn.preauth = st == "PREAUTH"
            conn.storage = self.mailbox
        for i, conn in enumerate(self.conns):
            user, password = self.creds.get(i, self.creds[0])
            suffix = "" if i == 0 else str(i + 1)
            self.vars["user" + suffix] = user
            self.vars["username" + suffix] = user.split("@", 1)[0]
            self.vars["domain" + suffix] = user.split("@", 1)[1] if "@" in user else self.host_for_domain
            self.vars["password" + suffix] = password
        self.vars["mailbox"] = self.mailbox
        self.vars["mailbox_url"] = _mailbox_url(self.mailbox)

        first = self.conns[0]
        if s.state == "nonauth":
            if not first.caps:
                self.simple(first, "CAPABILITY")
            self.capabilities_ok(first)
            return
        for i, conn in enumerate(self.conns):
            if not conn.preauth:
                user, password = self.creds.get(i, self.creds[0])
                self.simple(conn, "LOGIN %s %s" % (_imap_quote(user), _imap_quote(password)))
        self.simple(first, "CAPABILITY")
        self.capabilities_ok(first)

        # imaptest convention: delete and unsubscribe everything matching
        # "$mailbox*" before the test.
        mask = _quote(self.mailbox + "*")
        boxes = [r.args[3].val for r in self.simple(first, "LIST \"\" " + mask)
                 if len(r.args) >= 4 and r.args[3].is_astring() and _up(r.args[0].val) == "LIST"]
        subs = [r.args[3].val for r in self.simple(first, "LSUB \"\" " + mask)
                if len(r.args) >= 4 and r.args[3].is_astring() and _up(r.args[0].val) == "LSUB"]
        for box in sorted(set(boxes), key=_up, reverse=True):
            self.simple(first, "DELETE " + _imap_quote(box), allow_no=True)
        for box in sorted(set(subs), key=_up, reverse=True):
            self.simple(first, "UNSUBSCRIBE " + _imap_quote(box), allow_no=True)
        if STATES.index(s.state) >= STATES.index("created") and _up(self.mailbox) != "INBOX":
            self.simple(first, "CREATE " + _imap_quote(self.mailbox))
        if STATES.index(s.state) >= STATES.index("appended"):
            count = len(self.msgs) if s.messages is None else s.messages
            for _ in range(count):
                self.simple(first, "APPEND")
        if s.state == "selected":
            # Only connections of the main user SELECT: the test mailbox was
            # created for that user alone, and a second user's connection
            # (urlauth2's `user 2: $user2`) only needs to be authenticated.
            # imaptest would try to SELECT the second user's own `$mailbox`
            # and fail unless some earlier run had left one behind.
            main_user = self.creds[0][0]
            for i, conn in enumerate(self.conns):
                if self.creds.get(i, self.creds[0])[0] != main_user:
                    continue
                conn.exists = 0
                self.simple(conn, "SELECT " + _imap_quote(self.mailbox))
                conn.storage = self.mailbox

    def close(self):
        for c in self.conns:
            c.close()


def _clip(s, limit=300):
    s = s.replace("\r\n", "\\r\\n")
    return s if len(s) <= limit else s[:limit] + "..."


def _split_literals(cmdline):
    """[("text", str) | ("literal", "{N}" marker), ...] with the literal's
    data following as text. Only `{N}`/`~{N}` right before CRLF counts."""
    out = []
    i = 0
    n = len(cmdline)
    start = 0
    while i < n:
        k = cmdline.find("\r\n", i)
        if k < 0:
            break
        m = re.search(r"~?\{(\d+)\+?\}$", cmdline[start:k])
        if not m:
            i = k + 2
            continue
        mstart = start + m.start()
        out.append(("text", cmdline[start:mstart]))
        out.append(("literal", cmdline[mstart:k]))
        size = int(m.group(1))
        start = k + 2
        out.append(("text", cmdline[start:start + size]))
        start = i = start + size
    out.append(("text", cmdline[start:]))
    return out


def _append_has_body(args_text, replace):
    """Whether "APPEND args" already carries the message (imaptest's
    append_has_body())."""
    try:
        args, _ = parse_args(args_text)
    except ScriptError:
        return False
    i = 1 if replace else 0
    if len(args) <= i:
        return False
    if i + 1 < len(args) and args[i + 1].kind == Arg.LIST:
        i += 1
    if i + 1 < len(args) and args[i + 1].kind == Arg.STRING:
        i += 1
    if i + 1 >= len(args):
        return False
    nxt = args[i + 1]
    return nxt.kind == Arg.LITERAL or (nxt.kind == Arg.ATOM and _up(nxt.val) == "CATENATE")


# ---------------------------------------------------------------------------
# Public entry points

def list_scripts(directory=DEFAULT_DIR):
    """Script names in a directory: every regular file except .mbox
    fixtures and the documentation/licence files (imaptest also skips
    subdirectories such as broken/)."""
    names = []
    for n in sorted(os.listdir(directory)):
        p = os.path.join(directory, n)
        if n.startswith(".") or n.endswith(".mbox") or not os.path.isfile(p):
            continue
        if n.startswith("COPYING") or n.endswith(".md"):
            continue
        names.append(n)
    return names


def run_script(path, host, port, user, password, *, user2=None, password2=None,
               mailbox="imaptest", timeout=30.0, literal_plus=None,
               ignore_capabilities=(), env=None, domain=None, modseq_rule="increasing"):
    """Run one script file against host:port and return a ScriptResult.

    user/password log in every connection; user2/password2 serve scripts
    with `user N: $user2` (skipped without them). literal_plus: None uses
    LITERAL+ when advertised, True/False force it. ignore_capabilities are
    treated as not advertised. timeout bounds the whole script.

    modseq_rule decides what a newly captured $modseqN must satisfy:
    "format" is FORMAT.md's rule (indices in increasing order, each value at
    least the previous one plus the index gap); the shipped
    esearch-condstore captures $modseq3 before $modseq2 and expects
    consecutive values, so no server can pass it under that rule (the
    imaptest that passes all scripts treats them as plain variables).
    "increasing" (default) requires each new $modseqN to be a number larger
    than every one captured before it in the script; "plain" only captures."""
    name = os.path.basename(path)
    t0 = time.monotonic()
    try:
        script = parse_script(path, env)
    except (ScriptError, OSError) as e:
        return ScriptResult(name, "failed", "script parse error: %s" % e)
    if script.require_user2 and not user2:
        return ScriptResult(name, "skipped", "needs a second user ($user2) and none was given")
    creds = {0: (user, password)}
    for idx, value in script.users.items():
        if value in ("$user2", "${user2}"):
            creds[idx - 1] = (user2, password2 if password2 is not None else password)
        else:
            creds[idx - 1] = (value, password)
    runner = None
    try:
        runner = _Runner(script, host, port, creds, mailbox, timeout, literal_plus,
                         ignore_capabilities, domain or host, modseq_rule)
        runner.run()
    except _Skip as e:
        return ScriptResult(name, "skipped", str(e), transcript=runner.transcript,
                            seconds=time.monotonic() - t0)
    except _Abort:
        pass
    except Exception as e:   # a runner bug must not stop the other scripts
        if runner is None:
            return ScriptResult(name, "failed", "could not start: %s" % e,
                                seconds=time.monotonic() - t0)
        import traceback
        runner.failures.append(Failure(runner.group_idx, 0, runner.cur_cmdline,
                                       "aborted: %r\n%s" % (e, traceback.format_exc())))
    finally:
        if runner is not None:
            runner.close()
    status = "failed" if runner.failures else "passed"
    reason = runner.failures[0].message.split("\n")[0] if runner.failures else ""
    return ScriptResult(name, status, reason, runner.failures, runner.transcript,
                        time.monotonic() - t0)


def run_scripts(host, port, user, password, *, directory=DEFAULT_DIR,
                include: Optional[Iterable[str]] = None,
                exclude: Optional[Dict[str, str]] = None,
                ignore_capabilities: Iterable[str] = (),
                only_capabilities: Optional[Iterable[str]] = None,
                reset: Optional[Callable[[str], Optional[dict]]] = None,
                user2=None, password2=None, mailbox="imaptest", timeout=30.0,
                literal_plus=None, env=None, domain=None, modseq_rule="increasing",
                progress: Optional[Callable[[ScriptResult], None]] = None):
    """Run scripts from `directory` and return {name: ScriptResult}.

    include: names or fnmatch patterns to run (default: all).
    exclude: {name or pattern: written reason}; such scripts are reported
      as "excluded" with that reason and not run.
    ignore_capabilities: capabilities to treat as not advertised (scripts
      requiring them are skipped) -- for features the server under test
      advertises but is known not to implement yet.
    only_capabilities: if given, skip scripts requiring any capability not
      in this set (even if the server advertises it).
    reset(name): called before each script; may recreate the user or the
      mailbox store, and may return a dict with any of "user", "password",
      "user2", "password2", "mailbox", "host", "port" overriding the
      arguments for that script (e.g. a fresh user per script).
    progress(result): called after each script."""
    exclude = dict(exclude or {})
    only = {_up(c) for c in only_capabilities} if only_capabilities is not None else None
    results = {}
    for name in list_scripts(directory):
        if include is not None and not any(fnmatch.fnmatch(name, p) for p in include):
            continue
        why = next((r for p, r in exclude.items() if fnmatch.fnmatch(name, p)), None)
        if why is not None:
            res = ScriptResult(name, "excluded", why)
        else:
            path = os.path.join(directory, name)
            res = None
            if only is not None:
                try:
                    caps = parse_script(path, env).capabilities
                except (ScriptError, OSError):
                    caps = []
                extra = [c for c in caps if _up(c) not in only]
                if extra:
                    res = ScriptResult(name, "skipped", "capabilities filtered out: " + " ".join(extra))
            if res is None:
                o = dict(reset(name) or {}) if reset else {}
                res = run_script(path, o.get("host", host), o.get("port", port),
                                 o.get("user", user), o.get("password", password),
                                 user2=o.get("user2", user2), password2=o.get("password2", password2),
                                 mailbox=o.get("mailbox", mailbox), timeout=timeout,
                                 literal_plus=literal_plus, ignore_capabilities=ignore_capabilities,
                                 env=env, domain=domain, modseq_rule=modseq_rule)
        results[name] = res
        if progress:
            progress(res)
    return results


def format_results(results, details=True, transcript_lines=40):
    """A human-readable summary: counts, then one line per non-pass, then
    details of every failure."""
    by = {}
    for r in results.values():
        by.setdefault(r.status, []).append(r)
    out = ["imaptest scripts: %d total, %s" % (
        len(results), ", ".join("%d %s" % (len(by.get(k, [])), k)
                                for k in ("passed", "failed", "skipped", "excluded")))]
    for k in ("failed", "skipped", "excluded"):
        for r in by.get(k, []):
            out.append("  %-8s %-36s %s" % (k, r.name, r.reason))
    if details:
        for r in by.get("failed", []):
            out.append("")
            out.append(r.details(transcript_lines))
    return "\n".join(out)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Run imaptest scripts against an IMAP server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("scripts", nargs="*")
    a = ap.parse_args(argv)
    res = run_scripts(a.host, a.port, a.user, a.password, directory=a.dir,
                      include=a.scripts or None, timeout=a.timeout,
                      progress=lambda r: print("%-8s %s %s" % (r.status, r.name, r.reason), flush=True))
    print(format_results(res))
    return 0 if not any(r.status == "failed" for r in res.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
