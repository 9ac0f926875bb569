"""Text preparation: Debian fortunes + King James Bible -> 64-token windows -> seeded draw.

Streams:
  * one per fortunes file in <root>/usr/share/games/fortunes (all files except `*.dat`, `*.u8`
    symlinks and `ascii-art` (pictures, not prose); the offensive `off/` set is not installed by
    `fortunes`/`fortunes-min`). Each file is split on lines consisting of "%", overstrike
    sequences "X<BS>" are removed, trailing blanks stripped, empty and exact-duplicate fortunes
    (across all files, first occurrence kept) dropped; fortunes are joined by a blank line.
  * one for the KJV: `COLUMNS=100000 bible -p <root>/usr/lib -d bible.data -l gen1:1-rev22:21`,
    verse numbers removed, one paragraph per chapter ("Genesis 1" heading line + the verses
    joined by single spaces), chapters joined by blank lines.
Each stream is tokenized whole (no BOS, no special tokens) and cut into non-overlapping 64-token
windows (the incomplete tail is dropped). Exact-duplicate windows are dropped (first kept).
Draw (numpy.random.default_rng(SEED)): N_F fortunes windows and N_K KJV windows without
replacement; the first TRAIN_F / TRAIN_K draws of each are the SAE training pool, the rest the
held-out pool. Training order = a permutation from the same generator; held-out order likewise.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
from tokenizers import Tokenizer

CTX = 64
SEED = 0
N_F, N_K = 3000, 1000          # 4,000 windows = 256,000 tokens collected
TRAIN_F, TRAIN_K = 2400, 800    # training pool 3,200 windows = 204,800 tokens
EXCLUDED_FORTUNE_FILES = {"ascii-art"}


def fortunes_streams(root):
    d = os.path.join(root, "usr/share/games/fortunes")
    names = sorted(n for n in os.listdir(d)
                   if not n.endswith((".dat", ".u8")) and n not in EXCLUDED_FORTUNE_FILES
                   and os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n)))
    seen = set()
    streams = []
    for n in names:
        raw = open(os.path.join(d, n), "rb").read().decode("utf-8")
        raw = re.sub(r".\x08", "", raw)                 # overstrike (underline / bold)
        parts = re.split(r"(?m)^%[ \t]*\n", raw + ("\n" if not raw.endswith("\n") else ""))
        kept = []
        for p in parts:
            p = "\n".join(line.rstrip() for line in p.strip("\n").split("\n")).strip("\n")
            if p.strip() == "" or p in seen:
                continue
            seen.add(p)
            kept.append(p)
        streams.append(("fortunes/" + n, "\n\n".join(kept) + "\n"))
    return streams


def kjv_stream(root):
    env = dict(os.environ, COLUMNS="100000")
    out = subprocess.run([os.path.join(root, "usr/bin/bible"), "-p", os.path.join(root, "usr/lib"),
                          "-d", "bible.data", "-l", "gen1:1-rev22:21"],
                         env=env, capture_output=True, check=True).stdout.decode("utf-8")
    chapters = []
    cur = None
    for line in out.split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            cur[1].append(m.group(2).strip())
        else:
            cur = (line.strip(), [])
            chapters.append(cur)
    assert chapters[0][0] == "Genesis 1" and chapters[-1][0] == "Revelation 22", (chapters[0][0], chapters[-1][0])
    text = "\n\n".join(h + "\n" + " ".join(v) for h, v in chapters) + "\n"
    n_verses = sum(len(v) for _, v in chapters)
    return ("kjv", text), len(chapters), n_verses


def main(root, tokenizer_path, out_dir):
    tok = Tokenizer.from_file(tokenizer_path)
    streams = fortunes_streams(root)
    (kname, ktext), n_ch, n_vs = kjv_stream(root)
    print(f"fortunes: {len(streams)} files, {sum(len(t) for _, t in streams):,} chars; "
          f"KJV: {n_ch} chapters, {n_vs} verses, {len(ktext):,} chars")
    assert n_vs == 31102, n_vs
    streams.append((kname, ktext))
    windows, src, off = [], [], []
    seen = set()
    n_dup = 0
    for si, (name, text) in enumerate(streams):
        ids = np.array(tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)
        for w in range(len(ids) // CTX):
            win = ids[w * CTX:(w + 1) * CTX]
            key = win.tobytes()
            if key in seen:
                n_dup += 1
                continue
            seen.add(key)
            windows.append(win)
            src.append(si)
            off.append(w * CTX)
    windows = np.stack(windows)
    src = np.array(src)
    off = np.array(off)
    is_kjv = src == len(streams) - 1
    fi, ki = np.flatnonzero(~is_kjv), np.flatnonzero(is_kjv)
    print(f"pool: {len(fi):,} fortunes windows + {len(ki):,} KJV windows ({n_dup} exact duplicates dropped)")
    rng = np.random.default_rng(SEED)
    df = rng.choice(fi, size=N_F, replace=False)
    dk = rng.choice(ki, size=N_K, replace=False)
    train = np.concatenate([df[:TRAIN_F], dk[:TRAIN_K]])
    held = np.concatenate([df[TRAIN_F:], dk[TRAIN_K:]])
    train = train[rng.permutation(len(train))]
    held = held[rng.permutation(len(held))]
    assert not set(train) & set(held)
    names = [n for n, _ in streams]
    meta = lambda idx: [{"source": names[src[i]], "token_offset": int(off[i])} for i in idx]
    np.savez(os.path.join(out_dir, "sequences.npz"),
             train=windows[train], heldout=windows[held])
    json.dump({"seed": SEED, "ctx": CTX, "pool_fortunes": int(len(fi)), "pool_kjv": int(len(ki)),
               "dup_windows_dropped": n_dup, "n_fortune_files": len(streams) - 1,
               "fortune_files": [n.split("/", 1)[1] for n in names[:-1]],
               "kjv_chapters": n_ch, "kjv_verses": n_vs,
               "train": meta(train), "heldout": meta(held)},
              open(os.path.join(out_dir, "sequences.json"), "w"), indent=0)
    print(f"train: {len(train)} windows ({TRAIN_F} fortunes + {TRAIN_K} KJV) = {len(train) * CTX:,} tokens; "
          f"held-out: {len(held)} windows = {len(held) * CTX:,} tokens")


if __name__ == "__main__":
    main(*sys.argv[1:4])
