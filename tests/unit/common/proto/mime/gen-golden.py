#!/usr/bin/python3
"""Regenerates the *.golden files next to the corpus/*.eml test messages.

Each message is appended to a throw-away Dovecot (dovecot-imapd from Debian,
run as a pre-authenticated `imap` process on a maildir owned by `nobody`), and
Dovecot's answers to FETCH BODYSTRUCTURE, BODY, ENVELOPE and BODY.PEEK[section]
for every section of the message are written to NAME.golden. test-mime.c then
checks that our parser and formatters give the same answers, so Dovecot serves
as the reference implementation.

Normalisation: Dovecot keeps the case of media types, subtypes, parameter
names, disposition types and transfer encodings as written in the message;
we store them lowercased (all of them are case-insensitive by RFC 2045/2183),
so those tokens are lowercased in the golden BODYSTRUCTURE/BODY. Nothing else
is changed.

Usage (as root, from anywhere): gen-golden.py [corpus/NAME.eml ...]
Without arguments every corpus/*.eml is processed.

Golden file format: records "KEY LEN\\n" + LEN bytes + "\\n", KEY one of
BODYSTRUCTURE, BODY, ENVELOPE, SECTION:<section spec>.
"""
import glob, os, re, shutil, subprocess, sys, tempfile, threading

HERE = os.path.dirname(os.path.abspath(__file__))


