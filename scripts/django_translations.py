#!/usr/bin/env python3
# Usage: python3 scripts/django_translations.py LANGS > out.txt, run in an unpacked Django wheel
# (LANGS: comma-separated locale names, e.g. ar,de,ja,zh_Hans); then zstd -19 --check.
"""Django .po translations -> plain text: one translated message a line, a blank line
between documents (one document per language and .po file)."""
import glob, os, re, sys

def unquote(s):
    s = s.strip()
    assert s.startswith('"') and s.endswith('"'), s
    body = s[1:-1]
    return re.sub(r'\\(.)', lambda m: {'n': '\n', 't': '\t', '"': '"', '\\': '\\'}.get(m.group(1), m.group(0)), body)

def msgstrs(path):
    out, cur, in_str, fuzzy = [], None, False, False
    for line in open(path, encoding='utf-8'):
        line = line.rstrip('\n')
        if line.startswith('#,') and 'fuzzy' in line:
            fuzzy = True
        if line.startswith('msgstr'):
            in_str = True
            cur = [unquote(line.split(' ', 1)[1])]
        elif line.startswith('"') and in_str:
            cur.append(unquote(line))
        else:
            if in_str and cur is not None:
                text = ''.join(cur)
                if text and not fuzzy:
                    out.append(text)
                fuzzy = False
            in_str, cur = False, None
            if not line.strip():
                fuzzy = False
    if in_str and cur and ''.join(cur):
        out.append(''.join(cur))
    return out

langs = sys.argv[1].split(',')
docs = []
for lang in langs:
    for po in sorted(glob.glob(f'django/**/locale/{lang}/LC_MESSAGES/*.po', recursive=True)):
        lines = []
        seen = set()
        for m in msgstrs(po)[1:]:  # first msgstr is the header
            for l in m.split('\n'):
                l = l.strip()
                if l and l not in seen:
                    seen.add(l); lines.append(l)
        if lines:
            docs.append('\n'.join(lines))
sys.stdout.write('\n\n'.join(docs) + '\n')
