"""A stand-in for a TAO command: replays sample output and writes the files TAO would.

    python fake_tao.py OP ARGS... [OP ARGS...]

Operations run left to right:
    print FILE        copy FILE to stdout line by line, flushing each line
    say TEXT          one line on stdout
    err TEXT          one line on stderr
    rawhex HEX        raw bytes on stdout (no newline added)
    copy SRC DST      copy a text file (creating folders), applying the substitutions
    bytes N DST       write a file of N bytes (zeros)
    subst OLD NEW     replace OLD by NEW in what later print/copy operations produce
    wait PATH         block until PATH exists (gives up after 20 s with status 99)
    exit N            stop with exit status N
Any other word is ignored, so a real TAO argv (``-k KEY -e spec``) can follow ``--``.
"""

import os
import sys
import time


def main(argv):
    substitutions = []

    def substituted(text):
        for old, new in substitutions:
            text = text.replace(old, new)
        return text

    i = 0
    while i < len(argv):
        op = argv[i]
        if op == "print":
            with open(argv[i + 1], encoding="utf-8") as f:
                for line in f:
                    sys.stdout.write(substituted(line))
                    sys.stdout.flush()
            i += 2
        elif op == "say":
            print(argv[i + 1], flush=True)
            i += 2
        elif op == "err":
            print(argv[i + 1], file=sys.stderr, flush=True)
            i += 2
        elif op == "rawhex":
            sys.stdout.buffer.write(bytes.fromhex(argv[i + 1]))
            sys.stdout.buffer.flush()
            i += 2
        elif op == "copy":
            with open(argv[i + 1], encoding="utf-8") as f:
                text = substituted(f.read())
            os.makedirs(os.path.dirname(os.path.abspath(argv[i + 2])), exist_ok=True)
            with open(argv[i + 2], "w", encoding="utf-8") as f:
                f.write(text)
            i += 3
        elif op == "bytes":
            os.makedirs(os.path.dirname(os.path.abspath(argv[i + 2])), exist_ok=True)
            with open(argv[i + 2], "wb") as f:
                f.truncate(int(argv[i + 1]))  # sparse: only the size matters
            i += 3
        elif op == "subst":
            substitutions.append((argv[i + 1], argv[i + 2]))
            i += 3
        elif op == "wait":
            deadline = time.time() + 20
            while not os.path.exists(argv[i + 1]):
                if time.time() > deadline:
                    return 99
                time.sleep(0.01)
            i += 2
        elif op == "exit":
            return int(argv[i + 1])
        else:
            i += 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