def run_imap(workdir, commands):
    conf = os.path.join(workdir, 'imap.conf')
    with open(conf, 'w') as f:
        f.write('base_dir = %s/run\nstate_dir = %s/state\nlog_path = %s/log\n'
                'mail_location = maildir:~/Maildir\nssl = no\n' % (workdir, workdir, workdir))
    os.chmod(conf, 0o644)
    home = os.path.join(workdir, 'home')
    os.makedirs(home, exist_ok=True)
    shutil.chown(home, 'nobody', 'nogroup')
    p = subprocess.Popen(['runuser', '-u', 'nobody', '--', 'env', '-i', 'USER=golden', 'HOME=' + home,
                          '/usr/lib/dovecot/imap', '-c', conf],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # Dovecot drops the connection when its input ends while output is
    # still queued, so stdin stays open until the LOGOUT reply has come.
    done = threading.Event()

    def writer():
        p.stdin.write(commands)
        p.stdin.flush()
        done.wait()
        p.stdin.close()
    t = threading.Thread(target=writer)
    t.start()
    out = b''
    while True:
        chunk = p.stdout.read1(65536)
        if not chunk:
            break
        out += chunk
        if b'\r\nz OK' in out[-4096:]:
            done.set()
    done.set()
    t.join()
    p.wait()
    return out


def split_responses(out):
    """Splits the server output into responses, keeping literals inside."""
    res, i = [], 0
    while i < len(out):
        start = i
        while True:
            j = out.index(b'\r\n', i)
            m = re.search(rb'\{(\d+)\}$', out[i:j])
            if m:
                i = j + 2 + int(m.group(1))
                continue
            i = j + 2
            break
        res.append(out[start:i])
    return res


def tokenize(v):
    """IMAP value tokenizer: returns (kind, start, end, text) tuples."""
    toks, i = [], 0
    while i < len(v):
        c = v[i:i + 1]
        if c == b' ':
            i += 1
        elif c in (b'(', b')'):
            toks.append((c.decode(), i, i + 1, c))
            i += 1
        elif c == b'"':
            j, s = i + 1, b''
            while v[j:j + 1] != b'"':
                if v[j:j + 1] == b'\\':
                    j += 1
                s += v[j:j + 1]
                j += 1
            toks.append(('str', i + 1, j, s))
            i = j + 1
        elif c == b'{':
            j = v.index(b'}', i)
            n = int(v[i + 1:j])
            s = v[j + 3:j + 3 + n]
            toks.append(('str', j + 3, j + 3 + n, s))
            i = j + 3 + n
        else:
            j = i
            while j < len(v) and v[j:j + 1] not in (b' ', b'(', b')'):
                j += 1
            toks.append(('atom', i, j, v[i:j]))
            i = j
    return toks


def parse_tree(toks, k=0):
    assert toks[k][0] == '('
    k += 1
    lst = []
    while toks[k][0] != ')':
        if toks[k][0] == '(':
            sub, k = parse_tree(toks, k)
            lst.append(sub)
        else:
            lst.append(toks[k])
            k += 1
    return lst, k + 1


def is_multipart(b):
    return isinstance(b[0], list)


def is_message(b):
    return (not is_multipart(b) and b[0][3].lower() == b'message' and b[1][3].lower() == b'rfc822'
            and len(b) > 8 and isinstance(b[7], list))


def case_spans(b, spans):
    """Collects the byte spans of case-insensitive tokens to lowercase."""
    def params(p):
        if isinstance(p, list):
            for x in p[0::2]:
                spans.append(x)
    def disp(d):
        if isinstance(d, list):
            spans.append(d[0])
            params(d[1])
    if is_multipart(b):
        k = 0
        while isinstance(b[k], list):
            case_spans(b[k], spans)
            k += 1
        spans.append(b[k])
        if len(b) > k + 1:
            params(b[k + 1])
        if len(b) > k + 2:
            disp(b[k + 2])
        return
    spans.append(b[0]); spans.append(b[1]); params(b[2]); spans.append(b[5])
    ext = 7
    if b[0][3].lower() == b'text':
        ext = 8
    elif is_message(b):
        case_spans(b[8], spans)
        ext = 10
    if len(b) > ext + 1:
        disp(b[ext + 1])


def normalize(v):
    toks = tokenize(v)
    tree, _ = parse_tree(toks)
    spans = []
    case_spans(tree, spans)
    out = bytearray(v)
    for t in spans:
        if t[0] == 'str':
            out[t[1]:t[2]] = bytes(out[t[1]:t[2]]).lower()
    return bytes(out), tree


def sections(tree):
    secs = ['HEADER', 'TEXT']
    def visit(part, path, top_single):
        p = '.'.join(map(str, path))
        secs.append(p)
        if not top_single:
            secs.append(p + '.MIME')
        if is_multipart(part):
            k = 0
            while isinstance(part[k], list):
                visit(part[k], path + [k + 1], False)
                k += 1
        elif is_message(part):
            secs.append(p + '.HEADER')
            secs.append(p + '.TEXT')
            walk(part[8], path)
    def walk(body, path):
        if is_multipart(body):
            k = 0
            while isinstance(body[k], list):
                visit(body[k], path + [k + 1], False)
                k += 1
        else:
            visit(body, path + [1], path == [])
    walk(tree, [])
    return secs


def fetch_value(resp, item):
    m = re.match(rb'\* \d+ FETCH \(' + re.escape(item) + rb' ', resp)
    assert m, resp[:200]
    assert resp.endswith(b')\r\n'), resp[-50:]
    return resp[m.end():-3]


def decode_nstring(v):
    if v == b'NIL':
        return b''
    if v.startswith(b'"'):
        return tokenize(v)[0][3]
    m = re.match(rb'~?\{(\d+)\}\r\n', v)
    return v[m.end():]


def main():
    files = sys.argv[1:] or sorted(glob.glob(os.path.join(HERE, 'corpus', '*.eml')))
    work = tempfile.mkdtemp(prefix='mime-golden-')
    os.chmod(work, 0o755)
    try:
        for f in files:
            data = open(f, 'rb').read()
            shutil.rmtree(os.path.join(work, 'home'), ignore_errors=True)
            cmd = b'a APPEND INBOX {%d}\r\n' % len(data) + data + b'\r\nb SELECT INBOX\r\n'
            for item in (b'BODYSTRUCTURE', b'BODY', b'ENVELOPE'):
                cmd += b'c FETCH 1 (' + item + b')\r\n'
            cmd += b'z LOGOUT\r\n'
            resps = [r for r in split_responses(run_imap(work, cmd)) if b' FETCH (' in r[:30]]
            if len(resps) != 3:
                # Dovecot refuses to APPEND some messages (the empty one);
                # their expectations are written by hand in test-mime.c.
                print('%s: not accepted by Dovecot, skipped' % os.path.basename(f))
                continue
            bs, tree = normalize(fetch_value(resps[0], b'BODYSTRUCTURE'))
            body, _ = normalize(fetch_value(resps[1], b'BODY'))
            env = fetch_value(resps[2], b'ENVELOPE')
            secs = sections(tree)
            if len(secs) > 60:
                # Keep the golden files small: the outermost 10 and the
                # innermost 50 sections.
                secs = secs[:10] + secs[-50:]
            cmd = b'b SELECT INBOX\r\n'
            for s in secs:
                cmd += b'c FETCH 1 (BODY.PEEK[' + s.encode() + b'])\r\n'
            cmd += b'z LOGOUT\r\n'
            got = {}
            for r in split_responses(run_imap(work, cmd)):
                m = re.match(rb'\* \d+ FETCH \(BODY\[([^\]]*)\] ', r)
                if m:
                    got[m.group(1).decode()] = decode_nstring(r[m.end():-3])
            out = b''
            for k, v in ((b'BODYSTRUCTURE', bs), (b'BODY', body), (b'ENVELOPE', env)):
                out += b'%s %d\n%s\n' % (k, len(v), v)
            for s in secs:
                if s not in got:
                    print('%s: Dovecot gave no answer for BODY[%s]' % (os.path.basename(f), s))
                    continue
                v = got[s]
                out += b'SECTION:%s %d\n%s\n' % (s.encode(), len(v), v)
            with open(f[:-4] + '.golden', 'wb') as g:
                g.write(out)
            print('%s: %d sections' % (os.path.basename(f), len(secs)))
    finally:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
