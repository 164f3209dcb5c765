"""Write training/official_source_reference.json from checkouts of NVIDIA's StyleGAN code.

The converter compares an official pickle's embedded build source with NVIDIA's
`training/networks_stylegan.py` (see training/official_source.py). That file is NVIDIA's
(CC BY-NC / Nvidia Source Code License-NC) and stays out of this project: the reference keeps,
per official file, its repository, commit, path and SHA-256, the normalised statement hashes, the
stock literal defaults and the stock fused thresholds, and no source text.

    git clone https://github.com/NVlabs/stylegan /tmp/stylegan
    git clone https://github.com/NVlabs/stylegan2 /tmp/stylegan2
    python scripts/make_official_source_reference.py NVlabs/stylegan=/tmp/stylegan NVlabs/stylegan2=/tmp/stylegan2

Each argument is `OWNER/REPO=CHECKOUT[@COMMIT]`; without `@COMMIT` the checkout's `git rev-parse
HEAD` is recorded (an exported tree with no .git needs the commit spelled out). A git checkout
whose networks_stylegan.py differs from its commit is refused: the reference must describe
NVIDIA's file as published. The order of the arguments is the order of preference when a source
matches two origins equally (the two published files differ only in their licence comment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from stylegan_edge.training.official_source import (
    REFERENCE_FILE,
    OriginEntry,
    SourceReference,
    reference_from_source,
)

SOURCE_PATH = "training/networks_stylegan.py"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "training" / REFERENCE_FILE


def _git(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, check=False)


def _entry(spec: str) -> OriginEntry:
    repo, sep, rest = spec.partition("=")
    if not sep or "/" not in repo:
        raise SystemExit(f"error: {spec!r}: expected OWNER/REPO=CHECKOUT[@COMMIT]")
    where, _, commit = rest.partition("@")
    checkout = Path(where)
    source = checkout / SOURCE_PATH
    if not source.is_file():
        raise SystemExit(f"error: {source} does not exist")
    if not commit:
        head = _git(checkout, "rev-parse", "HEAD")
        if head.returncode != 0:
            raise SystemExit(f"error: {checkout} is not a git checkout; name its commit as {repo}={checkout}@COMMIT")
        commit = head.stdout.strip()
        if _git(checkout, "diff", "--quiet", "HEAD", "--", SOURCE_PATH).returncode != 0:
            raise SystemExit(f"error: {source} differs from commit {commit[:12]}; use an unmodified checkout")
    data = source.read_bytes()
    # As the official Network class stores it: inspect.getsource, which drops a byte-order mark.
    text = data.decode("utf-8-sig")
    return reference_from_source(
        text, f"{repo} {SOURCE_PATH}", repo=repo, commit=commit, path=SOURCE_PATH,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _dump(data: dict) -> str:
    text = json.dumps(data, indent=1)
    # One [qualname, hash] pair per line keeps the file short and its diffs readable.
    return re.sub(r'\[\n\s*("[^"\n]*"),\n\s*("[0-9a-f]+")\n\s*\]', r"[\1, \2]", text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", metavar="OWNER/REPO=CHECKOUT[@COMMIT]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    reference = SourceReference(tuple(_entry(spec) for spec in args.checkouts))
    args.out.write_text(_dump(reference.to_json()), encoding="utf-8")
    for entry in reference.origins:
        print(f"{entry.origin} @ {entry.commit[:12]}: {len(entry.statements)} statements, "
              f"sha256 {entry.sha256[:12]}...")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
