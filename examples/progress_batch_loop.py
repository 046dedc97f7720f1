"""A batch loop over files with a progress bar per batch, on one shared pool.

The example writes a few folders ("batches") of text files into a temporary
directory, one of them with a file that is not valid UTF-8. Each batch is summarised
in parallel with a tqdm progress bar; the pool starts once and every batch reuses it.
A bad file does not stop its batch: `return_exceptions=True` puts its error in its
slot.

Run it with `python examples/progress_batch_loop.py`. Set the environment variable
`PARMAP_EXAMPLE_SLEEP_SCALE` (default 1) to shorten the simulated work, e.g. `0.01`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from parmap import parallel

#: Multiplies every simulated sleep; 1 keeps the progress bars visible for a moment.
SLEEP_SCALE = float(os.environ.get("PARMAP_EXAMPLE_SLEEP_SCALE", "1"))

BATCHES = 3
FILES_PER_BATCH = 40


class Summary(NamedTuple):
    """What we keep of one file."""

    name: str
    lines: int
    words: int
    sha256: str


@parallel(workers=4, progress=True)
def summarize(path: Path) -> Summary:
    """Count the lines and words of a text file and hash it."""
    data = path.read_bytes()
    text = data.decode("utf-8")  # raises UnicodeDecodeError for the bad file
    # Stands in for real work (parsing, OCR, a model...).
    time.sleep(0.02 * SLEEP_SCALE)
    digest = hashlib.sha256(data).hexdigest()[:12]
    return Summary(path.name, text.count("\n"), len(text.split()), digest)


def make_batches(root: Path) -> list[Path]:
    """Write `BATCHES` folders of text files; batch 1's last file is not UTF-8."""
    folders = []
    for batch in range(BATCHES):
        folder = root / f"batch-{batch}"
        folder.mkdir()
        for number in range(FILES_PER_BATCH):
            line = f"batch {batch} document {number}\n"
            (folder / f"doc-{number:03}.txt").write_text(line * (number + 1))
        folders.append(folder)
    (folders[1] / "doc-999.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    return folders


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for folder in make_batches(Path(directory)):
            files = sorted(folder.glob("*.txt"))
            # Per-call options: the bar's label, and errors kept in their slots.
            results = summarize.map(
                files, progress={"desc": folder.name}, return_exceptions=True
            )
            good = [r for r in results if isinstance(r, Summary)]
            failed = {
                f.name: r
                for f, r in zip(files, results)
                if isinstance(r, BaseException)
            }
            words = sum(s.words for s in good)
            print(f"{folder.name}: {len(good)} files, {words} words", flush=True)
            for name, error in failed.items():
                print(
                    f"  skipped {name}: {type(error).__name__}: {error}", flush=True
                )


if __name__ == "__main__":
    main()
